"""One request end to end: event in, reply bytes out, one log line.

The server hands every parsed event here. Scans go to the pool; control lines
are answered from the service's own state. Every request ends in exactly one
canonical log line (``scan_finished``, ``command`` or ``request_rejected``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

import structlog
import trio

import scand
from scand.config import Config, ConfigError
from scand.engines.base import EngineError
from scand.events import (
    BadRequest,
    Command,
    Event,
    Infected,
    Reason,
    ScanPath,
    Unchecked,
    verdict_label,
)
from scand.pool.pool import Pool
from scand.protocol import format_bad_request, format_line, format_verdict
from scand.stats import Stats
from scand.worker.wire import Outcome

log = structlog.get_logger("scand")


class ManagedEngine(Protocol):
    """An engine process scand runs itself (:class:`scand.clamd.supervisor.ManagedClamd`),
    as the service sees it: VERSION, STATS and RELOAD."""

    @property
    def signatures(self) -> int: ...

    def stats(self) -> dict[str, Any]: ...

    def down_reason(self) -> str:
        """Why it cannot scan now ("" = it can): the HAProxy agent answers ``down``."""

    async def switch(self, reason: str, config: Config | None = None) -> None: ...

    def worker_config(self, config: Config) -> Config: ...


class Service:
    """Holds the live config, the pool and the counters."""

    def __init__(
        self,
        config: Config,
        pool: Pool,
        reload_config: Callable[[], Config] | None = None,
        managed: ManagedEngine | None = None,
        engine_reason: Callable[[], str] = lambda: "",
    ) -> None:
        self.config = config
        # Why this engine (engine.name = "auto"): "auto: builtin (no database in ...)".
        self.engine_reason = engine_reason
        self.reloads = 0  # reloads attempted (done or failed), for scand.selfcheck
        # STATS "self_check" (scand.selfcheck.SelfCheck.stats), once that task runs.
        self.self_check_stats: Callable[[], dict[str, object]] | None = None
        self.pool = pool
        self.stats = Stats()
        self.draining = False
        self.managed = managed
        self._reload_config = reload_config or (lambda: self.config)
        self._reload_lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        # The scan line's logger, resolved on the first scan (as structlog's
        # cache_logger_on_first_use would): not through the lazy proxy per request.
        self._info: Callable[..., Any] | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the nursery that background reloads run in."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # -- what a connection needs (scand.fronts.sophie.Handler) -------------------------

    @property
    def max_stream(self) -> int:
        return self.config.server.max_stream_bytes

    @property
    def idle_timeout(self) -> float:
        return self.config.server.idle_timeout

    @property
    def request_timeout(self) -> float:
        return self.config.server.request_timeout

    # -- requests ----------------------------------------------------------------

    async def handle(self, event: Event) -> bytes:
        """The complete reply line for one request."""
        if isinstance(event, BadRequest):
            log.info("request_rejected", reason=str(event.reason), detail=event.detail)
            self.stats.record(Unchecked(event.reason), 0.0, 0)
            return format_bad_request(event)
        if isinstance(event, Command):
            return self._command(event.name)
        if self.draining:
            log.info("request_rejected", reason=str(Reason.SHUTTING_DOWN), detail="stopping")
            self.stats.record(Unchecked(Reason.SHUTTING_DOWN), 0.0, 0)
            return format_verdict(Unchecked(Reason.SHUTTING_DOWN))
        if isinstance(event, ScanPath):
            result = await self.scan(event.path, path=event.path)
        else:
            result = await self.scan(f"STREAM {len(event.data)}", data=event.data)
        return format_verdict(result.verdict)

    async def scan(self, what: str, *, path: str | None = None, data: bytes | None = None
                   ) -> Outcome:
        """One pool scan with its canonical log line and statistics (every front uses this)."""
        if self.draining:
            log.info("request_rejected", reason=str(Reason.SHUTTING_DOWN), detail="stopping")
            self.stats.record(Unchecked(Reason.SHUTTING_DOWN), 0.0, 0)
            return Outcome(Unchecked(Reason.SHUTTING_DOWN))
        t0 = trio.current_time()
        result = await self.pool.scan(path=path, data=data)
        elapsed = trio.current_time() - t0
        self._log_scan(what, result, elapsed)
        self.stats.record(result.verdict, elapsed, result.bytes, result.cache)
        return result

    def _log_scan(self, what: str, result: Outcome, elapsed: float) -> None:
        verdict = result.verdict
        fields: dict[str, object] = {
            "path": what,
            "verdict": verdict_label(verdict),
            "bytes": result.bytes,
            "files": result.files,
            "ms": round(elapsed * 1000, 2),
            "worker": result.worker,
        }
        if any(result.cache):
            fields["cache_hits"], fields["cache_misses"] = result.cache[:2]
            if result.cache[2:] and result.cache[2]:
                fields["cache_bad_tags"] = result.cache[2]
        if isinstance(verdict, Unchecked):
            fields["detail"] = verdict.detail
        elif isinstance(verdict, Infected):
            fields["virus"] = verdict.name
        info = self._info
        if info is None:
            info = self._info = log.bind().info
        info("scan_finished", **fields)

    # -- control lines -------------------------------------------------------------

    def _command(self, name: str) -> bytes:
        self.stats.commands += 1
        log.info("command", command=name)
        if name == "PING":
            return format_line("PONG")
        if name == "VERSION":
            return format_line(self.version())
        if name == "STATS":
            return format_line(json.dumps(self.stats_dict(), separators=(",", ":")))
        if name == "RELOAD":
            self.request_reload()
            return format_line("RELOADING")
        raise AssertionError(f"unhandled command {name}")  # pragma: no cover

    def version(self) -> str:
        info = self.pool.info
        engine = info.engine if info else self.config.engine.name
        sigs = info.signatures if info else "unknown"
        if self.managed is not None:
            sigs = f"sigs={self.managed.signatures}"
        reason = self.engine_reason()
        return f"scand {scand.__version__} {engine} {sigs}" + (f" ({reason})" if reason else "")

    def stats_dict(self) -> dict[str, object]:
        info = self.pool.info
        return {
            **self.stats.snapshot(),
            "version": scand.__version__,
            "engine": {
                "name": info.engine if info else self.config.engine.name,
                "signatures": info.signatures if info else None,
                "detail": info.detail if info else None,
                "reason": self.engine_reason(),
            },
            "pool": self.pool.stats(),
            **({"clamd": self.managed.stats()} if self.managed is not None else {}),
            **({"self_check": self.self_check_stats()} if self.self_check_stats else {}),
        }

    # -- reload --------------------------------------------------------------------

    @property
    def reloading(self) -> bool:
        """A reload is rolling the workers over (the farm agent says ``drain``)."""
        return self._reload_lock.locked()

    def request_reload(self) -> None:
        """Start a reload in the background (RELOAD and SIGHUP)."""
        assert self._nursery is not None
        self._nursery.start_soon(self.reload)

    async def reload(self) -> bool:
        """Re-read config and signatures; on any error keep the old set and log why."""
        async with self._reload_lock:
            try:
                new = self._reload_config()
                if self.managed is not None:
                    await self.managed.switch("reload", new)
                    new = self.managed.worker_config(new)
                await self.pool.reload(new)
            except (ConfigError, EngineError) as exc:
                self.reloads += 1
                log.error("reload_failed", error=str(exc), kept=self.version())
                return False
            self.reloads += 1
            self.config = new
            log.info("reload_done", version=self.version())
            return True
