"""Golden transcripts against the real daemon: whole, byte by byte, random splits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import Daemon
from tests.golden_util import load_transcripts, make_golden_files, splits

MODES = ["whole", "bytewise", "random-1", "random-2", "random-3"]


@pytest.fixture
def data_dir(short_tmp: Path) -> Path:
    d = short_tmp / "g"
    d.mkdir()
    make_golden_files(d)
    return d


def _replay(daemon: Daemon, send: bytes, mode: str, closes: bool, expect_len: int) -> bytes:
    c = daemon.client(timeout=15)
    seed = int(mode.rsplit("-", 1)[1]) if mode.startswith("random") else 0
    for chunk in splits(send, mode.split("-")[0], seed):
        try:
            c.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            assert closes, "the daemon closed a connection it should have kept"
            break  # it stopped listening after a fatal error; its reply is still queued
        if mode == "bytewise":
            time.sleep(0.0002)  # let most bytes arrive in packets of their own
    got = b""
    while len(got) < expect_len:
        line = c.line()
        if not line:
            break
        got += line
    if closes:
        assert c.closed_by_peer(), "the daemon should close after a fatal error"
    c.close()
    return got


@pytest.mark.parametrize("mode", MODES)
def test_golden_transcripts(daemon: Daemon, data_dir: Path, mode: str) -> None:
    transcripts = load_transcripts(data_dir)
    assert {t.name for t in transcripts} >= {"basic", "overlong", "stream_limit"}
    for t in transcripts:
        got = _replay(daemon, t.send, mode, t.closes, len(t.expect))
        assert got == t.expect, f"{t.name} ({mode})"
