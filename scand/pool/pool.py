"""scand's worker pool: a bounded queue in front of N warm worker processes.

Controls, combined from the best servers (DESIGN.md §2):

* hard per-request memory cap (RLIMIT_AS in the worker) -> ``-1:memory``;
* soft recycle after a job when its *current private memory* (USS: see
  :mod:`scand.worker.memory`) grew past ``recycle_rss_mb`` above its start-up
  baseline, or after ``max_jobs`` (+ jitter); never before ``min_lifetime``
  unless a hard limit (``hard_rss_mb``, the memory cap) was hit;
* a warm replacement: the new worker has loaded its engine before the old one
  leaves, and only one soft retirement runs at a time;
* a wall-clock deadline per scan: past it the worker is killed and replaced
  (one watch task for the pool: :meth:`Pool._deadline_watch`);
* a dead worker costs exactly its own request (``-1:worker-crashed``);
* a cancelled scan (client gone) gets ``cancel_grace`` to finish, then its
  worker is killed and replaced.

What it reports (STATS, metrics) is :mod:`scand.pool.report`. trio-parallel was
considered (DESIGN.md §2), but it has no prewarming, no warm replacement and no
per-worker statistics, so this is the same shape by hand.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
from collections.abc import Coroutine
from typing import Any

import structlog
import trio

from scand.config import Config
from scand.engines.base import EngineError
from scand.events import Reason, Unchecked
from scand.pool import report
from scand.pool.process import WorkerFactory, WorkerGone, WorkerProcess
from scand.pool.state import WorkerState
from scand.proc import retry
from scand.worker.wire import Done, Job, Outcome, Ready

log = structlog.get_logger("scand.pool")

# After a failed replacement spawn, wait this long before the next try.
RESPAWN_BACKOFF = 1.0


class Pool:
    """Run :meth:`run` in a nursery (``await nursery.start(pool.run)``), then :meth:`scan`."""

    def __init__(self, config: Config, spawner: WorkerFactory) -> None:
        self.config = config
        self.spawner = spawner
        self.generation = 0
        self.workers: list[WorkerProcess] = []
        self._idle: collections.deque[WorkerProcess] = collections.deque()
        self._lot = trio.lowlevel.ParkingLot()
        self.waiting = 0  # requests queued for a worker right now
        self._ids = itertools.count(1)
        self._nursery: trio.Nursery | None = None
        self.recycles: collections.Counter[str] = collections.Counter()
        self.info: Ready | None = None
        self.last_spawn_ms = 0.0
        self.jobs_done = 0  # over the pool's life, retired workers included
        self._drop_pending = False  # a reload happened: free old sets when their workers leave
        self._usage = report.WorkerUsage()
        self.spawned = 0
        # Scans in progress and their deadlines (the deadline watch's view), when the
        # watch wakes next, and the event that wakes it sooner.
        self._running: dict[WorkerProcess, float] = {}
        self._watch_until = -math.inf  # not planned yet: its first pass sees every scan
        self._watch_wake = trio.Event()

    # -- lifecycle -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start and warm every worker, report ready, then supervise until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._deadline_watch)
                async with trio.open_nursery() as starters:
                    for _ in range(self.config.worker_count):
                        starters.start_soon(self._add_new_worker)
                task_status.started()
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                async with trio.open_nursery() as stoppers:
                    for worker in list(self.workers):
                        stoppers.start_soon(worker.kill)

    async def _add_new_worker(self) -> WorkerProcess:
        """A worker of the current generation, warm, in the idle set."""
        t0 = trio.current_time()
        worker = await WorkerProcess.spawn(self.spawner, self.config, self.generation)
        self.last_spawn_ms = (trio.current_time() - t0) * 1000
        self._adopt(worker)
        return worker

    def _adopt(self, worker: WorkerProcess) -> None:
        """Put a warm worker into service."""
        self.spawned += 1
        self.info = worker.ready
        self.workers.append(worker)
        self._make_idle(worker)
        assert self._nursery is not None
        self._nursery.start_soon(self._watch, worker)

    async def _watch(self, worker: WorkerProcess) -> None:
        """Notice a worker that dies while idle, and replace it before a job finds it."""
        await worker.proc.wait()
        if worker.exiting or worker.busy:
            return  # stopped on purpose, or the scan in progress reports the crash
        log.warning("worker_died_idle", pid=worker.pid, returncode=worker.proc.returncode)
        await self._discard(worker, "crash")

    # -- the request path -------------------------------------------------------

    def scan(self, *, path: str | None = None, data: bytes | None = None
             ) -> Coroutine[Any, Any, Outcome]:
        """Scan a path or a stream on some worker (await it). Overload and failures
        become Unchecked. A free worker's scan is the coroutine of the run itself: no
        coroutine frame around it for every await to pass through."""
        if self._idle:  # the common case: no queue, no deadline to arm
            return self._run_on(None, path, data)
        return self._queued(path, data)

    async def _queued(self, path: str | None, data: bytes | None) -> Outcome:
        """No worker free: wait in the queue (bounded in size and time), then run."""
        pool = self.config.pool
        if self.waiting >= pool.queue_size:
            return Outcome(Unchecked(Reason.BUSY, f"queue full ({pool.queue_size})"))
        self.waiting += 1
        try:
            with trio.move_on_after(pool.queue_wait):
                while not self._idle:
                    await self._lot.park()
            if not self._idle:
                return Outcome(Unchecked(Reason.BUSY, f"no worker within {pool.queue_wait:g}s"))
            worker = self._take_idle()
        finally:
            self.waiting -= 1
        return await self._run_on(worker, path, data)

    def _take_idle(self) -> WorkerProcess:
        """A free worker, preferring ones not waiting for their replacement."""
        for worker in self._idle:
            if worker.state is WorkerState.SERVING:
                self._idle.remove(worker)
                return worker
        return self._idle.popleft()

    async def _run_on(self, worker: WorkerProcess | None, path: str | None,
                      data: bytes | None) -> Outcome:
        """The scan on ``worker`` (None: a free one, taken as the scan starts)."""
        if worker is None:
            if not self._idle:  # taken since scan() saw one
                return await self._queued(path, data)
            worker = self._take_idle()
        job = Job(next(self._ids), path, data)
        worker.busy = True
        deadline = trio.current_time() + self.config.pool.scan_timeout
        self._running[worker] = deadline
        if deadline < self._watch_until:
            self._watch_wake.set()  # sooner than the watch planned (a reload shortened it)
        sent = False
        try:
            await worker.send(job)
            sent = True
            done = await worker.receive_done()
        except WorkerGone:
            self._running.pop(worker, None)
            if worker.overdue:  # the deadline watch woke it
                self._background(self._discard, worker, "timeout")
                limit = self.config.pool.scan_timeout
                timeout = Unchecked(Reason.TIMEOUT, f"scan over {limit:g}s")
                return Outcome(timeout, worker=worker.pid)
            self._background(self._discard, worker, "crash")
            return Outcome(Unchecked(Reason.WORKER_CRASHED), worker=worker.pid)
        except trio.Cancelled:
            # The client is gone. Let the worker finish within the grace, or kill it.
            self._running.pop(worker, None)
            self._background(self._salvage, worker, sent)
            raise
        # (Overdue in the very pass its answer came: the answer stands, as it did when
        # a cancel scope's deadline passed without a checkpoint after the read.)
        self._running.pop(worker, None)
        worker.overdue = False
        self._after_job(worker, done)
        outcome = done.outcome
        # The worker names itself (its pid is the same here); a copy only if not.
        return outcome if outcome.worker == worker.pid else dataclasses.replace(
            outcome, worker=worker.pid)

    async def _deadline_watch(self) -> None:
        """End scans past ``scan_timeout``: one task for the pool instead of a cancel
        scope per scan (entering and leaving one cost the daemon some 10 µs a scan;
        issue 27). A scan's deadline is its start plus the same timeout, so deadlines
        come in start order and the watch sleeps until the earliest one; a scan started
        later never needs it sooner, unless a reload shortened the timeout (then the
        scan wakes it). An overdue worker is woken out of its pipe wait
        (:meth:`WorkerProcess.interrupt`) and answers ``-1:timeout``, as before."""
        while True:
            now = trio.current_time()
            due = math.inf
            for worker, deadline in list(self._running.items()):
                if deadline <= now:
                    del self._running[worker]
                    worker.overdue = True
                    worker.interrupt()
                else:
                    due = min(due, deadline)
            self._watch_until = due
            self._watch_wake = trio.Event()
            with trio.move_on_at(due):
                await self._watch_wake.wait()

    async def _salvage(self, worker: WorkerProcess, sent: bool) -> None:
        if sent:
            with trio.move_on_after(self.config.pool.cancel_grace):
                try:
                    done = await worker.receive_done()
                except WorkerGone:
                    pass
                else:
                    self._after_job(worker, done)
                    return
        await self._discard(worker, "cancel")

    def _after_job(self, worker: WorkerProcess, done: Done) -> None:
        """Book-keeping after a job; pick the worker for retirement if it has earned it."""
        pool = self.config.pool
        worker.jobs += 1
        self.jobs_done += 1
        outcome = done.outcome
        worker.rss = outcome.rss
        grown = (outcome.rss - worker.baseline_rss) / (1024 * 1024)
        hard = ""
        if isinstance(outcome.verdict, Unchecked) and outcome.verdict.reason == Reason.MEMORY:
            hard = "memory"
        elif grown > pool.hard_rss_mb:
            hard = "rss"
        soft = ""
        if grown > pool.recycle_rss_mb:
            soft = "rss"
        elif worker.jobs >= worker.max_jobs:
            soft = "jobs"
        if soft and worker.age < pool.min_lifetime:  # (its age read only when it counts)
            soft = ""
        if hard:
            # Past a hard limit the worker leaves service now, even before its
            # replacement is warm: it must not grow any further.
            worker.busy = False
            self._background(self._discard, worker, hard, True)
            return
        # Staggered: one soft retirement at a time.
        if soft and worker.state is WorkerState.SERVING and not self._retiring():
            worker.recycle_reason = soft
            worker.to(WorkerState.RETIRING)
            self._background(self._replace, worker)
        self._release(worker)

    def _release(self, worker: WorkerProcess) -> None:
        worker.busy = False
        if worker.state is WorkerState.REPLACED:
            self._background(self._remove, worker)
        else:
            self._make_idle(worker)

    def _make_idle(self, worker: WorkerProcess) -> None:
        self._idle.append(worker)
        if self._lot:  # someone waits in the queue
            self._lot.unpark()

    # -- replacement ---------------------------------------------------------------

    async def _replace(self, old: WorkerProcess) -> None:
        """Warm a successor first, then retire ``old`` (now if idle, else when it frees)."""
        await self._respawn(old)
        if old.exiting:
            return  # it broke a hard limit meanwhile and was counted then
        self.recycles[old.recycle_reason] += 1
        log.info("worker_recycled", pid=old.pid, reason=old.recycle_reason, jobs=old.jobs,
                 rss_mb=round(old.rss / 2**20, 1), age_s=round(old.age, 1))
        old.to(WorkerState.REPLACED)
        if not old.busy:
            await self._remove(old)

    async def _remove(self, worker: WorkerProcess) -> None:
        self._forget(worker)
        await worker.stop()
        await self._drop_old_sets()

    async def _drop_old_sets(self) -> None:
        """After a reload, once no worker of an older set is left, free those sets."""
        if self._drop_pending and all(w.generation == self.generation for w in self.workers):
            self._drop_pending = False
            try:
                await self.spawner.drop(self.generation)
            except EngineError as exc:
                log.warning("zygote_drop_failed", error=str(exc))

    async def _discard(self, worker: WorkerProcess, reason: str, graceful: bool = False) -> None:
        """Take a worker out of service now (killed, or stopped if ``graceful``) and
        start a fresh one, unless a warm replacement is already on its way."""
        # RETIRING: its warm successor is being started; REPLACED: whoever replaced
        # it provides the successor (the warm one is running, or a reload forks it).
        replacement_pending = worker.state in (WorkerState.RETIRING, WorkerState.REPLACED)
        self._forget(worker)
        self.recycles[reason] += 1
        log.warning("worker_discarded", pid=worker.pid, reason=reason, jobs=worker.jobs,
                    rss_mb=round(worker.rss / 2**20, 1))
        await (worker.stop() if graceful else worker.kill())
        await self._drop_old_sets()
        if not replacement_pending:
            await self._respawn(worker)

    async def _respawn(self, old: WorkerProcess) -> None:
        """A successor for ``old``, retried with backoff while forks fail."""
        await retry(self._add_new_worker, (RESPAWN_BACKOFF,), (EngineError,),
                    lambda exc, n: log.error("worker_spawn_failed", error=str(exc),
                                             replacing=old.pid, attempt=n))

    def _retiring(self) -> bool:
        """One soft retirement at a time: is one under way?"""
        return any(w.state is WorkerState.RETIRING for w in self.workers)

    def _forget(self, worker: WorkerProcess) -> None:
        if not worker.exiting:
            worker.to(WorkerState.EXITING)
        if worker in self.workers:
            self.workers.remove(worker)
        if worker in self._idle:
            self._idle.remove(worker)

    def _background(self, fn: Any, *args: Any) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)

    # -- reload ------------------------------------------------------------------------

    async def reload(self, config: Config) -> None:
        """Roll every worker over to ``config``; raise EngineError and keep the old set
        if a worker cannot load it. In-flight scans finish on their old worker."""
        generation = self.generation + 1
        # Proof that the new set loads (the zygote keeps it loaded for the roll below).
        try:
            first = await WorkerProcess.spawn(self.spawner, config, generation)
        except EngineError:
            await self.spawner.drop(self.generation)  # forget the failed set: retry later
            raise
        self.config, self.generation = config, generation
        # Every spawn from now on is of the new set. The zygote frees the old one
        # once its last worker has left: freeing it earlier would write to pages
        # the old workers still share, and copy them (measured: +30 MB of 50).
        self._drop_pending = True
        olds = sorted((w for w in self.workers
                       if w.generation < generation and w.state is WorkerState.SERVING),
                      key=lambda w: w.busy)  # idle ones first: they go at once
        if not olds:
            await first.kill()
            await self._drop_old_sets()
            return
        # The worker that proved the set serves at once, in place of the first old
        # one. The others are swapped one at a time, the old worker out before its
        # successor is forked: a fork from the loaded set takes milliseconds (the
        # queue holds requests meanwhile), and the pool never holds more than
        # ``workers`` + 1 processes, so a reload costs the new set and little more.
        self._adopt(first)
        for n, old in enumerate(olds):
            await self._swap_out(old)
            if n:
                await self._respawn(old)

    async def _swap_out(self, old: WorkerProcess) -> None:
        """Take ``old`` out of service for a reload: now if idle, else after its job."""
        old.recycle_reason = "reload"
        old.to(WorkerState.RETIRING)
        old.to(WorkerState.REPLACED)
        self.recycles["reload"] += 1
        log.info("worker_recycled", pid=old.pid, reason="reload", jobs=old.jobs,
                 rss_mb=round(old.rss / 2**20, 1), age_s=round(old.age, 1))
        if not old.busy:
            await self._remove(old)
        else:  # _release removes it when its job ends (or the deadline kills it)
            await old.proc.wait()

    # -- introspection -------------------------------------------------------------------

    @property
    def idle_count(self) -> int:
        """Workers waiting for a job right now."""
        return len(self._idle)

    def stats(self) -> dict[str, Any]:
        """The pool for STATS and the metrics (:func:`scand.pool.report.pool_stats`)."""
        return report.pool_stats(self, self._usage)
