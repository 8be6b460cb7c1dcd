"""One worker process, seen from the daemon: spawn, talk, kill.

Kill escalation is explicit (SIGTERM, a short wait, SIGKILL) and every kill
is followed by a shielded wait, so no worker is left a zombie even when the
caller is being cancelled.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import stat
import struct
from dataclasses import dataclass, field
from typing import Protocol

import trio

from scand.config import Config
from scand.engines.base import EngineError
from scand.pool.state import WorkerState, transition
from scand.proc import terminate
from scand.worker.wire import Decoder, Done, FrameError, Job, Ready, job_frames

# How long a worker may take to load its engine before it counts as broken.
# Generous: a large hash set takes a while to parse on a busy 2-core host.
START_TIMEOUT = 60.0
# After SIGTERM, how long a worker gets before SIGKILL (it holds no state worth saving).
TERM_GRACE = 0.5
# After closing its stdin, how long a retiring worker gets to exit on its own.
STOP_GRACE = 2.0
READ_SIZE = 1 << 16


class ProcessHandle(Protocol):
    """What the pool needs of a worker process: its pipes, its exit, its signals.

    :class:`scand.pool.spawner.WorkerHandle` (a worker the zygote forked,
    watched through a pidfd) is the real one; tests use in-process fakes."""

    @property
    def pid(self) -> int: ...

    @property
    def stdin(self) -> trio.abc.SendStream | None: ...

    @property
    def stdout(self) -> trio.abc.ReceiveStream | None: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def send_signal(self, signum: int) -> None: ...

    def close(self) -> None: ...


class WorkerFactory(Protocol):
    """Forks workers of a signature generation (the zygote's spawner, or a fake)."""

    @property
    def uid(self) -> int:
        """The uid workers run as."""

    async def fork(self, config: Config, generation: int) -> ProcessHandle: ...

    async def drop(self, generation: int) -> None:
        """Free every signature set but ``generation``'s (after a reload, or a failed one)."""


class WorkerGone(Exception):
    """The worker's pipe closed: it died or was killed."""


@dataclass(eq=False)
class WorkerProcess:
    """A live worker and the daemon's bookkeeping about it."""

    proc: ProcessHandle
    generation: int
    max_jobs: int
    started: float = field(default_factory=trio.current_time)  # trio's clock: testable
    pid: int = 0
    baseline_rss: int = 0
    rss: int = 0
    jobs: int = 0
    busy: bool = False  # running a job now (orthogonal to the lifecycle state)
    overdue: bool = False  # its scan passed its deadline (set by the pool's deadline watch)
    state: WorkerState = WorkerState.STARTING
    recycle_reason: str = ""  # why it is retiring or replaced
    decoder: Decoder = field(default_factory=Decoder)
    ready: Ready | None = None  # the worker's start-up report
    leftovers: tuple[str, ...] = ()  # what its engine made (Engine.leftovers): removed at exit

    @property
    def age(self) -> float:
        return trio.current_time() - self.started

    def to(self, new: WorkerState) -> None:
        """Move to ``new`` through the lifecycle table (pool/state.py)."""
        self.state = transition(self.state, new)

    @property
    def exiting(self) -> bool:
        return self.state in (WorkerState.EXITING, WorkerState.DEAD)

    @classmethod
    async def spawn(
        cls, spawner: WorkerFactory, config: Config, generation: int, *,
        timeout: float = START_TIMEOUT,
    ) -> WorkerProcess:
        """Fork a worker from the zygote and wait until its engine is loaded."""
        jitter = config.pool.max_jobs_jitter
        proc = await spawner.fork(config, generation)
        worker = cls(proc, generation, config.pool.max_jobs + random.randint(0, jitter))
        worker.pid = proc.pid
        try:
            with trio.fail_after(timeout):
                ready = await worker.receive()
        except (WorkerGone, trio.TooSlowError, trio.BrokenResourceError) as exc:
            await worker.kill()
            raise EngineError(f"worker {proc.pid} did not start: {exc!r}") from exc
        except BaseException:
            await worker.kill()
            raise
        if not isinstance(ready, Ready) or ready.error:
            await worker.kill()
            raise EngineError(getattr(ready, "error", "") or f"unexpected {ready!r}")
        worker.baseline_rss = worker.rss = ready.rss
        worker.ready = ready
        worker.leftovers = ready.leftovers
        worker.to(WorkerState.SERVING)
        return worker

    async def send(self, message: Job) -> None:
        """Write one job. A job pipe is non-blocking and almost always has room: one
        ``os.write`` straight away (no trip through trio's scheduler), and an awaited
        ``send_all`` only for what would block (a large STREAM)."""
        stream = self.proc.stdin
        assert stream is not None
        frame, data = job_frames(message)  # the STREAM bytes follow the frame raw
        try:
            for part in (frame, data) if data else (frame,):
                if isinstance(stream, trio.lowlevel.FdStream):
                    try:
                        sent = os.write(stream.fileno(), part)
                    except BlockingIOError:
                        sent = 0
                    except OSError as exc:  # EPIPE: it died; EBADF: its pipe was closed
                        raise WorkerGone(f"worker {self.pid}: pipe closed ({exc})") from exc
                    if sent < len(part):
                        await stream.send_all(memoryview(part)[sent:])
                else:
                    await stream.send_all(part)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise WorkerGone(f"worker {self.pid}: pipe closed") from exc

    async def receive(self) -> object:
        """The next message; partial reads survive cancellation in ``decoder``. On a
        worker's pipe: one wait for readable and one ``os.read`` (``receive_some`` adds
        a scheduler pass and a read that would block), in this frame."""
        stream = self.proc.stdout
        assert stream is not None
        decoder = self.decoder
        while True:
            if decoder.buffered:
                try:
                    message = decoder.next()
                except (FrameError, pickle.UnpicklingError, EOFError, AttributeError,
                        ImportError, IndexError, TypeError, ValueError, struct.error) as exc:
                    # A corrupt frame from a worker (a stray write to its result pipe, a
                    # crash mid-frame) costs that worker, never the daemon.
                    raise WorkerGone(f"worker {self.pid}: bad frame ({exc!r})") from exc
                if message is not None:
                    return message
            try:
                if isinstance(stream, trio.lowlevel.FdStream):
                    fd = stream.fileno()
                    if fd < 0:
                        raise trio.ClosedResourceError("pipe closed")
                    await trio.lowlevel.wait_readable(fd)
                    try:
                        data: bytes | bytearray = os.read(fd, READ_SIZE)
                    except BlockingIOError:
                        continue
                else:
                    data = await stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise WorkerGone(f"worker {self.pid}: pipe closed") from exc
            if not data:
                raise WorkerGone(f"worker {self.pid}: exited")
            decoder.feed(data)

    async def receive_done(self) -> Done:
        message = await self.receive()
        if not isinstance(message, Done):
            raise WorkerGone(f"worker {self.pid}: protocol error ({type(message).__name__})")
        return message

    def interrupt(self) -> None:
        """Wake a task waiting on this worker's pipes with ClosedResourceError (a
        WorkerGone for the scan): the pool's deadline watch ends an overdue scan so.
        A pipe is only notified (trio's ``notify_closing``), not closed: the kill that
        follows closes it. Another stream (the tests' memory streams) is closed."""
        for stream in (self.proc.stdin, self.proc.stdout):
            if isinstance(stream, trio.lowlevel.FdStream):
                if stream.fileno() >= 0:
                    trio.lowlevel.notify_closing(stream.fileno())
            elif stream is not None:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()

    async def kill(self) -> None:
        """SIGTERM, then SIGKILL, then reap. Shielded: always finishes."""
        if self.state is not WorkerState.DEAD:
            self.to(WorkerState.EXITING)
        await terminate(self.proc, TERM_GRACE)
        with trio.CancelScope(shield=True):
            await self._close_pipes()
            self.proc.close()
            self.to(WorkerState.DEAD)
            if self.leftovers:  # a worker killed mid-scan leaves its engine's files behind
                uid = self.ready.uid if self.ready is not None else -1
                await trio.to_thread.run_sync(remove_leftovers, self.leftovers, self.pid, uid)

    async def stop(self) -> None:
        """Retire gracefully: close its input so it exits after any current job."""
        if self.state is WorkerState.DEAD:
            return
        self.to(WorkerState.EXITING)
        with trio.CancelScope(shield=True):
            await self._close_pipes(stdin_only=True)
        await terminate(self.proc, STOP_GRACE, first=None)
        await self.kill()

    async def _close_pipes(self, *, stdin_only: bool = False) -> None:
        streams = [self.proc.stdin] if stdin_only else [self.proc.stdin, self.proc.stdout]
        for stream in streams:
            if stream is not None:
                await stream.aclose()


def remove_leftovers(paths: tuple[str, ...], pid: int, uid: int) -> None:
    """Remove directories a dead worker's engine reported (:meth:`Engine.leftovers`):
    only absolute ones named ``*-<pid>``, real directories owned by the worker's uid,
    so a worker that lies cannot make the daemon remove anything else."""
    for path in paths:
        if not os.path.isabs(path) or not os.path.basename(path).endswith(f"-{pid}"):
            continue
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == uid:
            shutil.rmtree(path, ignore_errors=True)
