"""The verdict cache as the scanner sees it: ``scan(engine.scan_bytes, data, where)``.

Only definitive verdicts are stored: ``0`` and ``1:<name>``, never ``-1:``
(a timeout or a limit says nothing about the bytes). A store that fails costs
a scan, never a wrong answer and never a ``-1:``. The policy (names, types)
is not cached: the scanner checks every part's names on hits as on misses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from scand.cache.encoded import Body, base64_bodies
from scand.cache.keys import content_digest
from scand.cache.signing import Signer
from scand.events import CLEAN, Clean, Infected, Verdict

# Values: b"0" or b"1:<name>". A name in a reply can hold no space, CR, LF or NUL.
_BAD_NAME = frozenset(" \r\n\0")
# Entries whose tag does not verify are logged at most once per this many seconds
# (with the count since the last line): a flood of forged entries is one line a minute.
BAD_TAG_LOG_INTERVAL = 60.0


class Store(Protocol):
    shared: bool

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...


def encode(verdict: Clean | Infected) -> bytes:
    return b"0" if isinstance(verdict, Clean) else b"1:" + verdict.name.encode()


def decode(value: bytes) -> Clean | Infected | None:
    """A stored value as a verdict; anything malformed is a miss, never a verdict."""
    if value == b"0":
        return CLEAN
    if value.startswith(b"1:") and len(value) > 2:
        name = value[2:].decode("utf-8", "replace")
        if not _BAD_NAME.intersection(name):
            return Infected(name)
    return None


class PartLike(Protocol):
    """What the cache needs of a walker part (scand.content.Part)."""

    @property
    def data(self) -> bytes: ...

    @property
    def depth(self) -> int: ...

    @property
    def where(self) -> str: ...


class PartCache:
    """Per-part lookups under one signature generation and policy version."""

    def __init__(self, store: Store | None, prefix: str, generation: str, policy: str,
                 on_error: Callable[[str], None] | None = None, min_bytes: int = 0,
                 signer: Signer | None = None,
                 on_bad_tag: Callable[[int, str], None] | None = None) -> None:
        self.store = store
        self.min_bytes = min_bytes
        # A shared store is read only through signed entries (scand.cache.signing).
        self.enabled = store is not None and bool(generation) and (
            signer is not None or not store.shared)
        self.signer = signer if store is not None and store.shared else None
        self.prefix = f"{prefix}{generation}:{policy}:"
        self.hits = 0
        self.misses = 0
        self.bad_tags = 0  # entries whose tag did not verify (each also a miss)
        self.errors = 0
        self._bad_unlogged = 0
        self._bad_log_at = 0.0  # monotonic time before which no bad-tag line is logged
        self._on_bad_tag = on_bad_tag
        self._inner = 0  # decoded parts seen since the raw object was deferred
        self._bodies: list[Body] | None = None  # this request's base64 bodies, once split
        self._learned = 0  # base64 bodies this worker stored as infected
        self._on_error = on_error

    def key(self, data: bytes) -> str:
        return self._name(content_digest(data))

    def _name(self, digest: str) -> str:
        """The store key for a SHA-256 (hex): keyed by the farm secret when shared."""
        return self.prefix + (self.signer.name(digest) if self.signer else digest)

    def get(self, key: str) -> Clean | Infected | None:
        verdict = self._peek(key)
        if verdict is None:
            self.misses += 1
        else:
            self.hits += 1
        return verdict

    def put(self, key: str, verdict: Verdict) -> None:
        if not isinstance(verdict, Clean | Infected):
            return  # never -1:
        assert self.store is not None
        value = encode(verdict)
        try:
            self.store.put(key, self.signer.seal(key, value) if self.signer else value)
        except Exception as exc:
            self._error(exc)

    def scan(self, scan: Callable[[bytes, str], Verdict], data: bytes, where: str) -> Verdict:
        """The cached verdict for these bytes, or ``scan(data, where)`` (then stored)."""
        if not self.enabled:
            return scan(data, where)
        key = self.key(data)
        cached = self.get(key)
        if cached is not None:
            return cached
        verdict = scan(data, where)
        self.put(key, verdict)
        return verdict

    def defer(self, part: PartLike, deferred: list[Any]) -> bool:
        """True (and ``part`` appended to ``deferred``) for the raw object, the first
        time it is seen, while the cache is on.

        The raw bytes of a container (depth 0: a whole message, headers and
        encoded bodies) differ in every copy of a worm mail, so they are never a
        hit and are not cached; scanning them last lets a cached ``1:`` of a
        decoded part end the request first. An object with no parts inside (a
        plain file, e.g. one part of an amavisd parts directory) is cached whole.
        A clean or unchecked message still gets the raw scan, so what is scanned
        does not change, only the order (and so, when both the raw bytes and a
        part are infected, which name is reported).
        """
        if self.enabled and part.depth == 0 and not deferred:
            deferred.append(part)
            self._inner = 0
            return True
        return False

    def scan_part(self, scan: Callable[[bytes, str], Verdict], part: PartLike) -> Verdict:
        """:meth:`scan` for a part. Bypassing the cache: a container's raw bytes (see
        :meth:`defer`) and tiny parts (a lookup would cost more than it saves)."""
        if part.depth > 0:
            self._inner += 1
        if (part.depth == 0 and self._inner) or len(part.data) < self.min_bytes:
            return scan(part.data, part.where)
        return self.scan(scan, part.data, part.where)

    def known_infected(self, data: bytes) -> Infected | None:
        """Before the walk: a ``1:`` from a base64 body known to decode to a virus
        (:mod:`scand.cache.encoded`), else None (and the bodies are kept for
        :meth:`learn`).

        A worker turns this on when it first learns such a body itself (from then
        on it also finds what other workers and hosts learned): a worker that has
        seen only clean mail pays nothing for the fast path (measured: hashing
        every base64 body cost a few percent on a corpus with no repeats)."""
        self._bodies = None
        if not self.enabled or not self._learned:
            return None
        self._bodies = base64_bodies(data, self.min_bytes)
        for body in self._bodies:
            cached = self._peek(self._name("b64:" + body.digest))
            if isinstance(cached, Infected):
                self.hits += 1
                return cached
        return None

    def learn(self, data: bytes, part: PartLike, verdict: Verdict) -> None:
        """After the walk found ``part`` of ``data`` infected: remember the base64 body
        of ``data`` that decodes to exactly its bytes, if there is one."""
        if not self.enabled or not isinstance(verdict, Infected) or part.depth == 0:
            return
        digest = content_digest(part.data)
        for body in self._bodies_of(data):
            if body.decoded_digest() == digest:
                self.put(self._name("b64:" + body.digest), verdict)
                self._learned += 1
                return

    def learn_bodies(self, data: bytes, scan: Callable[[bytes, str], Verdict]) -> None:
        """For engines that decode by themselves (libclamav, clamd), which name no
        part: after the engine found ``data`` infected, scan each base64 body's
        decoded bytes alone and remember the bodies that are infected by
        themselves. The same rule as :meth:`learn`: an entry is written only for
        bytes a real scan found infected. Costs one more scan per body, once per
        worm and worker (or once per farm with Redis)."""
        if not self.enabled:
            return
        for body in self._bodies_of(data):
            decoded = body.decode()
            if decoded is None:
                continue
            verdict = scan(decoded, "base64 body")
            if isinstance(verdict, Infected):
                self.put(self._name("b64:" + body.digest), verdict)
                self._learned += 1

    def _bodies_of(self, data: bytes) -> list[Body]:
        """This request's base64 bodies, split once (known_infected may have done it)."""
        if self._bodies is None:
            self._bodies = base64_bodies(data, self.min_bytes)
        return self._bodies

    def _peek(self, key: str) -> Clean | Infected | None:
        """A lookup that counts neither a hit nor a miss."""
        assert self.store is not None
        try:
            value = self.store.get(key)
        except Exception as exc:  # a store failure costs a scan, never a -1:
            self._error(exc)
            return None
        if value is None:
            return None
        if self.signer is not None:
            opened = self.signer.open(key, value)
            if opened is None:
                self._bad_tag(key)
                return None
            value = opened
        return decode(value)

    def _bad_tag(self, key: str) -> None:
        """A shared entry whose tag does not verify: forged, tampered with, another
        farm's, or a fake server. A miss (the part is scanned), counted, logged at
        most once per :data:`BAD_TAG_LOG_INTERVAL`."""
        self.bad_tags += 1
        self._bad_unlogged += 1
        now = time.monotonic()
        if now >= self._bad_log_at:
            self._bad_log_at = now + BAD_TAG_LOG_INTERVAL
            if self._on_bad_tag is not None:
                self._on_bad_tag(self._bad_unlogged, key)
            self._bad_unlogged = 0

    def take_counts(self) -> tuple[int, int, int]:
        """(hits, misses, bad tags) since the last call: one job's figures."""
        counts = (self.hits, self.misses, self.bad_tags)
        self.hits = self.misses = self.bad_tags = 0
        self._bodies = None  # the job is over: do not keep its bodies
        return counts

    def _error(self, exc: Exception) -> None:
        self.errors += 1
        if self._on_error is not None and "resting after" not in str(exc):
            self._on_error(str(exc))
