"""Sans-IO Sophie protocol: bytes in, events out; verdicts in, bytes out.

No trio, no socket, no clock. The server feeds whatever it receives into
:meth:`Connection.receive_data` and drains :meth:`Connection.next_event`; it
turns a verdict into the exact reply bytes with :func:`format_verdict`.
See PROTOCOL.md sections 2-5.
"""

from __future__ import annotations

from typing import Protocol

from scand.events import (
    CLOSED,
    COMMANDS,
    NEED_DATA,
    BadRequest,
    Clean,
    Closed,
    Command,
    Event,
    Infected,
    NeedData,
    Reason,
    ScanPath,
    ScanStream,
    Unchecked,
    Verdict,
)

# PATH_MAX on Linux; a longer line cannot be a path, so it is an attack or a bug.
MAX_LINE = 4096
# Stream bodies above this are refused unless the config says otherwise.
DEFAULT_MAX_STREAM = 25 * 1024 * 1024
# A name longer than this is cut: no real signature name is near it, and it keeps
# every reply small enough for the single send() that clients rely on.
MAX_NAME = 200
# Fallback for an infection whose name sanitizes to nothing: Exim reads `1:\n` as clean.
UNKNOWN_NAME = "Unknown.Malware"




class Budget(Protocol):
    """Bytes a connection may hold (scand.fronts.budget.Held): taken at a STREAM header."""

    def take(self, n: int) -> bool: ...


class Connection:
    """Parser state for one client connection.

    Requests are parsed lazily from one buffer, so pipelined requests come out
    one at a time and in order.
    """

    def __init__(self, *, max_stream: int = DEFAULT_MAX_STREAM,
                 budget: Budget | None = None) -> None:
        self._buf = bytearray()
        self.budget = budget  # the daemon-wide memory budget: a STREAM body is charged to it
        self._stream_left: int | None = None  # bytes still owed by a STREAM body
        self._eof = False
        self._dead = False  # a fatal error was reported; nothing more is parsed
        self.max_stream = max_stream

    # -- input -------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed received bytes; ``b""`` means the peer will send nothing more."""
        if data:
            self._buf += data
        else:
            self._eof = True

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed by an event."""
        return len(self._buf)

    @property
    def mid_request(self) -> bool:
        """True while part of a request has arrived but not all of it."""
        return not self._dead and (bool(self._buf) or self._stream_left is not None)

    @property
    def closed(self) -> bool:
        return self._dead

    def next_event(self) -> Event | NeedData | Closed:
        """Return the next complete request, ``NEED_DATA`` or ``CLOSED``."""
        if self._dead:
            return CLOSED
        if self._stream_left is not None:
            return self._next_stream_body()
        nl = self._buf.find(b"\n", 0, MAX_LINE + 1)
        if nl < 0:
            if len(self._buf) > MAX_LINE:
                return self._fatal(Reason.PROTOCOL, f"line longer than {MAX_LINE} bytes")
            if self._eof:
                # A partial line at EOF is dropped: its sender is gone.
                self._dead = True
                return CLOSED
            return NEED_DATA
        line = bytes(self._buf[:nl])
        del self._buf[: nl + 1]
        return self._parse_line(line)

    # -- internals ---------------------------------------------------------

    def _fatal(self, reason: Reason, detail: str) -> BadRequest:
        self._dead = True
        self._buf.clear()
        return BadRequest(reason, detail, fatal=True)

    def _next_stream_body(self) -> Event | NeedData | Closed:
        assert self._stream_left is not None
        if len(self._buf) < self._stream_left:
            if self._eof:
                self._dead = True
                return CLOSED
            return NEED_DATA
        n = self._stream_left
        data = bytes(self._buf[:n])
        del self._buf[:n]
        self._stream_left = None
        return ScanStream(data)

    def _parse_line(self, line: bytes) -> Event | NeedData | Closed:
        # (find, not ``in``: CPython 3.11's ``bytes in bytes`` first tries the needle as
        # an int and formats a TypeError for it, thousands of instructions a request)
        if line.find(b"\x00") >= 0 or line.find(b"\r") >= 0:
            return BadRequest(Reason.PROTOCOL, "NUL or CR in request")
        if line.startswith(b"/"):
            try:
                return ScanPath(line.decode("utf-8", "surrogateescape"))
            except UnicodeDecodeError:  # pragma: no cover - surrogateescape never fails
                return BadRequest(Reason.PROTOCOL, "undecodable path")
        word, _, arg = line.partition(b" ")
        if word == b"STREAM":
            return self._start_stream(arg)
        text = line.decode("ascii", "replace")
        if text in COMMANDS:
            return Command(text)
        if not text:
            return BadRequest(Reason.PROTOCOL, "empty request")
        return BadRequest(Reason.PROTOCOL, "not an absolute path or a known command")

    def _start_stream(self, arg: bytes) -> Event | NeedData | Closed:
        if not arg.isdigit() or len(arg) > 12:
            return self._fatal(Reason.PROTOCOL, "STREAM needs a byte count")
        n = int(arg)
        if n > self.max_stream:
            return self._fatal(Reason.TOO_LARGE, f"{n}>{self.max_stream}")
        if self.budget is not None and not self.budget.take(n):
            return self._fatal(Reason.BUSY, "memory budget")
        self._stream_left = n
        return self.next_event()


# --- output -----------------------------------------------------------------


def _clean_text(text: str, *, keep_spaces: bool) -> str:
    """Drop everything a client could mis-read: control bytes, and spaces in names."""
    out = []
    for ch in text:
        if ch in "\r\n\x00" or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("_" if not keep_spaces else " ")
        elif ch.isspace() and not keep_spaces:
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


def sanitize_name(name: str) -> str:
    """A virus name that is never empty and has no space, CR, LF or NUL."""
    cleaned = _clean_text(name, keep_spaces=False).strip("_")[:MAX_NAME]
    return cleaned or UNKNOWN_NAME


def format_verdict(verdict: Verdict) -> bytes:
    """The exact reply line for a verdict. ``Unchecked`` can never become ``0``."""
    if isinstance(verdict, Clean):
        return b"0\n"
    if isinstance(verdict, Infected):
        return b"1:" + sanitize_name(verdict.name).encode("utf-8", "replace") + b"\n"
    if isinstance(verdict, Unchecked):
        return format_unchecked(verdict.reason, verdict.detail)
    raise TypeError(f"not a verdict: {verdict!r}")  # pragma: no cover - type-checked


def format_unchecked(reason: Reason, detail: str = "") -> bytes:
    """``-1:<reason>[ <detail>]``: the detail is squeezed to one short line."""
    line = f"-1:{reason}"
    if detail:
        line += " " + _clean_text(detail, keep_spaces=True).strip()[:MAX_NAME]
    return line.encode("utf-8", "replace") + b"\n"


def format_line(text: str) -> bytes:
    """One reply line for a control command (``PONG``, ``VERSION``, ``STATS`` JSON)."""
    return _clean_text(text, keep_spaces=True).encode("utf-8", "replace") + b"\n"


def format_bad_request(event: BadRequest) -> bytes:
    return format_unchecked(event.reason, event.detail)
