"""A small trio HTTP/1.0 server for ``GET /metrics``.

Why not prometheus_client's own ``start_http_server``? It runs a WSGI server
in a thread: the collector would then read the daemon's live state (trio's
objects, dicts the event loop mutates) from another thread, and it has no
allow-list, so a peer would be served before anyone checked its address. Here
each scrape is a trio task: the peer address is checked before a byte is read,
the request is bounded in size and time, and the exposition is generated in
the trio thread from one consistent snapshot (a few dozen series: well under a
millisecond; a scrape never blocks the loop for longer than that).

The request parsing is a pure function (:func:`parse_request`).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Sequence

import structlog
import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from scand.remote_policy import parse_listen, peer_allowed

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


class MetricsServer:
    """Serve one registry on ``listen`` to peers in ``allow``."""

    def __init__(self, registry: CollectorRegistry, listen: str,
                 allow: Sequence[str]) -> None:
        self.registry = registry
        self.host, self.port = parse_listen(listen)
        self.allow = [ipaddress.ip_network(n, strict=False) for n in allow]
        self.scrapes = 0
        self.refused = 0
        self._slots = trio.Semaphore(MAX_SCRAPERS)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen; report the bound port (useful with port 0) to ``started()``."""
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        port = listeners[0].socket.getsockname()[1]
        log.info("metrics_ready", listen=f"{self.host}:{port}",
                 allow=[str(n) for n in self.allow])
        task_status.started(port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            try:
                peer = stream.socket.getpeername()
            except OSError:
                return
            if not peer_allowed(peer, self.allow) or self._slots.value == 0:
                self.refused += 1
                log.warning("metrics_refused", peer=str(peer[0]) if peer else "?")
                return  # closed before reading a byte
            async with self._slots:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError,
                                         OSError):
                    await self._serve(stream)

    async def _serve(self, stream: trio.SocketStream) -> None:
        head = b""
        with trio.move_on_after(REQUEST_TIMEOUT):
            while b"\r\n\r\n" not in head and b"\n\n" not in head and len(head) < MAX_REQUEST:
                chunk = await stream.receive_some(MAX_REQUEST)
                if not chunk:
                    break
                head += chunk
        status, reason = parse_request(head)
        if status != 200:
            await stream.send_all(response(status, reason, reason.encode() + b"\n",
                                           "text/plain; charset=utf-8"))
            return
        self.scrapes += 1
        body = generate_latest(self.registry)
        await stream.send_all(response(200, "OK", body, CONTENT_TYPE_LATEST,
                                       head_only=head.startswith(b"HEAD")))
