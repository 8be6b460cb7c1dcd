"""The load driver: N client threads sending spooled messages, every reply judged.

Which message goes next is decided by one seeded planner (under a lock), so
the sequence of requests is the same on every run with the same seed; only
which thread sends which request varies. Corpus messages go in a seeded
shuffled order, cycled; ``--chaos`` swaps in chaos-marker messages at the given
rates; ``--flood`` sends only copies of one infected message.

Latency is measured from sending the request to reading the reply line; with
a rate limit it is measured from the request's scheduled start, so a daemon
that falls behind cannot hide the wait (no coordinated omission).
"""

from __future__ import annotations

import random
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.targets import TargetError, make_target
from bench.verdicts import MISS, OK, Owed, Profile, judge, owed

MAX_MISSES_KEPT = 200
# After a request got no verdict at all, the client pauses this long (seconds).
ERROR_BACKOFF = 0.05


@dataclass
class Options:
    target: str  # "scand" | "clamd"
    socket: str
    profile: Profile
    concurrency: int = 16
    persistent: bool = True
    transfer: str = "path"
    duration: float | None = 20.0
    count: int | None = None
    rate: float | None = None
    timeout: float = 120.0
    seed: int = 1


@dataclass
class Item:
    """One message ready to send: absolute path, size, the verdict it is owed."""

    path: str
    size: int
    owed: Owed
    meta: dict[str, Any]


class Planner:
    """Hands out (index, item) in a seeded order; stops at ``count``."""

    def __init__(self, corpus: list[Item], seed: int, count: int | None,
                 chaos: list[tuple[Item, float]] | None = None) -> None:
        self.corpus = corpus
        self.order = list(range(len(corpus)))
        random.Random(f"{seed}:order").shuffle(self.order)
        self.chaos = chaos or []
        self.rng = random.Random(f"{seed}:chaos")
        self.count = count
        self.next_index = 0
        self.lock = threading.Lock()

    def take(self) -> tuple[int, Item] | None:
        with self.lock:
            i = self.next_index
            if self.count is not None and i >= self.count:
                return None
            self.next_index += 1
            if self.chaos:
                u = self.rng.random()
                for item, rate in self.chaos:
                    if u < rate:
                        return i, item
                    u -= rate
            return i, self.corpus[self.order[i % len(self.order)]]


@dataclass
class Results:
    """What one client thread saw; merged after the run."""

    done_at: array[float] = field(default_factory=lambda: array("d"))
    latency: array[float] = field(default_factory=lambda: array("d"))
    sizes: array[int] = field(default_factory=lambda: array("q"))
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    misses: list[dict[str, Any]] = field(default_factory=list)
    miss_count: int = 0

    def merge(self, other: Results) -> None:
        self.done_at.extend(other.done_at)
        self.latency.extend(other.latency)
        self.sizes.extend(other.sizes)
        self.outcomes.update(other.outcomes)
        self.notes.update(other.notes)
        self.errors.update(other.errors)
        self.misses.extend(other.misses[: MAX_MISSES_KEPT - len(self.misses)])
        self.miss_count += other.miss_count

    @property
    def completed(self) -> int:
        return len(self.latency)


class Driver:
    def __init__(self, options: Options, planner: Planner, t0: float) -> None:
        self.options = options
        self.planner = planner
        self.t0 = t0
        self.stop = threading.Event()
        self.results = [Results() for _ in range(options.concurrency)]
        self.threads = [threading.Thread(target=self._client, args=(r,), daemon=True,
                                         name=f"client-{n}")
                        for n, r in enumerate(self.results)]

    # -- progress, read while running (racy counts are fine for a progress bar) ------------

    def completed(self) -> int:
        return sum(len(r.latency) for r in self.results)

    def misses(self) -> int:
        return sum(r.miss_count for r in self.results)

    def errors(self) -> int:
        return sum(sum(r.errors.values()) for r in self.results)

    # -- the run -------------------------------------------------------------------------------

    def run(self, tick: Callable[[float], None] | None = None) -> Results:
        for t in self.threads:
            t.start()
        end = None if self.options.duration is None else self.t0 + self.options.duration
        while alive := [t for t in self.threads if t.is_alive()]:
            now = time.monotonic()
            if end is not None and now >= end:
                self.stop.set()
            if tick is not None:
                tick(now - self.t0)
            wait = 0.2 if end is None or now >= end else max(0.01, min(0.2, end - now))
            alive[0].join(wait)
        merged = Results()
        for r in self.results:
            merged.merge(r)
        return merged

    def _client(self, res: Results) -> None:
        o = self.options
        target = make_target(o.target, o.socket, o.transfer, o.persistent, o.timeout)
        clock = time.monotonic
        try:
            while not self.stop.is_set():
                taken = self.planner.take()
                if taken is None:
                    return
                index, item = taken
                if o.rate:
                    start = self.t0 + index / o.rate
                    delay = start - clock()
                    if delay > 0 and self.stop.wait(delay):
                        return
                else:
                    start = clock()
                try:
                    reply = target.scan(item.path)
                except TargetError as exc:
                    res.errors[str(exc)[:80]] += 1
                    self.stop.wait(ERROR_BACKOFF)  # a dead daemon must not become a busy loop
                    continue
                done = clock()
                res.done_at.append(done - self.t0)
                res.latency.append(done - start)
                res.sizes.append(item.size)
                verdict = judge(item.owed, reply)
                res.outcomes[(verdict.outcome, verdict.verdict)] += 1
                if verdict.note and verdict.outcome == OK:
                    res.notes[verdict.note] += 1
                if verdict.outcome == MISS:
                    res.miss_count += 1
                    if len(res.misses) < MAX_MISSES_KEPT:
                        res.misses.append({"path": item.path, "owed": item.owed.kind,
                                           "reply": reply.decode("utf-8", "replace"),
                                           "why": verdict.note, "kind": item.meta.get("kind"),
                                           "infections": item.meta.get("infections"),
                                           "banned": item.meta.get("banned")})
        finally:
            target.close()


def item_for(base: str, message: dict[str, Any], profile: Profile) -> Item:
    return Item(f"{base}/{message['path']}", message["size"], owed(message, profile), message)


def parse_chaos(spec: str) -> list[tuple[str, str, float]]:
    """``leak:1=0.2,crash=0.01`` -> [("leak", "1", 0.2), ("crash", "", 0.01)]."""
    out = []
    for piece in filter(None, (p.strip() for p in spec.split(","))):
        what, eq, rate_text = piece.partition("=")
        if not eq:
            raise ValueError(f"--chaos {piece!r}: expected FAULT[:ARG]=RATE")
        fault, _, arg = what.partition(":")
        if fault not in ("leak", "hog", "crash", "slow", "hang"):
            raise ValueError(f"--chaos {piece!r}: unknown fault {fault!r}")
        rate = float(rate_text)
        if not 0 < rate <= 1:
            raise ValueError(f"--chaos {piece!r}: rate must be in (0, 1]")
        if fault in ("leak", "hog") and not arg:
            arg = "1"
        out.append((fault, arg, rate))
    if sum(r for _, _, r in out) > 1:
        raise ValueError("--chaos: rates add up to more than 1")
    return out
