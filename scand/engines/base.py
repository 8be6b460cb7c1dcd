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

from scand.cache.keys import directory_fingerprint, generation_id
from scand.engines import auto
from scand.engines.registry import REGISTRY
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
    an engine may read; ``data``, when the caller has already read the file
    (at most ``limit`` bytes), its contents.
    """

    path: str
    fd: int
    size: int
    limit: int
    data: bytes | None = None


def read_fd(fd: int, limit: int, size: int = 0) -> bytes | None:
    """Read a whole file from ``fd`` with pread, or None if it holds more than ``limit``
    bytes. pread never moves the offset, which a FILDES scan in clamd may share.

    ``size`` (from fstat) lets a file that has not changed be read in one call, into
    one buffer: no chunk list and no join, which held the file twice at its peak."""
    # One byte more than fstat said: a file that grew since shows it.
    first = os.pread(fd, min(size, limit) + 1, 0) if size > 0 else b""
    if len(first) > limit:
        return None
    if 0 < len(first) == size:
        return first  # pread of a regular file is short only at its end
    rest = _rest(fd, len(first), limit)
    return None if rest is None else first + rest


def _rest(fd: int, pos: int, limit: int) -> bytes | None:
    """The bytes from ``pos`` to the end, in chunks; None past ``limit``."""
    chunks: list[bytes] = []
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
    # For engines that decode by themselves: the archive member size above which
    # the engine scans only a prefix and still says clean (ClamAV's MaxFileSize).
    # The names-only walk beside it turns such members into -1:too-large.
    member_limit: int | None = None
    # True: the engine scans in this process, so start_file has finished when it
    # returns (the scanner reads the file first and hands it the bytes, Target.data).
    # False (clamd): it scans elsewhere, started before the walk so both run at once.
    in_process: bool = True
    # True: the engine takes the walker's decoded parts (scan_walked) and opens
    # archives itself: the scanner walks once (decoded MIME parts with their bytes,
    # archives for names only) and hands it every part the walk decoded, instead of
    # the whole file beside a names-only walk (libclamav, scand.engines.clamav).
    takes_walked: bool = False
    # False: verdicts depend on more than the bytes and the signatures (chaos), so
    # the verdict cache must not keep them.
    cacheable: bool = True
    # The signature generation this engine holds (scand.cache.keys), set by
    # load_engine; "" = unknown, so no verdict cache for this engine.
    generation_id: str = ""

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: Config) -> Engine:
        """Load signatures / connect; raise :class:`EngineError` on failure."""

    @abc.abstractmethod
    def scan_bytes(self, data: bytes, name: str) -> Verdict:
        """Scan one object held in memory."""

    def scan_walked(self, data: bytes, name: str, parsed_message: bool) -> Verdict:
        """Scan one part the walker decoded (engines with ``takes_walked``).
        ``parsed_message``: the walker read these bytes as an RFC 5322 message and
        walked its parts, so the engine need not parse them as mail again."""
        return self.scan_bytes(data, name)

    def walked_form(self, data: bytes, mime: str, alt: bool) -> bytes | None:
        """For a decoded part of a message (``takes_walked``, outside archives; its
        media type, and whether only a non-standard reading reached it): other bytes
        to scan in its place, which meet every check its own bytes meet and more
        (libclamav: a text part inside a minimal message, for its phishing check).
        None: the part itself."""
        return None

    def scan_file(self, target: Target) -> Verdict:
        """Scan one opened file. By default: read it (bounded) and scan the bytes.

        Engines that can scan by path or by descriptor override this.
        """
        data = target.data if target.data is not None else read_fd(target.fd, target.limit,
                                                                    target.size)
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

    def refreshed(self) -> bool:
        """True when the signatures behind the engine changed since it was loaded
        or last asked, without scand reloading it (a clamd that reloaded its own
        database): :attr:`generation_id` is then the new set's, and the caller
        drops what it cached under the old one. Asked before each request, so
        it must be cheap when nothing is due."""
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; called when the worker exits."""

    def leftovers(self) -> tuple[str, ...]:
        """Directories this worker's engine made and a killed worker cannot remove
        (a temp directory): reported in ``Ready``, removed by the daemon once the
        worker is gone. Each must be named ``<something>-<worker pid>`` and owned by
        the worker's uid, or the daemon leaves it alone."""
        return ()




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
    """Build the engine the config names, tagged with its signature generation.
    A config that still says ``auto`` (the daemon resolves it at start) is resolved here."""
    if config.engine.name == auto.AUTO:
        config, _ = auto.resolve(config)
    before = directory_fingerprint(config.engine.signatures)
    engine = engine_class(config.engine.name).from_config(config)
    if engine.cacheable:
        after = directory_fingerprint(config.engine.signatures)
        engine.generation_id = generation_id(before, after, engine.info())
    return engine
