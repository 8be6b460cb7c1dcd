"""A raw milter client (the MTA side) for tests that need what miltertest cannot send:
macro floods, a message left unfinished, a connection watched after a failure."""

from __future__ import annotations

import socket
import struct

# What an MTA offers at negotiation: version 6, every action, every protocol flag.
OFFER = struct.pack(">III", 6, 0x1FF, 0x1FFFFF)


def pkt(cmd: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + cmd + data


class RawMilter:
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)

    def negotiate(self) -> None:
        self.sock.sendall(pkt(b"O", OFFER))
        cmd, _ = self.read()
        assert cmd == b"O", cmd

    def read(self) -> tuple[bytes, bytes]:
        """The next reply packet (command byte, data), skipping progress packets;
        (b"", b"") when the daemon closed the connection."""
        while True:
            head = self._exactly(4)
            if len(head) < 4:
                return b"", b""
            (n,) = struct.unpack(">I", head)
            body = self._exactly(n)
            if body[:1] != b"p":
                return body[:1], body[1:]

    def _exactly(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                break
            out += chunk
        return out

    def macros(self, step: bytes, values: dict[str, str | bytes]) -> None:
        data = b"".join(k.encode() + b"\0" + (v if isinstance(v, bytes) else v.encode()) + b"\0"
                        for k, v in values.items())
        self.sock.sendall(pkt(b"D", step + data))

    def start_message(self, qid: str, headers: list[tuple[str, str]], body: bytes) -> None:
        """Everything of a message but its end (``E``)."""
        self.macros(b"M", {"i": qid})
        for name, value in headers:
            self.sock.sendall(pkt(b"L", name.encode() + b"\0" + value.encode() + b"\0"))
        for i in range(0, len(body), 65535):
            self.sock.sendall(pkt(b"B", body[i : i + 65535]))

    def message(self, qid: str, headers: list[tuple[str, str]], body: bytes
                ) -> tuple[bytes, bytes]:
        """Send a whole message; the reply to its end (``c``, ``y`` + SMTP text, ...)."""
        self.start_message(qid, headers, body)
        self.sock.sendall(pkt(b"E"))
        return self.read()

    def close(self) -> None:
        self.sock.close()
