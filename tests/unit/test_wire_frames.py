"""Job and Done cross the worker's pipe as struct frames (issue 27), and come out as
they went in: every field, every verdict, any string (lone surrogates included);
what a struct cannot hold is pickled, as every other message is. Also: the pool's
deadline watch wakes a scan waiting on a real pipe without closing it."""

from __future__ import annotations

import dataclasses
import os
import pickle

import pytest
import trio

from scand.events import CLEAN, Clean, Infected, Reason, Unchecked
from scand.pool.process import WorkerGone, WorkerProcess
from scand.worker.child import read_message, write_message
from scand.worker.wire import Decoder, Done, Job, Outcome, Ready, decode, encode, job_frames, pack
from tests.unit.test_fast_paths import PipeProcess

ODD = "caf\u00e9 \udcff \U0001f600 \x00"  # non-ASCII, a lone surrogate (surrogateescape), NUL

JOBS = [
    Job(1, "/var/spool/x"), Job(2, data=b"abc"), Job(3, data=b""), Job(4, "/tmp/" + ODD),
    Job(5, "/both", b"data"), Job(2**63 - 1, ""), Job(6, None, None),
]
DONES = [
    Done(5, Outcome(CLEAN, 10, 2, 99, 4096, (1, 0, 0))),
    Done(7, Outcome(Infected("Win.Test " + ODD), worker=3)),
    Done(8, Outcome(Infected(""))),
    *(Done(9, Outcome(Unchecked(reason, ODD), 1, 2, 3, 4, (5, 6, 7))) for reason in Reason),
    Done(10, Outcome(Unchecked(Reason.TIMEOUT))),
    Done(-1, Outcome(CLEAN, 2**63 - 1, 0, 0, 0)),
]


def test_outcome_fields_are_the_frames() -> None:
    # A new Outcome field must be carried by the Done frame (wire._pack_done) too.
    assert [f.name for f in dataclasses.fields(Outcome)] == [
        "verdict", "bytes", "files", "worker", "rss", "cache"]


@pytest.mark.parametrize("message", JOBS + DONES)
def test_struct_frames_round_trip(message: object) -> None:
    body = encode(message)
    assert body[:1] in (b"J", b"D")  # a struct frame, not a pickle
    decoder = Decoder()
    decoder.feed(pack(message))
    back = decoder.next()
    assert back == message and type(back) is type(message)
    assert decoder.next() is None
    if isinstance(message, Done):
        assert type(back.outcome.verdict) is type(message.outcome.verdict)  # type: ignore[attr-defined]


@pytest.mark.parametrize("message", [
    Done(1, Outcome("not a verdict")),
    Done(2, Outcome(CLEAN, 2**64)),  # beyond the frame's field
    Done(3, Outcome(CLEAN, cache=(1, 2))),
    Done(4, Outcome(Unchecked("no-such-reason", "x"))),  # type: ignore[arg-type]
    Ready(1, 2, engine="builtin"),
])
def test_what_a_struct_cannot_hold_is_pickled(message: object) -> None:
    body = encode(message)
    assert body[:1] == b"\x80"  # pickle's PROTO
    assert decode(body) == message
    decoder = Decoder()
    decoder.feed(pack(message))
    assert decoder.next() == message


def test_a_stream_job_frame_carries_no_data() -> None:
    data = os.urandom(1000)
    frame, raw = job_frames(Job(3, data=data))
    assert raw is data and len(frame) < 40
    decoder = Decoder()
    decoder.feed(frame + raw[:500])
    assert decoder.next() is None
    decoder.feed(raw[500:] + pack(DONES[0]))
    assert decoder.next() == Job(3, data=data)
    assert decoder.next() == DONES[0]


def test_struct_frames_are_smaller_and_not_pickles() -> None:
    done = DONES[0]
    assert len(encode(done)) < len(pickle.dumps(done, protocol=pickle.HIGHEST_PROTOCOL))
    assert isinstance(decode(encode(done)).outcome.verdict, Clean)  # type: ignore[attr-defined]


@pytest.mark.parametrize("message", JOBS + DONES + [Ready(1, 2)])
def test_the_worker_reads_and_writes_the_same_frames(message: object) -> None:
    r, w = os.pipe()
    try:
        write_message(w, message)
        assert read_message(r) == message
    finally:
        os.close(r)
        os.close(w)


async def test_interrupt_wakes_a_scan_waiting_on_its_pipe() -> None:
    proc = PipeProcess()
    worker = WorkerProcess(proc, 0, 10)  # type: ignore[arg-type]
    got: list[BaseException] = []

    async def wait() -> None:
        try:
            await worker.receive_done()
        except WorkerGone as exc:
            got.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.sleep(0.01)
            worker.interrupt()
    assert len(got) == 1
    # Only woken, not closed: the kill that follows closes the pipes.
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.fileno() >= 0 and proc.stdin.fileno() >= 0
    os.write(proc.res_w, pack(DONES[0]))
    assert await worker.receive_done() == DONES[0]
    proc.close()
