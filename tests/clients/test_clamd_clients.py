"""Issue 4/7 acceptance: real, unmodified clamd clients against scand's clamd front.

clamdscan 1.4.6 (Debian ``clamdscan``) in every mode, Python ``clamd`` and
``pyclamd`` (PyPI), Perl ClamAV::Client (Debian ``libclamav-client-perl``) and
Exim 4.96 (``av_scanner = clamd:``, Unix socket and TCP) talk to one scand
daemon on the built-in engine. Exit codes: 0 clean, 1 found, 2 error.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import clamd
import pyclamd
import pytest

import scand
from tests.clients.test_clients_exim import EXIM, exim_malware
from tests.conftest import EICAR, Daemon, launch

CLAMDSCAN = shutil.which("clamdscan")
PERL_CLIENT = Path("/usr/share/perl5/ClamAV/Client.pm")
EICAR_NAME = "Eicar-Test-Signature"
MAX_STREAM = 4096  # server.max_stream_bytes: INSTREAM over it is refused at the chunk header
MAX_FILE = 8192  # limits.max_file_size: SCAN/FILDES of a bigger file is too-large


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Front:
    daemon: Daemon
    clamd_socket: str
    port: int
    files: Path


@pytest.fixture(scope="module")
def front() -> Iterator[Front]:
    work = Path(tempfile.mkdtemp(prefix="scand-cf-", dir="/tmp"))
    work.chmod(0o755)
    files = work / "files"
    (files / "tree" / "one" / "two" / "three").mkdir(parents=True)
    (files / "tree" / "readme.txt").write_text("hello\n")
    (files / "tree" / "one" / "notes.txt").write_text("notes\n")
    (files / "tree" / "one" / "two" / "three" / "eicar.com").write_bytes(EICAR)
    (files / "clean").mkdir()
    (files / "clean" / "a.txt").write_text("a\n")
    (files / "clean" / "sub").mkdir()
    (files / "clean" / "sub" / "b.txt").write_text("b\n")
    (files / "two" / "sub").mkdir(parents=True)
    (files / "two" / "first.com").write_bytes(EICAR)
    (files / "two" / "sub" / "second.com").write_bytes(b"junk\n" + EICAR)
    (files / "two" / "sub" / "fine.txt").write_text("fine\n")
    (files / "eicar.com").write_bytes(EICAR)
    (files / "clean.txt").write_text("just text\n")
    (files / "big.txt").write_bytes(b"x" * (MAX_FILE + 100))
    (files / "medium.txt").write_bytes(b"y" * (MAX_STREAM + 100))
    for p in files.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    files.chmod(0o755)
    port = free_port()
    sock = str(work / "clamd.ctl")
    config = (f'[server]\nsocket_mode = "0666"\nmax_stream_bytes = {MAX_STREAM}\n'
              f"[limits]\nmax_file_size = {MAX_FILE}\n"
              f'[clamd_front]\nsocket_mode = "0666"\ntcp = ["127.0.0.1:{port}"]\n'
              f'tcp_allow = ["127.0.0.1/32"]\n')
    daemon = launch(work, 0, "--clamd-socket", sock, config=config)
    try:
        yield Front(daemon, sock, port, files)
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


def clamdscan(front: Front, *args: str) -> subprocess.CompletedProcess[str]:
    assert CLAMDSCAN, "clamdscan not installed: run ./scripts/test (installs clamdscan)"
    conf = front.files.parent / "clamd.conf"
    conf.write_text(f"LocalSocket {front.clamd_socket}\n")
    return subprocess.run([CLAMDSCAN, f"--config-file={conf}", "--no-summary", *args],
                          capture_output=True, text=True, timeout=60, check=False)


MODES = [[], ["--multiscan"], ["--stream"], ["--fdpass"], ["--allmatch"]]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m[0] if m else "contscan")
def test_clamdscan_modes(front: Front, mode: list[str]) -> None:
    f = front.files
    done = clamdscan(front, *mode, str(f / "eicar.com"))
    assert (done.returncode, done.stdout) == (1, f"{f}/eicar.com: {EICAR_NAME} FOUND\n"), done

    done = clamdscan(front, *mode, str(f / "clean.txt"))
    assert (done.returncode, done.stdout) == (0, f"{f}/clean.txt: OK\n"), done

    # One infected file three levels down: reported by its own path, exit 1.
    done = clamdscan(front, *mode, str(f / "tree"))
    assert done.returncode == 1, done
    assert f"{f}/tree/one/two/three/eicar.com: {EICAR_NAME} FOUND\n" in done.stdout
    assert "OK" not in done.stdout

    done = clamdscan(front, *mode, str(f / "clean"))
    assert done.returncode == 0, done
    if mode in ([], ["--multiscan"]):  # the daemon walks: one line for the directory
        assert done.stdout == f"{f}/clean: OK\n"

    done = clamdscan(front, *mode, str(f / "missing"))
    assert done.returncode == 2, done
    assert "FOUND" not in done.stdout and ": OK" not in done.stdout

    # Over the limits: an error (exit 2), never OK.
    target = f / ("medium.txt" if mode == ["--stream"] else "big.txt")
    done = clamdscan(front, *mode, str(target))
    assert done.returncode == 2, done
    assert ": OK" not in done.stdout
    if mode == ["--stream"]:
        assert "INSTREAM size limit exceeded" in done.stdout + done.stderr
    else:
        assert f"{target}: too-large ERROR" in done.stdout + done.stderr


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m[0] if m else "contscan")
def test_clamdscan_reports_every_infected_file(front: Front, mode: list[str]) -> None:
    f = front.files
    done = clamdscan(front, *mode, str(f / "two"))
    assert done.returncode == 1, done
    want = {f"{f}/two/first.com: {EICAR_NAME} FOUND", f"{f}/two/sub/second.com: {EICAR_NAME} FOUND"}
    assert set(done.stdout.splitlines()) == want, done


def test_clamdscan_ping_reload_version(front: Front) -> None:
    done = clamdscan(front, "--ping", "1")
    assert (done.returncode, done.stdout.strip()) == (0, "PONG"), done
    done = clamdscan(front, "--reload")
    assert done.returncode == 0, done
    done = clamdscan(front, "-V")
    assert done.returncode == 0 and done.stdout.startswith(f"scand {scand.__version__}/"), done


def test_python_clamd(front: Front) -> None:
    f = front.files
    cd = clamd.ClamdUnixSocket(path=front.clamd_socket)
    assert cd.ping() == "PONG"
    assert cd.scan(str(f / "eicar.com")) == {str(f / "eicar.com"): ("FOUND", EICAR_NAME)}
    assert cd.scan(str(f / "clean.txt")) == {str(f / "clean.txt"): ("OK", None)}
    assert cd.instream(io.BytesIO(EICAR)) == {"stream": ("FOUND", EICAR_NAME)}
    assert cd.instream(io.BytesIO(b"clean")) == {"stream": ("OK", None)}
    deep = str(f / "tree/one/two/three/eicar.com")
    assert cd.multiscan(str(f / "tree")) == {deep: ("FOUND", EICAR_NAME)}
    assert cd.contscan(str(f / "tree")) == {deep: ("FOUND", EICAR_NAME)}
    assert cd.contscan(str(f / "big.txt")) == {str(f / "big.txt"): ("ERROR", "too-large")}
    # Over the stream limit: the client raises; it is never told OK.
    with pytest.raises((clamd.BufferTooLongError, clamd.ConnectionError, OSError)):
        cd.instream(io.BytesIO(b"z" * (MAX_STREAM + 1)))
    stats = cd.stats()
    deadline = time.monotonic() + 15  # an earlier test's RELOAD may still be rolling over
    while "THREADS: live 2" not in stats and time.monotonic() < deadline:
        time.sleep(0.2)
        stats = cd.stats()
    assert stats.startswith("POOLS: 1") and "THREADS: live 2" in stats
    assert stats.rstrip().endswith("END")
    assert cd.version().startswith(f"scand {scand.__version__}/")
    net = clamd.ClamdNetworkSocket(host="127.0.0.1", port=front.port)
    assert net.instream(io.BytesIO(EICAR)) == {"stream": ("FOUND", EICAR_NAME)}


def test_pyclamd(front: Front) -> None:
    f = front.files
    cd = pyclamd.ClamdUnixSocket(filename=front.clamd_socket)
    assert cd.ping() is True
    assert cd.scan_file(str(f / "eicar.com")) == {str(f / "eicar.com"): ("FOUND", EICAR_NAME)}
    assert cd.scan_file(str(f / "clean.txt")) is None
    assert cd.scan_stream(EICAR) == {"stream": ("FOUND", EICAR_NAME)}
    assert cd.scan_stream(b"clean") is None
    deep = str(f / "tree/one/two/three/eicar.com")
    assert cd.multiscan_file(str(f / "tree")) == {deep: ("FOUND", EICAR_NAME)}
    assert cd.contscan_file(str(f / "tree")) == {deep: ("FOUND", EICAR_NAME)}
    assert cd.scan_file(str(f / "big.txt")) == {str(f / "big.txt"): ("ERROR", "too-large")}
    assert cd.stats().startswith("POOLS: 1")
    assert cd.version().startswith(f"scand {scand.__version__}/")
    net = pyclamd.ClamdNetworkSocket(host="127.0.0.1", port=front.port)
    assert net.scan_stream(EICAR) == {"stream": ("FOUND", EICAR_NAME)}


def perl(front: Front, code: str) -> str:
    assert PERL_CLIENT.exists(), "run ./scripts/test (installs libclamav-client-perl)"
    script = ("use strict; use ClamAV::Client;\n"
              f"my $c = ClamAV::Client->new(socket_name => '{front.clamd_socket}');\n" + code)
    done = subprocess.run(["perl", "-e", script], capture_output=True, text=True, timeout=30,
                          check=False)
    return done.stdout + done.stderr


def test_perl_clamav_client(front: Front) -> None:
    f = front.files
    assert perl(front, "print $c->ping ? 'alive' : 'dead';") == "alive"
    out = perl(front, f"my ($p, $v) = $c->scan_path('{f}/eicar.com'); print \"$p|$v\";")
    assert out == f"{f}/eicar.com|{EICAR_NAME}"
    out = perl(front, f"my ($p, $v) = $c->scan_path('{f}/clean.txt'); "
               "print \"$p|\", defined $v ? $v : 'clean';")
    assert out == f"{f}/clean.txt|clean"
    out = perl(front, f"my ($p, $v) = $c->scan_path('{f}/tree'); print \"$p|$v\";")
    assert out == f"{f}/tree/one/two/three/eicar.com|{EICAR_NAME}"
    # Not scanned: the client throws instead of returning "clean".
    out = perl(front, f"my ($p, $v) = eval {{ $c->scan_path('{f}/big.txt') }}; "
               "print $@ ? 'error' : 'clean';")
    assert out == "error"


needs_exim = pytest.mark.skipif(EXIM is None or os.geteuid() != 0,
                                reason="exim -C ... -bmalware needs exim4-daemon-heavy and root")


@needs_exim
def test_exim_clamd_unix_and_tcp(front: Front) -> None:
    work = front.files.parent / "exim"
    work.mkdir()
    work.chmod(0o755)
    infected = b"Subject: hi\n\n" + EICAR + b"\n"
    clean = b"Subject: hi\n\nJust a note.\n"
    out = exim_malware(work, front.clamd_socket, infected, "u-infected", "clamd")
    assert f"Malware found: {EICAR_NAME}" in out, out
    out = exim_malware(work, front.clamd_socket, clean, "u-clean", "clamd")
    assert "No malware found." in out, out
    tcp = f"127.0.0.1 {front.port}"
    out = exim_malware(work, tcp, infected, "t-infected", "clamd")
    assert f"Malware found: {EICAR_NAME}" in out, out
    out = exim_malware(work, tcp, clean, "t-clean", "clamd")
    assert "No malware found." in out, out
    # A message over the stream limit is a scanner failure for Exim, never "no malware".
    big = b"Subject: big\n\n" + b"line of text\n" * (MAX_STREAM // 10)
    out = exim_malware(work, tcp, big, "t-big", "clamd")
    assert "No malware found" not in out, out
    assert "Malware lookup returned non-okay/fail" in out, out
