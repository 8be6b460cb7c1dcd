"""The memory backend shared by every worker of one daemon: one table per host.

A per-worker LRU scans each distinct part once per worker: with N workers a
repeated attachment hits about 1/N as often as one cache would. This table is
one anonymous shared mapping, made by the zygote before it forks anything
(:func:`prepare`), so every generation zygote and every worker forked after
it maps the same pages. No lock and no daemon round trip:

* A slot is 256 bytes: an 8-byte BLAKE2b check over the rest, the expiry
  (``CLOCK_MONOTONIC``, one clock for every process on the host), a 16-byte
  digest of the key (which already holds the signature generation and the
  policy version: :class:`scand.cache.lookup.PartCache`) and the value.
* A reader copies a slot and believes it only if the check matches: a slot
  torn by a concurrent writer, or by a worker killed in the middle of a write,
  reads as a miss (a false match is a 2^-64 chance), never as a verdict.
* A key may live in any of :data:`WAYS` consecutive slots; a put takes the
  key's own slot, else an expired or empty one, else the one that expires
  first (with one TTL for all, the oldest). Values longer than a slot holds
  are not stored (a miss later, never a wrong answer).

What is stored is what the per-worker store held: definitive verdicts only,
under the same keys (:mod:`scand.cache.lookup` decides; this is a dumb store).
Every worker of the daemon runs the same code as the same user; a worker that
a hostile message took over could already answer anything for its own
requests, and here it could also plant entries for the others, as it could
in a Redis both share (which signs against other writers, not against one of
its own workers).

The size is fixed when the daemon starts (``cache.max_entries`` then); a
reload that changes it takes effect at the next start. Pages are touched only
when written: the mapping costs its full size only once that many entries
were stored.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
import time

SLOT = 256
WAYS = 4
# check (8), expires (double), key digest (16), value length (u16)
_HEAD = struct.Struct("<8sd16sH")
MAX_VALUE = SLOT - _HEAD.size


def _check(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=8).digest()


def _key_id(key: str) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=16).digest()


class SharedStore:
    """``get``/``put`` of small byte values in a table shared across ``fork``."""

    # Not "shared" in the cache's trust sense (signed entries, scand.cache.signing):
    # an anonymous mapping only this daemon's own forked processes can reach.
    shared = False

    def __init__(self, max_entries: int, ttl: float) -> None:
        slots = 1 << max(WAYS.bit_length(), (max(max_entries, 1) - 1).bit_length())
        self.slots = slots
        self.ttl = ttl
        self._map = mmap.mmap(-1, slots * SLOT)  # MAP_SHARED | MAP_ANONYMOUS

    def _offsets(self, kid: bytes) -> list[int]:
        first = int.from_bytes(kid[:8], "little") & (self.slots - 1)
        return [((first + i) & (self.slots - 1)) * SLOT for i in range(WAYS)]

    def _read(self, off: int) -> tuple[float, bytes, bytes] | None:
        """(expires, key digest, value) of a whole slot, or None if empty or torn."""
        raw = self._map[off:off + SLOT]
        check, expires, kid, n = _HEAD.unpack_from(raw)
        if n > MAX_VALUE or check != _check(raw[8:_HEAD.size + n]):
            return None
        return expires, kid, raw[_HEAD.size:_HEAD.size + n]

    def get(self, key: str) -> bytes | None:
        kid = _key_id(key)
        now = time.monotonic()
        for off in self._offsets(kid):
            if self._map[off + 16:off + 32] != kid:
                continue
            slot = self._read(off)
            if slot is not None and slot[1] == kid and slot[0] > now:
                return slot[2]
        return None

    def put(self, key: str, value: bytes) -> None:
        if len(value) > MAX_VALUE:
            return
        kid = _key_id(key)
        now = time.monotonic()
        offsets = self._offsets(kid)
        best, best_expires = offsets[0], float("inf")  # (all never expire: the first)
        for off in offsets:
            slot = self._read(off)
            if slot is None or slot[1] == kid or slot[0] <= now:
                best = off
                break
            if slot[0] < best_expires:
                best, best_expires = off, slot[0]
        body = struct.pack("<d16sH", now + self.ttl, kid, len(value)) + value
        self._map[best:best + 8 + len(body)] = _check(body) + body

    def __len__(self) -> int:
        now = time.monotonic()
        return sum(1 for i in range(self.slots)
                   if (slot := self._read(i * SLOT)) is not None and slot[0] > now)


_TABLE: SharedStore | None = None


def prepare(max_entries: int, ttl: float) -> None:
    """In the zygote, before any fork: make the table every worker will share."""
    global _TABLE
    if _TABLE is None:
        _TABLE = SharedStore(max_entries, ttl)


def table(ttl: float) -> SharedStore | None:
    """The table :func:`prepare` made in an ancestor of this process (None in a
    stand-alone worker), with the current config's TTL for new entries."""
    if _TABLE is not None:
        _TABLE.ttl = ttl
    return _TABLE
