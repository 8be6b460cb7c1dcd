"""Issue 3/7 acceptance: the clamd engine against a real clamd (Debian's clamav-daemon).

The signature set is built here: the EICAR body signature (.ndb) and the MD5 of
clam.exe from Debian's clamav-testfiles (.hdb). No signature download exists.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import scand
from tests.conftest import EICAR, DaemonFactory, Load

TESTFILES = Path("/usr/share/clamav-testfiles")
CLAMD = shutil.which("clamd") or shutil.which("clamd", path="/usr/sbin")
TEST_NAME = "ClamAV-Test-File.UNOFFICIAL"

def require_clamav() -> None:
    """clamd is a real part of the suite: ./scripts/test installs it; missing is a failure."""
    assert CLAMD, "clamd not installed: run ./scripts/test (installs clamav-daemon)"
    assert TESTFILES.is_dir(), "clamav-testfiles not installed: run ./scripts/test"


@pytest.fixture
def sigdir(short_tmp: Path) -> Path:
    require_clamav()
    d = short_tmp / "sigs"
    d.mkdir()
    clam = (TESTFILES / "clam.exe").read_bytes()
    (d / "test.hdb").write_text(f"{hashlib.md5(clam).hexdigest()}:{len(clam)}:ClamAV-Test-File\n")
    (d / "test.ndb").write_text(f"Eicar-Test-Signature:0:*:{EICAR.hex()}\n")
    return d


@pytest.fixture
def clean_files(short_tmp: Path) -> list[Path]:
    d = short_tmp / "clean"
    d.mkdir()
    out = []
    for i, body in enumerate([b"Hello world\n", b"From: a@b\n\nplain mail\n" * 200, bytes(4096)]):
        p = d / f"clean{i}.txt"
        p.write_bytes(body)
        out.append(p)
    return out


class ExternalClamd:
    """A clamd started by a test on its own socket; stopped by pid."""

    def __init__(self, base: Path, sigdir: Path, name: str, extra: str = "") -> None:
        self.dir = base / name
        self.dir.mkdir()
        self.socket = str(self.dir / "c.sock")
        conf = self.dir / "clamd.conf"
        conf.write_text(
            f"Foreground yes\nLocalSocket {self.socket}\nDatabaseDirectory {sigdir}\n"
            f"LogFile {self.dir}/clamd.log\nTemporaryDirectory {self.dir}\n"
            f"AlertExceedsMax yes\nMaxThreads 8\n{extra}"
        )
        assert CLAMD
        self.proc = subprocess.Popen([CLAMD, "--foreground", f"--config-file={conf}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.dir / "clamd.log").read_text()
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.socket)
                s.sendall(b"nPING\n")
                if s.recv(10) == b"PONG\n":
                    s.close()
                    return
                s.close()
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("external clamd did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def external(short_tmp: Path, sigdir: Path) -> Iterator[Any]:
    started: list[ExternalClamd] = []

    def start(name: str, extra: str = "") -> ExternalClamd:
        c = ExternalClamd(short_tmp, sigdir, name, extra)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


def all_testfiles() -> list[Path]:
    files = sorted(p for p in TESTFILES.iterdir() if p.is_file())
    assert len(files) == 44, len(files)
    return files


def managed_pid(d: Any) -> int:
    pid = d.stats()["clamd"]["pid"]
    assert isinstance(pid, int)
    return pid


@pytest.mark.parametrize("transfer", ["path", "stream", "fildes", "auto"])
def test_managed_detects_all_testfiles(
    scand_daemon: DaemonFactory, sigdir: Path, clean_files: list[Path], transfer: str
) -> None:
    d = scand_daemon("--engine", "clamd", "--signatures", str(sigdir),
                     config=f'[clamd]\ntransfer = "{transfer}"\n')
    c = d.client(timeout=60)
    replies = {p.name: c.ask(f"{p}\n".encode()) for p in all_testfiles()}
    assert {r for r in replies.values()} == {f"1:{TEST_NAME}\n".encode()}, replies
    for p in clean_files:
        assert c.ask(f"{p}\n".encode()) == b"0\n"
    eicar = clean_files[0].parent / "eicar.txt"
    eicar.write_bytes(EICAR)
    assert c.ask(f"{eicar}\n".encode()) == b"1:Eicar-Test-Signature.UNOFFICIAL\n"
    # The same files sent by the client itself (Sophie STREAM), no shared filesystem.
    for p in all_testfiles()[:10]:
        data = p.read_bytes()
        assert c.ask(b"STREAM %d\n" % len(data) + data) == f"1:{TEST_NAME}\n".encode()
    version = c.ask(b"VERSION\n").decode()
    assert version.startswith(f"scand {scand.__version__} clamd/1.4")
    assert version.endswith(" sigs=2\n")
    clamd = d.stats()["clamd"]
    assert clamd["pid"] and clamd["rss"] > 0 and clamd["version"].startswith("ClamAV")
    c.close()


def test_external_clamd(
    scand_daemon: DaemonFactory, external: Any, clean_files: list[Path]
) -> None:
    ext = external("one", "StreamMaxLength 5M\n")
    d = scand_daemon("--engine", "clamd", config=(
        f'[clamd]\nsockets = ["{ext.socket}"]\ntransfer = "stream"\n'))
    c = d.client(timeout=60)
    for p in all_testfiles():
        assert c.ask(f"{p}\n".encode()) == f"1:{TEST_NAME}\n".encode(), p
    for p in clean_files:
        assert c.ask(f"{p}\n".encode()) == b"0\n"
    # Over the external clamd's StreamMaxLength: clamd closes mid-stream; we still
    # read its answer, so the client gets too-large, not a broken pipe or a 0.
    big = clean_files[0].parent / "big.bin"
    big.write_bytes(os.urandom(8 * 1024 * 1024))
    assert c.ask(f"{big}\n".encode()).startswith(b"-1:too-large")
    c.close()


def test_max_file_size_is_too_large(
    scand_daemon: DaemonFactory, sigdir: Path, short_tmp: Path
) -> None:
    big = short_tmp / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    for transfer in ("path", "stream"):
        d = scand_daemon("--engine", "clamd", "--signatures", str(sigdir), config=(
            f'[clamd]\ntransfer = "{transfer}"\nmax_file_size_mb = 1\n'
            f'run_dir = "{short_tmp}/run-{transfer}"\n'))
        reply = d.ask(f"{big}\n".encode())
        assert reply.startswith(b"-1:too-large"), (transfer, reply)
        d.stop()


@pytest.mark.slow
def test_managed_clamd_killed_under_load(
    scand_daemon: DaemonFactory, sigdir: Path
) -> None:
    # No verdict cache: the same files over and over would be answered from it, and
    # this test is about the requests that reach a dead clamd.
    d = scand_daemon("--engine", "clamd", "--signatures", str(sigdir),
                     config='[cache]\nbackend = "none"\n')
    infected = [str(p) for p in all_testfiles()]
    first_pid = managed_pid(d)
    back = None
    with Load(d, infected, clients=8) as load:
        time.sleep(1.0)
        os.kill(first_pid, signal.SIGKILL)
        t_kill = time.monotonic()
        while time.monotonic() - t_kill < 15:
            try:
                pid = managed_pid(d)
            except (AssertionError, TypeError, KeyError):
                pid = None
            if pid and pid != first_pid and d.ask(f"{infected[0]}\n".encode()).startswith(b"1:"):
                back = time.monotonic() - t_kill
                break
            time.sleep(0.1)
        time.sleep(1.0)
    replies = Counter(r.split(b" ")[0] for _, _, r in load.replies)
    assert back is not None and back < 10, back
    assert b"0\n" not in replies, replies
    # While clamd is down a banned name inside a test file is still a definitive
    # answer (the policy walk does not need clamd): 1:Banned..., never 0.
    banned = {r for r in replies if r.startswith(b"1:Banned.")}
    assert set(replies) - banned <= {f"1:{TEST_NAME}\n".encode(),
                                     b"-1:engine-unavailable"}, replies
    assert replies[b"-1:engine-unavailable"] > 0
    assert d.stats()["clamd"]["restarts"] == 1
    # and it is correct afterwards
    assert d.ask(f"{infected[5]}\n".encode()) == f"1:{TEST_NAME}\n".encode()


@pytest.mark.slow
def test_rss_switch_under_load_loses_nothing(
    scand_daemon: DaemonFactory, sigdir: Path
) -> None:
    cfg = ("[clamd]\nrss_limit_mb = 1\nrss_check_interval = 0.3\nmin_switch_interval = 1.0\n"
           'transfer = "stream"\n[cache]\nbackend = "none"\n')  # every request reaches clamd
    d = scand_daemon("--engine", "clamd", "--signatures", str(sigdir), config=cfg)
    with Load(d, [str(p) for p in all_testfiles()]) as load:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not d.stats()["clamd"]["switches"].get("rss"):
            time.sleep(0.2)
        time.sleep(1.5)  # keep the load on while the old clamd drains
    replies = Counter(r for _, _, r in load.replies)
    assert d.stats()["clamd"]["switches"].get("rss", 0) >= 1
    assert set(replies) == {f"1:{TEST_NAME}\n".encode()}, replies


@pytest.mark.slow
def test_rss_switch_moves_every_worker_session(
    scand_daemon: DaemonFactory, sigdir: Path
) -> None:
    """Workers keep one IDSESSION to clamd; after a switch (the symlink moved, the
    workers stay) each one's next request goes to the new clamd, so the old one goes
    idle and is stopped at once, not kept busy by old sessions until DRAIN_LIMIT."""
    cfg = ("[clamd]\nrss_limit_mb = 1\nrss_check_interval = 0.3\nmin_switch_interval = 1.0\n"
           '[cache]\nbackend = "none"\n')  # every request reaches clamd
    d = scand_daemon("--engine", "clamd", "--signatures", str(sigdir), config=cfg)
    first = managed_pid(d)
    with Load(d, [str(p) for p in all_testfiles()], clients=8) as load:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not d.stats()["clamd"]["switches"].get("rss"):
            time.sleep(0.1)
        switched = time.monotonic()
        while time.monotonic() - switched < 20 and psutil.pid_exists(first):
            time.sleep(0.1)
        gone = time.monotonic() - switched
        time.sleep(0.5)
    assert d.stats()["clamd"]["switches"].get("rss", 0) >= 1
    assert gone < 5, gone  # drained: no worker session kept the old clamd busy
    assert set(r for _, _, r in load.replies) == {f"1:{TEST_NAME}\n".encode()}


@pytest.mark.slow
def test_two_external_clamds_failover(
    scand_daemon: DaemonFactory, external: Any
) -> None:
    a, b = external("a"), external("b")
    d = scand_daemon("--engine", "clamd",
                     config=f'[clamd]\nsockets = ["{a.socket}", "{b.socket}"]\nretries = 1\n'
                            '[cache]\nbackend = "none"\n')  # every request reaches a clamd
    with Load(d, [str(p) for p in all_testfiles()]) as load:
        time.sleep(1.0)
        killed_at = time.monotonic()
        a.stop()
        time.sleep(2.0)
    replies = [(t, r) for t, _, r in load.replies]
    # A request in flight on the killed clamd fails, unless the policy walk beside it
    # found a banned name inside the test file: a definitive answer without clamd.
    bad = [(t - killed_at, r) for t, r in replies if r != f"1:{TEST_NAME}\n".encode()]
    assert all(r.startswith((b"-1:engine-unavailable", b"1:Banned.")) for _, r in bad), bad
    # Only requests in flight on the killed clamd may fail: at most one per client.
    assert len(bad) <= 4, bad
    after = [r for t, r in replies if t > killed_at + 0.5]
    assert after and set(after) == {f"1:{TEST_NAME}\n".encode()}


def test_deadline_against_black_hole(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    hole = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = str(short_tmp / "hole.sock")
    hole.bind(path)
    hole.listen(64)  # accepts into the backlog, never answers
    try:
        d = scand_daemon("--engine", "clamd", config=(
            f'[clamd]\nsockets = ["{path}"]\ntimeout = 1.0\n'), ready_timeout=60)
        target = short_tmp / "t.txt"
        target.write_text("anything")
        t0 = time.monotonic()
        reply = d.ask(f"{target}\n".encode())
        elapsed = time.monotonic() - t0
        assert reply.startswith(b"-1:timeout"), reply
        assert elapsed < 1.5, elapsed
    finally:
        hole.close()


def test_clamd_reply_mapping() -> None:
    from scand.clamd.engine import verdict_from_reply
    from scand.events import Clean, Infected, Reason, Unchecked

    assert verdict_from_reply("stream: OK") == Clean()
    assert verdict_from_reply("/a b: Win.Test FOUND") == Infected("Win.Test")
    assert verdict_from_reply("stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND") == \
        Unchecked(Reason.TOO_LARGE, "Heuristics.Limits.Exceeded.MaxFileSize")
    assert verdict_from_reply("x: Heuristics.Limits.Exceeded.MaxRecursion FOUND").reason == \
        Reason.TOO_DEEP  # type: ignore[union-attr]
    assert verdict_from_reply("x: Heuristics.Limits.Exceeded.MaxFiles FOUND").reason == \
        Reason.TOO_MANY_FILES  # type: ignore[union-attr]
    assert verdict_from_reply("INSTREAM size limit exceeded. ERROR").reason == \
        Reason.TOO_LARGE  # type: ignore[union-attr]
    assert verdict_from_reply(
        "/x: File path check failure: No such file or directory. ERROR"
    ).reason == Reason.NOT_FOUND  # type: ignore[union-attr]
    assert verdict_from_reply("/x: Access denied. ERROR").reason == \
        Reason.UNREADABLE  # type: ignore[union-attr]
    assert isinstance(verdict_from_reply("garbage"), Unchecked)
    assert isinstance(verdict_from_reply(""), Unchecked)


def test_engine_session_against_real_clamd(external: Any, short_tmp: Path) -> None:
    """The worker's transfer against a real clamd: FILDES inside one IDSESSION for files
    and (in a memfd) for bytes, the replies' session ids stripped; a session clamd ended
    while idle (ReadTimeout) is opened anew, not failed; an ERROR drops it."""
    from scand import config as configmod
    from scand.clamd.engine import ClamdEngine
    from scand.config import Config
    from scand.engines.base import Target
    from scand.events import CLEAN, Infected, Unchecked

    c = external("s", "ReadTimeout 1\nStreamMaxLength 1M\n")
    cfg = configmod.override(Config(), "clamd", sockets=[c.socket], timeout=10.0)
    engine = ClamdEngine.from_config(cfg)
    assert engine.info().name.startswith("clamd/"), engine.info()
    session = engine.sessions[0]
    infected = short_tmp / "eicar.txt"
    infected.write_bytes(b"x\n" + EICAR + b"\n")

    def scan_file() -> object:
        fd = os.open(infected, os.O_RDONLY)
        try:
            return engine.scan_file(Target(str(infected), fd, infected.stat().st_size, 1 << 20))
        finally:
            os.close(fd)

    for _ in range(3):
        assert scan_file() == Infected("Eicar-Test-Signature.UNOFFICIAL")
        assert engine.scan_bytes(b"hello\n" * 100, "stream") == CLEAN
        assert engine.scan_bytes(EICAR, "stream") == Infected("Eicar-Test-Signature.UNOFFICIAL")
    assert session.opened == 1
    time.sleep(2.5)  # clamd ends the idle session (measured: "COMMAND READ TIMED OUT"
    # after ~2.4 s with ReadTimeout 2; its default is 120 s, scand reopens after 10 s idle)
    assert scan_file() == Infected("Eicar-Test-Signature.UNOFFICIAL")
    assert session.opened == 2
    stream = ClamdEngine(configmod.override(cfg, "clamd", transfer="stream"))
    too_big = stream.scan_bytes(b"a" * (2 << 20), "stream")  # over clamd's StreamMaxLength
    assert isinstance(too_big, Unchecked) and too_big.reason.value == "too-large", too_big
    assert stream.scan_bytes(EICAR, "stream") == Infected("Eicar-Test-Signature.UNOFFICIAL")
    assert stream.sessions[0].opened == 2
