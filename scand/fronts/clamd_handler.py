"""Answer one clamd request with scand's service: event in, reply bytes out.

Scans go through :meth:`Service.scan` (the pool, the canonical log line and
the statistics the Sophie front uses). Directory commands walk the tree in a
thread and give the pool one job per file, so every infected file gets its own
``<file>: <Name> FOUND`` line, as clamd reports it; MULTISCAN runs those jobs
in parallel over the pool.

FILDES: the descriptor arrives in the daemon. Workers take jobs over a pipe
(:mod:`scand.worker.wire`), which cannot carry SCM_RIGHTS; making every worker
channel a socket would change the pool for one command. So the daemon reads
the file (``pread``, in a thread, capped at ``limits.max_file_size``; past it
the answer is ``too-large ERROR``) and the worker scans the bytes as a stream.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable

import structlog
import trio

import scand
from scand.engines.base import read_fd
from scand.events import CLEAN, Clean, Infected, Reason, Unchecked, Verdict
from scand.fronts import clamd_reply as text
from scand.fronts.budget import Held
from scand.fronts.clamd_events import (
    SIZE_LIMIT,
    STREAM_BUSY,
    ClamdEvent,
    EndSession,
    FdScan,
    PathScan,
    Reply,
    Simple,
    StreamScan,
    Tag,
    frame,
)
from scand.fronts.clamd_walk import inspect, list_tree
from scand.service import Service
from scand.worker.paths import allowed_roots

log = structlog.get_logger("scand.clamd")

DISABLED = "{} command disabled by clamd configuration. ERROR"


class ClamdHandler:
    """One per listener: ``as_found`` is the listener's ``unchecked_as_found`` choice."""

    def __init__(self, service: Service, *, as_found: bool = False,
                 shutdown: Callable[[], None] | None = None) -> None:
        self.service = service
        self.as_found = as_found
        self._shutdown = shutdown
        self._version_key = ""
        self._loaded = ""
        self.version()  # the date of the set loaded now, not of the first VERSION asked

    async def answer(self, event: ClamdEvent, held: Held | None = None) -> bytes:
        """The complete reply for one event (several lines for a directory); b"" for none.

        ``held`` is the connection's share of the daemon-wide memory budget: a
        FILDES read is charged to it while the bytes are in the daemon."""
        if isinstance(event, EndSession):
            return b""
        if isinstance(event, Reply):
            if not event.text:
                return b""
            log.info("request_rejected", front="clamd", detail=event.text)
            refused = {SIZE_LIMIT: "too-large", STREAM_BUSY: "busy"}.get(event.text)
            if refused and self.as_found:
                # rspamd passes any reply but OK/FOUND: name the refusal instead.
                return frame(event.tag, "stream: " + text.unchecked_text(refused, as_found=True))
            return frame(event.tag, event.text)
        if isinstance(event, Simple):
            return self._simple(event)
        if isinstance(event, StreamScan):
            result = await self.service.scan(f"INSTREAM {len(event.data)}", data=event.data)
            return self._lines(event.tag, [text.line("stream", result.verdict,
                                                     as_found=self.as_found)])
        if isinstance(event, FdScan):
            return self._lines(event.tag, [await self._fildes(event.fd, held or Held(None))])
        return self._lines(event.tag, await self._path(event))

    def _lines(self, tag: Tag, lines: list[str]) -> bytes:
        return b"".join(frame(tag, line) for line in lines)

    # -- commands ------------------------------------------------------------------

    def _simple(self, event: Simple) -> bytes:
        name = event.name
        self.service.stats.commands += 1
        log.info("command", command=name, front="clamd")
        if name == "PING":
            return frame(event.tag, "PONG")
        if name == "VERSION":
            return frame(event.tag, self.version())
        if name == "VERSIONCOMMANDS":
            return frame(event.tag, text.versioncommands_text(scand.__version__))
        if name == "STATS":
            idle = self.service.config.server.idle_timeout
            return frame(event.tag, text.stats_text(self.service.pool.stats(), idle))
        if name == "RELOAD":
            self.service.request_reload()
            return frame(event.tag, "RELOADING")
        if name == "SHUTDOWN":
            if self.service.config.clamd_front.allow_shutdown and self._shutdown is not None:
                log.warning("shutdown_requested", front="clamd")
                self._shutdown()
                return b""
            return frame(event.tag, DISABLED.format("SHUTDOWN"))
        raise AssertionError(f"unhandled command {name}")  # pragma: no cover

    def version(self) -> str:
        """``scand <v>/<signature count>/<date the set was loaded>`` (clamd's shape)."""
        info = self.service.pool.info
        sigs = info.signatures if info else ""
        managed = self.service.managed
        if managed is not None:
            sigs = f"sigs={managed.signatures}"
        key = f"{sigs}/{self.service.pool.generation}"
        if key != self._version_key:
            self._version_key, self._loaded = key, time.ctime()
        return text.version_text(scand.__version__, sigs, self._loaded)

    async def _fildes(self, fd: int, held: Held) -> str:
        """Read the descriptor in the daemon (charged to the memory budget until the
        scan is done): a regular file its size, anything else (a pipe) the whole limit."""
        shown = f"fd[{fd}]"
        limit = self.service.config.limits.max_file_size
        cap = 0
        try:
            st = os.fstat(fd)
            regular = stat.S_ISREG(st.st_mode) and st.st_size > 0
            cap = min(st.st_size, limit) if regular else limit
            if not held.take(cap):
                cap = 0
                busy = Unchecked(Reason.BUSY, "memory budget")
                log.info("request_rejected", front="clamd", reason="busy", detail=busy.detail)
                return text.line(shown, busy, as_found=self.as_found)
            data = await trio.to_thread.run_sync(read_fd, fd, cap, st.st_size)
        except OSError as exc:
            held.give(cap)
            failed = Unchecked(Reason.UNREADABLE, f"{shown}: {exc.strerror}")
            log.info("request_rejected", front="clamd", reason="unreadable", detail=failed.detail)
            return text.line(shown, failed, as_found=self.as_found)
        finally:
            os.close(fd)
        try:
            if data is None:
                verdict: Verdict = Unchecked(Reason.TOO_LARGE, f">{cap}")
                log.info("request_rejected", front="clamd", reason="too-large", detail=shown)
                self.service.stats.record(verdict, 0.0, 0)
                return text.line(shown, verdict, as_found=self.as_found)
            result = await self.service.scan(f"FILDES {len(data)}", data=data)
            return text.line(shown, result.verdict, as_found=self.as_found)
        finally:
            held.give(cap)

    async def _path(self, event: PathScan) -> list[str]:
        config = self.service.config
        if event.command == "ALLMATCHSCAN" and not config.clamd_front.allow_allmatch:
            return [f"{event.path}: {DISABLED.format('ALLMATCHSCAN')}"]
        roots = allowed_roots(config.server.allowed_roots)
        top = await trio.to_thread.run_sync(inspect, event.path, roots)
        if top.kind == "missing":
            log.info("request_rejected", front="clamd", reason="not-found", detail=event.path)
            return [f"{top.shown}: {text.PATH_CHECK_FAILURE.format(top.error)}"]
        if top.verdict is not None:
            log.info("request_rejected", front="clamd", reason=str(top.verdict.reason),
                     detail=top.verdict.detail)
            return [text.line(top.shown, top.verdict, as_found=self.as_found)]
        if top.kind == "file":
            result = await self.service.scan(top.shown, path=event.path)
            return [text.line(top.shown, result.verdict, as_found=self.as_found)]
        limits = config.limits
        entries = await trio.to_thread.run_sync(
            list_tree, top.shown, roots, limits.max_files, limits.max_depth, top.real)
        lines = await self._tree(event.command, entries)
        if not entries and event.command == "MULTISCAN":
            return []  # clamd 1.4.6 answers nothing at all for an empty directory here
        return lines or [f"{top.shown}: OK"]

    async def _tree(self, command: str, entries: list[tuple[str, Unchecked | None]]
                    ) -> list[str]:
        """Lines for every file not clean; empty when everything was scanned clean."""
        lines: list[str] = []
        first_only = command in ("SCAN", "ALLMATCHSCAN")

        def note(path: str, verdict: Verdict) -> None:
            if not isinstance(verdict, Clean):
                lines.append(text.line(path, verdict, as_found=self.as_found))

        if command == "MULTISCAN":
            limiter = trio.CapacityLimiter(max(1, self.service.config.worker_count))

            async def one(path: str) -> None:
                async with limiter:
                    note(path, (await self.service.scan(path, path=path)).verdict)

            async with trio.open_nursery() as nursery:
                for path, problem in entries:
                    if problem is not None:
                        note(path, problem)
                    else:
                        nursery.start_soon(one, path)
            return lines
        for path, problem in entries:
            verdict: Verdict = problem if problem is not None else CLEAN
            if problem is None:
                verdict = (await self.service.scan(path, path=path)).verdict
            note(path, verdict)
            if first_only and isinstance(verdict, Infected):
                break
        return lines
