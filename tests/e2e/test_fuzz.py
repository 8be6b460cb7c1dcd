"""Protocol fuzzing against the live daemon (hypothesis).

Grammar-built sessions (paths, commands, streams, junk lines, CR/NUL, an
optional fatal ending) are cut at random points and sent; the daemon must
answer every complete request exactly once, in order, with a well-formed line,
or close after ``-1:protocol`` / ``-1:too-large``. Raw random bytes must
never crash it. Hostile paths (tests/hostile_paths.py: NUL, invalid UTF-8,
over-long names, link loops and a 1,500-link chain, paths outside the roots,
and a link a thread swaps while requests run) are never answered ``0``.
``SCAND_FUZZ_EXAMPLES`` raises the example count (bench/README).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import EICAR, Daemon, launch
from tests.hostile_paths import Flipper, hostile_tree

EXAMPLES = int(os.environ.get("SCAND_FUZZ_EXAMPLES", "2000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# Junk can spell RELOAD (hypothesis found it): RELOADING is a reply too.
REPLY_STARTS = (b"0\n", b"1:", b"-1:", b"PONG\n", b"scand ", b"{", b"RELOADING\n")
HOSTILE: dict[str, bytes] = {}  # filled by the fixture: name -> path bytes


@pytest.fixture(scope="module")
def fuzz_daemon() -> Iterator[tuple[Daemon, Path]]:
    d = Path(tempfile.mkdtemp(prefix="scand-fz-", dir="/tmp"))
    d.chmod(0o755)
    data = d / "data"
    data.mkdir()
    (data / "clean.txt").write_text("clean\n")
    (data / "eicar.com").write_bytes(EICAR)
    HOSTILE.update(hostile_tree(data))
    flipper = Flipper(data)
    HOSTILE["flip"] = str(flipper.link).encode()
    daemon = launch(d, 0, config=f"[server]\nmax_stream_bytes = 4096\n"
                                 f"allowed_roots = [\"{d}\"]\n")
    try:
        with flipper:
            yield daemon, data
    finally:
        daemon.stop()
        shutil.rmtree(d, ignore_errors=True)


def hostile_requests() -> st.SearchStrategy[tuple[bytes, int]]:
    """A hostile path (a NUL in it is a protocol error: still one reply)."""
    return st.sampled_from(sorted(HOSTILE)).map(lambda k: (HOSTILE[k] + b"\n", 1))


def requests(data: Path) -> st.SearchStrategy[tuple[bytes, int]]:
    """One request as (bytes, replies it must get)."""
    path = st.sampled_from([f"{data}/clean.txt", f"{data}/eicar.com", f"{data}/nope",
                            f"{data}/", f"{data}/../data/clean.txt"])
    junk = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").lstrip(b"/S"))
    body = st.binary(max_size=300)
    return st.one_of(
        path.map(lambda p: (p.encode() + b"\n", 1)),
        st.sampled_from([b"PING\n", b"VERSION\n", b"STATS\n", b"\n", b"ping\n"]).map(
            lambda c: (c, 1)),
        junk.map(lambda j: (j + b"\n", 1)),
        path.map(lambda p: (p.encode() + b"\r\n", 1)),
        path.map(lambda p: (p.encode()[:3] + b"\x00" + p.encode()[3:] + b"\n", 1)),
        body.map(lambda b: (b"STREAM %d\n" % len(b) + b, 1)),
        hostile_requests(),
    )


def fatal_endings() -> st.SearchStrategy[bytes]:
    return st.sampled_from([b"", b"/" + b"x" * 5000, b"STREAM 99999\n", b"STREAM x\n"])


def exchange(daemon: Daemon, payload: bytes, cuts: list[int]) -> list[bytes]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(daemon.socket)
    pos = 0
    try:
        for n in [*cuts, len(payload)]:
            if pos >= len(payload):
                break
            sock.sendall(payload[pos : pos + n])
            pos += n
        sock.shutdown(socket.SHUT_WR)  # half-close: pending replies still come
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed after a fatal error; its last reply is queued
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    sock.close()
    return out.splitlines(keepends=True)


@FUZZ
@given(data=st.data(), cuts=st.lists(st.integers(1, 97), max_size=40))
def test_grammar_sessions(fuzz_daemon: tuple[Daemon, Path], data: st.DataObject,
                          cuts: list[int]) -> None:
    daemon, files = fuzz_daemon
    parts = data.draw(st.lists(requests(files), min_size=1, max_size=12))
    ending = data.draw(fatal_endings())
    payload = b"".join(p for p, _ in parts) + ending
    want = sum(n for _, n in parts) + (1 if ending else 0)
    lines = exchange(daemon, payload, cuts)
    assert len(lines) == want, (payload[:200], lines)
    assert all(line.endswith(b"\n") and line.startswith(REPLY_STARTS) for line in lines)
    assert all(b"\x00" not in line and b"\r" not in line for line in lines)
    assert not any(line.startswith(b"-1:internal") for line in lines), lines
    if ending:
        assert lines[-1].startswith((b"-1:protocol", b"-1:too-large"))
    hostile = set(HOSTILE.values())
    for (request, _), line in zip(parts, lines, strict=False):
        if request[:-1] in hostile:
            assert line.startswith((b"-1:", b"1:")), (request, line)  # never 0
    assert daemon.proc.poll() is None


def test_every_hostile_path(fuzz_daemon: tuple[Daemon, Path]) -> None:
    """Each hostile path once, each on its own connection, then the daemon still answers."""
    daemon, _ = fuzz_daemon
    for name, path in sorted(HOSTILE.items()):
        for _ in range(20 if name == "flip" else 1):
            lines = exchange(daemon, path + b"\n", [])
            assert len(lines) == 1 and lines[0].startswith((b"-1:", b"1:")), (name, lines)
            assert not lines[0].startswith((b"-1:internal", b"-1:worker-crashed")), (name, lines)
    assert daemon.proc.poll() is None
    assert daemon.ask(b"PING\n") == b"PONG\n"


@settings(max_examples=max(200, EXAMPLES // 3), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(min_size=1, max_size=3000), cuts=st.lists(st.integers(1, 300)))
def test_random_bytes_never_crash(fuzz_daemon: tuple[Daemon, Path], payload: bytes,
                                  cuts: list[int]) -> None:
    daemon, _ = fuzz_daemon
    lines = exchange(daemon, payload, cuts)
    assert all(line.startswith(REPLY_STARTS) for line in lines if line.endswith(b"\n"))
    assert not any(line.startswith(b"-1:internal") for line in lines), lines
    assert daemon.proc.poll() is None
    assert daemon.ask(b"PING\n") == b"PONG\n"
