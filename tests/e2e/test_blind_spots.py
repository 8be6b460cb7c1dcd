"""Issue [1/7] acceptance 5: ClamAV 1.4's own blind spots never become ``0``.

Measured with clamd and clamscan 1.4.6: a zip member whose local header carries
zip64 sizes is skipped and called clean; a member over MaxFileSize is cut to
MaxFileSize, scanned as a prefix and called clean even with AlertExceedsMax;
with the clean cache on, a 42.zip-style bomb comes back clean. The walker that
runs beside clamd knows member sizes and flags, so scand answers ``1:`` or
``-1:`` for each, with the built-in engine and with clamd (cache on and off).
"""

from __future__ import annotations

import io
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import EICAR, DaemonFactory
from tests.content.test_bombs_fuzz import forty_two
from tests.e2e.test_clamd import CLAMD, require_clamav
from tests.e2e.test_clamd import sigdir as sigdir  # the fixture

MiB = 1024 * 1024


def zip64_member(payload: bytes = EICAR) -> bytes:
    """A deflated member written with zip64 sizes in its local header."""
    buf = io.BytesIO()
    with (zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z,
          z.open("readme.txt", "w", force_zip64=True) as f):
        f.write(payload + b"\n" + b"harmless text\n" * 20)
    data = buf.getvalue()
    assert data[26:30] != b"\x00\x00\x00\x00" and b"\x01\x00\x10\x00" in data[:80]
    return data


def oversized_member(size: int = 100 * MiB) -> bytes:
    """About 100 MiB of 2:1-compressible text (hex digits) with EICAR at its end."""
    text = os.urandom((size - len(EICAR)) // 2).hex().encode() + EICAR
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("data.txt", text)
    return buf.getvalue()


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("blind")
    d.chmod(0o755)
    out = {}
    for name, build in (("zip64.zip", zip64_member), ("big.zip", oversized_member),
                        ("42.zip", forty_two)):
        p = d / name
        p.write_bytes(build())
        p.chmod(0o644)
        out[name] = p
    return out


def clamscan_says(sigs: Path, path: Path, *flags: str) -> str:
    """What clamscan 1.4 itself answers (the blind spot this test is about)."""
    run = subprocess.run(["clamscan", "--no-summary", "-d", str(sigs), *flags, str(path)],
                         capture_output=True, text=True, timeout=120)
    return run.stdout.strip().rsplit(" ", 1)[-1]


def test_builtin_engine_reads_them(scand_daemon: DaemonFactory,
                                   cases: dict[str, Path]) -> None:
    d = scand_daemon()
    c = d.client(timeout=60)
    assert c.ask(f"{cases['zip64.zip']}\n".encode()) == b"1:Eicar-Test-Signature\n"
    assert c.ask(f"{cases['big.zip']}\n".encode()) == b"1:Eicar-Test-Signature\n"
    assert c.ask(f"{cases['42.zip']}\n".encode()).startswith(b"-1:too-large")
    c.close()


@pytest.mark.slow
@pytest.mark.parametrize("cache", ["on", "off"])
def test_clamd_engine_never_clean(scand_daemon: DaemonFactory, sigdir: Path,
                                  cases: dict[str, Path], short_tmp: Path, cache: str) -> None:
    require_clamav()
    assert CLAMD
    # The blind spots are real: clamscan calls the zip64 member and the oversized one clean.
    assert clamscan_says(sigdir, cases["zip64.zip"]) == "OK"
    assert clamscan_says(sigdir, cases["big.zip"], "--alert-exceeds-max=yes",
                         "--max-filesize=64M") == "OK"  # as the managed clamd runs
    d = scand_daemon("--engine", "clamd", "--signatures", str(sigdir), config=(
        f'[clamd]\ndisable_cache = {"false" if cache == "on" else "true"}\n'
        f'run_dir = "{short_tmp}/run-{cache}"\n'))
    c = d.client(timeout=120)
    # zip64: the walker decodes the member and hands it to clamd as a part of its own.
    assert c.ask(f"{cases['zip64.zip']}\n".encode()) == (
        b"1:Eicar-Test-Signature.UNOFFICIAL\n")
    assert c.ask(f"{cases['big.zip']}\n".encode()).startswith(b"-1:too-large")
    if cache == "on":  # the bomb that clamd's clean cache calls clean
        for _ in range(2):  # twice: the second would hit clamd's cache
            assert c.ask(f"{cases['42.zip']}\n".encode()).startswith(b"-1:too-large")
    # Without its cache clamd inflates every leaf of the bomb (minutes of CPU) and
    # the answer waits for clamd's deadline: -1:timeout, never 0. Not run here.
    c.close()


@pytest.mark.slow
@pytest.mark.parametrize("mail_parser", ["scand", "libclamav"])
def test_clamav_engine_never_clean(scand_daemon: DaemonFactory, sigdir: Path,
                                   cases: dict[str, Path], short_tmp: Path,
                                   mail_parser: str) -> None:
    """libclamav in the workers: the walker's parts handed to it (``scand``) or its
    own parsers beside the names-only walk (``libclamav``); the same answers."""
    require_clamav()
    d = scand_daemon("--engine", "clamav", "--signatures", str(sigdir), config=(
        f'[clamav]\nmail_parser = "{mail_parser}"\ntmp_dir = "{short_tmp}/ct-{mail_parser}"\n'))
    c = d.client(timeout=120)
    assert c.ask(f"{cases['zip64.zip']}\n".encode()) == (
        b"1:Eicar-Test-Signature.UNOFFICIAL\n")
    assert c.ask(f"{cases['big.zip']}\n".encode()).startswith(b"-1:too-large")
    c.close()
