"""The worker child answers on its pipe (run stand-alone here; the import rules of a
forked worker are tests/unit/test_import_rules.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import tracemalloc

from scand.config import Config
from scand.events import Infected
from scand.worker.child import read_message, write_message
from scand.worker.wire import Decoder, Done, Job, Ready, job_frames
from tests.conftest import EICAR, ROOT


def test_child_round_trip() -> None:
    """Spawn a real worker: it loads the engine, reports ready, scans, exits on EOF."""
    proc = subprocess.Popen([sys.executable, "-m", "scand.worker.child"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdin is not None and proc.stdout is not None
    try:
        write_message(proc.stdin.fileno(), Config())
        ready = read_message(proc.stdout.fileno())
        assert isinstance(ready, Ready) and not ready.error
        assert ready.pid == proc.pid and ready.rss > 0
        assert ready.modules == ()  # nothing daemon-side, engine included
        write_message(proc.stdin.fileno(), Job(7, data=EICAR))
        done = read_message(proc.stdout.fileno())
        assert isinstance(done, Done) and done.id == 7
        assert done.outcome.verdict == Infected("Eicar-Test-Signature")
        proc.stdin.close()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_job_is_framed_without_its_data_and_read_into_one_buffer() -> None:
    """The daemon writes a STREAM job as a small frame and the raw data after it
    (job_frames: no pickled or joined copy); the worker reads it back whole."""
    data = os.urandom(3 << 20)
    frame, raw = job_frames(Job(9, data=data))
    assert len(frame) < 200 and raw is data
    r, w = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(w, frame), _write_all(w, raw)))
    writer.start()
    try:
        job = read_message(r)
    finally:
        writer.join()
        os.close(r)
        os.close(w)
    assert isinstance(job, Job) and job.id == 9 and job.size == 0 and job.data == data


def test_a_jobs_data_is_read_straight_into_bytes_and_nothing_ahead() -> None:
    """The worker reads a job's data into the bytes object the scanner gets (peak:
    the data once, not a buffer and its copy), and reads nothing past its frame:
    the next job on the pipe is read whole after it."""
    data = os.urandom(8 << 20)
    first, raw = job_frames(Job(1, data=data))
    second, raw2 = job_frames(Job(2, data=b"next job"))
    r, w = os.pipe()
    tracemalloc.start()
    writer = threading.Thread(target=lambda: (os.write(w, first), _write_all(w, raw),
                                              os.write(w, second), _write_all(w, raw2)))
    writer.start()
    try:
        job = read_message(r)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        nxt = read_message(r)
    finally:
        writer.join()
        os.close(r)
        os.close(w)
    assert isinstance(job, Job) and type(job.data) is bytes and job.data == data
    assert peak < 1.1 * len(data)
    assert nxt == Job(2, data=b"next job")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def test_the_incremental_decoder_attaches_a_jobs_raw_data() -> None:
    frame, raw = job_frames(Job(3, data=b"x" * 1000))
    decoder = Decoder()
    got = []
    for i in range(0, len(frame + raw), 97):  # arbitrary pieces
        decoder.feed((frame + raw)[i:i + 97])
        while (message := decoder.next()) is not None:
            got.append(message)
    assert got == [Job(3, data=b"x" * 1000)]


def test_an_empty_stream_stays_a_stream_job() -> None:
    """STREAM 0 is a stream of no bytes, not a path job (found by the golden transcripts)."""
    frame, raw = job_frames(Job(4, data=b""))
    assert raw == b""
    decoder = Decoder()
    decoder.feed(frame)
    assert decoder.next() == Job(4, data=b"")
    r, w = os.pipe()
    try:
        os.write(w, frame)
        job = read_message(r)
    finally:
        os.close(r)
        os.close(w)
    assert job == Job(4, data=b"")
    path_frame, _ = job_frames(Job(5, path="/x"))
    decoder.feed(path_frame)
    assert decoder.next() == Job(5, path="/x")


def test_every_job_field_survives_the_wire() -> None:
    """Job pickles every field: a frame's size (the raw bytes after it) included."""
    import pickle

    for job in (Job(1, path="/x"), Job(2, data=b"abc"), Job(3, size=7), Job(4, data=b"")):
        assert pickle.loads(pickle.dumps(job)) == job
