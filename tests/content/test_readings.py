"""Every reading reaches every engine (issue 23): EICAR behind each reading the
walker knows (:mod:`tests.content.readings`) is found by the built-in engine, by
libclamav (``--engine clamav``) and by clamd (``--engine clamd``), each through a
real daemon. With an engine that decodes by itself, what its own parser does
not read is read by the walk beside it and handed to the engine as a part."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from scand.config import Config
from scand.content import archives, mime, textblocks, walk
from tests.conftest import Daemon, launch
from tests.content.evasion_cases import EICAR
from tests.content.readings import readings

READINGS = readings()
CLAMD = shutil.which("clamd") or shutil.which("clamd", path="/usr/sbin")


def _ask_all(daemon: Daemon) -> dict[str, str]:
    client = daemon.client(timeout=60)
    try:
        return {rid: client.ask(b"STREAM %d\n" % len(msg) + msg).decode(
                    "utf-8", "replace").rstrip("\n") for rid, msg in READINGS.items()}
    finally:
        client.close()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="scand-rd-", dir="/tmp"))
    d.chmod(0o755)
    sigs = d / "sigs"
    sigs.mkdir()
    (sigs / "test.ndb").write_text(f"Eicar-Test-Signature:0:*:{EICAR.hex()}\n")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _replies(workdir: Path, n: int, *args: str, extra: str = "") -> dict[str, str]:
    config = "[policy]\nenabled = false\n" + extra  # a signature, not a name, must answer
    daemon = launch(workdir, n, *args, config=config, workers=1, ready_timeout=120)
    try:
        return _ask_all(daemon)
    finally:
        daemon.stop()


# clamav: libclamav handed the walker's parts (clamav.mail_parser = "scand", the
# default for this signature directory); clamav-libclamav: its own mail parser.
@pytest.fixture(scope="module", params=["builtin", "clamav", "clamav-libclamav", "clamd"])
def replies(request: pytest.FixtureRequest, workdir: Path) -> dict[str, str]:
    engine, _, parser = request.param.partition("-")
    if engine == "builtin":
        return _replies(workdir, 0)
    if engine == "clamd" and not CLAMD:
        pytest.fail("clamd not installed: run ./scripts/test (installs clamav-daemon)")
    n = {"clamav": 1, "clamav-libclamav": 3}.get(request.param, 2)
    return _replies(workdir, n, "--engine", engine, "--signatures", str(workdir / "sigs"),
                    extra=f'[clamav]\nmail_parser = "{parser}"\n' if parser else "")


@pytest.mark.parametrize("reading", sorted(READINGS))
def test_every_engine_finds_eicar_behind_every_reading(replies: dict[str, str],
                                                       reading: str) -> None:
    assert replies[reading].startswith("1:Eicar-Test-Signature"), replies[reading]


def test_every_format_encoding_and_text_block_has_a_reading() -> None:
    """A new entry in a table of the walker (archives.FORMATS, mime.ENCODINGS,
    textblocks.TEXT_BLOCKS) needs its reading here, so every engine is asked."""
    ctes = {mime.encoding_name(m.group(1).decode())
            for msg in READINGS.values()
            for m in re.finditer(rb"(?im)^Content-Transfer-Encoding: *(\S+)", msg)}
    assert set(mime.ENCODINGS) <= ctes
    assert all(any(kind.present(msg) for msg in READINGS.values())
               for kind in textblocks.TEXT_BLOCKS)
    kinds = {archives.sniff(part.data)
             for msg in READINGS.values() for part in walk(msg, "", Config().content)
             if hasattr(part, "data")}
    assert {f.kind for f in archives.FORMATS if f.decoded} <= kinds
