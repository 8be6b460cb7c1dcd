"""The qmail clients' memory does not grow with the message (issue 17, acceptance 1).

A message of the daemon's ``max_stream_bytes`` goes through scand-queue and
scand-qfilter with the client's address space capped (RLIMIT_AS) at the
``softlimit -m`` value that docs/CLIENTS.md gives for qmail-smtpd, and
arrives byte for byte; the client's peak RSS for 1 KB and for 20 MB differs
by less than 2 MB. The message reaches the client as qmail gives it: a pipe
from qmail-smtpd (scand-queue), a seekable file or a pipe (qmail-qfilter).
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from scand.config import ServerConfig
from tests.clients.conftest import SCRIPTS, client_env
from tests.conftest import DaemonFactory

DOC = Path(__file__).resolve().parents[2] / "docs" / "CLIENTS.md"
MAX_STREAM = ServerConfig().max_stream_bytes  # the daemon's default, which the tests run with
ENVELOPE = b"Falice@example.org\0Tbob@example.net\0\0"


def documented_softlimit() -> int:
    """The ``softlimit -m N`` of the qmail-smtpd run file in docs/CLIENTS.md."""
    found = set(re.findall(r"softlimit -m (\d+)", DOC.read_text()))
    assert len(found) == 1, f"docs/CLIENTS.md should give one softlimit, gives {found}"
    return int(found.pop())


def message_file(directory: Path, size: int) -> Path:
    """A mail of exactly ``size`` bytes: headers, then pseudo-random base64-ish lines."""
    path = directory / f"msg-{size}"
    block = hashlib.sha256(str(size).encode()).hexdigest().encode() * 2 + b"\r\n"
    head = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: big\r\n\r\n"
    with open(path, "wb") as fh:
        fh.write(head)
        left = size - len(head)
        chunk = block * (1 << 14)
        while left > 0:
            fh.write(chunk[:left])
            left -= min(left, len(chunk))
    assert path.stat().st_size == size
    return path


# A fork from pytest starts with pytest's RSS as its high-water mark, and exec keeps it.
# So the client is forked by this small launcher, which reports the client's own peak.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
os.write(int(os.environ["RSS_FD"]), b"%d" % usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status) & 255)
"""


def run_capped(name: str, message: Path, env: dict[str, str], as_limit: int | None,
               pipe: bool, stdout: int) -> tuple[int, int, bytes]:
    """Run a built client with the message on fd 0; (exit code, peak RSS in KiB, stderr)."""

    def cap() -> None:
        if as_limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))

    rss_r, rss_w = os.pipe()
    feeder = None
    cmd = [sys.executable, "-I", "-S", "-c", LAUNCHER, sys.executable, "-I", "-S",
           str(SCRIPTS[name])]
    with open(message, "rb") as fh:
        if pipe:  # qmail-smtpd writes the message into a pipe
            feeder = subprocess.Popen(["cat"], stdin=fh, stdout=subprocess.PIPE)
            assert feeder.stdout is not None
            stdin: int = feeder.stdout.fileno()
        else:
            stdin = fh.fileno()
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                                env={**env, "RSS_FD": str(rss_w)}, pass_fds=(rss_w,),
                                preexec_fn=cap)
    os.close(rss_w)
    if feeder is not None and feeder.stdout is not None:
        feeder.stdout.close()
    _, err = proc.communicate(timeout=120)
    with os.fdopen(rss_r, "rb") as fh:
        rss = int(fh.read() or b"0")
    if feeder is not None:
        feeder.wait(30)
    return proc.returncode, rss, err


def through_queue(socket: str, message: Path, tmp: Path, as_limit: int | None) -> tuple[int, int]:
    """scand-queue with the stand-in qmail-queue; asserts delivery; returns its peak RSS."""
    rec = tmp / "rec"
    rec.mkdir(exist_ok=True)
    qq = tmp / "qmail-queue"
    qq.write_text('#!/bin/sh\ncat > "$REC/message" || exit 54\ncat <&1 > "$REC/envelope"\n')
    qq.chmod(0o755)
    r, w = os.pipe()
    os.write(w, ENVELOPE)
    os.close(w)
    try:
        env = client_env(SCAND_SOCKET=socket, SCAND_QMAILQUEUE=str(qq), REC=str(rec))
        code, rss, err = run_capped("scand-queue", message, env, as_limit, pipe=True, stdout=r)
    finally:
        os.close(r)
    assert (code, err) == (0, b"")
    assert _same(rec / "message", message)
    assert (rec / "envelope").read_bytes() == ENVELOPE
    return code, rss


def through_qfilter(socket: str, message: Path, tmp: Path, as_limit: int | None,
                    pipe: bool) -> tuple[int, int]:
    """scand-qfilter writing to a file (qmail-qfilter's way); asserts the copy; peak RSS."""
    out = tmp / "qfilter-out"
    with open(out, "wb") as fh:
        env = client_env(SCAND_SOCKET=socket)
        code, rss, err = run_capped("scand-qfilter", message, env, as_limit, pipe, fh.fileno())
    assert (code, err) == (0, b"")
    assert _same(out, message)
    return code, rss


def _same(a: Path, b: Path) -> bool:
    return subprocess.run(["cmp", "-s", str(a), str(b)], check=False).returncode == 0


@pytest.mark.slow
def test_max_stream_message_passes_under_the_documented_softlimit(
    scand_daemon: DaemonFactory, short_tmp: Path
) -> None:
    limit = documented_softlimit()
    d = scand_daemon(workers=1)
    big = message_file(short_tmp, MAX_STREAM)
    through_queue(d.socket, big, short_tmp, limit)
    through_qfilter(d.socket, big, short_tmp, limit, pipe=False)
    through_qfilter(d.socket, big, short_tmp, limit, pipe=True)


@pytest.mark.slow
def test_peak_rss_does_not_depend_on_the_message_size(
    scand_daemon: DaemonFactory, short_tmp: Path
) -> None:
    d = scand_daemon(workers=1)
    small, big = message_file(short_tmp, 1024), message_file(short_tmp, 20 * 1024 * 1024)
    for name, run in (
        ("scand-queue", lambda m: through_queue(d.socket, m, short_tmp, None)),
        ("scand-qfilter", lambda m: through_qfilter(d.socket, m, short_tmp, None, pipe=True)),
    ):
        rss_small, rss_big = run(small)[1], run(big)[1]
        assert abs(rss_big - rss_small) < 2048, f"{name}: {rss_small} KiB vs {rss_big} KiB"


def test_an_over_limit_stream_is_refused_not_truncated(
    scand_daemon: DaemonFactory, short_tmp: Path
) -> None:
    """One byte over max_stream_bytes: the early -1:too-large is read, nothing is queued."""
    d = scand_daemon(workers=1, config="[server]\nmax_stream_bytes = 100000\n")
    msg = message_file(short_tmp, 100001)
    rec = short_tmp / "rec"
    rec.mkdir()
    qq = short_tmp / "qq"
    qq.write_text('#!/bin/sh\ntouch "$REC/ran"\n')
    qq.chmod(0o755)
    env = client_env(SCAND_SOCKET=d.socket, SCAND_QMAILQUEUE=str(qq), REC=str(rec))
    code, _, err = run_capped("scand-queue", msg, env, None, pipe=True, stdout=subprocess.DEVNULL)
    assert code == 71 and b"too-large 100001>100000" in err
    assert not (rec / "ran").exists()
