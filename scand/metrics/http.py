"""A small trio HTTP/1.0 server for ``GET /metrics``, on the fronts' listener toolkit.

Why not prometheus_client's own ``start_http_server``? It runs a WSGI server
in a thread: the collector would then read the daemon's live state (trio's
objects, dicts the event loop mutates) from another thread, and it has no
allow-list, so a peer would be served before anyone checked its address. Here
the listener is bound before privileges are dropped and served by
:class:`scand.fronts.accept.FrontServer` like every front (the allow-list
checked before a byte is read, a bounded number of scrapers, faults cost one
connection); each scrape reads a bounded request under a deadline, and the
exposition is generated in the trio thread from one consistent snapshot.

The request parsing is a pure function (:func:`parse_request`).
"""

from __future__ import annotations

import structlog
import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from scand.fronts.budget import Held
from scand.fronts.listen import Bound, bind_tcp, parse_allow, peer_allowed
from scand.fronts.transport import Transport

log = structlog.get_logger("scand.metrics")

# A scrape request is a request line and a few headers: far below this.
MAX_REQUEST = 8192
# A peer has this long to send its request; Prometheus sends it at once.
REQUEST_TIMEOUT = 5.0
# Concurrent scrapes served; more are closed at once (a scraper needs one).
MAX_SCRAPERS = 16
PATHS = ("/metrics", "/")


def parse_request(head: bytes) -> tuple[int, str]:
    """(status, reason) for the bytes of a request head: 200 only for ``GET /metrics``."""
    line = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
    parts = line.split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return 400, "Bad Request"
    method, target = parts[0], parts[1].split(b"?", 1)[0].decode("latin-1")
    if method not in (b"GET", b"HEAD"):
        return 405, "Method Not Allowed"
    if target not in PATHS:
        return 404, "Not Found"
    return 200, "OK"


def response(status: int, reason: str, body: bytes, content_type: str,
             head_only: bool = False) -> bytes:
    headers = (f"HTTP/1.0 {status} {reason}\r\nContent-Type: {content_type}\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return headers.encode("latin-1") + (b"" if head_only else body)


def bind(listen: str, allow: tuple[str, ...]) -> Bound:
    """The metrics listener, bound before privileges are dropped."""
    return bind_tcp(listen, parse_allow(allow, "metrics.allow"), key="metrics.listen")


class MetricsFront:
    """Serve one registry (scand.fronts.accept.Front)."""

    name = "metrics"
    ready_event = "metrics_ready"

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.scrapes = 0

    def open_session(self, transport: Transport, bound: Bound, held: Held) -> Scrape:
        return Scrape(self, transport)

    def busy_reply(self, bound: Bound, detail: str) -> bytes:
        return response(503, "Service Unavailable", b"busy\n", "text/plain; charset=utf-8")

    def closing_reply(self, bound: Bound) -> bytes:
        return b""

    def close(self) -> None:
        pass


class Scrape:
    """One HTTP request."""

    def __init__(self, front: MetricsFront, transport: Transport) -> None:
        self.front = front
        self.transport = transport

    def drain(self) -> None:
        pass  # a scrape is short; the grace covers it

    def fault_reply(self) -> bytes:
        return response(500, "Internal Server Error", b"internal\n", "text/plain; charset=utf-8")

    async def run(self) -> None:
        head = b""
        with trio.move_on_after(REQUEST_TIMEOUT):
            while b"\r\n\r\n" not in head and b"\n\n" not in head and len(head) < MAX_REQUEST:
                chunk = await self.transport.receive_some(MAX_REQUEST)
                if not chunk:
                    break
                head += chunk
        status, reason = parse_request(head)
        if status != 200:
            await self.transport.send_all(response(status, reason, reason.encode() + b"\n",
                                                   "text/plain; charset=utf-8"))
            return
        self.front.scrapes += 1
        body = generate_latest(self.front.registry)
        await self.transport.send_all(response(200, "OK", body, CONTENT_TYPE_LATEST,
                                               head_only=head.startswith(b"HEAD")))


__all__ = ["MAX_SCRAPERS", "MetricsFront", "bind", "parse_request", "peer_allowed", "response"]
