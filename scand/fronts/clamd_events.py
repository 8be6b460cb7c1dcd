"""The clamd front's vocabulary: command tables, clamd's fixed reply texts, the
events the sans-IO parser emits, and the daemon-wide INSTREAM budget.

Stdlib only; every text here was checked against a live clamd 1.4.6 (PROTOCOL.md §6).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# clamd's command buffer is PATH_MAX + 8: a longer unterminated command ends the connection.
MAX_COMMAND = 4096 + 8
# Default INSTREAM quota (Debian's StreamMaxLength); the glue passes the configured one.
DEFAULT_MAX_STREAM = 25 * 1024 * 1024
CHUNK_HEADER = struct.Struct("!I")

NO_ARG = ("PING", "VERSION", "VERSIONCOMMANDS", "RELOAD", "SHUTDOWN", "QUIT", "STATS",
          "IDSESSION", "END", "INSTREAM", "FILDES", "DETSTATS", "DETSTATSCLEAR")
WITH_PATH = ("SCAN", "CONTSCAN", "MULTISCAN", "ALLMATCHSCAN")
# Accepted without an n/z prefix (clamd's commands[] support_old flag).
OLD_STYLE = frozenset({"SCAN", "CONTSCAN", "MULTISCAN", "PING", "VERSION", "RELOAD",
                       "SHUTDOWN", "QUIT", "FILDES", "DETSTATS", "DETSTATSCLEAR"})
# Old-style commands answered without waiting for a LF (FILDES waits: its LF must not
# be taken for the byte that carries the descriptor).
NO_LF_NEEDED = frozenset({"PING", "VERSION", "RELOAD", "SHUTDOWN", "QUIT", "DETSTATSCLEAR"})
# Allowed inside IDSESSION; anything else there ends the session.
IN_SESSION = frozenset({"SCAN", "INSTREAM", "FILDES", "VERSION", "VERSIONCOMMANDS", "PING",
                        "STATS", "END"})
COMMAND_LIST = ("SCAN QUIT RELOAD PING CONTSCAN VERSIONCOMMANDS VERSION END SHUTDOWN "
                "MULTISCAN FILDES STATS IDSESSION INSTREAM DETSTATSCLEAR DETSTATS ALLMATCHSCAN")

UNKNOWN_COMMAND = "UNKNOWN COMMAND"
SIZE_LIMIT = "INSTREAM size limit exceeded. ERROR"
NO_FD = "No file descriptor received. ERROR"
STRAY_FD = "PROTOCOL ERROR: ancillary data sent without FILDES. ERROR"
INVALID_IN_SESSION = "Command invalid inside IDSESSION. ERROR"
ONLY_PREFIXED = "Only nCMDS\\n and zCMDS\\0 are accepted inside IDSESSION. ERROR"


STREAM_BUSY = "stream: busy ERROR"


@dataclass(frozen=True, slots=True)
class Tag:
    """How a reply is framed: its terminator, and the IDSESSION request number."""

    term: bytes = b"\n"
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Simple:
    """A command without a scan: PING, VERSION, VERSIONCOMMANDS, RELOAD, SHUTDOWN, STATS."""

    tag: Tag
    name: str


@dataclass(frozen=True, slots=True)
class PathScan:
    """SCAN, CONTSCAN, MULTISCAN or ALLMATCHSCAN of a path as sent."""

    tag: Tag
    command: str
    path: str


@dataclass(frozen=True, slots=True)
class StreamScan:
    """A complete INSTREAM body."""

    tag: Tag
    data: bytes


@dataclass(frozen=True, slots=True)
class FdScan:
    """FILDES: the received descriptor (now owned by the receiver of this event)."""

    tag: Tag
    fd: int


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer the parser can give by itself; ``close`` ends the connection after it."""

    tag: Tag
    text: str
    close: bool = True


@dataclass(frozen=True, slots=True)
class EndSession:
    """END (or half-close) in IDSESSION: send what is pending, then close."""


ClamdEvent = Simple | PathScan | StreamScan | FdScan | Reply | EndSession


def frame(tag: Tag, text: str) -> bytes:
    """One reply line: ``[<id>: ]<text><term>``."""
    prefix = f"{tag.id}: " if tag.id is not None else ""
    return (prefix + text).encode("utf-8", "surrogateescape") + tag.term
