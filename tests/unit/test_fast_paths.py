"""The daemon's per-request shortcuts (issue 27) do what the slow paths did.

* a job larger than a pipe's buffer still arrives whole (one ``os.write``, then
  an awaited ``send_all`` for the rest), and a Done split across reads is
  decoded once complete;
* a closed job pipe is a WorkerGone, not an OSError;
* the log line's timestamp and JSON are structlog's own, byte for byte;
* Job, Done, Outcome and the verdicts survive pickling unchanged.
"""

from __future__ import annotations

import datetime
import os
import pickle

import pytest
import structlog
import trio

from scand import logs
from scand.events import CLEAN, Infected, Reason, Unchecked
from scand.pool.process import WorkerGone, WorkerProcess
from scand.worker.wire import Decoder, Done, Job, Outcome, job_frames, pack


class PipeProcess:
    """A ProcessHandle on two real non-blocking pipes (as the spawner gives)."""

    def __init__(self) -> None:
        job_r, job_w = os.pipe()
        res_r, res_w = os.pipe()
        self.job_r, self.res_w = job_r, res_w
        self.stdin: trio.lowlevel.FdStream | None = trio.lowlevel.FdStream(job_w)
        self.stdout: trio.lowlevel.FdStream | None = trio.lowlevel.FdStream(res_r)
        self.pid = 1
        self.returncode: int | None = None

    def close(self) -> None:
        for fd in (self.job_r, self.res_w):
            os.close(fd)


async def test_a_job_over_the_pipe_buffer_arrives_whole() -> None:
    proc = PipeProcess()
    worker = WorkerProcess(proc, 0, 10)  # type: ignore[arg-type]
    job = Job(7, data=os.urandom(3 * 65536 + 123))  # more than a pipe holds (64 KiB)
    frame, data = job_frames(job)  # the frame, then the raw STREAM bytes
    want = frame + data
    got = bytearray()

    async def drain() -> None:
        os.set_blocking(proc.job_r, False)
        while len(got) < len(want):
            await trio.lowlevel.wait_readable(proc.job_r)
            got.extend(os.read(proc.job_r, 1 << 20))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await worker.send(job)
    assert bytes(got) == want
    decoder = Decoder()
    decoder.feed(got)
    assert decoder.next() == job
    proc.close()


async def test_a_done_split_across_reads_is_decoded_once_complete() -> None:
    proc = PipeProcess()
    worker = WorkerProcess(proc, 0, 10)  # type: ignore[arg-type]
    done = Done(3, Outcome(Infected("Eicar-Test-Signature"), 68, 1, 42, 1 << 20, (1, 2, 0)))
    frame = pack(done)

    async def write_slowly() -> None:
        for i in range(0, len(frame), 5):
            os.write(proc.res_w, frame[i:i + 5])
            await trio.sleep(0.001)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write_slowly)
        assert await worker.receive_done() == done
    proc.close()


async def test_a_closed_job_pipe_is_worker_gone() -> None:
    proc = PipeProcess()
    worker = WorkerProcess(proc, 0, 10)  # type: ignore[arg-type]
    os.close(proc.job_r)  # the worker died: EPIPE on write
    with pytest.raises(WorkerGone):
        await worker.send(Job(1, "/x"))
    assert proc.stdin is not None
    await proc.stdin.aclose()  # closed on our side: EBADF
    with pytest.raises(WorkerGone):
        await worker.send(Job(2, "/x"))
    os.close(proc.res_w)
    with pytest.raises(WorkerGone):  # EOF on the result pipe
        await worker.receive_done()


@pytest.mark.parametrize("now", [1_765_000_000.0, 1_765_000_000.5, 1_765_000_000.000001,
                                 1_765_000_001.999999, 951_782_400.25])
def test_timestamp_is_structlog_iso_utc(now: float, monkeypatch: pytest.MonkeyPatch) -> None:
    stamper = logs.IsoStamper()
    monkeypatch.setattr(logs.time, "time", lambda: now)
    for _ in range(2):  # the second call reuses the cached second
        got = stamper(None, "info", {})["timestamp"]
        moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
        assert got == moment.isoformat().replace("+00:00", "Z")


def test_json_line_is_structlog_json_renderer() -> None:
    class Named:
        def __structlog__(self) -> str:
            return "named"

    event = {"path": "/x/ü", "n": 3, "f": 1.5, "none": None, "obj": Named(), "set": {1},
             "nested": {"a": [1, "b"]}, "event": "scan_finished", "level": "info"}
    assert (logs.JsonRenderer()(None, "info", dict(event))
            == structlog.processors.JSONRenderer()(None, "info", dict(event)))


@pytest.mark.parametrize("message", [
    Job(1, "/var/spool/x"), Job(2, data=b"abc"),
    Done(5, Outcome(CLEAN, 10, 2, 99, 4096, (1, 0, 0))),
    Done(6, Outcome(Unchecked(Reason.TIMEOUT, "scan over 1s"))),
    Done(7, Outcome(Infected("Win.Test"), worker=3)),
])
def test_wire_messages_round_trip(message: object) -> None:
    back = pickle.loads(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
    assert back == message and type(back) is type(message)


def test_exc_info_is_formatted_as_structlog_does() -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        caught = exc
    for event in ({"event": "x", "exc_info": caught}, {"event": "x", "exc_info": False},
                  {"event": "x"}):
        assert (logs.format_exc_info(None, "error", dict(event))
                == structlog.processors.format_exc_info(None, "error", dict(event)))
