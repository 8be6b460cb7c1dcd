"""read_fd: the whole file in one pread when fstat's size still holds, else in chunks;
never more than the limit, and a file that grew or shrank since fstat read as it is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scand.engines import base
from scand.engines.base import read_fd


@pytest.mark.parametrize("size", [0, 1, 4096, base.READ_CHUNK + 17])
def test_reads_what_is_there(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    f = tmp_path / "f"
    f.write_bytes(data)
    fd = os.open(f, os.O_RDONLY)
    try:
        assert read_fd(fd, 10**9, size) == data  # fstat's size
        assert read_fd(fd, 10**9) == data  # no size: chunks
        assert read_fd(fd, 10**9, size + 10) == data  # shrank since fstat
        assert read_fd(fd, 10**9, max(1, size // 2)) == data  # grew since fstat
        assert read_fd(fd, size, size) == data  # exactly at the limit
        if size:
            assert read_fd(fd, size - 1, size) is None  # over the limit
            assert read_fd(fd, size - 1, max(1, size // 2)) is None  # grew past it
            assert read_fd(fd, size - 1) is None
    finally:
        os.close(fd)


def test_one_pread_when_the_size_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * (3 * base.READ_CHUNK))
    calls: list[int] = []
    real = os.pread

    def counting(fd: int, n: int, pos: int) -> bytes:
        calls.append(n)
        return real(fd, n, pos)

    monkeypatch.setattr(base.os, "pread", counting)
    fd = os.open(f, os.O_RDONLY)
    try:
        assert len(read_fd(fd, 10**9, 3 * base.READ_CHUNK) or b"") == 3 * base.READ_CHUNK
    finally:
        os.close(fd)
    assert calls == [3 * base.READ_CHUNK + 1]
