"""Load for a scanning farm: client threads sending Sophie ``STREAM`` requests over TCP
(one connection per message, as Exim and MIMEDefang do), a mix of clean and
EICAR-infected mail, every reply kept with its start and end time.

Used by tests/farm/test_haproxy_farm.py (events under load) and
bench/farm_bench.py (the balancer hop's cost). Stdlib only.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from email import encoders
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

# Built from halves: this file must not itself be an EICAR test file.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
INFECTED_EVERY = 4  # one message in four carries EICAR


def mail(n: int, attachment: bytes, name: str) -> bytes:
    msg = MIMEMultipart()
    msg["Subject"] = f"farm message {n}"
    msg.attach(MIMEText(f"Message {n}: see the attachment.\n"))
    part = MIMEBase("application", "octet-stream")
    part.set_payload(attachment)
    encoders.encode_base64(part)
    part.add_header("Content-Disposition", "attachment", filename=name)
    msg.attach(part)
    return msg.as_bytes()


def corpus(distinct: int = 24) -> list[tuple[bool, bytes]]:
    """(infected, request bytes). Clean attachments repeat (4 KiB, ``distinct`` of
    them), so a shared cache has hits; each mail's headers differ."""
    out = []
    for n in range(distinct * INFECTED_EVERY):
        infected = n % INFECTED_EVERY == INFECTED_EVERY - 1
        body = EICAR if infected else (b"report %d " % (n % distinct)) * 400
        data = mail(n, body, "eicar.com" if infected else f"report{n % distinct}.pdf")
        out.append((infected, b"STREAM %d\n" % len(data) + data))
    return out


@dataclass
class Reply:
    start: float
    end: float
    infected: bool
    reply: bytes  # b"" = the connection closed (or failed) without a reply
    error: str = ""


def ask(port: int, request: bytes, timeout: float, host: str = "127.0.0.1") -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        return buf


class FarmLoad:
    """``clients`` threads asking ``port`` until the ``with`` block ends (or ``count``)."""

    def __init__(self, port: int, clients: int = 6, timeout: float = 30.0,
                 count: int | None = None) -> None:
        self.port = port
        self.items = corpus()
        self.timeout = timeout
        self.count = count
        self.replies: list[Reply] = []
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _take(self) -> int | None:
        with self._lock:
            if self._stop.is_set() or (self.count is not None and self._next >= self.count):
                return None
            self._next += 1
            return self._next - 1

    def _run(self) -> None:
        while (n := self._take()) is not None:
            infected, request = self.items[n % len(self.items)]
            t0 = time.monotonic()
            error = ""
            try:
                reply = ask(self.port, request, self.timeout)
            except OSError as exc:
                reply, error = b"", f"{type(exc).__name__}: {exc}"
            with self._lock:
                self.replies.append(Reply(t0, time.monotonic(), infected, reply, error))

    def __enter__(self) -> FarmLoad:
        self.started = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)
        self.ended = time.monotonic()

    def rate(self, t0: float, t1: float) -> float:
        """Replies per second that ended in [t0, t1)."""
        with self._lock:
            n = sum(1 for r in self.replies if t0 <= r.end < t1)
        return n / max(1e-9, t1 - t0)


__all__ = ["EICAR", "FarmLoad", "Reply", "ask", "corpus"]
