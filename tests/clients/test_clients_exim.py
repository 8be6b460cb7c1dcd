"""Exim's own Sophie client (``av_scanner = sophie:<socket>``) against the real daemon.

Needs Debian's exim4-daemon-heavy (``apt-get install exim4-daemon-heavy``; the
light daemon has no content scanning) and root, because ``exim -C <file>
-bmalware`` keeps its privileges only for root. Skipped otherwise.

For sophie, Exim sends the *directory* that holds the file, so every case
gets a directory of its own.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.clients.conftest import EICAR
from tests.conftest import DaemonFactory

EXIM = shutil.which("exim4", path="/usr/sbin:/usr/bin") or shutil.which("exim", path="/usr/sbin")

pytestmark = [
    pytest.mark.skipif(EXIM is None, reason="exim4-daemon-heavy is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="exim -C ... -bmalware needs root"),
]
# Exim connects as its own user, so the test socket is opened to everyone.
OPEN_SOCKET = '[server]\nsocket_mode = "0666"\n'


def exim_malware(workdir: Path, socket_path: str, content: bytes, case: str,
                 scanner: str = "sophie") -> str:
    """Run ``exim -bmalware`` on ``content``; return what Exim printed (and its log).

    ``scanner`` is Exim's av_scanner type (``sophie``, or ``clamd`` for the clamd front;
    ``socket_path`` may then be ``127.0.0.1 <port>``)."""
    assert EXIM is not None
    spool, logs = workdir / "spool", workdir / "log"
    if not spool.exists():
        spool.mkdir()
        logs.mkdir()
        user = subprocess.run([EXIM, "-C", "/dev/null", "-bP", "exim_user"], capture_output=True,
                              text=True, check=False).stdout.split("=")[-1].strip()
        entry = pwd.getpwnam(user or "Debian-exim")
        for d in (spool, logs):
            os.chown(d, entry.pw_uid, entry.pw_gid)
    config = workdir / "exim.conf"
    config.write_text(
        "primary_hostname = scand.test\n"
        f"spool_directory = {spool}\n"
        f"log_file_path = {logs}/%slog\n"
        f"av_scanner = {scanner}:{socket_path}\n"
    )
    target = workdir / case
    target.mkdir()
    (target / "message.eml").write_bytes(content)
    done = subprocess.run([EXIM, "-C", str(config), "-bmalware", str(target / "message.eml")],
                          capture_output=True, text=True, timeout=60, check=False)
    log = "".join(p.read_text(errors="replace") for p in logs.glob("*log"))
    return done.stdout + done.stderr + log


def test_exim_sophie_scanner(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    d = scand_daemon(workers=1, config=OPEN_SOCKET)
    work = short_tmp / "exim"
    work.mkdir()
    work.chmod(0o755)

    out = exim_malware(work, d.socket, b"Subject: hi\n\n" + EICAR + b"\n", "infected")
    assert "Malware found: Eicar-Test-Signature" in out

    out = exim_malware(work, d.socket, b"Subject: hi\n\nJust a note.\n", "clean")
    assert "No malware found." in out

    # scand answers -1:not-allowed (Exim's spool is outside the allowed roots): Exim must
    # report a scanner failure, never "no malware". (Exim copies the file into its spool
    # with mbox headers first, so the chaos engine's magic first line cannot be used.)
    strict = scand_daemon(workers=1, config=OPEN_SOCKET + 'allowed_roots = ["/nonexistent"]\n')
    out = exim_malware(work, strict.socket, b"Subject: hi\n\nJust a note.\n", "unchecked")
    assert "No malware found" not in out
    assert "Malware lookup returned non-okay/fail" in out
    assert "scanner reported error" in out

    # Daemon down: the same.
    out = exim_malware(work, str(short_tmp / "nobody"), b"Subject: hi\n\nx\n", "down")
    assert "No malware found" not in out
    assert "Malware lookup returned non-okay/fail" in out
