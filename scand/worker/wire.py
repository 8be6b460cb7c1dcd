"""Framing between the daemon and its workers: length-prefixed pickles.

Both ends are scand's own code started from the same install, so pickle is
safe here and carries the verdict dataclasses as they are. Stdlib only: the
worker imports this.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Done:
    """The answer to a :class:`Job`."""

    id: int
    outcome: Outcome


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


def pack(message: object) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def job_frames(job: Job) -> tuple[bytes, bytes]:
    """A job as (frame, raw data), written one after the other: the data is
    neither pickled nor joined to its frame (both would copy a STREAM)."""
    data = job.data or b""
    # An empty stream travels inline (b""), so it stays a stream, not a pathless job.
    inline = b"" if job.data is not None and not data else None
    meta = pickle.dumps(Job(job.id, job.path, inline, len(data)),
                        protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(meta)) + meta, data


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
        message: object = pickle.loads(body)
        if isinstance(message, Job) and message.size:
            self._job = message
            return self.next()
        return message
