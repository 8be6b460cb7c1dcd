#!/usr/bin/env -S python3 -IS
"""scand-queue: a QMAILQUEUE replacement that asks scand before queueing.

A single-file, stdlib-only client: copy it anywhere that has Python 3.11+.
Run ``scand-queue --help`` for the manual.
"""

from __future__ import annotations

import os
import select
import sys
import time

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

PROG = "scand-queue"
USAGE = f"usage: {PROG} [--socket PATH] [--timeout S] [--spool-dir DIR] [--qmail-queue PATH]"
DEFAULT_QMAIL_QUEUE = "/var/qmail/bin/qmail-queue"
# qmail-queue(8) exit codes, which qmail-smtpd and qmail-inject turn into SMTP replies.
EXIT_REJECT = 31  # permanent: 554 mail server permanently rejected message
EXIT_TEMPFAIL = 71  # temporary: 451, the sender retries later
EXIT_BUG = 81  # temporary: 451 qq internal bug
HELP = f"""{USAGE}

A drop-in replacement for qmail-queue(8), in the role of qmail-scanner or
simscan: set QMAILQUEUE to this program for qmail-smtpd (or any qmail program
that honours QMAILQUEUE). Like qmail-queue it reads the message on descriptor 0
and the envelope on descriptor 1. It reads only the message, asks the scand
daemon whether it is clean, and then:

  clean                 execs the real qmail-queue with the very same message
                        on descriptor 0 and the untouched envelope descriptor 1
                        (the envelope is never read, so it cannot be altered)
  infected or banned    prints one line on standard error and exits 31: the
                        SMTP client gets a permanent 554 rejection
  anything else         daemon unreachable, timeout, a -1:<reason> reply, a
                        real qmail-queue that cannot be executed, bad settings:
                        prints one line on standard error and exits 71 (81 for
                        an internal error), a temporary 451: the sender retries.
                        A message is never queued unless scand said it is clean.

Nothing is ever written to standard output: descriptor 1 is the envelope.
QMAILQUEUE takes no arguments, so configure it with the environment (for
example in the tcprules file or the run file of qmail-smtpd). The options are
for testing by hand.

By default the message is streamed to the daemon (STREAM <n>), which needs no
shared filesystem; the daemon's server.max_stream_bytes must be at least qmail's
databytes. With a spool directory the message is written to a new file there
(mode 0640, created exclusively), the daemon is sent its path, and the file is
removed afterwards, whatever happened.

options:
  --socket PATH       the daemon's Unix socket (default: $SCAND_SOCKET, else
                      /var/run/sophie if it exists, else
                      $XDG_RUNTIME_DIR/scand/sophie, else /tmp/scand-<uid>/sophie)
  --timeout S         total seconds for the scan (default: $SCAND_TIMEOUT, else
                      {DEFAULT_TIMEOUT:g})
  --spool-dir DIR     spool to DIR and send the path (default: $SCAND_SPOOL_DIR;
                      unset = stream)
  --qmail-queue PATH  the real qmail-queue (default: $SCAND_QMAILQUEUE, else
                      {DEFAULT_QMAIL_QUEUE})
  -h, --help          show this manual and exit
  --version           show the version and exit

exit status:
  that of the real qmail-queue when clean; 31 infected; 71 any failure;
  81 internal error.

environment:
  SCAND_SOCKET, SCAND_TIMEOUT, SCAND_SPOOL_DIR, SCAND_QMAILQUEUE

example (/service/qmail-smtpd/run):
  #!/bin/sh
  QMAILQUEUE=/usr/local/bin/scand-queue; export QMAILQUEUE
  SCAND_SOCKET=/var/run/sophie; export SCAND_SOCKET
  exec tcpserver -v -R -u 7791 -g 2108 0 smtp /var/qmail/bin/qmail-smtpd 2>&1
"""


def _message_fd(message: bytes) -> int:
    """A readable descriptor holding ``message`` at offset 0, for the real qmail-queue."""
    try:
        fd = os.memfd_create("scand-queue-message")  # Linux: no disk, no temp-dir permissions
    except (AttributeError, OSError):  # pragma: no cover - other Unixes
        tmp = os.environ.get("TMPDIR") or "/tmp"
        name = os.path.join(tmp, f"scand-queue-{os.getpid()}-{os.urandom(6).hex()}")
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.unlink(name)
    view = memoryview(message)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _exec_qmail_queue(qmail_queue: str, message: bytes) -> int:
    """Replace this process with the real qmail-queue; return only on failure."""
    try:
        me = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        if me and os.path.realpath(qmail_queue) == me:
            warn(PROG, f"temporary failure: {qmail_queue} is scand-queue itself (loop)")
            return EXIT_TEMPFAIL
        fd = _message_fd(message)
        os.dup2(fd, 0)  # the new descriptor 0 is inheritable; descriptor 1 is untouched
        os.close(fd)
        import signal  # only here: ~3 ms, and only clean mail needs it

        # Python ignores SIGPIPE and SIGXFSZ; qmail-queue expects the defaults, as
        # subprocess's restore_signals would give it.
        for name in ("SIGPIPE", "SIGXFSZ"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_DFL)
        os.execv(qmail_queue, [qmail_queue])
    except OSError as exc:
        warn(PROG, f"temporary failure: cannot run {qmail_queue}: {exc.strerror or exc}")
        return EXIT_TEMPFAIL
    raise AssertionError("unreachable")  # pragma: no cover - execv does not return


def run(argv: list[str]) -> int:
    try:
        opts, operands = parse_options(
            argv,
            ("-h", "--help", "--version"),
            ("--socket", "--timeout", "--spool-dir", "--qmail-queue"),
        )
        if "-h" in opts or "--help" in opts:
            sys.stdout.write(HELP)  # only ever asked for by a person at a terminal
            sys.stdout.flush()
            return 0
        if "--version" in opts:
            sys.stdout.write(f"{PROG} {CLIENT_VERSION}\n")
            sys.stdout.flush()
            return 0
        if operands:
            raise UsageError(f"unexpected argument {operands[0]!r}")
        timeout = option_float(opts, "--timeout", env_float("SCAND_TIMEOUT", DEFAULT_TIMEOUT))
    except UsageError as exc:
        warn(PROG, f"temporary failure: {exc}")
        return EXIT_TEMPFAIL
    qmail_queue = opts.get("--qmail-queue") or os.environ.get("SCAND_QMAILQUEUE", "")
    if not isinstance(qmail_queue, str) or not qmail_queue:
        qmail_queue = DEFAULT_QMAIL_QUEUE
    socket_path = opts.get("--socket")
    spool = opts.get("--spool-dir") or os.environ.get("SCAND_SPOOL_DIR", "")
    message = read_all(0)
    try:
        with Client(socket_path if isinstance(socket_path, str) else None, timeout) as client:
            if isinstance(spool, str) and spool:
                verdict = spool_and_scan(client, message, spool)
            else:
                verdict = client.scan_bytes(message)
    except ScandError as exc:
        warn(PROG, f"temporary failure: virus scanner unavailable: {exc}")
        return EXIT_TEMPFAIL
    except OSError as exc:
        warn(PROG, f"temporary failure: cannot spool the message: {exc}")
        return EXIT_TEMPFAIL
    if isinstance(verdict, Clean):
        return _exec_qmail_queue(qmail_queue, message)
    if isinstance(verdict, Infected):
        warn(PROG, f"message rejected: it contains {verdict.name}")
        return EXIT_REJECT
    detail = f" {verdict.detail}" if verdict.detail else ""
    warn(PROG, f"temporary failure: message not scanned: {verdict.reason}{detail}")
    return EXIT_TEMPFAIL


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not ({"-h", "--help", "--version"} & set(args)):
        # Descriptor 1 is the envelope pipe: a stray print() must not corrupt it.
        sys.stdout = sys.stderr
    try:
        return run(args)
    except Exception as exc:  # a bug must defer the mail, never queue or bounce it
        warn(PROG, f"temporary failure: internal error: {type(exc).__name__}: {exc}")
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
