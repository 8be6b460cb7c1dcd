"""One request, inside a worker: walk it, scan every part, apply the policy.

Runs in the worker process (no trio). Which files a request may read, and
how they are opened, is :mod:`scand.worker.paths`; how the verdicts of the
pieces fold into one is :class:`scand.events.Fold`. Here, one of three paths
by what the engine takes:

* ``wants_parts`` (built-in): the content walk, every part to the engine
  (archive members too), then the policy (:meth:`Scanner._scan_content`);
* ``takes_walked`` (libclamav, ``clamav.mail_parser = "scand"``): one walk that
  decodes the MIME parts and reads archives for their names only; every part
  with bytes outside an archive (and every part only a non-standard reading
  reaches) goes to the engine, which opens archives itself and is told which
  bytes the walker read as a message, so libclamav parses no mail the walker
  already parsed (:meth:`Scanner._scan_walked`);
* otherwise (clamd, libclamav with its own mail parser): the engine gets the
  file whole and the names-only walk runs beside it, with the parts only a
  non-standard reading reaches handed to the engine as well.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from scand.cache import open_cache
from scand.config import Config
from scand.content import Encrypted, Part, walk
from scand.content.parts import Item
from scand.engines.base import Engine, Target, read_fd
from scand.events import CLEAN, Clean, Fold, Infected, Reason, Unchecked, Verdict
from scand.policy import Policy
from scand.worker import paths
from scand.worker.paths import os_unchecked
from scand.worker.wire import Outcome


@dataclass
class _Tally:
    """What a request has read so far (files and bytes), for its Outcome."""

    bytes: int = 0
    files: int = 0


def _every_part(part: Part) -> bool:
    return True


def _handed(part: Part) -> bool:
    """A part the walker hands an engine that takes its parts: decoded bytes outside
    an archive (the engine opens archives itself), or a non-standard reading."""
    return bool(part.data) and (part.alt or not part.in_archive)


def _mbox(data: bytes) -> bool:
    """Several messages in an mbox ("From " lines): libclamav's mail parser splits
    them by its own rule (mbox.c starts one at every "From " line after an empty
    one); the walker reads the whole and each later message that looks like one
    (walker.mbox). Such bytes keep the mail parser too: both splits are read."""
    return data.startswith(b"From ") and (b"\nFrom " in data or b"\rFrom " in data)


def _cache_error(message: str) -> None:
    """A cache store failed: the scan goes on without it (logged once per outage)."""
    print(json.dumps({"event": "cache_unavailable", "pid": os.getpid(), "error": message}),
          file=sys.stderr, flush=True)


class Scanner:
    """Scans paths and streams with one engine under one config's limits."""

    def __init__(self, engine: Engine, config: Config) -> None:
        self.engine = engine
        self.config = config
        self.roots = paths.allowed_roots(config.server.allowed_roots)
        self.policy = Policy(config.policy)
        self.cache = open_cache(config, engine.generation_id, _cache_error)

    # -- entry points --------------------------------------------------------

    def scan_path(self, path: str) -> Outcome:
        """Scan a file or a directory tree named by an absolute path."""
        found = paths.resolve(path, self.roots)
        if isinstance(found, Unchecked):
            return Outcome(found)
        tally = _Tally()
        if stat.S_ISDIR(found.st.st_mode):
            verdict = self._scan_tree(found.real, tally)
        else:
            verdict = self._scan_one(found.real, found.st, tally)
        return Outcome(verdict, tally.bytes, tally.files)

    def scan_stream(self, data: bytes) -> Outcome:
        """Scan bytes a client sent with ``STREAM <n>``."""
        if self.engine.wants_parts:
            verdict = self._scan_content(data, "")
        elif self.engine.takes_walked:
            verdict = self._scan_walked(data, "")
        else:
            known = self.cache.known_infected(data)
            hits = self.cache.hits
            verdict = known or self.cache.scan(self.engine.scan_bytes, data, "stream")
            if isinstance(verdict, Clean):
                verdict = self._fold(verdict, *self._policy_only(data, ""))
            elif isinstance(verdict, Infected) and not known and self.cache.hits == hits:
                self.cache.learn_bodies(data, self.engine.scan_bytes)  # the engine's own 1:
        return Outcome(verdict, bytes=len(data), files=1)

    def refresh(self) -> None:
        """Between requests: if the engine's signatures changed under it (a clamd that
        reloaded its own database), entries cached under the old generation are not
        read again."""
        if self.engine.refreshed():
            self.cache = open_cache(self.config, self.engine.generation_id, _cache_error)

    def _scan_content(self, data: bytes, name: str) -> Verdict:
        """Walk the object; every part gets the signatures (through the verdict cache),
        then the policy."""
        return self._fold_parts(data, walk(data, name, self.config.content), _every_part,
                                lambda part: self.cache.scan_part(self.engine.scan_bytes, part))

    def _scan_walked(self, data: bytes, name: str) -> Verdict:
        """For an engine that takes the walker's parts: one walk; each part with bytes
        outside an archive (or reached only by a non-standard reading) to the engine,
        then every part's names to the policy; a signature first, then a policy hit,
        then unchecked (as beside an engine that scans the whole file).

        Archive members come without bytes (the engine opens the archive part
        itself) except containers and non-standard readings; a member the
        engine would scan only in part is reported by the walk (``engine_max``)."""
        items = walk(data, name, self.config.content, keep_data=True, member_data=False,
                     engine_max=self.engine.member_limit)
        return self._fold_parts(data, items, _handed, self._scan_handed, policy_last=True)

    def _scan_handed(self, part: Part) -> Verdict:
        """Bytes the walker read as a message (not an mbox of several: :func:`_mbox`)
        bypass the verdict cache: the engine scans them without its mail parser, so
        their verdict is not the one a whole-file scan of the same bytes stores. A
        part of a message the engine scans in another form (``walked_form``:
        libclamav's phishing check on a text part) is cached under that form's
        bytes, never its own. A text whose messages the walker read (``inline_read``)
        is scanned like a message: without the engine's mail parser, uncached."""
        if part.message and not _mbox(part.data):
            return self.engine.scan_walked(part.data, part.where, True)
        if part.depth and not part.in_archive:
            form = self.engine.walked_form(part.data, part.mime, part.alt)
            if form is not None:
                return self.cache.scan_part(self._scan_whole, replace(part, data=form))
        if part.inline_read and not _mbox(part.data):  # its messages are handed already
            return self.engine.scan_walked(part.data, part.where, True)
        return self.cache.scan_part(self._scan_whole, part)

    def _scan_whole(self, data: bytes, where: str) -> Verdict:
        return self.engine.scan_walked(data, where, False)

    def _fold_parts(self, data: bytes, items: Iterator[Item], wanted: Callable[[Part], bool],
                    scan: Callable[[Part], Verdict], policy_last: bool = False) -> Verdict:
        """Each walked part the engine ``wanted`` is scanned (the raw object last while
        the cache is on), then checked by the policy if clean; findings fold in.
        ``policy_last``: a policy hit waits for every scan, so a signature wins it
        (the engine scans archives whole, after their members' names were checked)."""
        known = self.cache.known_infected(data)  # a worm copy's base64 body, seen before
        if known is not None:
            return known
        fold = Fold()
        held: list[Verdict] = []
        deferred: list[Part] = []
        for item in itertools.chain(items, deferred):
            if isinstance(item, Part):
                verdict: Verdict = CLEAN
                if wanted(item):
                    if self.cache.defer(item, deferred):
                        continue  # the raw object goes last (scand.cache.lookup.PartCache.defer)
                    verdict = scan(item)
                    if isinstance(verdict, Infected):
                        self.cache.learn(data, item, verdict)
                if isinstance(verdict, Clean):
                    verdict = self._check(item, data) or CLEAN
                    if policy_last and isinstance(verdict, Infected):
                        held.append(verdict)
                        continue
            else:
                verdict = self._finding(item)
                if policy_last and isinstance(verdict, Infected):
                    held.append(verdict)
                    continue
            if fold.add(verdict):
                return fold.verdict
        for verdict in held:
            fold.add(verdict)
        return fold.verdict

    def _policy_only(self, data: bytes, name: str) -> tuple[Verdict, list[Part]]:
        """For engines that decode by themselves (clamd): a names-only walk for the policy
        and for what the engine reads one way only.

        It reads MIME headers and archive directories, and opens only members
        that are containers themselves, so on ordinary mail it costs a fraction
        of the scan. Members the engine would scan only in part, and anything
        the walk could not decode (so no name was checked), are unchecked. Parts
        that only a non-standard reading reaches (``alt``) are returned: the
        caller hands them to the engine once the engine is free (:meth:`_fold`).
        """
        fold = Fold()
        alt: list[Part] = []
        for item in walk(data, name, self.config.content, keep_data=False,
                         engine_max=self.engine.member_limit):
            if isinstance(item, Part):
                if item.alt and item.data and item.depth > 0:
                    alt.append(item)
                verdict: Verdict = self._check(item, data) or CLEAN
            else:
                verdict = self._finding(item)
            if fold.add(verdict):
                return fold.verdict, []
        return fold.verdict, alt

    def _fold(self, engine: Verdict, walked: Verdict, alt: list[Part]) -> Verdict:
        """The engine's verdict on the whole, the walk's, and the engine's on each
        alternative part: a signature first, then a policy hit, then unchecked."""
        fold = Fold()
        if fold.add(engine) or fold.add(walked if isinstance(walked, Infected) else CLEAN):
            return fold.verdict
        for part in alt:
            if fold.add(self.engine.scan_bytes(part.data, part.where)):
                return fold.verdict
        fold.add(walked)
        return fold.verdict

    def _check(self, part: Part, raw: bytes) -> Infected | None:
        if part.depth == 0:
            raw_hit = self.policy.check_raw(raw)
            if raw_hit is not None:
                return raw_hit
        if part.quoted:  # a name in a message quoted in a text is no attachment
            return None
        return self.policy.check_part(part.names, part.mime, part.in_archive)

    def _finding(self, item: Encrypted | Unchecked) -> Infected | Unchecked:
        if isinstance(item, Unchecked):
            return item
        if self.config.content.encrypted == "banned":
            return self.policy.check_encrypted(item.name)
        return Unchecked(Reason.ENCRYPTED, item.where)

    def _beside_engine(self, target: Target, name: str) -> Verdict:
        """A file for an engine that decodes by itself: the engine scans it (or the
        verdict cache answers, keyed on the whole file: the engine hands back no
        parts) while the names-only walk runs here; then both fold into one."""
        cached: Verdict | None = None
        key = ""
        # The cache key needs the bytes before the engine starts; an engine in this
        # process scans the bytes read for the walk (not the file a second time).
        if self.cache.enabled or self.engine.in_process:
            data = read_fd(target.fd, target.limit, target.size)
            if data is None:
                return Unchecked(Reason.TOO_LARGE, f">{target.limit}")
            if self.cache.enabled:
                known = self.cache.known_infected(data)  # a worm copy's base64 body
                if known is not None:
                    return known
                key = self.cache.key(data)
                cached = self.cache.get(key)
                if isinstance(cached, Infected):
                    return cached
            finish = None if cached is not None else self.engine.start_file(
                dataclasses.replace(target, data=data))
            if finish is not None and self.engine.in_process:  # it has finished
                cached = self._engine_done(finish, key, data)
                finish = None
                if isinstance(cached, Infected):
                    return cached  # a signature wins the fold: no walk needed
        else:  # start the engine first: it scans while the file is read for the walk
            finish = self.engine.start_file(target)
            data = read_fd(target.fd, target.limit, target.size)
        walked: tuple[Verdict, list[Part]] = (
            (Unchecked(Reason.TOO_LARGE, f">{target.limit}"), []) if data is None
            else self._policy_only(data, name))
        if finish is not None:
            cached = self._engine_done(finish, key, data)
        assert cached is not None
        return self._fold(cached, *walked)

    def _engine_done(self, finish: Callable[[], Verdict], key: str, data: bytes | None
                     ) -> Verdict:
        """The engine's verdict on the whole file, remembered under ``key`` (and, for
        an infected message, its base64 bodies that are infected by themselves)."""
        verdict = finish()
        if key:
            self.cache.put(key, verdict)
            if isinstance(verdict, Infected) and data is not None:
                self.cache.learn_bodies(data, self.engine.scan_bytes)
        return verdict

    # -- internals -----------------------------------------------------------

    def _scan_tree(self, top: str, tally: _Tally) -> Verdict:
        fold = Fold()
        for item in paths.tree(top, self.roots, self.config.limits):
            verdict = item if isinstance(item, Unchecked) else self._scan_one(*item, tally)
            if fold.add(verdict):
                break
        return fold.verdict

    def _scan_one(self, real: str, st: os.stat_result, tally: _Tally) -> Verdict:
        """Open, verify and scan one file."""
        limit = self.config.limits.max_file_size
        opened = paths.open_checked(real, st, self.roots, limit)
        if isinstance(opened, Unchecked):
            return opened
        fd, fst = opened
        try:
            tally.bytes += fst.st_size
            tally.files += 1
            name = os.path.basename(real)
            if self.engine.wants_parts or self.engine.takes_walked:
                data = read_fd(fd, limit, fst.st_size)
                if data is None:
                    return Unchecked(Reason.TOO_LARGE, f">{limit}")
                if self.engine.takes_walked:
                    return self._scan_walked(data, name)
                return self._scan_content(data, name)
            return self._beside_engine(Target(real, fd, fst.st_size, limit), name)
        except OSError as exc:
            return os_unchecked(exc, real)
        finally:
            os.close(fd)
