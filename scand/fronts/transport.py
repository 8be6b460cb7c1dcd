"""One byte transport for every front: a socket, TLS over one, or a memory stream in tests.

A session reads and writes through a :class:`Transport` and never sees the
socket: the accept loop (:mod:`scand.fronts.accept`) makes a
:class:`SocketTransport` or a :class:`TlsTransport`; in-process tests make a
:class:`StreamTransport` over ``trio.testing.memory_stream_pair()``.

Sending never raises: a peer that left gets nothing, as every front's
protocol says. Receiving returns ``b""`` at end of input or on a read error.
Closing belongs to the accept loop's per-connection wrapper, not to the
session, so the wrapper can still answer after a fault.
"""

from __future__ import annotations

import array
import contextlib
import os
import select
import socket as stdsocket
from typing import Protocol

import trio

RECV_SIZE = 64 * 1024
# Descriptors taken with one recvmsg (SCM_RIGHTS); more are closed by the kernel.
MAX_FDS = 4
FD_SPACE = stdsocket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)


class Transport(Protocol):
    """Bytes in and out, and the questions a stream cannot answer by itself."""

    @property
    def fd_passing(self) -> bool:
        """True if :meth:`receive_fds` can carry descriptors (a Unix socket)."""

    @property
    def secure(self) -> bool:
        """True over TLS (no half-close: an end of input is a peer gone)."""

    @property
    def peer(self) -> str:
        """The peer's address for logs ("unix" on a Unix socket)."""

    async def receive_some(self, max_bytes: int = RECV_SIZE) -> bytes:
        """Bytes, or b"" at end of input (also on a read error)."""

    async def receive_fds(self, max_bytes: int = RECV_SIZE) -> tuple[bytes, list[int]]:
        """Bytes and any descriptors that came with them (SCM_RIGHTS)."""

    async def send_all(self, data: bytes) -> None:
        """Send everything; a peer that left is silently ignored."""

    def peer_gone(self) -> bool:
        """True if the peer fully closed (not merely shut down its write side)."""

    def has_input(self) -> bool:
        """True if unread input is waiting right now."""

    async def aclose(self) -> None: ...


def peer_gone(sock: trio.socket.SocketType) -> bool:
    """True if the peer of ``sock`` fully closed; False if it only shut down its
    write side (POLLHUP is only raised for the former)."""
    if sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLHUP)
    return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0))


def peer_name(sock: trio.socket.SocketType) -> str:
    if sock.family == stdsocket.AF_UNIX:
        return "unix"
    try:
        return str(sock.getpeername()[0])
    except OSError:
        return "?"


class SocketTransport:
    """A connected trio socket (Unix or TCP)."""

    secure = False

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.fd_passing = sock.family == stdsocket.AF_UNIX
        self.peer = peer_name(sock)
        self._full = False  # the last read filled its buffer

    async def receive_some(self, max_bytes: int = RECV_SIZE) -> bytes:
        """After a short read, wait and then read: a client's next request is rarely
        there already, and trio's ``recv`` would try a read that fails first. After
        a full read (a STREAM body arriving) more is likely waiting: ``recv``."""
        try:
            if self._full:
                data = await self.sock.recv(max_bytes)
            else:
                while True:
                    if self.sock.fileno() < 0:
                        return b""
                    await trio.lowlevel.wait_readable(self.sock)
                    try:
                        data = os.read(self.sock.fileno(), max_bytes)
                        break
                    except BlockingIOError:
                        continue
        except OSError:
            return b""
        self._full = len(data) == max_bytes
        return data

    async def receive_fds(self, max_bytes: int = RECV_SIZE) -> tuple[bytes, list[int]]:
        if not self.fd_passing:
            return await self.receive_some(max_bytes), []
        try:
            data, anc, _flags, _addr = await self.sock.recvmsg(max_bytes, FD_SPACE)
        except OSError:
            return b"", []
        fds: list[int] = []
        for level, kind, payload in anc:
            if level == stdsocket.SOL_SOCKET and kind == stdsocket.SCM_RIGHTS:
                arr = array.array("i")
                arr.frombytes(payload[: len(payload) - len(payload) % arr.itemsize])
                fds.extend(arr)
        return bytes(data), fds

    async def send_all(self, data: bytes) -> None:
        """One reply, one send() where the kernel allows (clients read once). A reply
        almost always fits the socket's buffer: it is written at once, without a pass
        through trio's scheduler; only what would block is awaited."""
        try:
            try:
                sent = os.write(self.sock.fileno(), data)
            except BlockingIOError:
                sent = 0
            while sent < len(data):
                sent += await self.sock.send(data[sent:])
        except OSError:
            pass  # the client left (or its socket is closed); it gets nothing

    def peer_gone(self) -> bool:
        return peer_gone(self.sock)

    def has_input(self) -> bool:
        if self.sock.fileno() < 0:
            return False
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        return any(ev & select.POLLIN for _, ev in poller.poll(0))

    async def aclose(self) -> None:
        self.sock.close()


class TlsTransport:
    """TLS over a connected socket, after the handshake."""

    fd_passing = False
    secure = True

    def __init__(self, tls: trio.SSLStream[trio.SocketStream]) -> None:
        self.tls = tls
        self.sock = tls.transport_stream.socket
        self.peer = peer_name(self.sock)
        self._ended = False

    async def receive_some(self, max_bytes: int = RECV_SIZE) -> bytes:
        try:
            data = bytes(await self.tls.receive_some(max_bytes))
        except (*_GONE, OSError):
            data = b""
        self._ended = not data
        return data

    async def receive_fds(self, max_bytes: int = RECV_SIZE) -> tuple[bytes, list[int]]:
        return await self.receive_some(max_bytes), []

    async def send_all(self, data: bytes) -> None:
        """Each reply leaves in one TLS record; a peer that left gets nothing."""
        with contextlib.suppress(*_GONE, OSError):
            await self.tls.send_all(data)

    def peer_gone(self) -> bool:
        return self._ended or peer_gone(self.sock)

    def has_input(self) -> bool:
        return False  # a TLS record may hold a request only once decrypted: not peeked

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.tls)


class StreamTransport:
    """A trio stream (in-process tests): the test says when the peer is gone."""

    secure = False
    peer = "memory"

    def __init__(self, stream: trio.abc.Stream, *, fds: list[int] | None = None) -> None:
        self.stream = stream
        self.gone = False
        self.closed = False
        self.fd_passing = fds is not None
        self.pending_fds = fds if fds is not None else []  # handed out with the next read

    async def receive_some(self, max_bytes: int = RECV_SIZE) -> bytes:
        try:
            return bytes(await self.stream.receive_some(max_bytes))
        except _GONE:
            return b""

    async def receive_fds(self, max_bytes: int = RECV_SIZE) -> tuple[bytes, list[int]]:
        data = await self.receive_some(max_bytes)
        fds, self.pending_fds = self.pending_fds, []
        return data, fds

    async def send_all(self, data: bytes) -> None:
        with contextlib.suppress(*_GONE):
            await self.stream.send_all(data)

    def peer_gone(self) -> bool:
        return self.gone

    def has_input(self) -> bool:
        return False

    async def aclose(self) -> None:
        self.closed = True
        await self.stream.aclose()
