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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, limit: float = 15.0) -> None:
    """Until something accepts on 127.0.0.1:port."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@dataclass
class Reply:
    start: float
    end: float
    infected: bool
    reply: bytes  # b"" = the connection closed (or failed) without a reply
    error: str = ""


def ask(port: int, request: bytes, timeout: float, source: str | None = None) -> bytes:
    """One request on a fresh connection to 127.0.0.1:port (from ``source`` if given:
    a client that is not the balancer must not come from its address)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0) if source else None) as s:
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
                 count: int | None = None, source: str | None = None) -> None:
        self.port = port
        self.source = source
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
                reply = ask(self.port, request, self.timeout, self.source)
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


# Every server: PROXY v2 on traffic and on checks, health checks every ``inter``,
# weight 100 (so the agent's percentages have steps), the agent at the same pace.
SERVER_OPTIONS = ("send-proxy-v2 check-send-proxy check inter {inter} fall 2 rise 2 weight 100 "
                  "agent-check agent-inter {inter}")


def haproxy_config(sophie_port: int, clamd_port: int,
                   hosts: list[tuple[str, int, int, int]], inter: str = "300ms",
                   options: str = SERVER_OPTIONS) -> str:
    """The tested configuration (examples/haproxy.cfg has the same shape): TCP mode,
    health checks in each protocol, agent-check, PROXY v2 to every server.
    ``hosts`` are (name, sophie port, clamd port, agent port)."""
    def servers(which: int) -> str:
        return "".join(f"    server {name} 127.0.0.1:{ports[which]} agent-port {ports[2]}\n"
                       for name, *ports in hosts)
    return f"""global
    stats socket @STATS@ mode 600 level admin expose-fd listeners
    maxconn 2000

defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 2s
    retries 3
    option redispatch 1

frontend sophie_in
    bind 127.0.0.1:{sophie_port}
    default_backend sophie

backend sophie
    balance leastconn
    option tcp-check
    tcp-check send "PING\\n"
    tcp-check expect string PONG
    default-server {options.format(inter=inter)}
{servers(0)}
frontend clamd_in
    bind 127.0.0.1:{clamd_port}
    default_backend clamd

backend clamd
    balance leastconn
    option tcp-check
    tcp-check send-binary 7a50494e4700
    tcp-check expect binary 504f4e4700
    default-server {options.format(inter=inter)}
{servers(1)}"""


__all__ = ["EICAR", "FarmLoad", "Reply", "ask", "corpus", "free_port", "haproxy_config",
           "wait_port"]
