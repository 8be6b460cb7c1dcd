"""Helpers for the farm tests: free loopback ports, raw clients from a chosen source
address, and a Sophie STREAM request."""

from __future__ import annotations

import socket

from bench.farm_load import free_port, wait_port

__all__ = ["connect", "exchange", "free_port", "read_reply", "stream_request", "wait_port"]


def connect(port: int, source: str = "127.0.0.1", timeout: float = 10.0,
            host: str = "127.0.0.1") -> socket.socket:
    """A TCP connection to host:port from ``source`` (any 127/8 address works on Linux)."""
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect((host, port))
    return s


def read_reply(s: socket.socket, end: bytes = b"\n") -> bytes:
    """Bytes up to ``end`` (included), or what came before the peer closed."""
    buf = b""
    while not buf.endswith(end):
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def exchange(port: int, data: bytes, source: str = "127.0.0.1", end: bytes = b"\n",
             timeout: float = 10.0) -> bytes:
    with connect(port, source, timeout) as s:
        s.sendall(data)
        return read_reply(s, end)


def stream_request(body: bytes) -> bytes:
    return b"STREAM %d\n" % len(body) + body
