"""Process supervision, daemon side (trio): one way to stop a process, one way to retry.

Shared by the worker pool, the zygote's spawner and the clamd supervisor, so
kill escalation and restart backoff are written once (trio-parallel
``_proc.py`` and trio's ``_subprocess.py`` do the same: every kill is followed
by a shielded wait, so nothing is left a zombie even under cancellation).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

import trio

T = TypeVar("T")


class Stoppable(Protocol):
    """A process the daemon can signal and wait for (trio.Process, a pidfd handle)."""

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def send_signal(self, signum: int) -> None: ...


def _signal(proc: Stoppable, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        proc.send_signal(signum)


async def terminate(proc: Stoppable, grace: float, *,
                    first: signal.Signals | None = signal.SIGTERM) -> None:
    """Stop ``proc``: send ``first`` (or nothing: it was already told to exit), give it
    ``grace`` seconds, then SIGKILL, and reap it. Shielded: always finishes."""
    with trio.CancelScope(shield=True):
        if proc.returncode is None:
            if first is not None:
                _signal(proc, first)
            with trio.move_on_after(grace):
                await proc.wait()
        if proc.returncode is None:
            _signal(proc, signal.SIGKILL)
            await proc.wait()


async def retry(attempt: Callable[[], Awaitable[T]], delays: Sequence[float],
                errors: tuple[type[Exception], ...],
                on_error: Callable[[Exception, int], None], *,
                delay_first: bool = False) -> T:
    """``attempt()`` until it succeeds. After the n-th failure (reported to
    ``on_error(exc, n)``) wait ``delays[min(n - 1, len(delays) - 1)]``; with
    ``delay_first``, also wait ``delays[0]`` before the first try (a restart
    right after a crash)."""
    failures = 0
    if delay_first:
        await trio.sleep(delays[0])
    while True:
        try:
            return await attempt()
        except errors as exc:
            failures += 1
            on_error(exc, failures)
            await trio.sleep(delays[min(failures - 1, len(delays) - 1)])
