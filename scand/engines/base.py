"""The engine interface and registry.

An engine turns bytes (or a file it may read itself) into a verdict. It lives
in a worker process, knows nothing of the pool, the policy or the protocol, and
is looked up by name with a lazy import so that a worker only imports the
engine it runs. Stdlib only.
"""

from __future__ import annotations

import abc
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scand.events import Reason, Unchecked, Verdict

if TYPE_CHECKING:
    from scand.config import Config


class EngineError(Exception):
    """An engine could not be set up (bad signatures, unreachable backend)."""


class SignatureError(EngineError):
    """A signature file is malformed. The message names the file and the line."""


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What ``VERSION`` and ``STATS`` report about a loaded engine."""

    name: str
    signatures: str  # signature-set version or count, one token, no spaces
    detail: str = ""


# Read size for regular files: big enough that a 25 MB mail is a handful of syscalls.
READ_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Target:
    """One regular file, already opened and checked by the caller.

    ``fd`` is a read-only descriptor at position 0, opened without following a
    final symlink; ``path`` is its resolved path (for messages, and for engines
    that scan by path); ``size`` comes from fstat; ``limit`` is the most bytes
    an engine may read.
    """

    path: str
    fd: int
    size: int
    limit: int


def read_fd(fd: int, limit: int) -> bytes | None:
    """Read a whole file from ``fd`` with pread, or None if it holds more than ``limit``
    bytes. pread never moves the offset, which a FILDES scan in clamd may share."""
    chunks: list[bytes] = []
    pos = 0
    while True:
        chunk = os.pread(fd, READ_CHUNK, pos)
        if not chunk:
            return b"".join(chunks)
        pos += len(chunk)
        if pos > limit:
            return None
        chunks.append(chunk)


class Engine(abc.ABC):
    """A loaded scanner. Construct with :meth:`from_config`."""

    name: str = "?"
    # True: the scanner decodes the input (MIME, archives) and calls scan_bytes on
    # every part. False: the engine decodes by itself (clamd) and gets the file whole.
    wants_parts: bool = False

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: Config) -> Engine:
        """Load signatures / connect; raise :class:`EngineError` on failure."""

    @abc.abstractmethod
    def scan_bytes(self, data: bytes, name: str) -> Verdict:
        """Scan one object held in memory."""

    def scan_file(self, target: Target) -> Verdict:
        """Scan one opened file. By default: read it (bounded) and scan the bytes.

        Engines that can scan by path or by descriptor override this.
        """
        data = read_fd(target.fd, target.limit)
        if data is None:
            return Unchecked(Reason.TOO_LARGE, f">{target.limit}")
        return self.scan_bytes(data, target.path)

    def start_file(self, target: Target) -> Callable[[], Verdict]:
        """Begin scanning ``target``; the returned function gives the verdict.

        Engines backed by another process (clamd) send the request here and
        wait in the returned function, so the caller can work meanwhile.
        """
        verdict = self.scan_file(target)
        return lambda: verdict

    @abc.abstractmethod
    def info(self) -> EngineInfo:
        """Name and signature-set version for ``VERSION``/``STATS``."""

    def forked(self) -> None:  # noqa: B027 - optional hook
        """Called in each worker right after it was forked from the loaded engine."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; called when the worker exits."""


# Name -> "module:Class"; imported on first use so workers load only what they run.
REGISTRY: dict[str, str] = {
    "builtin": "scand.engines.builtin:BuiltinEngine",
    "chaos": "scand.engines.chaos:ChaosEngine",
    "clamd": "scand.engines.clamd:ClamdEngine",
    "clamav": "scand.engines.clamav.engine:ClamavEngine",
}


def engine_class(name: str) -> type[Engine]:
    """Resolve an engine name to its class, importing its module lazily."""
    try:
        target = REGISTRY[name]
    except KeyError:
        raise EngineError(f"unknown engine {name!r} (known: {', '.join(REGISTRY)})") from None
    module_name, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    assert isinstance(cls, type) and issubclass(cls, Engine)
    return cls


def load_engine(config: Config) -> Engine:
    """Build the engine the config names."""
    return engine_class(config.engine.name).from_config(config)
