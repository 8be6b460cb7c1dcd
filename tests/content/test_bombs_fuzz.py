"""Issue 4/7 acceptance 4-5: bombs get their -1: reason fast and small; mutations never
crash a worker. Both run against the real daemon (the worker's memory cap applies)."""

from __future__ import annotations

import io
import random
import shutil
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Daemon, launch
from tests.content.corpus import banned_corpus, clean_corpus

MiB = 1024 * 1024
CAP_MB = 512


def zeros_zip(member_mb: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z, z.open("zeros.bin", "w") as f:
        block = bytes(MiB)
        for _ in range(member_mb):
            f.write(block)
    return buf.getvalue()


def forty_two(levels: int = 4, fanout: int = 8) -> bytes:
    """42.zip in miniature: zips of zips, the leaves 100 MiB of zeros each."""
    layer = zeros_zip(100)
    for level in range(levels):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for i in range(fanout):
                z.writestr(f"lib{level}{i}.zip", layer)
        layer = buf.getvalue()
    return layer


def gzip_of_zeros(gib: int = 1) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(MiB)
    out = [comp.compress(block) for _ in range(gib * 1024)]
    return b"".join(out) + comp.flush()


def many_parts(n: int = 10_000) -> bytes:
    head = (b"From: a@example.org\nTo: b@example.net\nSubject: parts\nMIME-Version: 1.0\n"
            b'Content-Type: multipart/mixed; boundary="B"\n\n')
    return head + b"".join(b"--B\nContent-Type: text/plain\n\nx\n" for _ in range(n)) + b"--B--\n"


def deep_rfc822(depth: int = 50) -> bytes:
    msg = b"From: a@example.org\nTo: b@example.net\nSubject: core\n\nbody\n"
    for i in range(depth):
        msg = (b"From: a@example.org\nTo: b@example.net\nSubject: level %d\n"
               b"MIME-Version: 1.0\nContent-Type: message/rfc822\n\n" % i) + msg
    return msg


@pytest.fixture(scope="module")
def content_daemon() -> Iterator[tuple[Daemon, Path]]:
    d = Path(tempfile.mkdtemp(prefix="scand-ct-", dir="/tmp"))
    d.chmod(0o755)
    daemon = launch(d, 0, config=f"[pool]\nmemory_cap_mb = {CAP_MB}\n"
                                 "[server]\nmax_stream_bytes = 8388608\n")
    try:
        yield daemon, d
    finally:
        daemon.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize(("label", "build", "reason"), [
    ("42.zip", forty_two, b"-1:too-large"),
    ("1 GiB of zeros, gzip", gzip_of_zeros, b"-1:too-large"),
    ("10,000 MIME parts", many_parts, b"-1:too-many-files"),
    ("50-deep message/rfc822", deep_rfc822, b"-1:too-deep"),
])
def test_bombs(content_daemon: tuple[Daemon, Path], label: str, build: object,
               reason: bytes) -> None:
    daemon, d = content_daemon
    assert callable(build)
    bomb = d / f"bomb-{label.split()[0]}"
    bomb.write_bytes(build())
    t0 = time.monotonic()
    reply = daemon.ask(f"{bomb}\n".encode(), timeout=30)
    elapsed = time.monotonic() - t0
    assert reply.startswith(reason), (label, reply)
    assert elapsed < 2.0, (label, elapsed)
    workers = daemon.stats()["pool"]["workers"]
    assert isinstance(workers, list)
    assert all(w["rss"] < CAP_MB * MiB for w in workers), workers
    print(f"{label}: {reply!r} in {elapsed * 1000:.0f} ms, "
          f"worker RSS max {max(w['rss'] for w in workers) / MiB:.0f} MiB")


SEEDS = [m for _, m, _ in banned_corpus()] + [m for _, m in clean_corpus()]


def mutate(data: bytes, how: str, rng: random.Random) -> bytes:
    if how == "truncate":
        return data[: rng.randrange(len(data))]
    if how == "bitflip":
        b = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b)
    if how == "bad-base64":
        return data.replace(b"A", b"!", rng.randint(1, 50)).replace(b"=\n", b"==\n==")
    if how == "header-garbage":
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
        cut = data.find(b"\n\n")
        return data[:cut] + b"\nX-Junk: " + junk + data[cut:] if cut > 0 else junk + data
    return data[::-1]


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(range(len(SEEDS))),
       how=st.sampled_from(["truncate", "bitflip", "bad-base64", "header-garbage", "reverse"]),
       salt=st.integers(0, 2**32))
def test_mutations_never_crash(content_daemon: tuple[Daemon, Path], seed: int, how: str,
                               salt: int) -> None:
    daemon, _ = content_daemon
    data = mutate(SEEDS[seed], how, random.Random(salt))
    reply = daemon.ask(b"STREAM %d\n" % len(data) + data)
    assert reply == b"0\n" or reply.startswith((b"1:", b"-1:")), reply
    assert not reply.startswith((b"-1:worker-crashed", b"-1:internal")), (how, reply)
    assert daemon.proc.poll() is None
