"""scandclient: ask a scand (or any Sophie-protocol) daemon whether something is clean.

Stdlib only, one file: copy it next to a filter script on a host that has no
scand installed. Python 3.11 or later.

    from scandclient import Client, Clean, Infected, Unchecked, ScandError

    with Client("/var/run/sophie", timeout=30) as scand:
        verdict = scand.scan_path("/var/spool/scan/1a2b3c/")   # the daemon reads it
        verdict = scand.scan_bytes(message)                      # STREAM <n>: no shared disk
        if isinstance(verdict, Infected):
            print("virus", verdict.name)
        elif isinstance(verdict, Unchecked):
            print("not scanned:", verdict.reason, verdict.detail)   # defer, never pass

A verdict is a value: :class:`Clean`, :class:`Infected` (``name``) or
:class:`Unchecked` (``reason``, ``detail``; the daemon's ``-1:<reason>``
words). A request that got no verdict at all (daemon down, deadline passed,
connection closed early, garbled reply) raises :class:`ScandError`. Both
``Unchecked`` and ``ScandError`` mean "not known to be clean": a mail filter
must defer the message, never pass it.

Every call has one total deadline (``timeout``, seconds) covering connect,
send and receive; it is not reset by each packet. A :class:`Client` keeps its
connection open between calls (the daemon answers many requests on one
connection) and reconnects once when the cached connection turns out to be
closed before anything of the request was sent. It reads the daemon's reply
even when sending fails, so a stream over the daemon's limit is reported as
``Unchecked("too-large", ...)``, not as a broken pipe.

:class:`AsyncClient` is the same API for trio code (trio is imported only when
it is used). The command-line clients (scand-scan, scand-qfilter, scand-queue,
scand-pipe) share this core (clients/core.py, clients/sync.py); each is
also built as a single copyable file by clients/build.py, and so is this module.
"""

from __future__ import annotations

import os

from clients.core import (
    DEFAULT_TIMEOUT,
    RECV_SIZE,
    SEND_CHUNK,
    TYPE_CHECKING,
    Clean,
    Infected,
    NothingSent,
    ReplyReader,
    ScandError,
    ScandProtocolError,
    ScandTimeout,
    ScandUnavailable,
    Unchecked,
    Verdict,
    check_path,
    check_socket_dir,
    closed_at_once,
    command_line,
    default_socket_path,
    keep_or_close,
    parse_stats,
    parse_verdict,
    still_good,
    unavailable,
)
from clients.sync import Client

if TYPE_CHECKING:  # pragma: no cover - type names only, never imported at run time
    from types import TracebackType

    import trio


class AsyncClient:
    """:class:`Client` for trio code: the same methods, awaited.

    One request at a time per client (a lock keeps the connection in step);
    create several clients for parallel requests. The deadline is a trio
    cancel scope, so it covers connect, send and receive together.
    """

    def __init__(self, socket_path: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket_path = socket_path or default_socket_path()
        self.timeout = timeout
        self._sock: trio.socket.SocketType | None = None
        self._lock: trio.Lock | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the cached connection (synchronous: safe in a cancelled scope)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def aclose(self) -> None:
        self.close()

    async def scan_path(self, path: str | os.PathLike[str]) -> Verdict:
        return parse_verdict(await self._request([check_path(path)]))

    async def scan_bytes(self, data: bytes) -> Verdict:
        return parse_verdict(await self._request([b"STREAM %d\n" % len(data), data]))

    async def command(self, name: str) -> str:
        line = await self._request([command_line(name)])
        return line.decode("utf-8", "replace")

    async def ping(self) -> bool:
        try:
            return await self.command("PING") == "PONG"
        except ScandError:
            return False

    async def version(self) -> str:
        return await self.command("VERSION")

    async def stats(self) -> dict[str, object]:
        return parse_stats(await self.command("STATS"))

    async def _request(self, chunks: list[bytes]) -> bytes:
        import trio

        if self._lock is None:
            self._lock = trio.Lock()
        # The deadline covers waiting for the lock too. A request cut short closes its
        # own connection (a late reply must not answer the next request).
        with trio.move_on_after(self.timeout):
            async with self._lock:
                return await self._request_in_time(chunks)
        raise ScandTimeout(f"no reply from {self.socket_path} within {self.timeout:g}s")

    async def _request_in_time(self, chunks: list[bytes]) -> bytes:
        sock, self._sock = still_good(self._sock), None
        cached = sock is not None
        for attempt in (1, 2):
            if sock is None:
                sock = await self._connect()
            try:
                line, in_step = await _async_exchange(sock, chunks)
            except NothingSent:
                sock.close()
                sock = None
                if cached and attempt == 1:
                    continue
                raise closed_at_once(self.socket_path) from None
            except BaseException:
                sock.close()  # includes trio.Cancelled: the connection is out of step
                raise
            self._sock = keep_or_close(sock, line, in_step)
            return line
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(self) -> trio.socket.SocketType:
        import trio

        check_socket_dir(self.socket_path)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        try:
            await sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise unavailable(self.socket_path, exc) from exc
        except BaseException:
            sock.close()
            raise
        return sock


async def _async_exchange(
    sock: trio.socket.SocketType, chunks: list[bytes]
) -> tuple[bytes, bool]:
    """Send, then read one line; a failed send still reads the reply the daemon left.

    Unlike the sync client this sends first and reads after: every early reply
    scand sends (oversize STREAM, timeout) is followed by a close, which ends a
    blocked send with EPIPE, so the reply is never lost.
    """
    sent = 0
    send_error: OSError | None = None
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                n = await sock.send(view[:SEND_CHUNK])
                sent += n
                view = view[n:]
    except OSError as exc:  # EPIPE, ECONNRESET: the daemon stopped reading
        if sent == 0:
            raise NothingSent from exc
        send_error = exc
    reader = ReplyReader()
    while True:
        try:
            data = await sock.recv(RECV_SIZE)
        except ConnectionResetError:
            data = b""
        if not data:
            raise reader.closed(sent, send_error)
        line = reader.feed(data)
        if line is not None:
            return line, send_error is None and not reader.extra


__all__ = [
    "DEFAULT_TIMEOUT",
    "AsyncClient",
    "Clean",
    "Client",
    "Infected",
    "ScandError",
    "ScandProtocolError",
    "ScandTimeout",
    "ScandUnavailable",
    "Unchecked",
    "Verdict",
    "default_socket_path",
    "parse_verdict",
]
