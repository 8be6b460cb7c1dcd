"""Issue 1/7 acceptance: the real daemon on a real socket, built-in engine."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import scand
from tests.conftest import EICAR, ROOT, Daemon, DaemonFactory
from tests.golden_util import make_golden_files


@pytest.fixture
def files(short_tmp: Path) -> Path:
    d = short_tmp / "data"
    d.mkdir()
    make_golden_files(d)
    return d


def test_verdicts(daemon: Daemon, files: Path) -> None:
    assert daemon.ask(f"{files}/eicar.com\n".encode()) == b"1:Eicar-Test-Signature\n"
    assert daemon.ask(f"{files}/plain.txt\n".encode()) == b"0\n"
    assert daemon.ask(f"{files}/missing\n".encode()).startswith(b"-1:not-found")
    relative = daemon.ask(b"data/plain.txt\n")
    assert relative.startswith(b"-1:") and relative.endswith(b"\n")
    for request in (f"{files}/tree", f"{files}/tree/"):
        reply = daemon.ask(f"{request}\n".encode())
        assert reply.startswith(b"1:") and len(reply) > 3 and b" " not in reply
    assert daemon.ask(f"{files}/cleantree/\n".encode()) == b"0\n"


def test_unreadable_differs_from_missing(scand_daemon: DaemonFactory, files: Path) -> None:
    """A file the daemon may not read: -1:unreadable (distinct from not-found).
    As root, the daemon runs as nobody (server.user) so permissions apply."""
    secret = files / "secret.txt"
    secret.write_text("x")
    secret.chmod(0)
    config = '[server]\nuser = "nobody"\n' if os.geteuid() == 0 else None
    d = scand_daemon(config=config)
    assert d.ask(f"{secret}\n".encode()).startswith(b"-1:unreadable")
    assert d.ask(f"{files}/missing\n".encode()).startswith(b"-1:not-found")


def test_pipelining_and_split_lf(daemon: Daemon, files: Path) -> None:
    c = daemon.client()
    c.send(f"{files}/plain.txt\n{files}/eicar.com\n{files}/nope\n".encode())
    assert c.line() == b"0\n"
    assert c.line() == b"1:Eicar-Test-Signature\n"
    assert c.line().startswith(b"-1:not-found")
    c.send(f"{files}/eicar.com".encode())
    time.sleep(0.1)
    c.send(b"\n")
    assert c.line() == b"1:Eicar-Test-Signature\n"
    c.close()


def test_overlong_line_closes(daemon: Daemon) -> None:
    c = daemon.client()
    c.send(b"/" + b"a" * 4999)
    assert c.line().startswith(b"-1:protocol")
    assert c.closed_by_peer()
    c.close()


def test_hash_signature(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    sigs = short_tmp / "sigs"
    sigs.mkdir()
    sample = short_tmp / "sample.bin"
    body = b"a harmless file that this test declares malicious\n" * 3
    sample.write_bytes(body)
    md5 = hashlib.md5(body).hexdigest()
    sha = hashlib.sha256(b"other").hexdigest()
    (sigs / "test.hdb").write_text(f"{md5}:{len(body)}:Test.Hash.Md5-1\n")
    (sigs / "test.hsb").write_text(f"{sha}:*:Test.Hash.Sha256-1\n")
    other = short_tmp / "other.bin"
    other.write_bytes(b"other")
    d = scand_daemon("--signatures", str(sigs))
    assert d.ask(f"{sample}\n".encode()) == b"1:Test.Hash.Md5-1\n"
    assert d.ask(f"{other}\n".encode()) == b"1:Test.Hash.Sha256-1\n"
    assert d.ask(b"VERSION\n") == f"scand {scand.__version__} builtin sigs=3\n".encode()


def test_bad_signature_file_refuses_to_start(short_tmp: Path) -> None:
    sigs = short_tmp / "sigs"
    sigs.mkdir()
    (sigs / "bad.hdb").write_text("44d88612fea8a8f36de82e1278abb02f:68:Good-1\nnot a line\n")
    proc = subprocess.run(
        [sys.executable, "-m", "scand.cli", "serve", "--socket", str(short_tmp / "s"),
         "--engine", "builtin", "--signatures", str(sigs)],
        capture_output=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 78
    assert f"{sigs}/bad.hdb:2" in proc.stderr.decode()
    assert not (short_tmp / "s").exists()


def test_ping_stats_version(daemon: Daemon) -> None:
    assert daemon.ask(b"PING\n") == b"PONG\n"
    line = daemon.ask(b"STATS\n")
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    stats = json.loads(line)
    assert {"requests", "verdicts", "latency_ms", "pool"} <= set(stats)
    assert daemon.ask(b"VERSION\n").startswith(f"scand {scand.__version__} builtin ".encode())
    assert daemon.ask(b"BOGUS\n").startswith(b"-1:protocol")


def test_reload_keeps_old_set_on_error(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    sigs = short_tmp / "sigs"
    sigs.mkdir()
    target = short_tmp / "t.bin"
    target.write_bytes(b"reload me")
    d = scand_daemon("--signatures", str(sigs))
    assert d.ask(f"{target}\n".encode()) == b"0\n"
    (sigs / "new.hdb").write_text(f"{hashlib.md5(b'reload me').hexdigest()}:9:Test.Reload-1\n")
    assert d.ask(b"RELOAD\n") == b"RELOADING\n"
    _wait_for(lambda: d.ask(f"{target}\n".encode()) == b"1:Test.Reload-1\n")
    (sigs / "broken.hdb").write_text("garbage\n")
    d.proc.send_signal(signal.SIGHUP)
    _wait_for(lambda: "reload_failed" in d.log())
    assert "broken.hdb:1" in d.log()
    assert d.ask(f"{target}\n".encode()) == b"1:Test.Reload-1\n"


def _wait_for(cond: object, limit: float = 15.0) -> None:
    assert callable(cond)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_sigterm_lets_slow_scan_finish(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    slow = short_tmp / "slow.txt"
    slow.write_text("SCAND-CHAOS slow 1500\nplain text\n")
    d = scand_daemon("--engine", "chaos")
    c = d.client()
    c.send(f"{slow}\n".encode())
    time.sleep(0.3)
    d.proc.send_signal(signal.SIGTERM)
    assert c.line() == b"0\n"
    assert d.proc.wait(15) == 0
    assert not os.path.exists(d.socket)
    c.close()


def test_check_config_names_bad_key(short_tmp: Path) -> None:
    cfg = short_tmp / "bad.toml"
    cfg.write_text('[pool]\nworkers = 2\nmax_jbos = 10\n')
    run = [sys.executable, "-m", "scand.cli", "check-config", str(cfg)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(run, capture_output=True, timeout=60, env=env)
    assert proc.returncode != 0
    assert "pool.max_jbos" in proc.stderr.decode()
    cfg.write_text('[pool]\nworkers = "two"\n')
    proc = subprocess.run(run, capture_output=True, timeout=60, env=env)
    assert proc.returncode != 0 and "pool.workers" in proc.stderr.decode()
    example = ROOT / "examples" / "scand.toml"
    proc = subprocess.run([*run[:-1], str(example)], capture_output=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr


def test_socket_mode_and_stale_socket(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    stale = short_tmp / "s0"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # a socket file nobody listens on: stale
    d = scand_daemon()
    assert d.socket == str(stale)
    assert stat.S_IMODE(os.stat(d.socket).st_mode) == 0o660
    assert d.ask(b"PING\n") == b"PONG\n"


def test_refuses_non_socket_path(short_tmp: Path) -> None:
    path = short_tmp / "notasocket"
    path.write_text("precious")
    proc = subprocess.run(
        [sys.executable, "-m", "scand.cli", "serve", "--socket", str(path)],
        capture_output=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 78
    assert "not a socket" in proc.stderr.decode()
    assert path.read_text() == "precious"


def test_idle_and_request_timeouts(scand_daemon: DaemonFactory) -> None:
    d = scand_daemon(config="[server]\nidle_timeout = 0.5\nrequest_timeout = 0.5\n")
    idle = d.client()
    assert idle.ask(b"PING\n") == b"PONG\n"
    assert idle.closed_by_peer(3.0)
    partial = d.client()
    partial.send(b"/some/partial/path")
    assert partial.line() == b"-1:timeout request not completed in time\n"
    assert partial.closed_by_peer(3.0)


def test_half_close_still_gets_reply(daemon: Daemon, files: Path) -> None:
    c = daemon.client()
    c.send(f"{files}/eicar.com\n".encode())
    c.sock.shutdown(socket.SHUT_WR)
    assert c.line() == b"1:Eicar-Test-Signature\n"
    assert c.closed_by_peer()


def test_allowed_roots(scand_daemon: DaemonFactory, files: Path, short_tmp: Path) -> None:
    d = scand_daemon(config=f'[server]\nallowed_roots = ["{files}/tree"]\n')
    assert d.ask(f"{files}/tree/a/clean.txt\n".encode()) == b"0\n"
    assert d.ask(f"{files}/plain.txt\n".encode()).startswith(b"-1:not-allowed")
    assert d.ask(f"{files}/tree/../plain.txt\n".encode()).startswith(b"-1:not-allowed")
    (files / "tree" / "escape").symlink_to(files / "plain.txt")
    assert d.ask(f"{files}/tree/escape\n".encode()).startswith(b"-1:not-allowed")
    # A symlink inside an allowed tree that leads out makes the directory unchecked.
    (files / "tree" / "a" / "b" / "c" / "payload.bin").unlink()
    assert d.ask(f"{files}/tree/\n".encode()).startswith(b"-1:not-allowed")


def test_stream(daemon: Daemon) -> None:
    c = daemon.client()
    assert c.ask(b"STREAM 5\nhello") == b"0\n"
    assert c.ask(b"STREAM %d\n" % len(EICAR) + EICAR) == b"1:Eicar-Test-Signature\n"
    assert c.ask(b"STREAM 999999999\n").startswith(b"-1:too-large")
    assert c.closed_by_peer()
