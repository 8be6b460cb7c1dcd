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
scand-pipe) each embed a copy of the core block below so that each is also a
single copyable file; tests/clients/test_clients_embedded.py keeps the copies
identical.
"""

from __future__ import annotations

import os
import select
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - type names only, never imported at run time
    from types import TracebackType

    import trio

# ----- BEGIN scand client core (identical in every clients/*.py; see scandclient.py) -----
CLIENT_VERSION = "0.1.0"
try:  # the C module: importing `socket` costs ~7 ms of enum set-up per message
    import _socket as _sock
except ImportError:  # pragma: no cover - every CPython has it
    import socket as _sock  # type: ignore[no-redef]

# Longer than the daemon's default queue wait + scan timeout (10 + 60 s), so its own
# `-1:timeout`/`-1:busy` normally wins; far below the 10-minute SMTP end-of-data timeout.
DEFAULT_TIMEOUT = 120.0
# The daemon's replies are one short line; anything longer is not a Sophie daemon.
MAX_REPLY_LINE = 64 * 1024
# Bytes handed to one send(): large enough for few syscalls, small enough to keep
# watching for an early reply (the daemon answers an oversize STREAM at once).
SEND_CHUNK = 256 * 1024
RECV_SIZE = 64 * 1024
# Where the daemon listens when /var/run/sophie does not exist (its own default).
SYSTEM_SOCKET = "/var/run/sophie"
_MSG_NOSIGNAL = getattr(_sock, "MSG_NOSIGNAL", 0)  # EPIPE instead of SIGPIPE (Linux)
_POLL_ANY_IN = select.POLLIN | select.POLLHUP | select.POLLERR


def default_socket_path() -> str:
    """``$SCAND_SOCKET``, else ``/var/run/sophie`` if it exists (even as a dangling
    symlink), else the per-user path.

    The per-user path is ``$XDG_RUNTIME_DIR/scand/sophie`` when that variable is
    set, else ``/tmp/scand-<uid>/sophie``: where the daemon itself listens by
    default when it cannot write to /var/run.
    """
    env = os.environ.get("SCAND_SOCKET")
    if env:
        return env
    if os.path.lexists(SYSTEM_SOCKET):  # a dangling symlink still names the system socket
        return SYSTEM_SOCKET
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "scand", "sophie")
    return f"/tmp/scand-{os.getuid()}/sophie"


class Clean:
    """Every byte was scanned and nothing was found (reply ``0``)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Clean)

    def __hash__(self) -> int:
        return hash("Clean")

    def __repr__(self) -> str:
        return "Clean()"


class Infected:
    """A signature or policy rule matched (reply ``1:<name>``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Infected) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Infected", self.name))

    def __repr__(self) -> str:
        return f"Infected({self.name!r})"


class Unchecked:
    """Not fully scanned (reply ``-1:<reason>[ <detail>]``): defer, never pass."""

    __slots__ = ("detail", "reason")

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Unchecked)
            and other.reason == self.reason
            and other.detail == self.detail
        )

    def __hash__(self) -> int:
        return hash(("Unchecked", self.reason, self.detail))

    def __repr__(self) -> str:
        return f"Unchecked({self.reason!r}, {self.detail!r})"


Verdict = Clean | Infected | Unchecked


class ScandError(Exception):
    """No verdict: the daemon could not be asked or did not answer properly."""


class ScandUnavailable(ScandError):
    """The socket could not be connected (missing, refused, no permission)."""


class ScandTimeout(ScandError):
    """The call's total deadline passed before a full reply line arrived."""


class ScandProtocolError(ScandError):
    """The daemon closed without replying, or sent something that is not a reply."""


class _NothingSent(Exception):
    """The connection was found closed before any byte of the request left."""


def parse_verdict(line: bytes) -> Verdict:
    """One reply line (without its LF) as a verdict; anything else is a protocol error."""
    if line == b"0":
        return Clean()
    if line.startswith(b"1:") and len(line) > 2:
        return Infected(line[2:].decode("utf-8", "replace"))
    if line == b"-1" or line.startswith(b"-1:"):
        reason, _, detail = line[3:].decode("utf-8", "replace").partition(" ")
        return Unchecked(reason or "unspecified", detail)
    # `1` and `1:` are refused too: Exim would read them as clean, we read them as garbage.
    raise ScandProtocolError(f"not a Sophie verdict: {line[:80]!r}")


def _dead_or_dirty(fd: int) -> bool:
    """True if an idle connection has hung up or holds bytes nobody asked for."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _exchange(sock: _sock.socket, chunks: list[bytes], deadline: float) -> tuple[bytes, bool]:
    """Send ``chunks`` and read one reply line, both before ``deadline``.

    Sending and receiving are interleaved, so a reply that comes early (the
    daemon refuses an oversize STREAM at once and closes) is read, not lost
    behind a broken pipe. Returns the line and whether the connection is still
    in step for another request.
    """
    views = [memoryview(c) for c in chunks if len(c)]
    index = offset = sent = 0
    send_error: OSError | None = None
    buf = bytearray()
    poller = select.poll()
    fd = sock.fileno()
    while True:
        nl = buf.find(b"\n", 0, MAX_REPLY_LINE + 1)
        if nl >= 0:
            in_step = index == len(views) and send_error is None and nl + 1 == len(buf)
            return bytes(buf[:nl]), in_step
        if len(buf) > MAX_REPLY_LINE:
            raise ScandProtocolError(f"reply longer than {MAX_REPLY_LINE} bytes")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ScandTimeout("no reply in time")
        sending = index < len(views) and send_error is None
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
            if data:
                buf += data
                continue
            if sent == 0 and not buf:
                raise _NothingSent
            why = f" (sending failed: {send_error.strerror})" if send_error else ""
            raise ScandProtocolError(f"the daemon closed the connection without a reply{why}")
        if sending and mask & select.POLLOUT:
            try:
                n = sock.send(views[index][offset : offset + SEND_CHUNK], _MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:  # EPIPE, ECONNRESET: the daemon stopped reading
                if sent == 0:
                    raise _NothingSent from exc
                send_error = exc  # keep reading: the reply may already be there
                continue
            sent += n
            offset += n
            if offset == len(views[index]):
                index, offset = index + 1, 0


# Reply prefixes after which another server is asked: it may have room (a busy or
# stopping daemon has not looked at the request).
_TRY_ANOTHER = (b"-1:busy", b"-1:shutting-down")
# Longest wait for a TCP connect before the next server is tried.
CONNECT_TIMEOUT = 5.0


def split_servers(spec: str) -> list[str]:
    """``"unix:/a,tcp://h:3310,tls://h:3311"`` -> one entry per server. Anything not
    ``tcp://``/``tls://`` is a Unix socket path (``unix:`` prefix optional). Never
    raises: a bad entry fails to connect, which is a temporary failure."""
    return [s.strip() for s in spec.split(",") if s.strip()] or [spec]


def _host_port(server: str) -> tuple[str, int]:
    host, _, port = server[6:].rpartition(":")
    if not host or not port.isdigit():
        raise ScandUnavailable(f"{server}: not tcp://host:port or tls://host:port")
    return host.strip("[]"), int(port)


def _exchange_blocking(sock: _sock.socket, chunks: list[bytes],
                       deadline: float) -> tuple[bytes, bool]:
    """:func:`_exchange` for TLS sockets (their buffered records defeat poll()):
    send everything, then read one line, each step bounded by ``deadline``."""
    buf = b""
    sent_all = True
    try:
        for chunk in chunks:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.sendall(chunk)
    except TimeoutError as exc:
        raise ScandTimeout("no reply in time") from exc
    except OSError:
        sent_all = False  # the daemon may have answered early (too-large) and closed
    while b"\n" not in buf:
        if len(buf) > MAX_REPLY_LINE:
            raise ScandProtocolError(f"reply longer than {MAX_REPLY_LINE} bytes")
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            data = sock.recv(RECV_SIZE)
        except TimeoutError as exc:
            raise ScandTimeout("no reply in time") from exc
        except OSError:
            data = b""
        if not data:
            if not buf:
                raise ScandProtocolError("the daemon closed the connection without a reply")
            break
        buf += data
    line, _, rest = buf.partition(b"\n")
    return line, sent_all and not rest


class Client:
    """A synchronous scand client with one persistent connection.

    ``socket_path`` defaults to :func:`default_socket_path`; it may also be a
    comma-separated list of servers: ``unix:/path`` (or a bare path),
    ``tcp://host:port``, ``tls://host:port`` (CA file: ``$SCAND_TLS_CA``, else the
    system's). Each client starts at a server picked by its pid (filters run
    one process per message, so load spreads) and stays there while it answers;
    a server that cannot be reached, closes at once, or answers ``-1:busy`` /
    ``-1:shutting-down`` makes it try the next. ``timeout`` is the total
    deadline of each call in seconds, over all servers tried; a server that
    timed out is not retried elsewhere (the deadline is spent). When every
    server fails the last error is raised (or the ``-1:busy`` verdict
    returned): never a verdict that was not given. Not thread-safe: use one
    per thread.
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
        raw = os.fsencode(path)
        if not raw.startswith(b"/"):
            raise ValueError(f"scand needs an absolute path, got {os.fsdecode(raw)!r}")
        if b"\n" in raw or b"\0" in raw:
            raise ValueError("a path sent to scand cannot contain LF or NUL")
        return parse_verdict(self._request([raw + b"\n"]))

    def scan_bytes(self, data: bytes) -> Verdict:
        """Send ``data`` itself (``STREAM <n>``): for hosts that share no disk with the daemon."""
        return parse_verdict(self._request([b"STREAM %d\n" % len(data), data]))

    def command(self, name: str) -> str:
        """Send one of scand's own lines (``PING``, ``VERSION``, ``STATS``, ``RELOAD``)."""
        if not name or name.startswith("/") or "\n" in name:
            raise ValueError(f"not a command line: {name!r}")
        return self._request([name.encode("ascii") + b"\n"]).decode("utf-8", "replace")

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
        import json  # only here: keeps start-up of the filter scripts lean

        try:
            data = json.loads(self.command("STATS"))
        except ValueError as exc:
            raise ScandProtocolError(f"STATS reply is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ScandProtocolError("STATS reply is not a JSON object")
        return data

    def _connect(self, server: str, deadline: float) -> _sock.socket:
        if server.startswith(("tcp://", "tls://")):
            return self._connect_tcp(server, deadline)
        path = server[5:] if server.startswith("unix:") else server
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
            why = exc.strerror or str(exc)
            raise ScandUnavailable(f"cannot connect to {path}: {why}") from exc
        return sock

    def _connect_tcp(self, server: str, deadline: float) -> _sock.socket:
        import socket  # only for TCP: the Unix path stays lean

        host, port = _host_port(server)
        wait = max(min(deadline - time.monotonic(), CONNECT_TIMEOUT), 0.001)
        try:
            sock = socket.create_connection((host, port), timeout=wait)
        except OSError as exc:  # refused, unreachable, or connect timed out: try another
            raise ScandUnavailable(f"cannot connect to {server}: {exc.strerror or exc}") from exc
        if server.startswith("tls://"):
            import ssl

            ctx = ssl.create_default_context(cafile=os.environ.get("SCAND_TLS_CA") or None)
            try:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                sock = ctx.wrap_socket(sock, server_hostname=host)
            except OSError as exc:
                sock.close()
                raise ScandUnavailable(f"{server}: TLS failed: {exc}") from exc
        return sock  # type: ignore[return-value]

    def _request(self, chunks: list[bytes]) -> bytes:
        """One request on the first server that takes it (see the class docstring)."""
        deadline = time.monotonic() + self.timeout
        error: ScandError | None = None
        busy = b""
        n = len(self.servers)
        first = self._server
        for i in range(n):
            index = (first + i) % n
            try:
                line = self._request_one(index, chunks, deadline)
            except ScandTimeout:
                raise
            except ScandError as exc:
                error = exc
                continue
            if n > 1 and line.startswith(_TRY_ANOTHER):
                busy = line
                continue
            return line
        if busy:
            return busy  # every server busy or down: -1:busy, the caller defers
        assert error is not None
        if n > 1:
            raise type(error)(f"no server answered ({n} tried); last: {error}") from error
        raise error

    def _request_one(self, index: int, chunks: list[bytes], deadline: float) -> bytes:
        """One request to one server; reconnects once if nothing was sent."""
        server = self.servers[index]
        sock, self._sock = self._sock, None
        if sock is not None and self._server != index:
            sock.close()
            sock = None
        self._server = index
        cached = sock is not None
        tls = server.startswith("tls://")
        if sock is not None and not tls and _dead_or_dirty(sock.fileno()):
            sock.close()
            sock, cached = None, False
        for attempt in (1, 2):
            if sock is None:
                sock = self._connect(server, deadline)
            try:
                if tls:
                    line, in_step = _exchange_blocking(sock, chunks, deadline)
                else:
                    line, in_step = _exchange(sock, chunks, deadline)
            except _NothingSent:
                sock.close()
                sock = None
                if cached and attempt == 1:
                    continue  # the daemon had closed our idle connection: one fresh try
                raise ScandProtocolError(
                    f"{server}: the daemon closed the connection at once"
                ) from None
            except ScandTimeout:
                sock.close()
                raise ScandTimeout(
                    f"no reply from {server} within {self.timeout:g}s"
                ) from None
            except BaseException:
                sock.close()
                raise
            if in_step and not line.startswith(b"-1"):
                self._sock = sock
            else:  # out of step, or a -1: the daemon closes after some (too-large, protocol)
                sock.close()
            return line
        raise AssertionError("unreachable")  # pragma: no cover


def env_float(name: str, default: float) -> float:
    """A positive number from the environment, or ``default`` when unset."""
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number") from None
    if not value > 0:
        raise UsageError(f"{name} must be > 0, got {raw!r}")
    return value


class UsageError(Exception):
    """A bad command line or environment variable (the message says which)."""


def parse_options(
    argv: list[str], flags: tuple[str, ...], valued: tuple[str, ...]
) -> tuple[dict[str, str | bool], list[str]]:
    """A small getopt: ``--opt VALUE``, ``--opt=VALUE``, ``-o VALUE``, flags, ``--``.

    ``-`` alone is an operand. Options may follow operands until ``--``.
    (argparse and getopt pull in `re` and `gettext`: ~7 ms on every message.)
    """
    opts: dict[str, str | bool] = {}
    operands: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            operands += args[i:]
            break
        if arg == "-" or not arg.startswith("-"):
            operands.append(arg)
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in flags and not eq:
            opts[name] = True
        elif name in valued:
            if not eq:
                if i >= len(args):
                    raise UsageError(f"option {name} needs a value")
                value = args[i]
                i += 1
            opts[name] = value
        else:
            raise UsageError(f"unknown option {arg!r}")
    return opts, operands


def option_float(opts: dict[str, str | bool], name: str, default: float) -> float:
    """A positive number given as ``name`` on the command line, else ``default``."""
    raw = opts.get(name)
    if not isinstance(raw, str):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name}: not a number: {raw!r}") from None
    if not value > 0:
        raise UsageError(f"{name}: must be > 0, got {raw!r}")
    return value


def spool_and_scan(client: Client, data: bytes, spool_dir: str, mode: int = 0o640) -> Verdict:
    """Write ``data`` to a new private file in ``spool_dir``, scan it by path, delete it.

    The file is created with O_EXCL and ``mode`` (group-readable, so a daemon in
    the spool directory's group can read it); it is removed whatever happens.
    """
    directory = os.path.abspath(spool_dir)
    for _ in range(100):
        name = os.path.join(directory, f"msg-{os.getpid()}-{os.urandom(6).hex()}")
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 48 random bits
        raise OSError(f"{directory}: cannot create a unique spool file")
    try:
        try:
            os.fchmod(fd, mode)  # after creation: the umask must not widen or narrow it
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return client.scan_path(name)
    finally:
        try:  # noqa: SIM105 - contextlib costs ~2 ms of start-up per message
            os.unlink(name)
        except FileNotFoundError:  # pragma: no cover - someone else cleaned up
            pass


def read_all(fd: int) -> bytes:
    """Every byte of a file descriptor (the message), binary-safe."""
    parts: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


def warn(prog: str, message: str) -> None:
    """One line on stderr, prefixed with the program name."""
    sys.stderr.write(f"{prog}: {message}\n")
    sys.stderr.flush()


# ----- END scand client core -----


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
        raw = os.fsencode(path)
        if not raw.startswith(b"/"):
            raise ValueError(f"scand needs an absolute path, got {os.fsdecode(raw)!r}")
        if b"\n" in raw or b"\0" in raw:
            raise ValueError("a path sent to scand cannot contain LF or NUL")
        return parse_verdict(await self._request([raw + b"\n"]))

    async def scan_bytes(self, data: bytes) -> Verdict:
        return parse_verdict(await self._request([b"STREAM %d\n" % len(data), data]))

    async def command(self, name: str) -> str:
        if not name or name.startswith("/") or "\n" in name:
            raise ValueError(f"not a command line: {name!r}")
        line = await self._request([name.encode("ascii") + b"\n"])
        return line.decode("utf-8", "replace")

    async def ping(self) -> bool:
        try:
            return await self.command("PING") == "PONG"
        except ScandError:
            return False

    async def version(self) -> str:
        return await self.command("VERSION")

    async def stats(self) -> dict[str, object]:
        import json

        try:
            data = json.loads(await self.command("STATS"))
        except ValueError as exc:
            raise ScandProtocolError(f"STATS reply is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ScandProtocolError("STATS reply is not a JSON object")
        return data

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
        sock, self._sock = self._sock, None
        cached = sock is not None
        if sock is not None and _dead_or_dirty(sock.fileno()):
            sock.close()
            sock, cached = None, False
        for attempt in (1, 2):
            if sock is None:
                sock = await self._connect()
            try:
                line, in_step = await _async_exchange(sock, chunks)
            except _NothingSent:
                sock.close()
                sock = None
                if cached and attempt == 1:
                    continue
                raise ScandProtocolError(
                    f"{self.socket_path}: the daemon closed the connection at once"
                ) from None
            except BaseException:
                sock.close()  # includes trio.Cancelled: the connection is out of step
                raise
            if in_step and not line.startswith(b"-1"):
                self._sock = sock
            else:
                sock.close()
            return line
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(self) -> trio.socket.SocketType:
        import trio

        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        try:
            await sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            why = exc.strerror or str(exc)
            raise ScandUnavailable(f"cannot connect to {self.socket_path}: {why}") from exc
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
            raise _NothingSent from exc
        send_error = exc
    buf = bytearray()
    while (nl := buf.find(b"\n", 0, MAX_REPLY_LINE + 1)) < 0:
        if len(buf) > MAX_REPLY_LINE:
            raise ScandProtocolError(f"reply longer than {MAX_REPLY_LINE} bytes")
        try:
            data = await sock.recv(RECV_SIZE)
        except ConnectionResetError:
            data = b""
        if not data:
            if sent == 0 and not buf:  # pragma: no cover - an empty request is never sent
                raise _NothingSent
            why = f" (sending failed: {send_error.strerror})" if send_error else ""
            raise ScandProtocolError(f"the daemon closed the connection without a reply{why}")
        buf += data
    return bytes(buf[:nl]), send_error is None and nl + 1 == len(buf)


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
