"""A real Exim 4.96 daemon with scand in its DATA ACL (issue 17, acceptance 2).

Exim (bench/exim.py: Debian's exim4-daemon-heavy, 127.0.0.1 on a free port,
``av_scanner = sophie:<socket>``, ``deny malware = *``) is spoken to over SMTP:
a clean message is delivered intact, EICAR and a banned attachment are refused
with 5xx during the session, and with scand stopped the message gets a 4xx and
is delivered once scand is back on the same socket.
"""

from __future__ import annotations

import os
import smtplib
from pathlib import Path

import pytest

from bench import exim
from tests.clients.conftest import EICAR
from tests.clients.test_clients_mta import banned_message
from tests.conftest import DaemonFactory, launch

pytestmark = [
    pytest.mark.skipif(exim.EXIM is None, reason="exim4-daemon-heavy is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="exim -C keeps its privileges only for root"),
]
OPEN_SOCKET = '[server]\nsocket_mode = "0666"\n'  # Exim's receivers run as its own user
CLEAN = (b"From: alice@example.org\r\nTo: inbox@scand.test\r\nSubject: invoice\r\n\r\n"
         b"Please find the invoice attached.\r\n")


def send(port: int, message: bytes) -> tuple[int, bytes]:
    """(SMTP code of the end of DATA, its text)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as conn:
        try:
            conn.sendmail("alice@example.org", ["inbox@scand.test"], message)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error
        return 250, b""


def body_of(path: Path) -> bytes:
    """The message as stored (Exim adds headers on top and stores LF line ends)."""
    return path.read_bytes()


def test_exim_daemon_with_scand_in_its_data_acl(scand_daemon: DaemonFactory,
                                               short_tmp: Path) -> None:
    d = scand_daemon(workers=1, config=OPEN_SOCKET)
    work = short_tmp / "exim"
    work.mkdir()
    work.chmod(0o755)
    mta = exim.start(work, f"sophie:{d.socket}")
    try:
        assert send(mta.port, CLEAN) == (250, b"")
        mta.wait_queue_empty(60)
        (stored,) = mta.delivered()
        assert body_of(stored).endswith(CLEAN.replace(b"\r\n", b"\n"))

        code, text = send(mta.port, CLEAN + EICAR + b"\r\n")
        assert code == 550 and b"Eicar-Test-Signature" in text
        code, text = send(mta.port, banned_message())
        assert 500 <= code < 600 and b"Banned" in text

        d.stop()  # scand down: a temporary failure, the sender keeps the message
        code, _ = send(mta.port, CLEAN)
        assert 400 <= code < 500
        back = launch(short_tmp, 0, workers=1, config=OPEN_SOCKET)  # the same socket, s0
        try:
            assert back.socket == d.socket
            assert send(mta.port, CLEAN) == (250, b"")
            mta.wait_queue_empty(60)
            assert len(mta.delivered()) == 2
        finally:
            back.stop()
    finally:
        mta.stop()
