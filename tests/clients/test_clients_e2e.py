"""scand-scan and the Python client against the real daemon on a real socket.

Each case runs the client as its own process (``python -I -S file.py``, as
when the file is copied alone to a relay host) and checks exit code, stdout
and stderr.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients import scandclient as sc
from tests.clients.conftest import CHAOS_UNCHECKED, EICAR, client_env, run_client
from tests.conftest import DaemonFactory

EICAR_NAME = "Eicar-Test-Signature"
SMALL_STREAM_LIMIT = "[server]\nmax_stream_bytes = 1000\n"


@pytest.fixture
def files(short_tmp: Path) -> Path:
    d = short_tmp / "files"
    d.mkdir()
    (d / "clean.txt").write_bytes(b"Dear customer, your invoice is attached.\n")
    (d / "eicar.com").write_bytes(EICAR)
    (d / "chaos.txt").write_bytes(CHAOS_UNCHECKED)
    (d / "big.bin").write_bytes(b"\0" * 5000)
    return d


def scan(
    sock: str, *args: str, stdin: bytes = b"", cwd: Path | None = None
) -> tuple[int, str, str]:
    done = run_client("scand-scan", "--socket", sock, *args, stdin=stdin, cwd=cwd)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def test_clean_infected_missing(scand_daemon: DaemonFactory, files: Path) -> None:
    d = scand_daemon(workers=1)
    assert scan(d.socket, str(files / "clean.txt")) == (0, f"{files}/clean.txt: OK\n", "")
    assert scan(d.socket, str(files / "eicar.com")) == (
        1, f"{files}/eicar.com: {EICAR_NAME} FOUND\n", "")
    assert scan(d.socket, str(files / "missing")) == (
        2, f"{files}/missing: not-found UNCHECKED\n", "")
    # Several paths: infected outranks unchecked, one line each, in order.
    code, out, err = scan(d.socket, str(files / "clean.txt"), str(files / "missing"),
                          str(files / "eicar.com"))
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        f"{files}/clean.txt: OK",
        f"{files}/missing: not-found UNCHECKED",
        f"{files}/eicar.com: {EICAR_NAME} FOUND",
    ]
    # A directory is scanned by the daemon, recursively.
    assert scan(d.socket, str(files)) == (1, f"{files}: {EICAR_NAME} FOUND\n", "")


def test_relative_paths_are_made_absolute(scand_daemon: DaemonFactory, files: Path) -> None:
    d = scand_daemon(workers=1)
    assert scan(d.socket, "clean.txt", "./eicar.com", cwd=files) == (
        1, f"clean.txt: OK\n./eicar.com: {EICAR_NAME} FOUND\n", "")


def test_stdin_and_stream(scand_daemon: DaemonFactory, files: Path) -> None:
    d = scand_daemon(workers=1)
    assert scan(d.socket, "-", stdin=EICAR) == (1, f"stream: {EICAR_NAME} FOUND\n", "")
    assert scan(d.socket, "-", stdin=b"hello\n") == (0, "stream: OK\n", "")
    assert scan(d.socket, "--stream", str(files / "clean.txt")) == (
        0, f"{files}/clean.txt: OK\n", "")
    sub = files / "sub"
    sub.mkdir()
    (sub / "a.txt").write_bytes(b"a")
    (sub / "b.com").write_bytes(EICAR)
    assert scan(d.socket, "--stream", str(sub)) == (
        1, f"{sub}/a.txt: OK\n{sub}/b.com: {EICAR_NAME} FOUND\n", "")


def test_json_output(scand_daemon: DaemonFactory, files: Path) -> None:
    d = scand_daemon(workers=1)
    code, out, err = scan(d.socket, "--json", str(files / "clean.txt"), str(files / "eicar.com"),
                          str(files / "missing"))
    assert (code, err) == (1, "")
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows[0] == {"path": f"{files}/clean.txt", "verdict": "clean"}
    assert rows[1] == {"path": f"{files}/eicar.com", "verdict": "infected", "name": EICAR_NAME}
    assert rows[2]["verdict"] == "unchecked" and rows[2]["reason"] == "not-found"


def test_daemon_down(short_tmp: Path, files: Path) -> None:
    sock = str(short_tmp / "nobody-listens")
    code, out, err = scan(sock, str(files / "clean.txt"))
    assert (code, err) == (2, "")
    assert out == (f"{files}/clean.txt: cannot connect to {sock}: "
                   "No such file or directory ERROR\n")
    # The socket also comes from SCAND_SOCKET when --socket is not given.
    done = run_client("scand-scan", "-", stdin=b"x", env=client_env(SCAND_SOCKET=sock))
    assert done.returncode == 2 and done.stdout.startswith(b"stream: cannot connect to")


def test_daemon_unchecked_reply(scand_daemon: DaemonFactory, files: Path) -> None:
    d = scand_daemon("--engine", "chaos", workers=1)
    assert scan(d.socket, str(files / "chaos.txt")) == (
        2, f"{files}/chaos.txt: internal UNCHECKED\n", "")
    assert scan(d.socket, "-", stdin=CHAOS_UNCHECKED) == (2, "stream: internal UNCHECKED\n", "")


def test_oversize_stream(scand_daemon: DaemonFactory, files: Path) -> None:
    d = scand_daemon(workers=1, config=SMALL_STREAM_LIMIT)
    assert scan(d.socket, "--stream", str(files / "big.bin")) == (
        2, f"{files}/big.bin: too-large UNCHECKED\n", "")
    code, out, _ = scan(d.socket, "--json", "-", stdin=b"\0" * 3_000_000)
    assert code == 2
    assert json.loads(out) == {"path": "stream", "verdict": "unchecked", "reason": "too-large",
                               "detail": "3000000>1000"}
    # By path the stream limit does not apply.
    assert scan(d.socket, str(files / "big.bin")) == (0, f"{files}/big.bin: OK\n", "")


def test_usage_errors(short_tmp: Path) -> None:
    done = run_client("scand-scan")
    assert done.returncode == 2 and b"no PATH given" in done.stderr and done.stdout == b""
    done = run_client("scand-scan", "--bogus", "x")
    assert done.returncode == 2 and b"unknown option '--bogus'" in done.stderr
    done = run_client("scand-scan", "--timeout", "soon", "x")
    assert done.returncode == 2 and b"not a number" in done.stderr


# --- the Python module against the real daemon -----------------------------------


def test_python_client(scand_daemon: DaemonFactory, files: Path) -> None:
    d = scand_daemon(workers=1, config=SMALL_STREAM_LIMIT)
    with sc.Client(d.socket, timeout=10) as client:
        assert client.ping()
        assert client.version().startswith("scand ")
        assert client.scan_path(files / "clean.txt") == sc.Clean()
        assert client.scan_path(files / "eicar.com") == sc.Infected(EICAR_NAME)
        assert client.scan_bytes(EICAR) == sc.Infected(EICAR_NAME)
        assert client.scan_bytes(b"x" * 2_000_000) == sc.Unchecked("too-large", "2000000>1000")
        assert client.scan_bytes(b"fine") == sc.Clean()  # reconnected after the close
        missing = client.scan_path(files / "missing")
        assert isinstance(missing, sc.Unchecked) and missing.reason == "not-found"
        stats = client.stats()
        assert isinstance(stats, dict) and "requests" in stats


async def test_async_python_client(scand_daemon: DaemonFactory, files: Path) -> None:
    d = scand_daemon(workers=1, config=SMALL_STREAM_LIMIT)
    async with sc.AsyncClient(d.socket, timeout=10) as client:
        assert await client.ping()
        assert await client.scan_path(files / "eicar.com") == sc.Infected(EICAR_NAME)
        assert await client.scan_bytes(b"x" * 2_000_000) == sc.Unchecked(
            "too-large", "2000000>1000")
        assert await client.scan_bytes(b"fine") == sc.Clean()
        assert "requests" in await client.stats()
