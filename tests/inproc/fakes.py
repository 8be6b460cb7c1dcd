"""In-process fakes for the pool: a worker "process" that is a trio task.

A :class:`FakeSpawner` stands where the zygote's spawner stands. Each fork
starts a fake worker task on memory streams that speaks the real wire
protocol (Ready, then a Done per Job), so the real :class:`WorkerProcess`
and :class:`Pool` code runs unchanged. A job's bytes say what the fake does:

* ``sleep <s>``: take that long (fake clock), then clean;
* ``crash``: die mid-job;
* ``grow <MiB>``: report that much more RSS, then clean;
* ``memory``: answer ``-1:memory`` (the cap was hit);
* ``virus``: answer ``1:Fake.Virus``;
* ``garbage``: write bytes that are no frame (a corrupt result pipe);
* anything else (and paths): clean.
"""

from __future__ import annotations

import itertools
import signal
from dataclasses import dataclass, field

import trio
import trio.testing

from scand.config import Config
from scand.engines.base import EngineError
from scand.events import CLEAN, Infected, Reason, Unchecked, Verdict
from scand.worker.wire import Decoder, Done, Job, Outcome, Ready, pack

MiB = 1024 * 1024
BASELINE = 20 * MiB
# Above any real pid (pid_max is at most 4,194,304): psutil never finds them.
_PIDS = itertools.count(5_000_000)


class FakeProcess:
    """A ProcessHandle whose process is a task in the test's nursery."""

    def __init__(self, generation: int) -> None:
        self.pid = next(_PIDS)
        self.generation = generation
        to_worker_send, to_worker_recv = trio.testing.memory_stream_one_way_pair()
        from_worker_send, from_worker_recv = trio.testing.memory_stream_one_way_pair()
        self.stdin: trio.abc.SendStream | None = to_worker_send
        self.stdout: trio.abc.ReceiveStream | None = from_worker_recv
        self._job_in = to_worker_recv
        self._done_out = from_worker_send
        self._exited = trio.Event()
        self._scope = trio.CancelScope()
        self.signals: list[int] = []
        self.jobs: list[Job] = []
        self.rss = BASELINE

    @property
    def returncode(self) -> int | None:
        return -1 if self._exited.is_set() else None

    async def wait(self) -> int:
        await self._exited.wait()
        return -1

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)
        if signum in (signal.SIGTERM, signal.SIGKILL):
            self._scope.cancel()

    def close(self) -> None:
        pass

    async def run(self, ready_error: str = "") -> None:
        """The worker's life: Ready, then jobs until EOF, a crash or a signal."""
        try:
            with self._scope:
                await self._send(Ready(self.pid, self.rss, engine="fake",
                                       signatures=f"gen={self.generation}", error=ready_error))
                if ready_error:
                    return
                decoder = Decoder()
                while True:
                    message = decoder.next()
                    if message is None:
                        data = await self._job_in.receive_some(65536)
                        if not data:
                            return  # stdin closed: exit after the current job
                        decoder.feed(data)
                        continue
                    assert isinstance(message, Job)
                    self.jobs.append(message)
                    verdict = await self._do(message)
                    if verdict is None:
                        return  # crashed
                    await self._send(Done(message.id, Outcome(
                        verdict, len(message.data or b""), 1, self.pid, self.rss)))
        finally:
            self._exited.set()
            with trio.CancelScope(shield=True):
                await self._done_out.aclose()
                await self._job_in.aclose()

    async def _do(self, job: Job) -> Verdict | None:
        word, _, arg = (job.data or b"").partition(b" ")
        if word == b"sleep":
            await trio.sleep(float(arg))
        elif word == b"crash":
            return None
        elif word == b"grow":
            self.rss += int(arg) * MiB
        elif word == b"memory":
            return Unchecked(Reason.MEMORY, "cap")
        elif word == b"virus":
            return Infected("Fake.Virus")
        elif word == b"garbage":
            await self._done_out.send_all(b"\x00\x00\x00\x05not a pickle")
            await trio.sleep_forever()
        return CLEAN

    async def _send(self, message: object) -> None:
        await self._done_out.send_all(pack(message))


@dataclass
class FakeSpawner:
    """Forks fake workers into ``nursery``; ``fail`` makes the next forks fail."""

    nursery: trio.Nursery
    uid: int = 65534
    fail: int = 0
    bad_generations: set[int] = field(default_factory=set)
    forked: list[FakeProcess] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)

    async def fork(self, config: Config, generation: int) -> FakeProcess:
        await trio.sleep(0.002)  # a fork takes a little (fake) time
        if self.fail > 0:
            self.fail -= 1
            raise EngineError("fake zygote: fork failed")
        proc = FakeProcess(generation)
        self.forked.append(proc)
        error = "broken signatures" if generation in self.bad_generations else ""
        self.nursery.start_soon(proc.run, error)
        return proc

    async def drop(self, generation: int) -> None:
        self.dropped.append(generation)

    def live(self) -> list[FakeProcess]:
        return [p for p in self.forked if p.returncode is None]
