"""Framing between the daemon and its workers: length-prefixed frames.

A request's two messages, :class:`Job` and :class:`Done`, are struct frames (a tag
byte, fixed fields, then the one string a verdict or a path needs): unpickling a
Done looked its three classes up through the import system on every request,
and the daemon does this once per message (issue 27). Every other message (Ready,
a Config, an Outcome whose fields a struct cannot hold) is a pickle: both ends are
scand's own code started from the same install, so pickle is safe here. A pickle
body starts with its PROTO opcode (0x80), never with a tag. Stdlib and
:mod:`scand.events` only: the worker imports this.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass, field
from typing import Any

from scand.events import Clean, Infected, Reason, Unchecked

HEADER = struct.Struct("!I")
# A frame longer than this is a corrupt stream, not a message (streams are capped lower).
MAX_FRAME = 1 << 30


@dataclass(frozen=True, slots=True)
class Job:
    """One scan for a worker: a path, or the bytes of a ``STREAM``."""

    id: int
    path: str | None = None
    data: bytes | None = None
    # On the wire: the frame carries the job without its data, and this many raw
    # bytes of data follow the frame (see job_frames): nobody copies a STREAM to frame it.
    size: int = 0

    def __reduce__(self) -> tuple[type[Job], tuple[int, str | None, bytes | None, int]]:
        # Every field (size says how many raw bytes follow the frame); not dataclasses'
        # generic __getstate__.
        return Job, (self.id, self.path, self.data, self.size)


@dataclass(frozen=True, slots=True)
class Ready:
    """A worker's first message: it loaded its engine (or says why it could not)."""

    pid: int
    rss: int
    engine: str = ""
    signatures: str = ""
    detail: str = ""
    error: str = ""
    modules: tuple[str, ...] = field(default=())
    uid: int = -1
    leftovers: tuple[str, ...] = field(default=())  # Engine.leftovers: removed once it is gone


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one scan came back with: the one result type of the scanner (worker),
    the wire (in :class:`Done`), the pool and every front."""

    verdict: Any  # scand.events.Verdict (Any keeps this module free of imports)
    bytes: int = 0
    files: int = 0
    worker: int = 0  # pid of the worker that ran it; 0 when none did
    rss: int = 0  # the worker's private memory after the job
    cache: tuple[int, int, int] = (0, 0, 0)  # verdict cache (hits, misses, bad tags) in the job

    def __reduce__(self) -> tuple[type[Outcome], tuple[Any, ...]]:
        return Outcome, (self.verdict, self.bytes, self.files, self.worker, self.rss, self.cache)


@dataclass(frozen=True, slots=True)
class Done:
    """The answer to a :class:`Job`."""

    id: int
    outcome: Outcome

    def __reduce__(self) -> tuple[type[Done], tuple[int, Outcome]]:
        return Done, (self.id, self.outcome)


# -- the zygote's control sockets (SOCK_SEQPACKET: one pickled message a packet) --------

# One zygote message is at most a pickled Config: far below this.
MAX_PACKET = 1 << 20


@dataclass(frozen=True, slots=True)
class ZygoteInit:
    """Daemon -> zygote, first: the config to drop privileges by."""

    config: Any  # scand.config.Config


@dataclass(frozen=True, slots=True)
class ZygoteReady:
    """Zygote -> daemon: imports done, privileges dropped."""

    pid: int
    uid: int


@dataclass(frozen=True, slots=True)
class ForkRequest:
    """Daemon -> zygote (-> generation zygote): a worker of ``generation``, whose engine
    is loaded once from ``config``."""

    generation: int
    config: Any


@dataclass(frozen=True, slots=True)
class Forked:
    """The reply to a ForkRequest; carries the worker's job pipe (write end), result
    pipe (read end) and pidfd as SCM_RIGHTS."""

    pid: int


@dataclass(frozen=True, slots=True)
class DropRequest:
    """Daemon -> zygote: free every signature set but ``keep``'s."""

    keep: int


@dataclass(frozen=True, slots=True)
class Dropped:
    left: int


@dataclass(frozen=True, slots=True)
class Loaded:
    """Generation zygote -> zygote: its engine loaded."""

    signatures: str


@dataclass(frozen=True, slots=True)
class ZygoteFailed:
    """Any zygote reply that failed: the reason, for the log and the EngineError."""

    error: str


def dumps(message: object) -> bytes:
    """One zygote packet."""
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def loads(packet: bytes) -> object:
    """One zygote packet back; an empty packet (EOF) is a ZygoteFailed."""
    if not packet:
        return ZygoteFailed("zygote exited")
    message: object = pickle.loads(packet)
    return message


# -- struct frames: Job (daemon -> worker) and Done (worker -> daemon) ------------------

# The length header and a job's fields in one struct: b"J", id, raw data size, flags.
_JOB = struct.Struct("!IcqqB")
_JOB_PATH = 1  # the path follows (UTF-8, surrogates passed)
_JOB_DATA = 2  # a STREAM: ``size`` raw bytes follow the frame (0: an empty STREAM)
# b"D", id, bytes, files, worker, rss, cache hits, misses, bad tags, verdict kind; then
# the kind's string: Infected's name, or Unchecked's reason (one byte) and detail.
_DONE = struct.Struct("!cqqqqqqqqB")
_CLEAN, _INFECTED, _UNCHECKED = 0, 1, 2
_REASONS = tuple(Reason)
_REASON_INDEX = {reason: i for i, reason in enumerate(_REASONS)}
_TEXT = ("utf-8", "surrogatepass")  # any str there and back, lone surrogates included


def _pack_done(done: Done) -> bytes | None:
    """A Done as a struct frame body; None if a struct cannot hold it (pickled then)."""
    out = done.outcome
    verdict = out.verdict
    kind = type(verdict)
    if kind is Clean:
        tail, code = b"", _CLEAN
    elif kind is Infected and type(verdict.name) is str:
        tail, code = verdict.name.encode(*_TEXT), _INFECTED
    elif (kind is Unchecked and verdict.reason in _REASON_INDEX
          and type(verdict.detail) is str):
        tail = bytes((_REASON_INDEX[verdict.reason],)) + verdict.detail.encode(*_TEXT)
        code = _UNCHECKED
    else:
        return None
    cache = out.cache
    try:
        if len(cache) != 3:
            return None
        return _DONE.pack(b"D", done.id, out.bytes, out.files, out.worker, out.rss,
                          *cache, code) + tail
    except (struct.error, TypeError):
        return None  # not ints, or out of range


def _unpack_done(body: bytes) -> Done:
    (_, id_, size, files, worker, rss, hits, misses, bad, code) = _DONE.unpack_from(body)
    tail = body[_DONE.size:]
    verdict: Any
    if code == _CLEAN:
        verdict = Clean()
    elif code == _INFECTED:
        verdict = Infected(tail.decode(*_TEXT))
    elif code == _UNCHECKED:
        verdict = Unchecked(_REASONS[tail[0]], tail[1:].decode(*_TEXT))
    else:
        raise FrameError(f"verdict kind {code}")
    return Done(id_, Outcome(verdict, size, files, worker, rss, (hits, misses, bad)))


def _unpack_job(body: bytes) -> Job:
    (id_, size, flags) = struct.unpack_from("!qqB", body, 1)
    path = body[18:].decode(*_TEXT) if flags & _JOB_PATH else None
    return Job(id_, path, b"" if flags & _JOB_DATA else None, size)


def encode(message: object) -> bytes:
    """A message's frame body: a struct for Job (without its data) and Done, else a pickle."""
    if type(message) is Done:
        body = _pack_done(message)
        if body is not None:
            return body
    elif type(message) is Job:
        return job_frames(message)[0][HEADER.size:]
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def decode(body: bytes) -> object:
    """A frame body back into its message (a STREAM job's data is not in it: ``size``)."""
    tag = body[:1]
    if tag == b"D":
        return _unpack_done(body)
    if tag == b"J":
        return _unpack_job(body)
    message: object = pickle.loads(body)
    return message


def pack(message: object) -> bytes:
    """One framed message (a job with its raw data after the frame)."""
    if type(message) is Job:
        frame, data = job_frames(message)
        return frame + data
    body = encode(message)
    return HEADER.pack(len(body)) + body


def job_frames(job: Job) -> tuple[bytes, bytes]:
    """A job as (frame, raw data), written one after the other: the data is
    neither pickled nor joined to its frame (both would copy a STREAM)."""
    data = job.data
    flags = 0 if data is None else _JOB_DATA
    # An empty STREAM keeps its flag (size 0 sends no raw data): no flag would make
    # it a path job.
    path = b""
    if job.path is not None:
        flags |= _JOB_PATH
        path = job.path.encode(*_TEXT)
    size = len(data) if data else 0
    frame = _JOB.pack(_JOB.size - HEADER.size + len(path), b"J", job.id, size, flags) + path
    return frame, data or b""


class FrameError(Exception):
    """The byte stream from a peer is not a valid frame."""


class Decoder:
    """Incremental frame decoder: feed bytes, take complete messages (a job framed
    by :func:`job_frames` comes out whole, its raw data attached)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._job: Job | None = None  # a job frame whose raw data has not all arrived

    def feed(self, data: bytes | bytearray) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes fed and not yet taken as messages."""
        return len(self._buf)

    def next(self) -> object | None:
        if self._job is not None:
            size = self._job.size
            if len(self._buf) < size:
                return None
            job = Job(self._job.id, self._job.path, bytes(self._buf[:size]))
            del self._buf[:size]
            self._job = None
            return job
        if len(self._buf) < HEADER.size:
            return None
        (n,) = HEADER.unpack_from(self._buf)
        if n > MAX_FRAME:
            raise FrameError(f"frame of {n} bytes")
        if len(self._buf) < HEADER.size + n:
            return None
        body = bytes(self._buf[HEADER.size : HEADER.size + n])
        del self._buf[: HEADER.size + n]
        message = decode(body)
        if type(message) is Job and message.size:
            self._job = message
            return self.next()
        return message
