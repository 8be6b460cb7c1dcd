"""In-process tests of the real pool (queueing, deadlines, crashes, cancellation,
recycling, warm replacement, reload) with fake workers and the autojump clock."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio

from scand import config as configmod
from scand.config import Config
from scand.engines.base import EngineError
from scand.events import CLEAN, Infected, Reason, Unchecked
from scand.pool.pool import Pool
from tests.inproc.fakes import FakeSpawner

PoolFactory = Callable[..., Any]


def pool_config(**pool: Any) -> Config:
    settings: dict[str, Any] = {"workers": 2, "min_lifetime": 0.0, "max_jobs_jitter": 0}
    settings.update(pool)
    return configmod.override(Config(), "pool", **settings)


@pytest.fixture
async def make_pool(nursery: trio.Nursery
                    ) -> AsyncIterator[Callable[..., Any]]:
    async def make(**pool: Any) -> tuple[Pool, FakeSpawner]:
        spawner = FakeSpawner(nursery)
        p = Pool(pool_config(**pool), spawner)
        await nursery.start(p.run)
        return p, spawner

    yield make


async def test_scans_run_on_warm_workers(make_pool: PoolFactory, autojump_clock: object) -> None:
    pool, spawner = await make_pool()
    assert len(spawner.live()) == 2 and pool.stats()["idle"] == 2
    result = await pool.scan(data=b"hello")
    assert result.verdict == CLEAN and result.worker in {p.pid for p in spawner.forked}
    assert (await pool.scan(data=b"virus")).verdict == Infected("Fake.Virus")


async def test_a_full_queue_is_busy_at_once(make_pool: PoolFactory, autojump_clock: object) -> None:
    pool, _ = await make_pool(workers=1, queue_size=1)
    async with trio.open_nursery() as inner:
        inner.start_soon(lambda: pool.scan(data=b"sleep 100"))
        await trio.sleep(1)
        inner.start_soon(lambda: pool.scan(data=b"x"))  # waits in the queue
        await trio.sleep(1)
        t0 = trio.current_time()
        result = await pool.scan(data=b"x")
        assert isinstance(result.verdict, Unchecked) and result.verdict.reason == Reason.BUSY
        assert trio.current_time() == t0  # refused at once, not after a wait
        inner.cancel_scope.cancel()


async def test_queue_wait_expires_as_busy(make_pool: PoolFactory, autojump_clock: object) -> None:
    pool, _ = await make_pool(workers=1, queue_wait=2.0, cancel_grace=0.1)
    async with trio.open_nursery() as inner:
        inner.start_soon(lambda: pool.scan(data=b"sleep 100"))
        await trio.sleep(1)
        t0 = trio.current_time()
        result = await pool.scan(data=b"x")
        assert result.verdict == Unchecked(Reason.BUSY, "no worker within 2s")
        assert trio.current_time() - t0 == pytest.approx(2.0)
        inner.cancel_scope.cancel()


async def test_scan_timeout_kills_and_replaces_the_worker(make_pool: PoolFactory,
                                                          autojump_clock: object) -> None:
    pool, spawner = await make_pool(workers=1, scan_timeout=5.0)
    first = spawner.forked[0]
    t0 = trio.current_time()
    result = await pool.scan(data=b"sleep 100")
    assert result.verdict == Unchecked(Reason.TIMEOUT, "scan over 5s")
    assert trio.current_time() - t0 == pytest.approx(5.0)
    await trio.sleep(1)
    assert signal.SIGTERM in first.signals and first.returncode is not None
    assert len(spawner.live()) == 1 and spawner.live()[0] is not first
    assert (await pool.scan(data=b"x")).verdict == CLEAN
    assert pool.recycles["timeout"] == 1


async def test_a_crash_costs_exactly_its_request(make_pool: PoolFactory,
                                                 autojump_clock: object) -> None:
    pool, spawner = await make_pool(workers=1)
    result = await pool.scan(data=b"crash")
    assert result.verdict == Unchecked(Reason.WORKER_CRASHED)
    assert (await pool.scan(data=b"x")).verdict == CLEAN
    assert pool.recycles["crash"] == 1 and len(spawner.forked) == 2


async def test_a_corrupt_frame_costs_that_worker_only(make_pool: PoolFactory,
                                                      autojump_clock: object) -> None:
    pool, spawner = await make_pool(workers=1)
    result = await pool.scan(data=b"garbage")
    assert result.verdict == Unchecked(Reason.WORKER_CRASHED)
    await trio.sleep(2)
    assert spawner.forked[0].returncode is not None and len(spawner.live()) == 1
    assert (await pool.scan(data=b"x")).verdict == CLEAN


async def test_a_cancelled_scan_may_finish_within_the_grace(make_pool: PoolFactory,
                                                            autojump_clock: object) -> None:
    pool, spawner = await make_pool(workers=1, cancel_grace=1.0)
    with trio.move_on_after(0.2):
        await pool.scan(data=b"sleep 0.5")
    await trio.sleep(2)
    assert len(spawner.forked) == 1 and spawner.forked[0].returncode is None
    assert pool.recycles["cancel"] == 0 and pool.stats()["idle"] == 1


async def test_a_cancelled_scan_past_the_grace_costs_its_worker(make_pool: PoolFactory,
                                                                autojump_clock: object
                                                                ) -> None:
    pool, spawner = await make_pool(workers=1, cancel_grace=1.0)
    with trio.move_on_after(0.2):
        await pool.scan(data=b"sleep 50")
    await trio.sleep(3)
    assert spawner.forked[0].returncode is not None
    assert pool.recycles["cancel"] == 1 and len(spawner.live()) == 1


async def test_soft_rss_recycle_warms_the_successor_first(make_pool: PoolFactory,
                                                          autojump_clock: object) -> None:
    pool, spawner = await make_pool(workers=1, recycle_rss_mb=10, hard_rss_mb=500)
    old = spawner.forked[0]
    assert (await pool.scan(data=b"grow 20")).verdict == CLEAN
    await trio.sleep(5)
    new = spawner.forked[1]
    assert old.returncode is not None and new.returncode is None
    assert pool.recycles["rss"] == 1
    # Graceful: the old worker was asked to finish (stdin closed), not signalled first.
    assert old.signals in ([], [signal.SIGTERM])


async def test_capacity_never_dips_during_a_soft_recycle(make_pool: PoolFactory,
                                                         autojump_clock: object) -> None:
    pool, spawner = await make_pool(workers=1, recycle_rss_mb=10)
    await pool.scan(data=b"grow 20")
    # The old worker keeps serving while its successor forks (2 ms here): no scan
    # ever waits for a worker, before, during or after the switch.
    for _ in range(20):
        t0 = trio.current_time()
        assert (await pool.scan(data=b"x")).verdict == CLEAN
        assert trio.current_time() == t0
        await trio.sleep(0.001)
    assert pool.recycles["rss"] == 1 and len(spawner.forked) == 2


async def test_hard_rss_takes_the_worker_out_at_once(make_pool: PoolFactory,
                                                     autojump_clock: object) -> None:
    pool, spawner = await make_pool(workers=1, recycle_rss_mb=10, hard_rss_mb=50,
                                    min_lifetime=100.0)
    old = spawner.forked[0]
    assert (await pool.scan(data=b"grow 60")).verdict == CLEAN
    await trio.sleep(3)
    assert old.returncode is not None and pool.recycles["rss"] == 1
    assert len(spawner.live()) == 1


async def test_the_memory_cap_replaces_the_worker(make_pool: PoolFactory,
                                                  autojump_clock: object) -> None:
    pool, spawner = await make_pool(workers=1, min_lifetime=100.0)
    result = await pool.scan(data=b"memory")
    assert isinstance(result.verdict, Unchecked) and result.verdict.reason == Reason.MEMORY
    await trio.sleep(3)
    assert pool.recycles["memory"] == 1 and spawner.forked[0].returncode is not None
    assert (await pool.scan(data=b"x")).verdict == CLEAN


async def test_min_lifetime_defers_a_soft_recycle(make_pool: PoolFactory,
                                                  autojump_clock: object) -> None:
    pool, spawner = await make_pool(workers=1, recycle_rss_mb=10, min_lifetime=10.0)
    await pool.scan(data=b"grow 20")
    await trio.sleep(1)
    assert pool.recycles["rss"] == 0 and len(spawner.forked) == 1
    await trio.sleep(10)
    await pool.scan(data=b"x")  # the next job finds it old enough
    await trio.sleep(3)
    assert pool.recycles["rss"] == 1


async def test_max_jobs_recycles(make_pool: PoolFactory, autojump_clock: object) -> None:
    pool, spawner = await make_pool(workers=1, max_jobs=3)
    for _ in range(3):
        await pool.scan(data=b"x")
    await trio.sleep(3)
    assert pool.recycles["jobs"] == 1 and len(spawner.forked) == 2
    assert len(spawner.forked[0].jobs) == 3


async def test_an_idle_worker_that_dies_is_replaced(make_pool: PoolFactory,
                                                    autojump_clock: object) -> None:
    pool, spawner = await make_pool(workers=2)
    spawner.forked[0].send_signal(signal.SIGKILL)
    await trio.sleep(3)
    assert pool.recycles["crash"] == 1 and len(spawner.live()) == 2
    assert pool.stats()["live"] == 2


async def test_a_failed_respawn_backs_off_and_retries(make_pool: PoolFactory,
                                                      autojump_clock: object) -> None:
    pool, spawner = await make_pool(workers=1)
    spawner.fail = 2
    t0 = trio.current_time()
    await pool.scan(data=b"crash")
    while len(spawner.live()) < 1:
        await trio.sleep(0.1)
    # Two failed forks, each followed by the backoff (1 s), then a good one.
    assert trio.current_time() - t0 >= 2.0
    assert (await pool.scan(data=b"x")).verdict == CLEAN


async def test_reload_rolls_every_worker_to_the_new_generation(make_pool: PoolFactory,
                                                               autojump_clock: object
                                                               ) -> None:
    pool, spawner = await make_pool(workers=2)
    async with trio.open_nursery() as inner:
        inflight: list[Any] = []

        async def long_scan() -> None:
            inflight.append(await pool.scan(data=b"sleep 3"))

        inner.start_soon(long_scan)
        await trio.sleep(0.5)
        await pool.reload(pool.config)
    assert inflight[0].verdict == CLEAN  # finished on its old worker
    await trio.sleep(5)
    assert {p.generation for p in spawner.live()} == {1}
    assert pool.generation == 1 and pool.recycles["reload"] == 2


async def test_reload_under_load_never_runs_more_than_one_extra_worker(
        make_pool: PoolFactory, autojump_clock: object) -> None:
    """The old worker leaves before its successor is forked (the worker that proved the
    new set replaces the first): at most workers + 1 processes, and every scan answered."""
    pool, spawner = await make_pool(workers=3)
    most = 0
    fork = spawner.fork

    async def counting_fork(config: Any, generation: int) -> Any:
        nonlocal most
        proc = await fork(config, generation)
        most = max(most, len(spawner.live()))
        return proc

    spawner.fork = counting_fork  # type: ignore[method-assign]
    answers: list[Any] = []

    async def client(n: int) -> None:
        for i in range(20):
            answers.append((await pool.scan(data=b"sleep 0.01" if (n + i) % 2 else b"x")).verdict)

    async with trio.open_nursery() as load:
        for n in range(6):
            load.start_soon(client, n)
        await trio.sleep(0.02)
        await pool.reload(pool.config)
    assert answers == [CLEAN] * 120
    await trio.sleep(1)
    assert most <= 4 and len(spawner.live()) == 3
    assert {p.generation for p in spawner.live()} == {1} and pool.recycles["reload"] == 3
    assert spawner.dropped == [1]  # keep only the new set: the old one is freed


async def test_a_broken_set_keeps_the_old_workers(make_pool: PoolFactory,
                                                  autojump_clock: object) -> None:
    pool, spawner = await make_pool(workers=2)
    spawner.bad_generations.add(1)
    with pytest.raises(EngineError):
        await pool.reload(pool.config)
    assert pool.generation == 0 and {p.generation for p in spawner.live()} == {0}
    assert (await pool.scan(data=b"x")).verdict == CLEAN


async def test_stats_describe_the_workers(make_pool: PoolFactory, autojump_clock: object) -> None:
    pool, spawner = await make_pool(workers=2)
    await pool.scan(data=b"grow 1")
    stats = pool.stats()
    assert stats["live"] == 2 and stats["jobs_total"] == 1 and stats["spawned_total"] == 2
    assert {w["pid"] for w in stats["workers"]} == {p.pid for p in spawner.forked}
    assert set(stats["recycles"]) >= {"rss", "jobs", "memory", "timeout", "crash", "cancel"}


def test_the_lifecycle_rejects_an_illegal_transition() -> None:
    from scand.pool.state import IllegalTransition, WorkerState, transition

    assert transition(WorkerState.STARTING, WorkerState.SERVING) is WorkerState.SERVING
    with pytest.raises(IllegalTransition):
        transition(WorkerState.DEAD, WorkerState.SERVING)
    with pytest.raises(IllegalTransition):
        transition(WorkerState.REPLACED, WorkerState.RETIRING)


async def test_workers_walk_the_lifecycle(make_pool: PoolFactory, autojump_clock: object) -> None:
    pool, _ = await make_pool(workers=1, recycle_rss_mb=10)
    old = pool.workers[0]
    assert old.state.value == "serving"
    await pool.scan(data=b"grow 20")
    assert old.state.value == "retiring"  # its successor is starting
    await trio.sleep(5)
    assert old.state.value == "dead" and pool.workers[0].state.value == "serving"
    assert [w["lifecycle"] for w in pool.stats()["workers"]] == ["serving"]


async def test_a_shorter_timeout_after_a_reload_is_kept(make_pool: PoolFactory,
                                                       autojump_clock: object) -> None:
    # One deadline watch for the pool sleeps until the earliest deadline; a scan
    # whose deadline comes sooner than the watch planned (a reload shortened the
    # timeout) must wake it, not wait for the old plan.
    pool, _ = await make_pool(workers=2, scan_timeout=50.0)
    async with trio.open_nursery() as inner:
        inner.start_soon(lambda: pool.scan(data=b"sleep 40"))  # the watch plans t0 + 50
        await trio.sleep(1)
        await pool.reload(configmod.override(pool.config, "pool", scan_timeout=5.0))
        t0 = trio.current_time()
        result = await pool.scan(data=b"sleep 100")
        assert result.verdict == Unchecked(Reason.TIMEOUT, "scan over 5s")
        assert trio.current_time() - t0 == pytest.approx(5.0)


async def test_overlapping_scans_each_time_out_at_their_own_deadline(
        make_pool: PoolFactory, autojump_clock: object) -> None:
    pool, _ = await make_pool(workers=3, scan_timeout=10.0)
    ends: dict[str, float] = {}
    t0 = trio.current_time()

    async def scan(name: str, data: bytes) -> None:
        result = await pool.scan(data=data)
        ends[name] = trio.current_time() - t0
        assert result.verdict == (CLEAN if name == "quick" else
                                  Unchecked(Reason.TIMEOUT, "scan over 10s"))

    async with trio.open_nursery() as inner:
        inner.start_soon(scan, "first", b"sleep 100")
        await trio.sleep(3)
        inner.start_soon(scan, "second", b"sleep 100")
        await trio.sleep(1)
        inner.start_soon(scan, "quick", b"sleep 2")
    assert ends == pytest.approx({"first": 10.0, "second": 13.0, "quick": 6.0})
    await trio.sleep(1)  # (the discards run in the background)
    assert pool.recycles["timeout"] == 2
