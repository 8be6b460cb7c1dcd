"""Value types shared by every layer: protocol events and scan verdicts.

Everything here is a small frozen dataclass, compared by value in tests.
Stdlib only: the protocol module, the worker child and the clients' tests all
import it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Reason(enum.StrEnum):
    """The stable, machine-readable words of a ``-1:<reason>`` reply (PROTOCOL.md §3)."""

    NOT_FOUND = "not-found"
    NOT_ALLOWED = "not-allowed"
    UNREADABLE = "unreadable"
    TOO_LARGE = "too-large"
    TOO_DEEP = "too-deep"
    TOO_MANY_FILES = "too-many-files"
    ENCRYPTED = "encrypted"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    WORKER_CRASHED = "worker-crashed"
    ENGINE_UNAVAILABLE = "engine-unavailable"
    BUSY = "busy"
    SHUTTING_DOWN = "shutting-down"
    PROTOCOL = "protocol"
    INTERNAL = "internal"


# --- verdicts -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Clean:
    """Every byte was scanned and nothing was found."""

    # Verdicts cross the worker's pipe in every Done: a plain constructor call
    # unpickles several times faster than dataclasses' slotted __setstate__.
    def __reduce__(self) -> tuple[type[Clean], tuple[()]]:
        return Clean, ()


@dataclass(frozen=True, slots=True)
class Infected:
    """A signature or policy rule matched; ``name`` is what the client sees."""

    name: str

    def __reduce__(self) -> tuple[type[Infected], tuple[str]]:
        return Infected, (self.name,)


@dataclass(frozen=True, slots=True)
class Unchecked:
    """The object was not fully scanned. Never serialized as clean."""

    reason: Reason
    detail: str = ""

    def __reduce__(self) -> tuple[type[Unchecked], tuple[Reason, str]]:
        return Unchecked, (self.reason, self.detail)


Verdict = Clean | Infected | Unchecked

CLEAN = Clean()


def verdict_label(verdict: Verdict) -> str:
    """A short label for logs and statistics: ``clean``, ``infected`` or the reason word."""
    if isinstance(verdict, Clean):
        return "clean"
    if isinstance(verdict, Infected):
        return "infected"
    return str(verdict.reason)


class Fold:
    """Verdicts of the pieces of one request -> the request's verdict (PROTOCOL.md §3).

    The first infection ends it; otherwise the first unchecked reason; only
    all-clean pieces (or none: an empty directory) are clean. :meth:`add`
    returns True once the verdict is final, so callers can stop early.
    """

    def __init__(self) -> None:
        self._infected: Infected | None = None
        self._unchecked: Unchecked | None = None

    def add(self, verdict: Verdict) -> bool:
        if isinstance(verdict, Infected):
            self._infected = self._infected or verdict
        elif isinstance(verdict, Unchecked) and self._unchecked is None:
            self._unchecked = verdict
        return self._infected is not None

    @property
    def verdict(self) -> Verdict:
        return self._infected or self._unchecked or CLEAN


# --- sentinels shared by every sans-IO protocol (Sophie, clamd, milter) -----


class NeedData(enum.Enum):
    """Sentinel: more bytes are needed before the next event."""

    NEED_DATA = "need-data"


class Closed(enum.Enum):
    """Sentinel: the peer closed (or a fatal error ended the session)."""

    CLOSED = "closed"


NEED_DATA = NeedData.NEED_DATA
CLOSED = Closed.CLOSED


# --- protocol events (client -> daemon) ------------------------------------


@dataclass(frozen=True, slots=True)
class ScanPath:
    """A Sophie request: one absolute path."""

    path: str


@dataclass(frozen=True, slots=True)
class ScanStream:
    """``STREAM <n>`` and its ``n`` raw bytes."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Command:
    """One of scand's own control lines (``PING``, ``VERSION``, ``STATS``, ``RELOAD``)."""

    name: str


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A request that gets ``-1:<reason>``. ``fatal`` means: reply, then close."""

    reason: Reason
    detail: str
    fatal: bool = False


Event = ScanPath | ScanStream | Command | BadRequest

COMMANDS = frozenset({"PING", "VERSION", "STATS", "RELOAD"})
