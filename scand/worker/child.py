"""The worker process: load an engine once, then scan jobs one at a time.

Forked by the zygote (:mod:`scand.worker.zygote`), which hands it its job and
result pipes; ``python -m scand.worker.child`` runs one stand-alone on
stdin/stdout (for debugging and tests). It speaks length-prefixed frames
(:mod:`scand.worker.wire`); everything else a library prints goes to stderr, so
a stray ``print`` cannot corrupt a reply.

This module must never import trio or anything daemon-side: a worker is a
plain, synchronous process that the daemon can kill at any moment. Each
worker reports what it holds of :data:`scand.worker.DAEMON_SIDE` in its
``Ready`` message, and a test asserts it holds none.

The hard memory cap is enforced here with RLIMIT_AS, set afresh before each
job to "current address space + cap", so it bounds what one request may
allocate. An allocation past it raises MemoryError, answered ``-1:memory``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import io
import json
import os
import resource
import signal
import sys
import time
import traceback

from scand.config import Config
from scand.engines.base import Engine, EngineError, load_engine
from scand.events import Reason, Unchecked
from scand.worker import DAEMON_SIDE
from scand.worker.memory import PrivateMeter, statm
from scand.worker.scanner import Scanner
from scand.worker.wire import HEADER, Done, FrameError, Job, Outcome, Ready, decode, pack

_PAGE = os.sysconf("SC_PAGE_SIZE")
_PR_SET_PDEATHSIG = 1


def memory() -> tuple[int, int]:
    """(address space, resident set) of this process, in bytes."""
    size, resident = statm()
    return int(size) * _PAGE, int(resident) * _PAGE


def _read_exact(fd: int, n: int) -> bytes | None:
    """``n`` bytes from ``fd``, or None at EOF.

    A buffered reader with a one-byte buffer reads a request of ``n`` bytes
    straight into the bytes object it returns (short pipe reads included), so a
    job's data is read into its final buffer: no bytearray copied into bytes, and
    nothing read ahead of the frame (the next read may be another reader's)."""
    data = io.BufferedReader(io.FileIO(fd, "rb", closefd=False), buffer_size=1).read(n)
    return data if len(data) == n else None


def _read_small(fd: int, n: int) -> bytes | None:
    """``n`` bytes from ``fd`` (a header or a frame: small), or None at EOF. One
    ``os.read`` almost always: a frame is written whole, far below the pipe's buffer."""
    data = os.read(fd, n)
    if len(data) == n or not data:
        return data or None
    rest = _read_exact(fd, n - len(data))
    return None if rest is None else data + rest


def read_message(fd: int) -> object | None:
    """The next framed message from ``fd``, or None at end of input. A job's data
    follows its frame raw (:func:`scand.worker.wire.job_frames`): it is read into
    one bytes object, which the scanner gets as it is (no copy)."""
    head = _read_small(fd, HEADER.size)
    if head is None:
        return None
    (n,) = HEADER.unpack(head)
    body = _read_small(fd, n) if n else b""
    if body is None:
        raise FrameError("truncated frame")
    message = decode(body)
    if type(message) is Job and message.size:
        data = _read_exact(fd, message.size)
        if data is None:
            raise FrameError("truncated job data")
        message = Job(message.id, message.path, data)
    return message


def write_message(fd: int, message: object) -> None:
    data = memoryview(pack(message))
    while data:
        data = data[os.write(fd, data) :]


def log(event: str, **fields: object) -> None:
    """One JSON line on stderr (the daemon's log stream)."""
    line = {"event": event, "pid": os.getpid(), "ts": round(time.time(), 3), **fields}
    print(json.dumps(line, default=str), file=sys.stderr, flush=True)


class CappedJob:
    """Context manager: RLIMIT_AS = current address space + cap, restored after."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.saved = resource.getrlimit(resource.RLIMIT_AS)

    def __enter__(self) -> None:
        vms, _ = memory()
        hard = self.saved[1]
        soft = vms + self.cap
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))

    def __exit__(self, *exc: object) -> None:
        resource.setrlimit(resource.RLIMIT_AS, self.saved)


def run_job(scanner: Scanner, job: Job, cap: int) -> Outcome:
    """Scan one job under the memory cap; every failure becomes an Unchecked verdict."""
    try:
        with CappedJob(cap):
            if job.data is not None:
                return scanner.scan_stream(job.data)
            assert job.path is not None
            return scanner.scan_path(job.path)
    except MemoryError:
        return Outcome(Unchecked(Reason.MEMORY, f"cap {cap // (1024 * 1024)} MiB"))
    except RecursionError:
        return Outcome(Unchecked(Reason.TOO_DEEP, "recursion limit"))
    except Exception as exc:  # an engine bug must cost one request, not the worker
        log("scan_error", path=job.path, error=repr(exc), tb=traceback.format_exc(limit=5))
        return Outcome(Unchecked(Reason.INTERNAL, type(exc).__name__))


def die_with_parent() -> None:
    """Ask Linux to SIGKILL us if our parent dies, so no worker outlives the daemon.

    Only for workers forked by the zygote's (single) main thread: the signal is
    tied to the parent *thread*, not the process.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def daemon_side_modules() -> tuple[str, ...]:
    """The daemon-side modules this process holds (a worker must hold none)."""
    return tuple(sorted(m for m in sys.modules
                        if any(m == p or m.startswith(p + ".") for p in DAEMON_SIDE)))


def serve(config: Config, inp: int, out: int, engine: Engine | None = None) -> int:
    """Report Ready on ``out``, then answer jobs from ``inp`` until EOF.

    ``engine`` is the zygote's already-loaded engine; without one it is loaded here.
    """
    if engine is None:
        try:
            engine = load_engine(config)
        except EngineError as exc:
            write_message(out, Ready(os.getpid(), memory()[1], error=str(exc)))
            return 1
    info = engine.info()
    scanner = Scanner(engine, config)
    scanner.refresh()  # the zygote may have loaded long ago: look before the first job
    cap = config.pool.memory_cap_mb * 1024 * 1024
    meter = PrivateMeter()  # Ready.rss and Done.rss carry private memory (USS), not RSS
    write_message(
        out,
        Ready(
            os.getpid(),
            meter.last_private,
            engine=info.name,
            signatures=info.signatures,
            detail=info.detail,
            modules=daemon_side_modules(),
            uid=os.getuid(),
            leftovers=engine.leftovers(),
        ),
    )
    while True:
        job = read_message(inp)
        if job is None:
            break
        assert isinstance(job, Job)
        outcome = run_job(scanner, job, cap)
        write_message(out, Done(job.id, dataclasses.replace(
            outcome, worker=os.getpid(), rss=meter.private(), cache=scanner.cache.take_counts())))
        scanner.refresh()  # after the reply: its look at the engine delays no request
    engine.close()
    return 0


def main() -> int:
    """Stand-alone worker (``python -m scand.worker.child``): config, then jobs, on stdin."""
    # Replies go to a private copy of stdout; fd 1 becomes stderr for stray prints.
    out = os.dup(1)
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the daemon's to handle
    config = read_message(0)  # (EOF on stdin ends this worker when its parent goes)
    if not isinstance(config, Config):
        return 2
    return serve(config, 0, out)


if __name__ == "__main__":
    sys.exit(main())
