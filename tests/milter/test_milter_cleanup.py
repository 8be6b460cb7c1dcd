"""The milter cleans up: spool write errors are a 451 tempfail and one log line (never a
dropped connection), macros are bounded per connection and freed at its end, and what a
killed daemon left in the spool is removed at the next start."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from scand.fronts.transport import SocketTransport
from scand.milter import message as msgmod
from scand.milter.message import MessageBuffer
from tests.conftest import Daemon, launch
from tests.milter.mail import message
from tests.milter.rawmilter import RawMilter

SPILL = 4096
BIG = 300 * 1024  # past the spill size, and past a 64 KiB tmpfs
TEMPFAIL = b"451 4.7.1 Message not scanned"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- the buffer, with injected errors (always runs) ----------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EDQUOT])
def test_spool_write_error_is_kept_as_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               code: int) -> None:
    buf = MessageBuffer(100, 10_000_000, str(tmp_path))
    buf.header("Subject", "x")
    buf.body(b"a" * 50)

    def full(fd: int, data: object) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(msgmod.os, "write", full)
    buf.body(b"b" * 500)  # spills: the write fails
    buf.body(b"c" * 500)  # ignored
    buf.finish()
    assert buf.error == f"spool: {os.strerror(code)}"
    assert buf.path is None and os.listdir(tmp_path) == []  # the spill file is gone
    assert buf.data() == b""


def test_spool_dir_removed(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    buf = MessageBuffer(100, 10_000_000, str(spool))
    spool.rmdir()
    buf.body(b"x" * 500)
    buf.finish()
    assert buf.error == f"spool: {os.strerror(errno.ENOENT)}"


def test_close_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buf = MessageBuffer(10, 10_000_000, str(tmp_path))
    buf.body(b"x" * 500)
    real_close = os.close

    def failing_close(fd: int) -> None:
        real_close(fd)
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(msgmod.os, "close", failing_close)
    buf.finish()
    monkeypatch.undo()
    assert buf.error and os.listdir(tmp_path) == []


def test_sweep_removes_only_a_dead_daemons_files(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from scand.milter.message import sweep_stale_spool

    dead, live = dead_pid(), os.getppid()
    spool = tmp_path / "spool"
    spool.mkdir()
    for name in (f"msg-{dead}-abc_12.eml", f"msg-{live}-abc.eml", "msg-legacy.eml", "keep.txt",
                 f"msg-{dead}-x.eml.txt"):
        (spool / name).write_text("x")
    (spool / f"msg-{dead}-dir.eml").mkdir()  # not a file scand made
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    (temp / f"scand-milter-{dead}-a1").mkdir()
    (temp / f"scand-milter-{dead}-a1" / "msg-1-x.eml").write_text("x")
    (temp / f"scand-milter-{live}-b2").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("x")
    (temp / f"scand-milter-{dead}-link").symlink_to(outside)
    (temp / f"scand-milter-{dead}-other").mkdir()
    removed = sweep_stale_spool(str(spool), owners={os.geteuid() + 1})  # "other" is not theirs
    assert sorted(os.listdir(spool)) == sorted(
        [f"msg-{live}-abc.eml", "msg-legacy.eml", "keep.txt", f"msg-{dead}-x.eml.txt",
         f"msg-{dead}-dir.eml"])
    assert removed == [str(spool / f"msg-{dead}-abc_12.eml")]
    removed = sweep_stale_spool("", owners={os.geteuid()})
    assert sorted(os.listdir(temp)) == sorted([f"scand-milter-{live}-b2",
                                               f"scand-milter-{dead}-link"])
    assert sorted(removed) == sorted([str(temp / f"scand-milter-{dead}-a1"),
                                      str(temp / f"scand-milter-{dead}-other")])
    assert (outside / "precious").exists()


# --- a real daemon ---------------------------------------------------------------------


def milter_lines(daemon: Daemon, qid: str) -> list[dict[str, object]]:
    lines = [json.loads(x) for x in daemon.log().splitlines() if x.startswith("{")]
    return [x for x in lines if x.get("queue_id") == qid]


def start(workdir: Path, spool: Path | None, n: int = 0) -> Daemon:
    config = f"[milter]\nspill_bytes = {SPILL}\nprogress_interval = 0.5\n"
    if spool is not None:
        config += f'spool_dir = "{spool}"\n'
    return launch(workdir, n, "--milter-socket", str(workdir / f"m{n}"), config=config)


@pytest.fixture
def workdir(short_tmp: Path) -> Path:
    return short_tmp


def tempfail_then_clean(daemon: Daemon, n: int, qid: str, detail: str) -> None:
    """A big message is a 451 with one log line; the connection then carries a small one."""
    client = RawMilter(str(daemon.workdir / f"m{n}"))
    try:
        client.negotiate()
        cmd, text = client.message(qid, *message(qid, filler=BIG))
        assert cmd == b"y" and text.startswith(TEMPFAIL), (cmd, text)
        cmd, _ = client.message(qid + "S", *message(qid + "S"))
        assert cmd == b"c", cmd  # same connection: it was not dropped
    finally:
        client.close()
    time.sleep(0.2)
    lines = milter_lines(daemon, qid)
    assert len(lines) == 1, lines
    assert lines[0]["action"] == "tempfail" and lines[0]["detail"] == detail, lines
    assert daemon.proc.poll() is None


def test_full_spool_tmpfs_is_a_tempfail(workdir: Path) -> None:
    spool = workdir / "spool"
    spool.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs",
                              str(spool)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    daemon = None
    try:
        daemon = start(workdir, spool)
        tempfail_then_clean(daemon, 0, "QFULL", f"spool: {os.strerror(errno.ENOSPC)}")
        assert os.listdir(spool) == []
    finally:
        if daemon is not None:
            daemon.stop()
        subprocess.run(["umount", str(spool)], check=False)


def test_spool_dir_removed_under_the_daemon_is_a_tempfail(workdir: Path) -> None:
    spool = workdir / "spool"
    daemon = start(workdir, spool)
    try:
        shutil.rmtree(spool)
        tempfail_then_clean(daemon, 0, "QGONE", f"spool: {os.strerror(errno.ENOENT)}")
    finally:
        daemon.stop()


def rss(daemon: Daemon) -> int:
    return int(psutil.Process(daemon.proc.pid).memory_info().rss)


def test_macros_bounded_and_freed(workdir: Path) -> None:
    """300 macro packets of 63 x 16 KiB on one connection: a tempfail, the daemon's RSS
    stays put (it grew by 300 MiB before), and the next connection is served."""
    daemon = start(workdir, None)
    try:
        before = rss(daemon)
        client = RawMilter(str(workdir / "m0"))
        client.negotiate()
        value = b"v" * 16 * 1024
        for i in range(300):
            client.macros(b"C", {f"m{i}_{j}": value for j in range(63)})
        grown = rss(daemon) - before
        print(f"macro flood: daemon RSS grew {grown / 2**20:.1f} MiB")
        assert grown < 64 * 2**20, grown
        cmd, text = client.message("QMACRO", *message("QMACRO"))
        assert cmd == b"y" and text.startswith(TEMPFAIL), (cmd, text)
        client.sock.sendall(b"\0\0\0\x01K")  # a new SMTP session: the macros are forgotten
        cmd, _ = client.message("QAFTER", *message("QAFTER"))
        assert cmd == b"c", cmd
        client.close()
        ok = RawMilter(str(workdir / "m0"))
        ok.negotiate()
        assert ok.message("QNEXT", *message("QNEXT"))[0] == b"c"
        ok.close()
        assert daemon.proc.poll() is None
    finally:
        daemon.stop()


@pytest.mark.parametrize("configured", [True, False])
def test_sigkill_mid_spill_then_restart_sweeps(workdir: Path, configured: bool) -> None:
    spool = workdir / "spool" if configured else None
    daemon = start(workdir, spool)
    pid = daemon.proc.pid
    client = RawMilter(str(workdir / "m0"))
    client.negotiate()
    client.start_message("QKILL", *message("QKILL", filler=BIG))  # no end: it stays spilled
    pattern = f"msg-{pid}-*.eml"
    temp_dirs = list(Path(tempfile.gettempdir()).glob(f"scand-milter-{pid}-*"))
    where = spool if spool is not None else temp_dirs[0]
    deadline = time.monotonic() + 10
    while not list(where.glob(pattern)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(where.glob(pattern)), os.listdir(where)
    daemon.stop(signal.SIGKILL)
    client.close()
    assert list(where.glob(pattern))  # left behind
    again = start(workdir, spool, 1)
    try:
        assert not where.exists() or not list(where.glob(pattern)), os.listdir(where)
        if spool is None:
            assert not where.exists()
        assert "milter_spool_swept" in again.log()
    finally:
        again.stop()


# --- a session in process, with an injected write error (always runs) ----------------


def test_session_answers_a_spool_error_with_a_tempfail(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The real MilterSession on a socket pair; the spool's os.write fails with EIO: the
    MTA gets the configured 451 and the connection goes on to the next message."""
    import trio

    from scand import config as configmod
    from scand.config import Config
    from scand.events import CLEAN
    from scand.milter.session import MilterSession
    from scand.stats import Stats
    from scand.worker.wire import Outcome
    from tests.milter.rawmilter import OFFER, pkt

    class FakePool:
        async def scan(self, *, path: str | None = None, data: bytes | None = None) -> Outcome:
            return Outcome(CLEAN)

    class FakeService:
        config = configmod.override(Config(), "milter", spill_bytes=SPILL, progress_interval=0)
        pool = FakePool()
        stats = Stats()
        draining = False

    def eio(fd: int, data: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(msgmod, "_write_all", eio, raising=False)  # the spool only
    headers, body = message("QEIO", filler=BIG)
    mta = pkt(b"O", OFFER) + pkt(b"D", b"Mi\0QEIO\0")
    mta += b"".join(pkt(b"L", f"{n}\0{v}\0".encode()) for n, v in headers)
    mta += b"".join(pkt(b"B", body[i : i + 65535]) for i in range(0, len(body), 65535))
    mta += pkt(b"E") + pkt(b"D", b"Mi\0QOK\0") + pkt(b"B", b"small\r\n") + pkt(b"E") + pkt(b"Q")

    async def main() -> bytes:
        ours, theirs = trio.socket.socketpair()
        session = MilterSession(SocketTransport(ours), FakeService(),  # type: ignore[arg-type]
                                str(tmp_path))

        async def serve() -> None:  # the accept loop closes the transport after a session
            try:
                await session.run()
            finally:
                ours.close()

        got = b""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            view = memoryview(mta)
            while view:
                view = view[await theirs.send(view):]
            while chunk := await theirs.recv(65536):
                got += chunk
        theirs.close()
        return got

    got = trio.run(main)
    replies = []
    while got:
        n = int.from_bytes(got[:4], "big")
        replies.append(got[4 : 4 + n])
        got = got[4 + n :]
    assert replies[0][:1] == b"O"
    assert replies[1][:1] == b"y" and replies[1][1:].startswith(TEMPFAIL), replies
    assert b"(internal)" in replies[1]
    assert replies[2] == b"c"  # the next message on the same connection
    assert os.listdir(tmp_path) == []
