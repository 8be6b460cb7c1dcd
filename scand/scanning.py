"""One request, inside a worker: resolve the path, walk it, scan every file.

Runs in the worker process (no trio). Filesystem checks live here rather than
in the daemon so that the trio process never blocks on a slow disk, and so
that the checks happen in the same process that opens the file.

Rules (PROTOCOL.md §2-3):
* only absolute paths; the real path (symlinks and ``..`` resolved) must lie
  under an allowed root when roots are configured;
* files are opened with ``O_NOFOLLOW | O_NONBLOCK`` and re-checked by
  (device, inode) after opening, so a symlink swapped in after the check
  cannot redirect the read, and a FIFO cannot block the worker;
* anything that is not a regular file or a directory is refused;
* directories are walked recursively; the first infection wins, otherwise any
  file not fully scanned makes the whole answer unchecked.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from scand.cache import open_cache
from scand.config import Config
from scand.content import Encrypted, Part, walk
from scand.engines.base import Engine, Target, read_fd
from scand.events import CLEAN, Clean, Infected, Reason, Unchecked, Verdict
from scand.policy import Policy


@dataclass
class ScanOutcome:
    """A verdict plus what it cost, for the canonical log line and STATS."""

    verdict: Verdict
    bytes: int = 0
    files: int = 0


def within_roots(real: str, roots: tuple[str, ...]) -> bool:
    """True when ``real`` is one of ``roots`` or below one. No roots = allow all."""
    if not roots:
        return True
    for root in roots:
        root = root.rstrip("/") or "/"
        if real == root or real.startswith(root if root == "/" else root + "/"):
            return True
    return False


def opened_path(fd: int) -> str:
    """Where an open descriptor really points (Linux /proc), whatever path opened it."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""  # no /proc: the (device, inode) check above still holds


def _cache_error(message: str) -> None:
    """A cache store failed: the scan goes on without it (logged once per outage)."""
    print(json.dumps({"event": "cache_unavailable", "pid": os.getpid(), "error": message}),
          file=sys.stderr, flush=True)


def _os_unchecked(exc: OSError, path: str) -> Unchecked:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return Unchecked(Reason.NOT_FOUND, path)
    if exc.errno == errno.ELOOP:
        return Unchecked(Reason.NOT_ALLOWED, f"{path}: symlink")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return Unchecked(Reason.UNREADABLE, path)
    return Unchecked(Reason.UNREADABLE, f"{path}: {exc.strerror}")


class Scanner:
    """Scans paths and streams with one engine under one config's limits."""

    def __init__(self, engine: Engine, config: Config) -> None:
        self.engine = engine
        self.config = config
        self.roots = tuple(os.path.realpath(r) for r in config.server.allowed_roots)
        self.policy = Policy(config.policy)
        self.cache = open_cache(config, engine.generation_id, _cache_error)

    # -- entry points --------------------------------------------------------

    def scan_path(self, path: str) -> ScanOutcome:
        """Scan a file or a directory tree named by an absolute path."""
        if not path.startswith("/"):
            return ScanOutcome(Unchecked(Reason.PROTOCOL, "relative path"))
        real = os.path.realpath(path)
        if not within_roots(real, self.roots):
            return ScanOutcome(Unchecked(Reason.NOT_ALLOWED, path))
        try:
            st = os.stat(real)
        except OSError as exc:
            return ScanOutcome(_os_unchecked(exc, path))
        outcome = ScanOutcome(CLEAN)
        if stat.S_ISDIR(st.st_mode):
            self._scan_tree(real, outcome)
        else:
            outcome.verdict = self._scan_one(real, st, outcome)
        return outcome

    def scan_stream(self, data: bytes) -> ScanOutcome:
        """Scan bytes a client sent with ``STREAM <n>``."""
        if self.engine.wants_parts:
            verdict = self._scan_content(data, "")
        else:
            verdict = self.cache.scan(self.engine.scan_bytes, data, "stream")
            if isinstance(verdict, Clean):
                verdict = self._policy_only(data, "")
        return ScanOutcome(verdict, bytes=len(data), files=1)

    def _scan_content(self, data: bytes, name: str) -> Verdict:
        """Walk the object; every part gets the signatures, then the policy."""
        known = self.cache.known_infected(data)  # a worm copy's base64 body, seen before
        if known is not None:
            return known
        first_unchecked: Unchecked | None = None
        deferred: list[Part] = []
        for item in itertools.chain(walk(data, name, self.config.content), deferred):
            if isinstance(item, Part):
                if self.cache.defer(item, deferred):
                    continue  # the raw object goes last (scand.cache.lookup.PartCache.defer)
                verdict = self.cache.scan_part(self.engine.scan_bytes, item)
                if isinstance(verdict, Unchecked):
                    first_unchecked = first_unchecked or verdict
                    continue
                if isinstance(verdict, Infected):
                    self.cache.learn(data, item, verdict)
                    return verdict
                banned = self._check(item, data)
                if banned is not None:
                    return banned
            else:
                found = self._finding(item)
                if isinstance(found, Infected):
                    return found
                first_unchecked = first_unchecked or found
        return first_unchecked or CLEAN

    def _policy_only(self, data: bytes, name: str) -> Verdict:
        """For engines that decode by themselves (clamd): a names-only walk for the policy.

        It reads MIME headers and archive directories, and opens only members
        that are containers themselves, so it costs a fraction of the scan.
        """
        if not self.policy.cfg.enabled:
            return CLEAN
        first_unchecked: Unchecked | None = None
        for item in walk(data, name, self.config.content, keep_data=False):
            if isinstance(item, Part):
                banned = self._check(item, data)
                if banned is not None:
                    return banned
                continue
            found = self._finding(item)
            if isinstance(found, Infected):
                return found
            if found.reason != Reason.UNREADABLE:  # the engine judged the bytes already
                first_unchecked = first_unchecked or found
        return first_unchecked or CLEAN

    def _check(self, part: Part, raw: bytes) -> Infected | None:
        if part.depth == 0:
            raw_hit = self.policy.check_raw(raw)
            if raw_hit is not None:
                return raw_hit
        return self.policy.check_part(part.names, part.mime, part.in_archive)

    def _finding(self, item: Encrypted | Unchecked) -> Infected | Unchecked:
        if isinstance(item, Unchecked):
            return item
        if self.config.content.encrypted == "banned":
            return self.policy.check_encrypted(item.name)
        return Unchecked(Reason.ENCRYPTED, item.where)

    def _scan_whole_cached(self, target: Target, name: str) -> Verdict:
        """A file for an engine that decodes by itself, through the verdict cache."""
        data = read_fd(target.fd, target.limit)
        if data is None:
            return Unchecked(Reason.TOO_LARGE, f">{target.limit}")
        key = self.cache.key(data)
        verdict: Verdict | None = self.cache.get(key)
        if isinstance(verdict, Infected):
            return verdict
        # On a miss clamd scans while the policy walk runs here, as without the cache.
        finish = self.engine.start_file(target) if verdict is None else None
        policy = self._policy_only(data, name)
        if finish is not None:
            verdict = finish()
            self.cache.put(key, verdict)
        assert verdict is not None
        return verdict if not isinstance(verdict, Clean) else policy

    # -- internals -----------------------------------------------------------

    def _scan_tree(self, top: str, outcome: ScanOutcome) -> None:
        first_unchecked: Unchecked | None = None
        for item in self._walk(top):
            if isinstance(item, Unchecked):
                verdict: Verdict = item
            else:
                verdict = self._scan_one(*item, outcome)
            if isinstance(verdict, Infected):
                outcome.verdict = verdict
                return
            if isinstance(verdict, Unchecked):
                first_unchecked = first_unchecked or verdict
                if verdict.reason in (Reason.TOO_MANY_FILES, Reason.TOO_DEEP):
                    break
        outcome.verdict = first_unchecked or CLEAN

    def _walk(self, top: str) -> Iterator[tuple[str, os.stat_result] | Unchecked]:
        """Yield (real path, stat) for each file under ``top``, or an Unchecked finding."""
        limits = self.config.limits
        seen_dirs: set[tuple[int, int]] = set()
        stack: list[tuple[str, int]] = [(top, 0)]
        files = 0
        while stack:
            directory, depth = stack.pop()
            if depth > limits.max_depth:
                yield Unchecked(Reason.TOO_DEEP, f"{directory}: depth>{limits.max_depth}")
                return
            try:
                st = os.stat(directory)
                names = sorted(os.listdir(directory), reverse=True)
            except OSError as exc:
                yield _os_unchecked(exc, directory)
                continue
            if (st.st_dev, st.st_ino) in seen_dirs:
                continue  # a symlink loop back into the tree: already covered
            seen_dirs.add((st.st_dev, st.st_ino))
            for name in names:
                path = os.path.join(directory, name)
                real = os.path.realpath(path)
                if not within_roots(real, self.roots):
                    yield Unchecked(Reason.NOT_ALLOWED, f"{path}: outside allowed roots")
                    continue
                try:
                    est = os.stat(real)
                except OSError as exc:
                    yield _os_unchecked(exc, path)
                    continue
                if stat.S_ISDIR(est.st_mode):
                    stack.append((real, depth + 1))
                    continue
                files += 1
                if files > limits.max_files:
                    yield Unchecked(Reason.TOO_MANY_FILES, f">{limits.max_files}")
                    return
                yield real, est

    def _scan_one(self, real: str, st: os.stat_result, outcome: ScanOutcome) -> Verdict:
        """Open, verify and scan one file."""
        if not stat.S_ISREG(st.st_mode):
            return Unchecked(Reason.NOT_ALLOWED, f"{real}: not a regular file")
        limit = self.config.limits.max_file_size
        if st.st_size > limit:
            return Unchecked(Reason.TOO_LARGE, f"{st.st_size}>{limit}")
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            return _os_unchecked(exc, real)
        try:
            fst = os.fstat(fd)
            if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(
                fst.st_mode
            ):
                return Unchecked(Reason.NOT_ALLOWED, f"{real}: changed while being checked")
            if self.roots and not within_roots(opened_path(fd), self.roots):
                # A directory on the way was swapped for a symlink after the check.
                return Unchecked(Reason.NOT_ALLOWED, f"{real}: resolves outside allowed roots")
            outcome.bytes += fst.st_size
            outcome.files += 1
            name = os.path.basename(real)
            if self.engine.wants_parts:
                data = read_fd(fd, limit)
                if data is None:
                    return Unchecked(Reason.TOO_LARGE, f">{limit}")
                return self._scan_content(data, name)
            if self.cache.enabled:  # whole-object key for engines that are not part-aware
                return self._scan_whole_cached(Target(real, fd, fst.st_size, limit), name)
            # The engine scans in its own process: start it, walk for the policy
            # meanwhile, then take its verdict (a signature beats a policy hit).
            finish = self.engine.start_file(Target(real, fd, fst.st_size, limit))
            policy: Verdict = CLEAN
            if self.policy.cfg.enabled:
                data = read_fd(fd, limit)
                policy = (Unchecked(Reason.TOO_LARGE, f">{limit}") if data is None
                          else self._policy_only(data, name))
            verdict = finish()
            return verdict if not isinstance(verdict, Clean) else policy
        except OSError as exc:
            return _os_unchecked(exc, real)
        finally:
            os.close(fd)
