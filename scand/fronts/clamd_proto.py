"""Sans-IO clamd protocol (ClamAV 1.4.6, PROTOCOL.md §6): bytes in, events out.

No trio, no socket, no clock. The glue feeds each received packet (and any
descriptors that came with it) into :meth:`ClamdConnection.receive_data` and
drains :meth:`ClamdConnection.next_event`. Every event carries a :class:`Tag`
(terminator and, inside IDSESSION, the request number) so the reply can be
framed exactly as clamd frames it (:func:`frame`).

Rules reproduced from clamd (each was checked against a live clamd 1.4.6):
* ``z`` prefix: NUL-terminated; ``n``: LF-terminated (a CR before it is
  dropped); no prefix ("old style"): up to LF, a limited command set;
* outside IDSESSION exactly one command per connection, the rest is ignored;
* no-argument commands must match exactly; commands with a path take
  everything after the command word plus one (unchecked) byte;
* INSTREAM chunks are ``<u32 big-endian length><data>``, ended by a zero
  length; the quota is checked at each chunk header;
* FILDES takes one descriptor that arrives with at least one dummy byte.
"""

from __future__ import annotations

import collections
from typing import Protocol

from scand.events import CLOSED, NEED_DATA, Closed, NeedData
from scand.fronts.clamd_events import (
    CHUNK_HEADER,
    COMMAND_LIST,
    DEFAULT_MAX_STREAM,
    IN_SESSION,
    INVALID_IN_SESSION,
    MAX_COMMAND,
    NO_ARG,
    NO_FD,
    NO_LF_NEEDED,
    OLD_STYLE,
    ONLY_PREFIXED,
    SIZE_LIMIT,
    STRAY_FD,
    STREAM_BUSY,
    UNKNOWN_COMMAND,
    WITH_PATH,
    ClamdEvent,
    EndSession,
    FdScan,
    PathScan,
    Reply,
    Simple,
    StreamScan,
    Tag,
    frame,
)


class Budget(Protocol):
    """Bytes the daemon may hold (scand.fronts.budget): taken at each chunk header."""

    def try_take(self, n: int) -> bool: ...

    def give(self, n: int) -> None: ...


class ClamdConnection:
    """Parser state for one client connection."""

    def __init__(self, *, max_stream: int = DEFAULT_MAX_STREAM, fd_passing: bool = True,
                 budget: Budget | None = None) -> None:
        self.max_stream = max_stream
        self.budget = budget
        self.held = 0  # bytes taken from the budget and not yet released
        self.fd_passing = fd_passing
        self._buf = bytearray()
        # Each descriptor with the stream offset of the end of the packet it came with:
        # it belongs to the byte before that offset (FILDES's dummy byte).
        self._fds: collections.deque[tuple[int, int]] = collections.deque()
        self._received = 0
        self._consumed = 0
        self._eof = False
        self.in_session = False
        self._done = False  # one command outside a session was parsed: nothing more
        self._ids = 0
        self._stream: bytearray | None = None
        self._stream_tag = Tag()
        self._chunk_left = 0  # bytes still owed by the current INSTREAM chunk
        self._fildes: Tag | None = None  # FILDES seen, waiting for its byte and descriptor

    # -- input ------------------------------------------------------------------

    def receive_data(self, data: bytes, fds: list[int] | tuple[int, ...] = ()) -> None:
        """Feed one received packet (``b""`` = end of input) and its SCM_RIGHTS descriptors."""
        self._received += len(data)
        self._fds.extend((self._received, fd) for fd in fds)
        if not data:
            self._eof = True
            return
        if not self._done:
            self._buf += data

    def take_fds(self) -> list[int]:
        """Descriptors received but not handed out in an event (the caller closes them)."""
        fds = [fd for _, fd in self._fds]
        self._fds.clear()
        return fds

    @property
    def mid_request(self) -> bool:
        """Part of a request has arrived but not all of it."""
        if self._done:
            return False
        return bool(self._buf) or self._stream is not None or self._fildes is not None

    @property
    def finished(self) -> bool:
        return self._done

    @property
    def buffered(self) -> int:
        """Bytes received and not yet parsed (stream data already taken is not counted)."""
        return len(self._buf)

    @property
    def waiting_for(self) -> tuple[str, Tag | None]:
        """What a timeout interrupts: ``("stream", tag)``, ``("fildes", tag)`` or
        ``("command", None)``."""
        if self._stream is not None:
            return "stream", self._stream_tag
        if self._fildes is not None:
            return "fildes", self._fildes
        return "command", None

    # -- events -----------------------------------------------------------------

    def next_event(self) -> ClamdEvent | NeedData | Closed:
        if self._done:
            return CLOSED
        if self._stream is not None:
            return self._next_stream()
        if self._fildes is not None:
            return self._next_fildes()
        if not self._buf:
            if self._eof:
                return self._end_of_input()
            return NEED_DATA
        return self._next_command()

    def _end_of_input(self) -> ClamdEvent | Closed:
        self._done = True
        if self.in_session:
            return EndSession()
        return CLOSED

    def _next_command(self) -> ClamdEvent | NeedData | Closed:
        first = bytes(self._buf[:1])
        if first in (b"z", b"n"):
            term = b"\0" if first == b"z" else b"\n"
            end = self._buf.find(term, 1)
            if end < 0:
                return self._incomplete()
            raw = bytes(self._buf[1:end])
            self._consume(end + 1)
            if term == b"\n" and raw.endswith(b"\r"):
                raw = raw[:-1]
            return self._command(raw, term, prefixed=True)
        if self.in_session:
            return self._finish(Reply(self._tag(b"\n"), ONLY_PREFIXED))
        return self._old_style()

    def _old_style(self) -> ClamdEvent | NeedData | Closed:
        """clamd takes the first packet up to LF; a LF arriving later is also accepted here,
        and a known no-argument command needs no LF at all (``PING``)."""
        end = self._buf.find(b"\n")
        if end < 0:
            raw = bytes(self._buf).rstrip(b"\r")
            word = raw.decode("latin-1")
            if not (self._eof or word in NO_LF_NEEDED or not _could_be(word)):
                return self._incomplete()
        else:
            raw = bytes(self._buf[:end]).rstrip(b"\r")
        self._consume(len(self._buf))
        return self._command(raw, b"\n", prefixed=False)

    def _incomplete(self) -> ClamdEvent | NeedData | Closed:
        if len(self._buf) > MAX_COMMAND:
            self._done = True  # clamd drops the connection without a reply
            self._consume(len(self._buf))
            return CLOSED
        if self._eof:
            return self._end_of_input()
        return NEED_DATA

    def _tag(self, term: bytes) -> Tag:
        if not self.in_session:
            return Tag(term)
        self._ids += 1
        return Tag(term, self._ids)

    def _finish(self, event: ClamdEvent) -> ClamdEvent:
        """After this event no more commands are parsed (outside IDSESSION, or fatal)."""
        if not self.in_session or (isinstance(event, Reply) and event.close):
            self._done = True
            self._consume(len(self._buf))
        return event

    def _command(self, raw: bytes, term: bytes, *, prefixed: bool
                 ) -> ClamdEvent | NeedData | Closed:
        text = raw.decode("utf-8", "surrogateescape")
        name, arg = _match(text)
        tag = self._tag(term)
        if name is None or (not prefixed and name not in OLD_STYLE):
            if self.in_session:
                return self._finish(Reply(tag, INVALID_IN_SESSION))
            return self._finish(Reply(tag, UNKNOWN_COMMAND))
        if self.in_session and name not in IN_SESSION:
            return self._finish(Reply(tag, INVALID_IN_SESSION))
        if self._fd_ready() and name != "FILDES":
            return self._finish(Reply(tag, STRAY_FD))
        if name == "IDSESSION":
            self.in_session = True
            self._ids = 0
            return self.next_event()
        if name == "END":
            if not self.in_session:
                return self._finish(Reply(tag, UNKNOWN_COMMAND))
            self._done = True
            self._consume(len(self._buf))
            return EndSession()
        if name in ("DETSTATS", "DETSTATSCLEAR"):
            # Removed features: clamd accepts them and answers nothing.
            return self._finish(Reply(tag, "", close=True))
        if name == "INSTREAM":
            self._stream = bytearray()
            self._stream_tag = tag
            self._chunk_left = 0
            return self.next_event()
        if name == "FILDES":
            self._fildes = tag
            return self.next_event()
        if arg is not None:
            return self._finish(PathScan(tag, name, arg))
        return self._finish(Simple(tag, "SHUTDOWN" if name == "QUIT" else name))

    def _next_stream(self) -> ClamdEvent | NeedData | Closed:
        assert self._stream is not None
        while True:
            if self._chunk_left:
                take = min(self._chunk_left, len(self._buf))
                if take == 0:
                    return self._stream_stalled()
                self._stream += self._buf[:take]
                self._consume(take)
                self._chunk_left -= take
                continue
            if len(self._buf) < CHUNK_HEADER.size:
                return self._stream_stalled()
            (n,) = CHUNK_HEADER.unpack_from(self._buf)
            self._consume(CHUNK_HEADER.size)
            if n == 0:
                data, self._stream = bytes(self._stream), None
                return self._finish(StreamScan(self._stream_tag, data))
            if n > self.max_stream - len(self._stream):
                return self._refuse_stream(SIZE_LIMIT)
            if self.budget is not None:
                if not self.budget.try_take(n):
                    return self._refuse_stream(STREAM_BUSY)
                self.held += n
            self._chunk_left = n

    def _refuse_stream(self, text: str) -> Reply:
        """Refused at a chunk header: the rest is not read; reply, then close."""
        self._stream = None
        self._done = True
        self._consume(len(self._buf))
        self.release(self.held)
        return Reply(self._stream_tag, text)

    def release(self, n: int) -> None:
        """Give back ``n`` budget bytes (a StreamScan's data, once its scan is done)."""
        n = min(n, self.held)
        self.held -= n
        if self.budget is not None:
            self.budget.give(n)

    def _stream_stalled(self) -> NeedData | Closed:
        if self._eof:
            self._stream = None
            self._done = True
            return CLOSED  # the client left mid-stream: nothing to answer
        return NEED_DATA

    def _next_fildes(self) -> ClamdEvent | NeedData | Closed:
        tag = self._fildes
        assert tag is not None
        if not self._buf and not self._fd_ready():
            if self._eof:
                self._fildes = None
                self._done = True
                return CLOSED
            return NEED_DATA
        self._fildes = None
        if self._buf:
            self._consume(1)  # the dummy byte that carried the descriptor
        if not self._fd_ready() or not self.fd_passing:
            return self._finish(Reply(tag, NO_FD))
        return self._finish(FdScan(tag, self._fds.popleft()[1]))

    def _consume(self, n: int) -> None:
        del self._buf[:n]
        self._consumed += n

    def _fd_ready(self) -> bool:
        """A descriptor arrived with a byte already consumed (or with the current packet)."""
        return bool(self._fds) and self._fds[0][0] <= self._consumed + (1 if self._buf else 0)


def _could_be(text: str) -> bool:
    """True while ``text`` may still grow into an old-style command."""
    return any(name.startswith(text) or text.startswith(name) for name in OLD_STYLE)


def _match(text: str) -> tuple[str | None, str | None]:
    """(command, path argument or None); (None, None) when clamd would not know it."""
    if text in NO_ARG:
        return text, None
    for name in WITH_PATH:
        if text.startswith(name) and len(text) > len(name):
            return name, text[len(name) + 1 :]
    return None, None


__all__ = [
    "CLOSED",
    "COMMAND_LIST",
    "NEED_DATA",
    "STREAM_BUSY",
    "ClamdConnection",
    "ClamdEvent",
    "Closed",
    "EndSession",
    "FdScan",
    "NeedData",
    "PathScan",
    "Reply",
    "Simple",
    "StreamScan",
    "Tag",
    "frame",
]
