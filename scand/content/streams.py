"""Compressed streams for the walker: gzip, bzip2 and xz, every stream of a file.

Decompressed incrementally, ``CHUNK`` bytes at a time, the walk's budget (total
decoded bytes) and the expansion ratio checked after each step, so a bomb is
stopped after about a megabyte of output. Concatenated streams are all read (an
engine may read the first only: then the rest is the walker's reading, ``alt``);
a stream that ends early is scanned as far as it goes and reported unreadable.
"""

from __future__ import annotations

import lzma
import os
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from scand.content.parts import CHUNK, Budget, Encrypted, Member
from scand.events import Reason, Unchecked

Opened = Iterator[Member | Encrypted | Unchecked]
Opener = Callable[[bytes, tuple[str, ...], Budget, bool, str], Opened]


def _stream_name(names: tuple[str, ...], suffixes: tuple[str, ...]) -> str:
    for name in names:
        base = os.path.basename(name)
        for suffix in suffixes:
            if base.lower().endswith(suffix) and len(base) > len(suffix):
                return base[: -len(suffix)] + (".tar" if suffix.startswith(".t") else "")
    return names[0] + ".out" if names else "stream"


def _gzip_name(data: bytes) -> str | None:
    """The original name stored in a gzip header (FNAME), if any."""
    if len(data) < 10 or not data[3] & 0x08:
        return None
    pos = 10
    if data[3] & 0x04:  # FEXTRA
        pos += 2 + int.from_bytes(data[10:12], "little")
    end = data.find(b"\x00", pos)  # however long: a cut name loses its suffix
    return data[pos:end].decode("latin-1") if end > pos else None


class Truncated(Exception):
    """A compressed stream ended early; ``partial`` is what it held."""

    def __init__(self, partial: bytes) -> None:
        super().__init__("stream ends early")
        self.partial = partial


# Compressed input is fed to a decompressor this much at a time: what it leaves
# over at the end of a stream (copied by the stdlib) is never more than this, so
# thousands of concatenated streams cost their length, not its square.
WINDOW = 64 * 1024
_NOT_ZERO = re.compile(rb"[^\x00]")


def _decompress(data: bytes, budget: Budget, where: str, make: Callable[[], object]
                ) -> tuple[bytes, int]:
    """Run a zlib/bz2/lzma decompressor CHUNK by CHUNK, multi-member aware: the
    bytes of every stream, and how many streams there were.

    Raises :class:`Truncated` when the input ends inside a stream."""
    out = bytearray()
    view = memoryview(data)
    pos = 0  # input handed to decompressors so far
    streams = 0
    while pos < len(data):
        streams += 1
        if streams > 1:
            budget.part()  # each further stream is one more member
        engine: Any = make()
        feed: bytes | memoryview = b""
        while True:
            tail = getattr(engine, "unconsumed_tail", b"")  # zlib: input it did not take
            if tail:
                feed = tail
            elif getattr(engine, "needs_input", True):  # bz2/lzma buffer their input
                feed = view[pos : pos + WINDOW]
                pos += len(feed)
            else:
                feed = b""
            chunk = engine.decompress(feed, CHUNK)
            out += chunk
            budget.grow(len(chunk))
            budget.ratio(len(out), pos, where)
            if engine.eof:
                pos -= len(engine.unused_data)  # the next stream starts there
                break
            if not chunk and not feed and pos >= len(data):
                raise Truncated(bytes(out))
        skip = _NOT_ZERO.search(data, pos)  # padding between members
        pos = len(data) if skip is None else skip.start()
    return bytes(out), streams


def compressed(kind: str, make: Callable[[], object], suffixes: tuple[str, ...]) -> Opener:
    def opener(data: bytes, names: tuple[str, ...], budget: Budget, names_only: bool,
               where: str) -> Opened:
        label = f"{where}>{kind}"
        name = (_gzip_name(data) if kind == "gzip" else None) or _stream_name(names, suffixes)
        try:
            body, streams = _decompress(data, budget, label, make)
        except Truncated as cut:
            # Scan what arrived (it may hold a virus), but never call the whole clean.
            yield Member(name, cut.partial)
            yield Unchecked(Reason.UNREADABLE, f"truncated {kind} at {where}")
            return
        except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
            yield Unchecked(Reason.UNREADABLE, f"corrupt {kind} at {where}: {exc}")
            return
        # Engines that decode by themselves may read the first stream only (ClamAV's
        # bzip2 does): the streams after it are the walker's reading.
        yield Member(name, body, alt=streams > 1)

    return opener
