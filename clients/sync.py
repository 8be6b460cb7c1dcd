"""The blocking client: one persistent connection, one total deadline per call.

The daemon may be a list of servers: ``unix:/path`` (or a bare path),
``tcp://host:port`` or ``tls://host:port``. A client starts at a server picked
by its pid (filters run one process per message, so load spreads), stays
there while it answers, and fails over to the next on a connection error, an
immediate close or ``-1:busy``/``-1:shutting-down``; one deadline covers all
servers tried, and when all fail the caller gets the failure (exit 75), never
a verdict that was not given.

A request is a list of parts: bytes, or a ``(fd, offset, length)`` range of a
file that goes to the socket with ``os.sendfile`` (the message never passes
through this process's memory, so a 20 MB message costs what a 1 KB one
does). Sending and receiving are interleaved, so an early reply (an oversize
``STREAM`` is refused at once) is read, not lost behind a broken pipe.
"""

from __future__ import annotations

import os
import select
import time

from clients.core import (
    DEFAULT_TIMEOUT,
    RECV_SIZE,
    SEND_CHUNK,
    NothingSent,
    ReplyReader,
    ScandError,
    ScandProtocolError,
    ScandTimeout,
    ScandUnavailable,
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

try:  # the C module: importing `socket` costs ~7 ms of enum set-up per message
    import _socket as _sock
except ImportError:  # pragma: no cover - every CPython has it
    import socket as _sock  # type: ignore[no-redef]

_MSG_NOSIGNAL = getattr(_sock, "MSG_NOSIGNAL", 0)  # EPIPE instead of SIGPIPE (Linux)
_POLL_ANY_IN = select.POLLIN | select.POLLHUP | select.POLLERR
Part = bytes | tuple[int, int, int]  # bytes, or (fd, offset, length) sent with sendfile
# Replies after which another server is asked: a busy or stopping daemon has not
# looked at the request.
TRY_ANOTHER = (b"-1:busy", b"-1:shutting-down")
# Longest wait for a TCP connect before the next server is tried.
CONNECT_TIMEOUT = 5.0


def split_servers(spec: str) -> list[str]:
    """``"unix:/a,tcp://h:3310,tls://h:3311"`` -> one entry per server. Never raises:
    a bad entry fails to connect, which is a temporary failure."""
    return [s.strip() for s in spec.split(",") if s.strip()] or [spec]


def _host_port(server: str) -> tuple[str, int]:
    host, _, port = server[6:].rpartition(":")
    if not host or not port.isdigit():
        raise ScandUnavailable(f"{server}: not tcp://host:port or tls://host:port")
    return host.strip("[]"), int(port)


def _send_part(sock: _sock.socket, part: Part, done: int) -> int:
    """Send some of ``part`` from position ``done``; return how many bytes left."""
    if isinstance(part, bytes):
        return sock.send(memoryview(part)[done : done + SEND_CHUNK], _MSG_NOSIGNAL)
    fd, offset, length = part
    n = os.sendfile(sock.fileno(), fd, offset + done, min(SEND_CHUNK, length - done))
    if n == 0:  # the file is shorter than it said: never send a short STREAM body
        raise OSError(0, f"the message file ended {length - done} bytes early")
    return n


def _part_len(part: Part) -> int:
    return len(part) if isinstance(part, bytes) else part[2]


def exchange(sock: _sock.socket, parts: list[Part], deadline: float) -> tuple[bytes, bool]:
    """Send ``parts`` and read one reply line, both before ``deadline``.

    Returns the line and whether the connection is still in step for another request.
    """
    todo = [p for p in parts if _part_len(p)]
    index = done = sent = 0
    send_error: OSError | None = None
    reader = ReplyReader()
    poller = select.poll()
    fd = sock.fileno()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ScandTimeout("no reply in time")
        sending = index < len(todo) and send_error is None
        poller.register(fd, select.POLLIN | (select.POLLOUT if sending else 0))
        events = poller.poll(max(1, int(remaining * 1000 + 0.999)))
        mask = events[0][1] if events else 0
        if mask & _POLL_ANY_IN:
            try:
                data = sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except ConnectionResetError:
                data = b""  # the daemon closed with our bytes unread: same as EOF
            except OSError as exc:
                raise ScandProtocolError(f"receiving failed: {exc.strerror or exc}") from exc
            if not data:
                raise reader.closed(sent, send_error)
            line = reader.feed(data)
            if line is not None:
                in_step = index == len(todo) and send_error is None and not reader.extra
                return line, in_step
            continue
        if sending and mask & select.POLLOUT:
            try:
                n = _send_part(sock, todo[index], done)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:  # EPIPE, ECONNRESET: the daemon stopped reading
                if not (isinstance(exc, ConnectionError) or isinstance(todo[index], bytes)):
                    raise  # the message file failed, not the socket: no verdict
                if sent == 0:
                    raise NothingSent from exc
                send_error = exc  # keep reading: the reply may already be there
                continue
            sent += n
            done += n
            if done == _part_len(todo[index]):
                index, done = index + 1, 0


def exchange_blocking(sock: _sock.socket, parts: list[Part],
                      deadline: float) -> tuple[bytes, bool]:
    """:func:`exchange` for TLS sockets (their buffered records defeat poll(), and
    sendfile cannot encrypt): send everything, then read one line."""
    reader = ReplyReader()
    sent = 0
    send_error: OSError | None = None
    try:
        for part in parts:
            chunks: list[bytes] = []
            if isinstance(part, bytes):
                chunks = [part]
            for chunk in chunks or _file_chunks(part):
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                sock.sendall(chunk)
                sent += len(chunk)
    except TimeoutError as exc:
        raise ScandTimeout("no reply in time") from exc
    except OSError as exc:
        send_error = exc  # the daemon may have answered early (too-large) and closed
    while True:
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            data = sock.recv(RECV_SIZE)
        except TimeoutError as exc:
            raise ScandTimeout("no reply in time") from exc
        except OSError:
            data = b""
        if not data:
            raise reader.closed(sent, send_error)
        line = reader.feed(data)
        if line is not None:
            return line, send_error is None and not reader.extra


def _file_chunks(part: Part) -> list[bytes]:
    assert not isinstance(part, bytes)
    fd, offset, length = part
    out = []
    for pos in range(0, length, SEND_CHUNK):
        chunk = os.pread(fd, min(SEND_CHUNK, length - pos), offset + pos)
        if not chunk:
            raise OSError(0, f"the message file ended {length - pos} bytes early")
        out.append(chunk)
    return out


class Client:
    """A synchronous scand client with one persistent connection.

    ``socket_path`` defaults to :func:`default_socket_path`; it may be a
    comma-separated list of servers (see the module docstring; TLS CA file:
    ``$SCAND_TLS_CA``, else the system's). ``timeout`` is the total deadline of
    each call in seconds, over all servers tried; a server that timed out is
    not retried elsewhere. Not thread-safe: use one per thread.
    """

    def __init__(self, socket_path: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket_path = socket_path or default_socket_path()
        self.servers = split_servers(self.socket_path)
        self.timeout = timeout
        self._sock: _sock.socket | None = None
        self._server = os.getpid() % len(self.servers)  # where the cached socket leads

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the cached connection (the daemon ends the session quietly)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def scan_path(self, path: str | os.PathLike[str]) -> Verdict:
        """Ask the daemon to scan a file or directory it can read (an absolute path)."""
        return parse_verdict(self._request([check_path(path)]))

    def scan_bytes(self, data: bytes) -> Verdict:
        """Send ``data`` itself (``STREAM <n>``): for hosts that share no disk with the daemon."""
        return parse_verdict(self._request([b"STREAM %d\n" % len(data), data]))

    def scan_fd(self, fd: int, offset: int, length: int) -> Verdict:
        """``STREAM`` ``length`` bytes of file ``fd`` from ``offset``, with sendfile.

        The file must be a regular file (or a memfd) that holds the bytes; its
        own offset is not moved. Raises OSError if it turns out shorter.
        """
        return parse_verdict(self._request([b"STREAM %d\n" % length, (fd, offset, length)]))

    def command(self, name: str) -> str:
        """Send one of scand's own lines (``PING``, ``VERSION``, ``STATS``, ``RELOAD``)."""
        return self._request([command_line(name)]).decode("utf-8", "replace")

    def ping(self) -> bool:
        """True if the daemon answers ``PONG`` in time; never raises ScandError."""
        try:
            return self.command("PING") == "PONG"
        except ScandError:
            return False

    def version(self) -> str:
        """``scand <version> <engine> <signatures>``."""
        return self.command("VERSION")

    def stats(self) -> dict[str, object]:
        """The daemon's counters (the ``STATS`` line, parsed)."""
        return parse_stats(self.command("STATS"))

    def _connect(self, server: str, deadline: float) -> _sock.socket:
        if server.startswith(("tcp://", "tls://")):
            return self._connect_tcp(server, deadline)
        path = server[5:] if server.startswith("unix:") else server
        check_socket_dir(path)
        sock = _sock.socket(_sock.AF_UNIX, _sock.SOCK_STREAM)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.connect(path)
            sock.setblocking(False)
        except TimeoutError as exc:
            sock.close()
            raise ScandTimeout(f"{path}: connect timed out") from exc
        except OSError as exc:
            sock.close()
            raise unavailable(path, exc) from exc
        return sock

    def _connect_tcp(self, server: str, deadline: float) -> _sock.socket:
        import socket  # only for TCP: the Unix path stays lean

        host, port = _host_port(server)
        wait = max(min(deadline - time.monotonic(), CONNECT_TIMEOUT), 0.001)
        try:
            sock = socket.create_connection((host, port), timeout=wait)
        except OSError as exc:  # refused, unreachable, or connect timed out: try another
            raise unavailable(server, exc) from exc
        if not server.startswith("tls://"):
            sock.setblocking(False)
            return sock
        import ssl

        ctx = ssl.create_default_context(cafile=os.environ.get("SCAND_TLS_CA") or None)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            return ctx.wrap_socket(sock, server_hostname=host)
        except OSError as exc:
            sock.close()
            raise ScandUnavailable(f"{server}: TLS failed: {exc}") from exc

    def _request(self, parts: list[Part]) -> bytes:
        """One request on the first server that takes it (see the module docstring)."""
        deadline = time.monotonic() + self.timeout
        error: ScandError | None = None
        busy = b""
        n = len(self.servers)
        first = self._server
        for i in range(n):
            index = (first + i) % n
            try:
                line = self._request_one(index, parts, deadline)
            except ScandTimeout:
                raise
            except ScandError as exc:
                error = exc
                continue
            if n > 1 and line.startswith(TRY_ANOTHER):
                busy = line
                continue
            return line
        if busy:
            return busy  # every server busy or down: -1:busy, the caller defers
        assert error is not None
        if n > 1:
            raise type(error)(f"no server answered ({n} tried); last: {error}") from error
        raise error

    def _request_one(self, index: int, parts: list[Part], deadline: float) -> bytes:
        """One request to one server; reconnects once if nothing was sent."""
        server = self.servers[index]
        tls = server.startswith("tls://")
        sock, self._sock = self._sock, None
        if sock is not None and self._server != index:
            sock.close()
            sock = None
        self._server = index
        if not tls:
            sock = still_good(sock)
        cached = sock is not None
        for attempt in (1, 2):
            if sock is None:
                sock = self._connect(server, deadline)
            try:
                if tls:
                    line, in_step = exchange_blocking(sock, parts, deadline)
                else:
                    line, in_step = exchange(sock, parts, deadline)
            except NothingSent:
                sock.close()
                sock = None
                if cached and attempt == 1:
                    continue  # the daemon had closed our idle connection: one fresh try
                raise closed_at_once(server) from None
            except ScandTimeout:
                sock.close()
                raise ScandTimeout(f"no reply from {server} within {self.timeout:g}s") from None
            except BaseException:
                sock.close()
                raise
            self._sock = keep_or_close(sock, line, in_step)
            return line
        raise AssertionError("unreachable")  # pragma: no cover
