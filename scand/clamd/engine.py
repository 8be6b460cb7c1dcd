"""The ``clamd`` engine: ClamAV's daemon, reached from inside a worker.

The transfer (:mod:`scand.clamd.session`) is one ``IDSESSION`` per socket per
worker, kept open across requests, under one true deadline per request (every
connect/send/recv gets only the time left; nothing is retried after clamd got
the request). What goes over it, cheapest first for both sides:

* ``FILDES`` when clamd is on this host (every socket a Unix socket, transfer
  ``auto`` or ``fildes``): a file's already-opened descriptor, and bytes (a
  STREAM request, the walker's alternative readings) in a memfd. clamd scans
  the descriptor in place; no copy passes through the socket, and clamd writes
  no temp file for the message (INSTREAM makes it store the stream first).
* ``INSTREAM`` otherwise, in 1 MiB chunks; a stream over StreamMaxLength: clamd
  answers and closes while we are still sending, and we read its reply anyway
  (``-1:too-large``, not a BrokenPipeError).
* ``SCAN <path>`` with transfer ``path``.

clamd's replies map to verdicts in :func:`verdict_from_reply`. Limit alerts
(``Heuristics.Limits.Exceeded.*``, given with ``AlertExceedsMax yes``) are
never an infection and never clean.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from scand.cache.keys import directory_fingerprint, generation_id
from scand.clamd.session import Session, SessionTimeout, Unreachable
from scand.engines.base import Engine, EngineInfo, Target, read_fd
from scand.events import CLEAN, Infected, Reason, Unchecked, Verdict

if TYPE_CHECKING:
    from scand.config import Config

# Heuristic names clamd reports for limits: an unchecked reason, not a virus.
LIMIT_ALERTS = {
    "Heuristics.Limits.Exceeded.MaxFileSize": Reason.TOO_LARGE,
    "Heuristics.Limits.Exceeded.MaxScanSize": Reason.TOO_LARGE,
    "Heuristics.Limits.Exceeded.MaxRecursion": Reason.TOO_DEEP,
    "Heuristics.Limits.Exceeded.MaxFiles": Reason.TOO_MANY_FILES,
    "Heuristics.Limits.Exceeded.MaxScanTime": Reason.TIMEOUT,
}
# clamd ERROR texts (lower-cased substrings) -> reason; first match wins.
ERROR_REASONS = (
    ("size limit exceeded", Reason.TOO_LARGE),
    ("no such file", Reason.NOT_FOUND),
    ("permission denied", Reason.UNREADABLE),
    ("access denied", Reason.UNREADABLE),
    ("can't open", Reason.UNREADABLE),
    ("allocate memory", Reason.MEMORY),
    ("timed out", Reason.TIMEOUT),
    ("excluded", Reason.NOT_ALLOWED),
)


def verdict_from_reply(reply: str) -> Verdict:
    """Map one clamd reply line (``<name>: OK | <sig> FOUND | <msg> ERROR``) to a verdict."""
    line = reply.strip().rstrip("\x00")
    _, sep, result = line.rpartition(": ")
    if not sep:
        result = line
    if result == "OK":
        return CLEAN
    if result.endswith(" FOUND"):
        name = result[: -len(" FOUND")].strip()
        for prefix, reason in LIMIT_ALERTS.items():
            if name.startswith(prefix):
                return Unchecked(reason, name)
        if name.startswith("Heuristics.Encrypted"):
            return Unchecked(Reason.ENCRYPTED, name)
        return Infected(name)
    if result.endswith("ERROR"):
        text = result[: -len("ERROR")].strip()
        low = text.lower()
        for needle, reason in ERROR_REASONS:
            if needle in low:
                return Unchecked(reason, f"clamd: {text}")
        return Unchecked(Reason.ENGINE_UNAVAILABLE, f"clamd: {text}")
    return Unchecked(Reason.ENGINE_UNAVAILABLE, f"clamd: unexpected reply {line[:80]!r}")


# Seconds between two looks at clamd's VERSION for a database it reloaded by itself
# (freshclam, then clamd's SelfCheck or RELOAD): the verdict cache is keyed by the
# database version, so a clean verdict from the old one is not answered after it.
VERSION_CHECK = 30.0


def parse_address(spec: str) -> str | tuple[str, int]:
    """``/path`` (a Unix socket) or ``host:port`` / ``[v6]:port`` (TCP)."""
    if spec.startswith("/"):
        return spec
    host, _, port = spec.rpartition(":")
    return host.strip("[]"), int(port)


def one_command(address: str | tuple[str, int], command: str, timeout: float) -> str:
    """One command on its own connection (``VERSION`` at load, before any fork)."""
    session = Session(address)
    session.start(timeout)
    try:
        session.send_command(command)
        return session.reply()
    finally:
        session.close()


class ClamdEngine(Engine):
    """Scans through one or more clamd sockets: round robin, failover on connect errors;
    one IDSESSION per socket per worker (:mod:`scand.clamd.session`)."""

    name = "clamd"
    in_process = False  # clamd scans while the names-only walk runs here

    def __init__(self, config: Config) -> None:
        cfg = config.clamd
        if not cfg.sockets:
            raise ValueError("clamd engine needs clamd.sockets (the daemon fills it when managed)")
        self.cfg = cfg
        self.addresses = [parse_address(s) for s in cfg.sockets]
        self.sessions = [Session(a) for a in self.addresses]
        self.next = random.randrange(len(self.sessions))  # spread workers over the sockets
        self.stream_max = cfg.stream_max_length_mb * 1024 * 1024
        self.member_limit = cfg.max_file_size_mb * 1024 * 1024
        self.all_unix = all(isinstance(a, str) for a in self.addresses)
        # Descriptors, not bytes, when clamd shares this host (a Unix socket) and the
        # config allows it: a file as it is, bytes (STREAM, alternative readings) in a
        # memfd. clamd scans a descriptor in place; INSTREAM makes it write a temp file.
        self.fildes = self.all_unix and cfg.transfer in ("auto", "fildes")
        self._version = ""
        self._signatures = config.engine.signatures  # for the generation id
        self._checked = time.monotonic()

    @classmethod
    def from_config(cls, config: Config) -> ClamdEngine:
        engine = cls(config)
        for address in engine.addresses:  # the first that answers
            with contextlib.suppress(Unreachable, SessionTimeout, OSError):
                engine._version = one_command(address, "VERSION", config.clamd.timeout)
                break
        return engine

    def refreshed(self) -> bool:
        """clamd's VERSION (``ClamAV 1.4.6/27000/<date>``: the database version) looked
        at once every :data:`VERSION_CHECK` seconds, on the first socket; a new one
        is a new generation. clamd with only private
        signatures names no database version: a reload of its own is not seen
        (README: keep the cache's TTL short there)."""
        now = time.monotonic()
        if now - self._checked < VERSION_CHECK:
            return False
        self._checked = now
        version = ""
        with contextlib.suppress(Unreachable, SessionTimeout, OSError):
            # The first socket only: several clamds on different versions would make
            # the generation flip with whichever answered, and each socket that does
            # not answer would cost up to a second here.
            version = one_command(self.addresses[0], "VERSION", min(self.cfg.timeout, 1.0))
        if (not version.startswith("ClamAV ") or version == self._version
                or not self.generation_id):
            return False  # unreachable or garbled (scans will say so), unchanged, uncached
        self._version = version
        fingerprint = directory_fingerprint(self._signatures)
        self.generation_id = generation_id(fingerprint, fingerprint, self.info())
        return True

    def forked(self) -> None:
        self._checked = float("-inf")  # a worker looks after its first request: the
        # zygote may have loaded long before
        self.next = random.randrange(len(self.sessions))  # each worker starts elsewhere
        for session in self.sessions:
            session.close()  # none is open in the zygote; never share one across a fork

    def close(self) -> None:
        for session in self.sessions:
            session.close()

    def _begin(self, send: Callable[[Session], None]) -> Callable[[], str | Unchecked]:
        """Send a request under one deadline, failing over to the next socket when one
        cannot be reached; return the function that waits for clamd's reply line."""
        t0 = time.monotonic()
        attempts = min(len(self.sessions), 1 + self.cfg.retries)
        last = ""
        for _ in range(attempts):
            session = self.sessions[self.next]
            self.next = (self.next + 1) % len(self.sessions)
            session.start(self.cfg.timeout - (time.monotonic() - t0))
            try:
                send(session)
            except Unreachable as exc:
                last = str(exc)
                continue  # nothing was sent: the next socket may work
            except SessionTimeout:
                return self._timed_out
            except OSError as exc:
                failure = Unchecked(Reason.ENGINE_UNAVAILABLE, f"clamd: {exc.strerror or exc}")
                return lambda: failure
            return lambda: self._finish(session)
        failure = Unchecked(Reason.ENGINE_UNAVAILABLE, last or "no clamd reachable")
        return lambda: failure

    def _start(self, send: Callable[[Session], None]) -> Callable[[], Verdict]:
        reply = self._begin(send)
        return lambda: verdict_from_reply(r) if isinstance(r := reply(), str) else r

    def _timed_out(self) -> Unchecked:
        return Unchecked(Reason.TIMEOUT, f"clamd over {self.cfg.timeout:g}s")

    def _finish(self, session: Session) -> str | Unchecked:
        try:
            reply = session.reply()
        except SessionTimeout:
            return self._timed_out()
        except OSError as exc:
            return Unchecked(Reason.ENGINE_UNAVAILABLE, f"clamd: {exc.strerror or exc}")
        return reply or Unchecked(Reason.ENGINE_UNAVAILABLE, "clamd closed without a reply")

    def scan_bytes(self, data: bytes, name: str) -> Verdict:
        return self.start_bytes(data)()

    def start_bytes(self, data: bytes) -> Callable[[], Verdict]:
        if len(data) > self.stream_max:
            too_large = Unchecked(Reason.TOO_LARGE, f"{len(data)}>{self.stream_max}")
            return lambda: too_large
        if self.fildes:
            fd = _memfd(data)
            if fd is not None:
                try:  # clamd holds its own reference once the message is sent
                    return self._start(lambda s: s.send_fildes(fd))
                finally:
                    os.close(fd)
        return self._start(lambda s: s.send_instream(data, self.cfg.chunk_size))

    def scan_file(self, target: Target) -> Verdict:
        return self.start_file(target)()

    def start_file(self, target: Target) -> Callable[[], Verdict]:
        """Send the file to clamd now; the returned function waits for the verdict."""
        if self.cfg.transfer == "path":
            return self._start(lambda s: s.send_command(f"SCAN {target.path}"))
        if self.fildes:
            return self._start(lambda s: s.send_fildes(target.fd))
        data = target.data if target.data is not None else read_fd(
            target.fd, target.limit, target.size)
        if data is None:
            too_large = Unchecked(Reason.TOO_LARGE, f">{target.limit}")
            return lambda: too_large
        return self.start_bytes(data)

    def info(self) -> EngineInfo:
        # "ClamAV 1.4.6/27000/Mon Nov 23 ..." or just "ClamAV 1.4.6" with private signatures.
        parts = self._version.split("/")
        db = f"db={parts[1]}" if len(parts) > 1 else "db=local"
        release = parts[0].removeprefix("ClamAV ").strip() or "unreachable"
        return EngineInfo(f"{self.name}/{release}", db, detail=self._version)


def _memfd(data: bytes) -> int | None:
    """``data`` in an anonymous in-memory file (offset 0), or None where memfds are
    unavailable (the caller streams instead)."""
    try:
        fd = os.memfd_create("scand-clamd", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        return None
    try:
        view, pos = memoryview(data), 0
        while pos < len(view):
            pos += os.pwrite(fd, view[pos:], pos)  # pwrite: the offset stays at 0
    except OSError:
        os.close(fd)
        return None
    return fd
