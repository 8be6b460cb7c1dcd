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


@dataclass(frozen=True, slots=True)
class Done:
    """The answer to a :class:`Job`."""

    id: int
    verdict: Any  # scand.events.Verdict (Any keeps this module free of imports)
    bytes: int
    files: int
    rss: int
    cache: tuple[int, int] = (0, 0)  # verdict-cache (hits, misses) during this job


def pack(message: object) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


class FrameError(Exception):
    """The byte stream from a peer is not a valid frame."""


class Decoder:
    """Incremental frame decoder: feed bytes, take complete messages."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray) -> None:
        self._buf += data

    def next(self) -> object | None:
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
        return message
