"""Idle and request deadlines for every connection, kept by one task.

A connection waits for its client's bytes under a deadline (idle, or the request
in progress) and answers with none. Moving a cancel scope's deadline in and out
of trio's deadline heap around every wait cost the daemon two property calls, two
context managers and a heap entry per request (issue 27). Here a wait's deadline
is a float on the connection's :class:`Timer`; one system task sleeps until the
earliest one and cancels the scope of a connection still waiting past it, which
is what the scope's own deadline did.

Deadlines mostly move later (a wait starts now and ends ``timeout`` later), so
the watch sleeps until the earliest and wakes about once per timeout; a deadline
sooner than the watch planned (a request deadline shorter than the idle one)
wakes it to plan again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, TypeVar

import trio

_WATCH: trio.lowlevel.RunVar[DeadlineWatch] = trio.lowlevel.RunVar("scand_deadline_watch")


class Timer:
    """One connection's deadline: armed while it waits for bytes, else ``inf``."""

    __slots__ = ("_watch", "deadline", "scope")

    def __init__(self, watch: DeadlineWatch, scope: trio.CancelScope) -> None:
        self.deadline = math.inf
        self.scope = scope
        self._watch = watch

    def arm(self, deadline: float) -> None:
        """Cancel ``scope`` at ``deadline`` unless :meth:`disarm` comes first."""
        self.deadline = deadline
        if deadline < self._watch.until:
            self._watch.wake()

    def disarm(self) -> None:
        self.deadline = math.inf


class DeadlineWatch:
    """Every connection's :class:`Timer`, and the one task that acts on them."""

    def __init__(self) -> None:
        self._timers: set[Timer] = set()
        self.until = -math.inf  # when the task wakes next (-inf: not planned yet)
        self._wake = trio.Event()

    def add(self, scope: trio.CancelScope) -> Timer:
        timer = Timer(self, scope)
        self._timers.add(timer)
        return timer

    def discard(self, timer: Timer) -> None:
        self._timers.discard(timer)

    def wake(self) -> None:
        self._wake.set()

    @property
    def timers(self) -> int:
        return len(self._timers)

    def expire(self, now: float) -> float:
        """Cancel the scope of every timer past ``now``; the earliest deadline left."""
        due = math.inf
        for timer in self._timers:
            deadline = timer.deadline
            if deadline <= now:
                timer.deadline = math.inf
                timer.scope.cancel()
            elif deadline < due:
                due = deadline
        return due

    async def run(self) -> None:
        try:
            while True:
                self.until = self.expire(trio.current_time())
                self._wake = trio.Event()
                with trio.move_on_at(self.until):
                    await self._wake.wait()
        finally:
            self._timers.clear()


class _Task(Protocol):
    async def run(self) -> None: ...


_T = TypeVar("_T", bound=_Task)


def per_run(var: trio.lowlevel.RunVar[_T], make: Callable[[], _T], name: str) -> _T:
    """The one ``var`` of this trio run: made, and its ``run`` started as a system
    task, on first use; it ends with the run."""
    try:
        return var.get()
    except LookupError:
        made = make()
        var.set(made)
        trio.lowlevel.spawn_system_task(made.run, name=name)
        return made


def current() -> DeadlineWatch:
    """This trio run's watch (started on first use, ended with the run)."""
    return per_run(_WATCH, DeadlineWatch, "scand.fronts.timers")
