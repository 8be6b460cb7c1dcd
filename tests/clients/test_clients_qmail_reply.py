"""Opt-in: the virus name in the SMTP reply on notqmail (exit 82, text on descriptor 6).

Off by default, because an older qmail-smtpd reads exit 82 as a temporary
failure and would defer a virus for ever; with SCAND_QMAIL_CUSTOM_ERROR=1
scand-queue writes ``D`` (permanent) and the text on descriptor 6 and exits 82.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.clients.conftest import EICAR, SCRIPTS, client_env
from tests.conftest import DaemonFactory

INFECTED = b"From: a@example.org\r\nSubject: x\r\n\r\n" + EICAR + b"\r\n"


def queue_with_fd6(sock: str, qq: Path, fd6: bool, **env: str) -> tuple[int, bytes, bytes]:
    """Run scand-queue as notqmail's qmail-smtpd does: a pipe on descriptor 6 (if ``fd6``)."""
    r, w = os.pipe()

    def on_fd6() -> None:
        if fd6:
            os.dup2(w, 6)

    proc = subprocess.Popen([sys.executable, "-I", "-S", str(SCRIPTS["scand-queue"])],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=on_fd6, close_fds=False,
                            env=client_env(SCAND_SOCKET=sock, SCAND_QMAILQUEUE=str(qq), **env))
    os.close(w)
    _, err = proc.communicate(INFECTED, timeout=60)
    with os.fdopen(r, "rb") as fh:
        said = fh.read()
    return proc.returncode, said, err


def test_virus_name_in_the_reply_only_when_asked(scand_daemon: DaemonFactory,
                                                short_tmp: Path) -> None:
    d = scand_daemon(workers=1)
    qq = short_tmp / "qq"
    qq.write_text("#!/bin/sh\nexit 0\n")
    qq.chmod(0o755)
    # Default: 31 (554 from any qmail-smtpd), nothing on descriptor 6.
    assert queue_with_fd6(d.socket, qq, fd6=True)[:2] == (31, b"")
    # Asked: 82, and notqmail's qmail-smtpd reads "D<text>" for a permanent reply.
    code, said, err = queue_with_fd6(d.socket, qq, fd6=True, SCAND_QMAIL_CUSTOM_ERROR="1")
    assert (code, said) == (82, b"Dmessage rejected: it contains Eicar-Test-Signature (#5.7.1)")
    assert b"message rejected: it contains Eicar-Test-Signature" in err
    # Asked, but this qmail-smtpd gave no descriptor 6: fall back to 31, never a 451 loop.
    assert queue_with_fd6(d.socket, qq, fd6=False, SCAND_QMAIL_CUSTOM_ERROR="1")[0] == 31
    # A bad value is a configuration error: defer (71), never pass.
    assert queue_with_fd6(d.socket, qq, fd6=True, SCAND_QMAIL_CUSTOM_ERROR="yes")[0] == 71
