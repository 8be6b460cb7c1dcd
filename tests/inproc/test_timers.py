"""One deadline watch for every connection (scand.fronts.timers): a waiting
connection's scope is cancelled at its deadline, as a scope's own deadline did,
whatever order deadlines are armed in; a disarmed one never is."""

from __future__ import annotations

import math

import pytest
import trio

from scand.fronts import timers


async def wait_on(timer: timers.Timer, deadline: float, fired: dict[str, float],
                  name: str) -> None:
    with timer.scope:
        timer.arm(deadline)
        await trio.sleep_forever()
    timer.disarm()
    if timer.scope.cancel_called:
        fired[name] = trio.current_time()


async def test_each_scope_is_cancelled_at_its_own_deadline(autojump_clock: object) -> None:
    watch = timers.current()
    fired: dict[str, float] = {}
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        for name, after in [("late", 30.0), ("early", 5.0), ("middle", 12.0)]:
            timer = watch.add(trio.CancelScope())
            nursery.start_soon(wait_on, timer, t0 + after, fired, name)
            await trio.sleep(0)
        await trio.sleep(1)
        # Armed after the watch planned its next wake (t0 + 5): still on time.
        sooner = watch.add(trio.CancelScope())
        nursery.start_soon(wait_on, sooner, t0 + 2.0, fired, "sooner")
    assert {k: v - t0 for k, v in fired.items()} == pytest.approx(
        {"sooner": 2.0, "early": 5.0, "middle": 12.0, "late": 30.0})


async def test_a_disarmed_timer_never_fires(autojump_clock: object) -> None:
    watch = timers.current()
    scope = trio.CancelScope()
    timer = watch.add(scope)
    timer.arm(trio.current_time() + 1.0)
    timer.disarm()
    await trio.sleep(10)
    assert not scope.cancel_called
    # Re-armed later, it fires at the new deadline only.
    t0 = trio.current_time()
    with scope:
        timer.arm(t0 + 3.0)
        await trio.sleep_forever()
    assert trio.current_time() - t0 == pytest.approx(3.0)
    assert timer.deadline == math.inf
    watch.discard(timer)
    assert watch.timers == 0


async def test_the_watch_sleeps_while_nothing_waits(autojump_clock: object) -> None:
    watch = timers.current()
    timer = watch.add(trio.CancelScope())
    await trio.sleep(1)
    assert watch.until == math.inf
    timer.arm(trio.current_time() + 100)
    await trio.sleep(0.5)
    assert watch.until == pytest.approx(trio.current_time() + 99.5)
    timer.disarm()
    watch.discard(timer)
