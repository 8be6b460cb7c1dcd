"""The client core: verdicts, errors and a sans-IO reply parser, shared by every client.

No I/O here: :class:`ReplyReader` takes the bytes a connection delivered and
says when one whole reply line has arrived, so the blocking client
(clients/sync.py) and the trio client (clients/scandclient.py) parse replies
the same way. Stdlib only; imported by the single-file clients that
clients/build.py generates.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~3 ms per message)
if TYPE_CHECKING:  # pragma: no cover - type names only, never at run time
    from typing import Protocol, TypeVar

    class Closable(Protocol):
        def fileno(self) -> int: ...
        def close(self) -> None: ...

    Conn = TypeVar("Conn", bound=Closable)

CLIENT_VERSION = "0.1.0"
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


def untrusted_dir(socket_path: str) -> str:
    """Why the directory of a per-user default socket is not the daemon's ("" if it is).

    Only the per-user defaults (``/tmp/scand-<uid>``, ``$XDG_RUNTIME_DIR/scand``)
    are checked: in a shared place another user could have made the directory
    first and put a fake daemon in it that answers clean. There the daemon runs
    as this user, so the directory must be a real one owned by this user (or
    root) that nobody else can write in, the rule the daemon itself applies.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    defaults = {f"/tmp/scand-{os.getuid()}/sophie"}
    if runtime:
        defaults.add(os.path.join(runtime, "scand", "sophie"))
    if socket_path not in defaults:
        return ""
    try:
        st = os.lstat(os.path.dirname(socket_path))
    except OSError:
        return ""  # no directory: the connect fails by itself
    import stat

    if not stat.S_ISDIR(st.st_mode):
        return "is a symlink or not a directory"
    if st.st_uid not in (0, os.getuid()):
        return f"is owned by uid {st.st_uid}"
    if st.st_mode & 0o022 and not (st.st_mode & stat.S_ISVTX and st.st_uid == 0):
        return "can be written by others"
    return ""


def check_socket_dir(socket_path: str) -> None:
    """Refuse (as unavailable: the MTA defers) a default socket in a planted directory."""
    why = untrusted_dir(socket_path)
    if why:
        raise ScandUnavailable(f"refusing {socket_path}: its directory {why} "
                               "(not scand's; another user may have planted it)")


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


class NothingSent(Exception):
    """The connection was found closed before any byte of the request left."""


def unavailable(socket_path: str, exc: OSError) -> ScandUnavailable:
    """The error for a socket that could not be connected."""
    why = exc.strerror or str(exc)
    return ScandUnavailable(f"cannot connect to {socket_path}: {why}")


def closed_at_once(socket_path: str) -> ScandProtocolError:
    """The error for a fresh connection that the daemon closed before reading anything."""
    return ScandProtocolError(f"{socket_path}: the daemon closed the connection at once")


def still_good(sock: Conn | None) -> Conn | None:
    """A cached connection, or None (closed) if it has hung up or holds unasked-for bytes."""
    if sock is None:
        return None
    import select  # already loaded by every client that caches connections

    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    if poller.poll(0):
        sock.close()
        return None
    return sock


def keep_or_close(sock: Conn, line: bytes, in_step: bool) -> Conn | None:
    """The connection to cache after a reply, or None (closed).

    Out of step, or a ``-1``: the daemon closes after some (too-large, protocol).
    """
    if in_step and not line.startswith(b"-1"):
        return sock
    sock.close()
    return None


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


def check_path(path: str | os.PathLike[str]) -> bytes:
    """The request line for a path scan; ValueError for what Sophie cannot carry."""
    raw = os.fsencode(path)
    if not raw.startswith(b"/"):
        raise ValueError(f"scand needs an absolute path, got {os.fsdecode(raw)!r}")
    if b"\n" in raw or b"\0" in raw:
        raise ValueError("a path sent to scand cannot contain LF or NUL")
    return raw + b"\n"


def command_line(name: str) -> bytes:
    """The request line for one of scand's own commands (PING, VERSION, STATS, RELOAD)."""
    if not name or name.startswith("/") or "\n" in name:
        raise ValueError(f"not a command line: {name!r}")
    return name.encode("ascii") + b"\n"


def parse_stats(line: str) -> dict[str, object]:
    """The ``STATS`` reply as a dict; a protocol error if it is not a JSON object."""
    import json  # only here: keeps start-up of the filter scripts lean

    try:
        data = json.loads(line)
    except ValueError as exc:
        raise ScandProtocolError(f"STATS reply is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ScandProtocolError("STATS reply is not a JSON object")
    return data


class ReplyReader:
    """Sans-IO: bytes from the daemon in, one reply line out.

    ``feed(data)`` returns the line (without its LF) once it is complete, else
    None; ``closed(sent, send_error)`` is what end-of-file means at that point.
    ``extra`` counts bytes that came after the line: a connection with extra
    bytes is out of step and must not be reused.
    """

    __slots__ = ("_buf", "extra")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.extra = 0

    def feed(self, data: bytes) -> bytes | None:
        self._buf += data
        nl = self._buf.find(b"\n", 0, MAX_REPLY_LINE + 1)
        if nl >= 0:
            self.extra = len(self._buf) - nl - 1
            return bytes(self._buf[:nl])
        if len(self._buf) > MAX_REPLY_LINE:
            raise ScandProtocolError(f"reply longer than {MAX_REPLY_LINE} bytes")
        return None

    def closed(self, sent: int, send_error: OSError | None) -> ScandError | NothingSent:
        """The error for an end of file before the line was complete."""
        if sent == 0 and not self._buf:
            return NothingSent()
        why = f" (sending failed: {send_error.strerror})" if send_error else ""
        return ScandProtocolError(f"the daemon closed the connection without a reply{why}")
