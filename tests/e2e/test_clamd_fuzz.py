"""Fuzzing the clamd front against the live daemon (hypothesis).

Grammar-built connections, one command outside IDSESSION or a pipelined
IDSESSION (PING, VERSION, SCAN of clean/infected/missing/over-limit files,
INSTREAM with random chunking, a fatal ending: FILDES without a descriptor,
an over-limit chunk header, a command not allowed in a session), cut at random
points. Every request must be answered exactly once with its own id, and
nothing that was not fully scanned may be answered OK. Raw bytes must never
crash or hang the daemon. Hostile paths (tests/hostile_paths.py: NUL inside
an ``n``-ended path, invalid UTF-8, over-long names, link loops and a
1,500-link chain, paths outside the roots, a link a thread swaps while
requests run) under every path command are never OK, and the daemon lives.
``SCAND_FUZZ_EXAMPLES`` sets the example count.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scand
from tests.conftest import EICAR, Daemon, launch
from tests.hostile_paths import Flipper, hostile_tree

EXAMPLES = int(os.environ.get("SCAND_FUZZ_EXAMPLES", "2000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAX_STREAM = 2048
Check = Callable[[str], bool]
Req = tuple[bytes, Check, bool]  # bytes, check of the reply body, fatal (ends the session)

OUR_VERSION = f"scand {scand.__version__}/"
HOSTILE: dict[str, bytes] = {}  # filled by the fixture: name -> path bytes
PATH_COMMANDS = ["SCAN", "CONTSCAN", "MULTISCAN", "ALLMATCHSCAN"]


@pytest.fixture(scope="module")
def fuzz_front() -> Iterator[tuple[str, Path, Daemon]]:
    d = Path(tempfile.mkdtemp(prefix="scand-cfz-", dir="/tmp"))
    d.chmod(0o755)
    data = d / "data"
    data.mkdir()
    (data / "clean.txt").write_text("clean\n")
    (data / "eicar.com").write_bytes(EICAR)
    (data / "big.bin").write_bytes(b"b" * 5000)
    HOSTILE.update(hostile_tree(data))
    flipper = Flipper(data)
    HOSTILE["flip"] = str(flipper.link).encode()
    sock = str(d / "clamd.ctl")
    daemon = launch(d, 0, "--clamd-socket", sock,
                    config=f"[server]\nmax_stream_bytes = {MAX_STREAM}\n"
                           f"allowed_roots = [\"{d}\"]\n"
                           "[limits]\nmax_file_size = 4096\n")
    try:
        with flipper:
            yield sock, data, daemon
    finally:
        daemon.stop()
        shutil.rmtree(d, ignore_errors=True)


def chunk(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data


def never_ok(body: str) -> bool:
    return not body.endswith(" OK") and body.endswith(" ERROR")


def hostile_ok(body: str) -> bool:
    """A hostile path: an error, or FOUND (the swapped link's infected file); no crash."""
    return (never_ok(body) or body.endswith(" FOUND")) and " internal " not in body


def hostile_request(t: bytes, command: str, name: str) -> Req:
    """A path command on a hostile path; a NUL inside the path only in an ``n`` command
    (in a ``z`` command it ends the command)."""
    path = HOSTILE[name]
    if b"\0" in path:
        t = b"n"
    return t + command.encode() + b" " + path + (b"\0" if t == b"z" else b"\n"), hostile_ok, False


def requests(data: Path) -> st.SearchStrategy[Req]:
    term = st.sampled_from([b"z", b"n"])

    def cmd(t: bytes, text: str) -> bytes:
        return t + text.encode() + (b"\0" if t == b"z" else b"\n")

    def scan(t: bytes, target: str) -> Req:
        p = f"{data}/{target}"
        checks: dict[str, Check] = {
            "clean.txt": lambda b: b == f"{p}: OK",
            "eicar.com": lambda b: b == f"{p}: Eicar-Test-Signature FOUND",
            "missing": lambda b: b == f"{p}: File path check failure: No such file or "
                                      "directory. ERROR",
            "big.bin": lambda b: b == f"{p}: too-large ERROR",  # over limits.max_file_size
        }
        return cmd(t, f"SCAN {p}"), checks[target], False

    def stream(t: bytes, body: bytes, cuts: list[int], infected: bool) -> Req:
        body = (body + EICAR if infected else body)[:MAX_STREAM]
        infected = EICAR in body
        raw, pos = b"", 0
        for n in [*cuts, len(body)]:
            if pos >= len(body):
                break
            raw += chunk(body[pos : pos + n])
            pos += n
        # Random bytes may look like a container the walker cannot read (an SZDD
        # header, say): that is an honest ERROR. What may never happen: OK for the
        # EICAR stream, or FOUND for a clean one.
        found = "stream: Eicar-Test-Signature FOUND"

        def check(b: str) -> bool:
            honest_error = re.fullmatch(r"stream: [a-z-]+ ERROR", b) is not None
            return b == (found if infected else "stream: OK") or honest_error

        return cmd(t, "INSTREAM") + raw + chunk(b""), check, False

    return st.one_of(
        term.map(lambda t: (cmd(t, "PING"), lambda b: b == "PONG", False)),
        term.map(lambda t: (cmd(t, "VERSION"), lambda b: b.startswith(OUR_VERSION), False)),
        st.builds(scan, term, st.sampled_from(["clean.txt", "eicar.com", "missing", "big.bin"])),
        st.builds(hostile_request, term, st.just("SCAN"), st.sampled_from(sorted(HOSTILE))),
        st.builds(stream, term, st.binary(max_size=600), st.lists(st.integers(1, 200),
                                                                  max_size=5), st.booleans()),
    )


def fatal_endings(data: Path) -> st.SearchStrategy[Req]:
    return st.sampled_from([
        (b"nFILDES\nx", lambda b: b == "No file descriptor received. ERROR", True),
        (b"zINSTREAM\0" + struct.pack("!I", MAX_STREAM + 1),
         lambda b: b == "INSTREAM size limit exceeded. ERROR", True),
        (f"zCONTSCAN {data}\0".encode(),
         lambda b: b == "Command invalid inside IDSESSION. ERROR", True),
        (b"PING\n", lambda b: b.startswith("Only nCMDS"), True),
    ])


def exchange(path: str, payload: bytes, cuts: list[int], timeout: float = 20.0) -> bytes:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    pos = 0
    try:
        for n in [*cuts, len(payload)]:
            if pos >= len(payload):
                break
            sock.sendall(payload[pos : pos + n])
            pos += n
        sock.shutdown(socket.SHUT_WR)  # half-close: pending replies still come
    except (BrokenPipeError, ConnectionResetError):
        pass
    out = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        out += data
    sock.close()
    return out


def replies(raw: bytes) -> list[str]:
    """Reply bodies, each ended by NUL or LF (a body never contains either)."""
    return [m.group(1).decode("latin-1") for m in re.finditer(rb"([^\0\n]*)[\0\n]", raw)]


@FUZZ
@given(data=st.data(), cuts=st.lists(st.integers(1, 97), max_size=40))
def test_sessions(fuzz_front: tuple[str, Path, Daemon], data: st.DataObject,
                  cuts: list[int]) -> None:
    sock, files, daemon = fuzz_front
    reqs = data.draw(st.lists(requests(files), min_size=1, max_size=10))
    if data.draw(st.booleans()):
        reqs.append(data.draw(fatal_endings(files)))
    session = data.draw(st.booleans())
    if not session:
        # One command per connection: only the first is answered; the rest is ignored.
        payload = reqs[0][0] + b"".join(r[0] for r in reqs[1:])
        got = replies(exchange(sock, payload, cuts))
        assert len(got) == 1 and reqs[0][1](got[0]), (payload[:200], got)
        return
    end = [b"zEND\0", b"nEND\n", b""][data.draw(st.integers(0, 2))]
    payload = b"zIDSESSION\0" + b"".join(r[0] for r in reqs) + end
    fatal_at = next((i for i, r in enumerate(reqs) if r[2]), len(reqs))
    want = reqs[: fatal_at + 1]
    got = replies(exchange(sock, payload, cuts))
    by_id: dict[int, str] = {}
    for line in got:
        num, _, body = line.partition(": ")
        assert num.isdigit() and int(num) not in by_id, (payload[:300], got)
        by_id[int(num)] = body
    assert sorted(by_id) == list(range(1, len(want) + 1)), (payload[:300], got)
    for i, (_, check, _) in enumerate(want, 1):
        assert check(by_id[i]), (i, by_id[i], payload[:300])
    assert daemon.proc.poll() is None


@settings(max_examples=max(200, EXAMPLES // 4), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), cuts=st.lists(st.integers(1, 97), max_size=20))
def test_hostile_path_commands(fuzz_front: tuple[str, Path, Daemon], data: st.DataObject,
                               cuts: list[int]) -> None:
    """Any path command, outside a session, on a hostile path, cut anywhere."""
    sock, _, daemon = fuzz_front
    request = data.draw(st.builds(hostile_request, st.sampled_from([b"z", b"n"]),
                                  st.sampled_from(PATH_COMMANDS),
                                  st.sampled_from(sorted(HOSTILE))))[0]
    got = replies(exchange(sock, request, cuts))
    assert len(got) == 1 and hostile_ok(got[0]), (request[:200], got)
    assert daemon.proc.poll() is None


def test_every_hostile_path(fuzz_front: tuple[str, Path, Daemon]) -> None:
    """Each hostile path under each path command, on its own connection; the daemon lives."""
    sock, _, daemon = fuzz_front
    for name in sorted(HOSTILE):
        for command in PATH_COMMANDS:
            for t in (b"n", b"z"):
                for _ in range(10 if name == "flip" else 1):
                    request = hostile_request(t, command, name)[0]
                    got = replies(exchange(sock, request, []))
                    assert len(got) == 1 and hostile_ok(got[0]), (name, command, got)
                    assert daemon.proc.poll() is None, (name, command)
    assert exchange(sock, b"zPING\0", []) == b"PONG\0"


def test_outside_roots_no_existence_oracle(fuzz_front: tuple[str, Path, Daemon]) -> None:
    """Outside allowed_roots a path gets the same answer whether it exists or not."""
    sock, files, _ = fuzz_front
    for command in PATH_COMMANDS:
        for exists, missing in (("/etc/passwd", "/etc/no-such-file-here"),
                                (f"{files}/../../../etc/passwd",
                                 f"{files}/../../../etc/no-such-file-here")):
            a = replies(exchange(sock, f"z{command} {exists}\0".encode(), []))
            b = replies(exchange(sock, f"z{command} {missing}\0".encode(), []))
            assert a == [f"{exists}: not-allowed ERROR"], a
            assert b == [f"{missing}: not-allowed ERROR"], b


@settings(max_examples=max(200, EXAMPLES // 4), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from([b"", b"z", b"n", b"zIDSESSION\0", b"nIDSESSION\nnINSTREAM\n",
                               b"zFILDES\0", b"SCAN "]),
       payload=st.binary(min_size=1, max_size=3000), cuts=st.lists(st.integers(1, 300)))
def test_random_bytes_never_crash(fuzz_front: tuple[str, Path, Daemon], prefix: bytes,
                                  payload: bytes, cuts: list[int]) -> None:
    sock, _, daemon = fuzz_front
    raw = exchange(sock, prefix + payload, cuts)
    for body in replies(raw):
        # Whatever was asked, nothing under the data dir was called clean unless it is.
        assert not (body.endswith(": OK") and "eicar" in body), body
    assert daemon.proc.poll() is None
    assert exchange(sock, b"zPING\0", []) == b"PONG\0"


def test_no_ok_for_unscanned(fuzz_front: tuple[str, Path, Daemon]) -> None:
    """The invariant the fuzzer leans on, stated once: every unscanned case is ERROR."""
    sock, files, _ = fuzz_front
    for cmd in ("SCAN", "CONTSCAN", "MULTISCAN", "ALLMATCHSCAN"):
        for target in ("big.bin", "missing"):
            body = replies(exchange(sock, f"z{cmd} {files}/{target}\0".encode(), []))
            assert len(body) == 1 and never_ok(body[0]), (cmd, target, body)
