"""The MTA filters, run as the MTA runs them, against the real daemon.

qmail's qmail-queue and Postfix's sendmail are replaced by stand-ins written
here that record exactly what they receive (message on fd 0, envelope on fd 1,
argv), so the tests can prove that a passed message and its envelope arrive
byte-identical, and that on reject or tempfail the stand-in never runs.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.clients.conftest import CHAOS_UNCHECKED, EICAR, SCRIPTS, client_env, run_client
from tests.conftest import Daemon, DaemonFactory

EICAR_NAME = "Eicar-Test-Signature"
# A realistic message with CRLF line ends, a NUL and no final newline: binary-safety.
MESSAGE = (
    b"Received: from relay.example (relay.example [192.0.2.1])\r\n"
    b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: invoice\r\n\r\n"
    b"Please find the invoice attached.\r\n\x00\xff\xfe binary tail"
)
INFECTED = MESSAGE + b"\r\n" + EICAR + b"\r\n"
# qmail-queue's envelope: F<sender>\0 T<recipient>\0 ... \0
ENVELOPE = b"Falice@example.org\0Tbob@example.net\0Tcarol@example.net\0\0"
SMALL_STREAM_LIMIT = "[server]\nmax_stream_bytes = 1000\n"


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def rec(short_tmp: Path) -> Path:
    d = short_tmp / "rec"
    d.mkdir()
    return d


@pytest.fixture
def qmail_queue(short_tmp: Path) -> Path:
    """A stand-in qmail-queue: records fd 0 and fd 1 byte for byte into $REC."""
    return write_script(short_tmp / "qmail-queue", (
        'touch "$REC/ran"\n'
        'cat > "$REC/message" || exit 54\n'
        'cat <&1 > "$REC/envelope" || exit 54\n'
        'exit "${FAKE_QQ_EXIT:-0}"\n'
    ))


@pytest.fixture
def sendmail(short_tmp: Path) -> Path:
    """A stand-in sendmail: records argv (NUL-separated) and stdin into $REC."""
    return write_script(short_tmp / "sendmail", (
        'printf "%s\\0" "$@" > "$REC/argv"\n'
        'cat > "$REC/message"\n'
        'if [ -n "$FAKE_SENDMAIL_EXIT" ]; then echo "sendmail: queue file write error" >&2; '
        'exit "$FAKE_SENDMAIL_EXIT"; fi\n'
    ))


def banned_message() -> bytes:
    """A mail with a double-extension executable attachment (amavisd's classic ban)."""
    return (
        b"From: a@example.org\r\nTo: b@example.net\r\nSubject: invoice\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\n'
        b"Content-Type: text/plain\r\n\r\nsee attachment\r\n--XX\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="invoice.pdf.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAA\r\n"
        b"--XX--\r\n"
    )


def needs_policy() -> None:
    pytest.importorskip("scand.policy", reason="the daemon has no attachment policy yet")


# --- scand-qfilter ---------------------------------------------------------------------


def qfilter(
    sock: str, message: bytes, *args: str, **env: str
) -> subprocess.CompletedProcess[bytes]:
    return run_client("scand-qfilter", "--socket", sock, *args, stdin=message,
                      env=client_env(**env))


def test_qfilter_verdicts(scand_daemon: DaemonFactory) -> None:
    d = scand_daemon("--engine", "chaos", workers=1)
    done = qfilter(d.socket, MESSAGE)
    assert (done.returncode, done.stdout, done.stderr) == (0, MESSAGE, b"")
    done = qfilter(d.socket, INFECTED)
    assert (done.returncode, done.stdout) == (31, b"")
    assert done.stderr == f"scand-qfilter: message rejected: it contains {EICAR_NAME}\n".encode()
    done = qfilter(d.socket, INFECTED, "--drop")
    assert (done.returncode, done.stdout) == (99, b"")
    assert b"message dropped" in done.stderr
    done = qfilter(d.socket, INFECTED, SCAND_ON_INFECTED="drop")
    assert done.returncode == 99
    done = qfilter(d.socket, CHAOS_UNCHECKED)
    assert (done.returncode, done.stdout) == (71, b"")
    assert done.stderr.startswith(b"scand-qfilter: temporary failure: message not scanned: "
                                  b"internal ")


def test_qfilter_daemon_down_and_bad_settings(short_tmp: Path) -> None:
    sock = str(short_tmp / "nobody")
    done = qfilter(sock, MESSAGE)
    assert (done.returncode, done.stdout) == (71, b"")
    assert done.stderr == (f"scand-qfilter: temporary failure: virus scanner unavailable: "
                           f"cannot connect to {sock}: No such file or directory\n").encode()
    done = qfilter(sock, MESSAGE, "--no-such-option")
    assert (done.returncode, done.stdout) == (71, b"")
    done = qfilter(sock, MESSAGE, SCAND_TIMEOUT="-1")
    assert (done.returncode, done.stdout) == (71, b"")
    assert b"SCAND_TIMEOUT must be > 0" in done.stderr


def test_qfilter_oversize_stream(scand_daemon: DaemonFactory) -> None:
    d = scand_daemon(workers=1, config=SMALL_STREAM_LIMIT)
    big = MESSAGE * 1000
    done = qfilter(d.socket, big)
    assert (done.returncode, done.stdout) == (71, b"")
    assert done.stderr == (f"scand-qfilter: temporary failure: message not scanned: "
                           f"too-large {len(big)}>1000\n").encode()


def test_qfilter_spool_dir(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    d = scand_daemon(workers=1, config=SMALL_STREAM_LIMIT)
    spool = short_tmp / "spool"
    spool.mkdir()
    big = MESSAGE * 1000  # over the stream limit, but a path has no such limit
    done = qfilter(d.socket, big, "--spool-dir", str(spool))
    assert (done.returncode, done.stdout, done.stderr) == (0, big, b"")
    done = qfilter(d.socket, INFECTED, SCAND_SPOOL_DIR=str(spool))
    assert done.returncode == 31
    assert list(spool.iterdir()) == []  # always cleaned up
    done = qfilter(d.socket, MESSAGE, "--spool-dir", str(short_tmp / "no-such-dir"))
    assert (done.returncode, done.stdout) == (71, b"")
    assert b"cannot spool" in done.stderr


def test_qfilter_banned_attachment(scand_daemon: DaemonFactory) -> None:
    needs_policy()
    d = scand_daemon(workers=1)
    done = qfilter(d.socket, banned_message())
    assert (done.returncode, done.stdout) == (31, b"")
    assert done.stderr.startswith(b"scand-qfilter: message rejected: it contains ")


# --- scand-queue (QMAILQUEUE) ----------------------------------------------------------


def queue(
    sock: str, message: bytes, envelope: bytes, rec: Path, qq: Path, **env: str
) -> subprocess.CompletedProcess[bytes]:
    """Run scand-queue as qmail-smtpd does: message on fd 0, envelope pipe on fd 1."""
    r, w = os.pipe()
    try:
        os.write(w, envelope)  # qmail-smtpd writes it after the message; a pipe holds it
        os.close(w)
        return run_client("scand-queue", stdin=message, stdout=r, env=client_env(
            SCAND_SOCKET=sock, SCAND_QMAILQUEUE=str(qq), REC=str(rec), **env))
    finally:
        os.close(r)


def test_queue_passes_message_and_envelope_unchanged(
    scand_daemon: DaemonFactory, rec: Path, qmail_queue: Path
) -> None:
    d = scand_daemon(workers=1)
    done = queue(d.socket, MESSAGE, ENVELOPE, rec, qmail_queue)
    assert (done.returncode, done.stderr) == (0, b"")
    assert (rec / "message").read_bytes() == MESSAGE
    assert (rec / "envelope").read_bytes() == ENVELOPE
    # The real qmail-queue's own exit code is what qmail-smtpd gets.
    (rec / "ran").unlink()
    done = queue(d.socket, MESSAGE, ENVELOPE, rec, qmail_queue, FAKE_QQ_EXIT="53")
    assert done.returncode == 53 and (rec / "ran").exists()


@pytest.mark.slow
def test_queue_20mb_binary_message(
    scand_daemon: DaemonFactory, rec: Path, qmail_queue: Path
) -> None:
    d = scand_daemon(workers=1)
    message = os.urandom(20 * 1024 * 1024)
    envelope = b"F\0" + b"".join(b"Tuser%d@example.net\0" % i for i in range(500)) + b"\0"
    done = queue(d.socket, message, envelope, rec, qmail_queue)
    assert (done.returncode, done.stderr) == (0, b"")
    assert (rec / "message").read_bytes() == message
    assert (rec / "envelope").read_bytes() == envelope


def test_queue_reject_and_tempfail_never_run_qmail_queue(
    scand_daemon: DaemonFactory, rec: Path, qmail_queue: Path, short_tmp: Path
) -> None:
    d = scand_daemon("--engine", "chaos", workers=1)
    done = queue(d.socket, INFECTED, ENVELOPE, rec, qmail_queue)
    assert done.returncode == 31
    assert done.stderr == f"scand-queue: message rejected: it contains {EICAR_NAME}\n".encode()
    done = queue(d.socket, CHAOS_UNCHECKED, ENVELOPE, rec, qmail_queue)
    assert done.returncode == 71
    assert done.stderr.startswith(b"scand-queue: temporary failure: message not scanned: internal")
    down = str(short_tmp / "nobody")
    done = queue(down, MESSAGE, ENVELOPE, rec, qmail_queue)
    assert done.returncode == 71
    assert b"virus scanner unavailable: cannot connect to" in done.stderr
    assert not (rec / "ran").exists()


def test_queue_oversize_and_broken_settings(
    scand_daemon: DaemonFactory, rec: Path, qmail_queue: Path, short_tmp: Path
) -> None:
    d = scand_daemon(workers=1, config=SMALL_STREAM_LIMIT)
    done = queue(d.socket, MESSAGE * 100, ENVELOPE, rec, qmail_queue)
    assert done.returncode == 71 and b"too-large" in done.stderr
    done = queue(d.socket, MESSAGE, ENVELOPE, rec, short_tmp / "no-qmail-queue")
    assert done.returncode == 71
    assert b"cannot run" in done.stderr and b"No such file" in done.stderr
    done = queue(d.socket, MESSAGE, ENVELOPE, rec, qmail_queue, SCAND_TIMEOUT="soon")
    assert done.returncode == 71 and b"not a number" in done.stderr
    done = queue(d.socket, MESSAGE, ENVELOPE, rec, SCRIPTS["scand-queue"])  # itself: a loop
    assert done.returncode == 71 and b"(loop)" in done.stderr
    assert not (rec / "ran").exists()
    # Spooling instead of streaming lifts the stream limit; the spool is cleaned up.
    spool = short_tmp / "spool"
    spool.mkdir()
    done = queue(d.socket, MESSAGE * 100, ENVELOPE, rec, qmail_queue, SCAND_SPOOL_DIR=str(spool))
    assert (done.returncode, done.stderr) == (0, b"")
    assert (rec / "message").read_bytes() == MESSAGE * 100
    assert list(spool.iterdir()) == []


def test_queue_banned_attachment(
    scand_daemon: DaemonFactory, rec: Path, qmail_queue: Path
) -> None:
    needs_policy()
    d = scand_daemon(workers=1)
    done = queue(d.socket, banned_message(), ENVELOPE, rec, qmail_queue)
    assert done.returncode == 31
    assert not (rec / "ran").exists()


# --- scand-pipe (Postfix pipe(8)) --------------------------------------------------------

RCPTS = ("bob@example.net", "carol@example.net")


def pipe(
    d: Daemon | str, message: bytes, rec: Path, sendmail: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[bytes]:
    sock = d if isinstance(d, str) else d.socket
    return run_client(
        "scand-pipe", "--socket", sock, "--sendmail", f"{sendmail} -G -i", *args,
        "-f", "alice@example.org", "--", *RCPTS,
        stdin=message, env=client_env(REC=str(rec), **env),
    )


def test_pipe_reinjects_clean_mail_unchanged(
    scand_daemon: DaemonFactory, rec: Path, sendmail: Path
) -> None:
    d = scand_daemon(workers=1)
    done = pipe(d, MESSAGE, rec, sendmail)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert (rec / "message").read_bytes() == MESSAGE
    argv = (rec / "argv").read_bytes().split(b"\0")[:-1]
    assert argv == [b"-G", b"-i", b"-f", b"alice@example.org", b"--", *map(str.encode, RCPTS)]


def test_pipe_null_sender(scand_daemon: DaemonFactory, rec: Path, sendmail: Path) -> None:
    d = scand_daemon(workers=1)
    done = run_client("scand-pipe", "--socket", d.socket, "--sendmail", str(sendmail), "-f", "",
                      "--", "postmaster@example.net", stdin=MESSAGE,
                      env=client_env(REC=str(rec)))
    assert done.returncode == 0
    assert (rec / "argv").read_bytes() == b"-f\0\0--\0postmaster@example.net\0"


def test_pipe_infected_is_discarded_or_quarantined(
    scand_daemon: DaemonFactory, rec: Path, sendmail: Path, short_tmp: Path
) -> None:
    d = scand_daemon(workers=1)
    done = pipe(d, INFECTED, rec, sendmail)
    assert (done.returncode, done.stdout) == (0, b"")
    assert done.stderr == (f"scand-pipe: discarded: message contains {EICAR_NAME}; "
                           "from=<alice@example.org> to=<bob@example.net>,<carol@example.net>\n"
                           ).encode()
    assert not (rec / "message").exists()
    qdir = short_tmp / "quarantine"
    qdir.mkdir()
    done = pipe(d, INFECTED, rec, sendmail, "--quarantine", str(qdir))
    assert done.returncode == 0 and b"quarantined" in done.stderr
    assert not (rec / "message").exists()
    (eml,) = qdir.glob("*.eml")
    assert eml.read_bytes() == INFECTED
    assert eml.stat().st_mode & 0o777 == 0o600
    meta = json.loads(eml.with_suffix(".json").read_text())
    assert meta["sender"] == "alice@example.org" and meta["recipients"] == list(RCPTS)
    assert meta["virus"] == EICAR_NAME
    done = pipe(d, INFECTED, rec, sendmail, "--bounce")
    assert done.returncode == 69 and not (rec / "message").exists()
    # A quarantine that cannot be written defers: the only copy must not be lost.
    done = pipe(d, INFECTED, rec, sendmail, SCAND_QUARANTINE=str(short_tmp / "missing"))
    assert done.returncode == 75 and b"cannot quarantine" in done.stderr


def test_pipe_failures_defer(
    scand_daemon: DaemonFactory, rec: Path, sendmail: Path, short_tmp: Path
) -> None:
    d = scand_daemon("--engine", "chaos", workers=1, config=SMALL_STREAM_LIMIT)
    done = pipe(d, CHAOS_UNCHECKED, rec, sendmail)
    assert done.returncode == 75 and b"message not scanned: internal" in done.stderr
    done = pipe(d, MESSAGE * 100, rec, sendmail)
    assert done.returncode == 75 and b"too-large" in done.stderr
    done = pipe(str(short_tmp / "nobody"), MESSAGE, rec, sendmail)
    assert done.returncode == 75 and b"cannot connect to" in done.stderr
    assert not (rec / "message").exists()
    # Sendmail failing after a clean scan: defer, with its words in the reason.
    done = pipe(d, MESSAGE, rec, sendmail, FAKE_SENDMAIL_EXIT="75")
    assert done.returncode == 75
    assert b"reinjection failed" in done.stderr and b"queue file write error" in done.stderr
    done = pipe(d, MESSAGE, rec, short_tmp / "no-sendmail")
    assert done.returncode == 75 and b"cannot run" in done.stderr
    # Postfix must never get 0 for a bad command line.
    done = run_client("scand-pipe", "--socket", d.socket, "--", "x@example.net", stdin=MESSAGE)
    assert done.returncode == 75 and b"no -f SENDER" in done.stderr


def test_pipe_sendmail_timeout(scand_daemon: DaemonFactory, rec: Path, short_tmp: Path) -> None:
    d = scand_daemon(workers=1)
    slow = write_script(short_tmp / "slow-sendmail", "cat > /dev/null; exec sleep 30\n")
    done = pipe(d, MESSAGE, rec, slow, "--sendmail-timeout", "0.5")
    assert done.returncode == 75 and b"did not finish within 0.5s" in done.stderr


def test_pipe_banned_attachment(scand_daemon: DaemonFactory, rec: Path, sendmail: Path) -> None:
    needs_policy()
    d = scand_daemon(workers=1)
    done = pipe(d, banned_message(), rec, sendmail)
    assert done.returncode == 0 and b"discarded" in done.stderr
    assert not (rec / "message").exists()
