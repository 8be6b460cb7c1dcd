"""Fault injection for tests and the bench: ``scand serve --engine chaos``.

An object whose first line is ``SCAND-CHAOS <fault> [arg]`` makes the worker
misbehave in a controlled way; anything else goes to the built-in engine.

=====================  =====================================================
``leak <MiB>``         keep that much allocated for the worker's life; clean
``hog <MiB>``          allocate that much during the scan, free it; clean
``hang <seconds>``     sleep, then clean (the deadline should fire first)
``crash [segv]``       die by SIGKILL (or SIGSEGV)
``slow <ms>``          sleep, then scan the rest normally
=====================  =====================================================
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from typing import TYPE_CHECKING

from scand.engines.base import EngineInfo
from scand.engines.builtin import BuiltinEngine
from scand.events import CLEAN, Reason, Unchecked, Verdict

if TYPE_CHECKING:
    from scand.config import Config

MAGIC = b"SCAND-CHAOS "
MiB = 1024 * 1024

# Leaked blocks live here so they stay allocated (and resident) for the worker's life.
_LEAKED: list[bytes] = []


def _touched(n_bytes: int) -> bytes:
    """An allocation whose pages are all written, so it counts in RSS."""
    return b"\x5a" * n_bytes


class ChaosEngine(BuiltinEngine):
    """The built-in engine plus the faults above."""

    name = "chaos"
    cacheable = False  # a fault line must misbehave every time, not once

    @classmethod
    def from_config(cls, config: Config) -> ChaosEngine:
        base = BuiltinEngine.from_config(config)
        return cls(base.hashes, base.bodies)

    def scan_bytes(self, data: bytes, name: str) -> Verdict:
        if not data.startswith(MAGIC):
            return super().scan_bytes(data, name)
        first, _, rest = data.partition(b"\n")
        words = first.decode("ascii", "replace").split()
        fault = words[1] if len(words) > 1 else ""
        arg = words[2] if len(words) > 2 else ""
        try:
            number = float(arg) if arg and arg != "segv" else 0.0
        except ValueError:
            return Unchecked(Reason.INTERNAL, f"chaos: bad argument {arg!r}")
        if fault == "leak":
            _LEAKED.append(_touched(int(number * MiB)))
            return CLEAN
        if fault == "hog":
            block = _touched(int(number * MiB))
            del block
            return CLEAN
        if fault == "hang":
            time.sleep(number)
            return CLEAN
        if fault == "crash":
            if arg == "segv":
                ctypes.string_at(0)  # reads address 0: SIGSEGV
            os.kill(os.getpid(), signal.SIGKILL)
        if fault == "slow":
            time.sleep(number / 1000.0)
            return super().scan_bytes(rest, name)
        return Unchecked(Reason.INTERNAL, f"chaos: unknown fault {fault!r}")

    def info(self) -> EngineInfo:
        return EngineInfo(self.name, super().info().signatures)
