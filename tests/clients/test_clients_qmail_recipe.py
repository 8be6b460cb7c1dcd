"""The qmail recipe in docs/CLIENTS.md works as written (issue 17, acceptance 5).

Each fenced block after a ``<!-- qmail:NAME -->`` marker is run, with its
absolute paths moved into a temporary directory: the build and ``--install``
of the clients, ``scand serve`` with the socket's group and mode, ``tcprules``
on the rules file, and the qmail-smtpd run file itself under the real
``softlimit`` and ``tcpserver`` (Debian's daemontools and ucspi-tcp), with a
stand-in qmail-smtpd that hands each message to $QMAILQUEUE the way
qmail-smtpd does, and a stand-in qmail-queue that records what it gets.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EICAR, ROOT, wait_for_ping

DOC = ROOT / "docs" / "CLIENTS.md"
CLEAN = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nhello\r\n"
ENVELOPE = b"Fa@example.org\0Tb@example.net\0\0"
pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("tcpserver", "tcprules", "softlimit")),
    reason="needs ucspi-tcp and daemontools (scripts/test installs them)")


def block(name: str) -> str:
    """The fenced block that follows ``<!-- qmail:NAME -->`` in docs/CLIENTS.md."""
    found = re.search(rf"<!-- qmail:{re.escape(name)} -->\n```[a-z]*\n(.*?)```", DOC.read_text(),
                      re.S)
    assert found, f"docs/CLIENTS.md has no qmail:{name} block"
    return found.group(1)


class Paths:
    """The recipe's absolute paths, moved under one temporary directory."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        me = pwd.getpwuid(os.getuid()).pw_name
        self.map = {
            "/tmp/scand-clients": str(tmp / "built"),
            "/usr/local": str(tmp / "usr-local"),
            "/etc/tcp.smtp": str(tmp / "etc" / "tcp.smtp"),
            "/var/run/sophie": str(tmp / "sophie"),
            "/var/qmail/bin/qmail-smtpd": str(tmp / "qmail-smtpd"),
            "/var/qmail/bin/qmail-queue": str(tmp / "qmail-queue"),
            "/var/qmail/control": str(tmp / "control"),
            "id -u qmaild": f"id -u {me}",
            "id -g qmaild": f"id -g {me}",
            "nofiles": grp.getgrgid(os.getgid()).gr_name,
        }
        (tmp / "etc").mkdir()

    def __call__(self, text: str) -> str:
        for old, new in self.map.items():
            text = text.replace(old, new)
        return text


def sh(script: str, cwd: Path = ROOT) -> None:
    done = subprocess.run(["sh", "-ec", script], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def recipe(short_tmp: Path) -> Iterator[tuple[Paths, subprocess.Popen[bytes]]]:
    """Steps 0-1: the clients built and installed, and scand serving as the doc says."""
    paths = Paths(short_tmp)
    sh(paths(block("build")).replace("python3 -m", f"{sys.executable} -m"))
    sh(paths(block("install")))
    # The keys the recipe adds to /etc/scand/scand.toml, as written; the socket moved
    # (the layout's /run/scand/sophie is where /var/run/sophie points).
    config = short_tmp / "scand.toml"
    config.write_text(paths(block("scand")))
    log = short_tmp / "scand.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scand.cli", "serve", "--config",
                                 str(config), "--socket", paths.map["/var/run/sophie"],
                                 "--workers", "1"],
                                stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_for_ping(paths.map["/var/run/sophie"], proc, log, 60)
        yield paths, proc
    finally:
        proc.terminate()
        proc.wait(30)


def test_install_gives_world_readable_compiled_clients(
    recipe: tuple[Paths, subprocess.Popen[bytes]]
) -> None:
    paths, _ = recipe
    prefix = Path(paths.map["/usr/local"])
    stub = prefix / "bin" / "scand-queue"
    assert stub.read_text().startswith("#!/usr/bin/python3 -IS\n")
    assert stub.stat().st_mode & 0o755 == 0o755
    lib = prefix / "lib" / "scand-clients"
    assert (lib / "scand_queue.py").stat().st_mode & 0o644 == 0o644
    assert any((lib / "__pycache__").glob("scand_queue.*.pyc"))
    sock = os.stat(paths.map["/var/run/sophie"])
    assert (sock.st_mode & 0o777, sock.st_gid) == (0o660, os.getgid())


def test_databytes_is_set_below_max_stream_bytes(short_tmp: Path) -> None:
    """control/databytes, as written, leaves room for qmail-smtpd's Received: line under
    scand's max_stream_bytes, so qmail refuses an oversize message with 552 at once."""
    paths = Paths(short_tmp)
    Path(paths.map["/var/qmail/control"]).mkdir()
    sh(paths(block("databytes")))
    databytes = int((short_tmp / "control" / "databytes").read_text())
    max_stream = tomllib.loads(block("scand"))["server"]["max_stream_bytes"]
    assert 0 < databytes <= max_stream - 64 * 1024


def smtp_stand_in(path: Path) -> None:
    """qmail-smtpd's part: the message from the client, to $QMAILQUEUE with the envelope
    on fd 1; then one line back: the relay flag and qmail-queue's exit code."""
    path.write_text(
        "#!/bin/bash\n"
        'msg=$(mktemp) && cat > "$msg"\n'
        "\"$QMAILQUEUE\" < \"$msg\" 1< <(printf 'Fa@example.org\\0Tb@example.net\\0\\0')\n"
        "rc=$?\n"
        'rm -f "$msg"\n'
        'echo "relay=${RELAYCLIENT-unset} rc=$rc"\n')
    path.chmod(0o755)


def queue_stand_in(path: Path, rec: Path) -> None:
    path.write_text(f'#!/bin/sh\ncat > "{rec}/message" && cat <&1 > "{rec}/envelope"\n')
    path.chmod(0o755)


def send(port: int, message: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(message)
        conn.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
    return reply.decode().strip()


def test_the_run_file_scans_every_client_relay_included(
    recipe: tuple[Paths, subprocess.Popen[bytes]]
) -> None:
    paths, _ = recipe
    tmp = paths.tmp
    rec = tmp / "rec"
    rec.mkdir()
    smtp_stand_in(Path(paths.map["/var/qmail/bin/qmail-smtpd"]))
    queue_stand_in(Path(paths.map["/var/qmail/bin/qmail-queue"]), rec)
    Path(paths.map["/etc/tcp.smtp"]).write_text(block("tcp.smtp"))
    sh(paths(block("tcprules")))
    run = paths(block("run"))
    assert " -H " in run and "-x " in run
    # Listen on 127.0.0.1 and an ephemeral port, printed by -1 (the only change to the file).
    run = run.replace(" 0 smtp ", " -1 127.0.0.1 0 ")
    (tmp / "run").write_text(run)
    (tmp / "run").chmod(0o755)
    server = subprocess.Popen([str(tmp / "run")], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        # From 127.0.0.1: a relay client (RELAYCLIENT set by the rules), scanned all the same.
        assert send(port, CLEAN) == "relay= rc=0"
        assert (rec / "message").read_bytes() == CLEAN
        assert (rec / "envelope").read_bytes() == ENVELOPE
        (rec / "message").unlink()
        assert send(port, CLEAN + EICAR + b"\r\n") == "relay= rc=31"
        assert not (rec / "message").exists()
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # tcpserver's own session, started here
        server.wait(30)


def test_the_qfilter_wrapper(recipe: tuple[Paths, subprocess.Popen[bytes]]) -> None:
    """The wrapper, with a stand-in qmail-qfilter: the message as a seekable file on fd 0."""
    paths, _ = recipe
    tmp = paths.tmp
    paths.map = {"/usr/local/bin/qmail-qfilter": str(tmp / "qmail-qfilter"), **paths.map}
    (tmp / "qmail-qfilter").write_text('#!/bin/sh\nexec "$@"\n')
    (tmp / "qmail-qfilter").chmod(0o755)
    wrapper = tmp / "qmail-scand"
    wrapper.write_text(paths(block("qfilter")))
    wrapper.chmod(0o755)
    for message, code, out in ((CLEAN, 0, CLEAN), (CLEAN + EICAR, 31, b"")):
        src = tmp / "in"
        src.write_bytes(message)
        with open(src, "rb") as fd0:
            done = subprocess.run([str(wrapper)], stdin=fd0, capture_output=True, timeout=60,
                                  check=False)
        assert (done.returncode, done.stdout) == (code, out), done.stderr
