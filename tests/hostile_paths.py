"""Hostile paths for the fuzzers and the path tests: a tree of them, and a link a
thread keeps swapping while requests resolve it.

Every hostile path names something that cannot be scanned clean: it is
unreadable, refused, or (for the swapped link) an infected file or directory.
So a reply of clean (``0`` / ``OK``) for any of them is a bug.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

from tests.conftest import EICAR

CHAIN = 1500  # links: more than Python's recursion limit, far more than the kernel's 40


def chain(base: Path, n: int = CHAIN) -> Path:
    """``base/l<n>`` -> ... -> ``base/l0`` -> ``base/f`` (an infected file)."""
    base.mkdir(exist_ok=True)
    (base / "f").write_bytes(EICAR)
    os.symlink("f", base / "l0")
    for i in range(1, n + 1):
        os.symlink(f"l{i - 1}", base / f"l{i}")
    return base / f"l{n}"


def hostile_tree(data: Path) -> dict[str, bytes]:
    """Make the hostile objects under ``data``; name -> the path's bytes (as sent)."""
    (data / "loop").symlink_to(data / "loop")
    (data / "loop_a").symlink_to(data / "loop_b")
    (data / "loop_b").symlink_to(data / "loop_a")
    top = chain(data / "chain")
    (data / "chaindir").mkdir()
    os.symlink(top, data / "chaindir" / "entry")  # a tree holding only the chain
    base = str(data).encode()
    return {
        "nul": base + b"/x\0y",
        "nul_passwd": b"/etc/passwd\0x",
        "bad_utf8": base + b"/\xff\xfe\xc3",
        "long_name": base + b"/" + b"n" * 300,
        "long_path": base + b"/" + b"/".join([b"d" * 200] * 19),
        "loop": base + b"/loop",
        "loop_pair": base + b"/loop_a/x",
        "chain": str(top).encode(),
        "chain_below": str(top).encode() + b"/x",
        "chaindir": base + b"/chaindir",
        "outside": b"/etc/shadow",
        "outside_dotdot": base + b"/../../../../etc/passwd",
    }


class Flipper:
    """A thread swapping ``link`` (atomically, by rename) between an infected file,
    a directory holding only that file, a self-loop, a 1,500-link chain and a
    directory outside the roots, until stopped."""

    def __init__(self, data: Path) -> None:
        self.link = data / "flip"
        flipdir = data / "flipdir"
        flipdir.mkdir()
        (flipdir / "eicar.com").write_bytes(EICAR)
        (data / "flipfile").write_bytes(EICAR)
        (data / "flipself").symlink_to(data / "flipself")
        self.targets = [data / "flipfile", flipdir, data / "flipself",
                        chain(data / "flipchain"), Path("/etc")]
        self._data = data
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.flips = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            tmp = self._data / f".flip{self.flips % 2}"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.targets[self.flips % len(self.targets)])
            os.replace(tmp, self.link)
            self.flips += 1
            time.sleep(0.0002)  # let the test's own threads run

    def __enter__(self) -> Flipper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
