"""Self-check: reload when the signature directory changes (clamd's ``SelfCheck``).

Every ``engine.self_check`` seconds the daemon takes the state of the
signature directory (name, size, mtime and inode of each database file and of
the files that steer a load, .ign2 and the like:
:func:`scand.engines.auto.database_state`; freshclam's own freshclam.dat,
rewritten at each run, is left out). When it differs from the set
in service, the directory must then hold still for ``engine.self_check_settle``
seconds (freshclam renames complete files into place, but a hand-copied
``.ndb`` can be caught half-written), and the daemon reloads exactly as
``RELOAD`` does (:meth:`scand.service.Service.reload`: the new set is proved in
a fresh worker, workers roll over one by one).

A broken set keeps the old one; the reload logs ``reload_failed`` (file and
line) and this task logs ``self_check_kept`` once, and that state of the
directory is not tried again: only a further change is. A reload from
elsewhere (RELOAD, SIGHUP, freshclam's ``NotifyClamd`` through the clamd front)
makes the directory as it is then the new baseline.

Off with ``self_check = 0``, with no signature directory, and for an external
clamd (``clamd.sockets``), which checks its own database. Uses trio's clock,
so tests drive it with ``autojump_clock``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog
import trio

from scand.config import Config
from scand.engines.auto import database_state

log = structlog.get_logger("scand.selfcheck")


class Reloadable(Protocol):
    """What self-check needs of :class:`scand.service.Service`."""

    config: Config
    reloads: int  # reload attempts so far, from any cause

    @property
    def managed(self) -> object | None:  # a ManagedClamd, or None
        ...

    async def reload(self) -> bool: ...


def watched_directory(service: Reloadable) -> str:
    """The directory to watch; "" when there is none or someone else watches it."""
    cfg = service.config
    if cfg.engine.name == "clamd" and service.managed is None:
        return ""  # an external clamd runs its own SelfCheck on its own database
    return cfg.engine.signatures


State = tuple[tuple[str, int, int, int], ...] | str


async def fingerprint(path: str) -> State:
    """The database files' state, read in a thread (a slow disk must not stall trio)."""
    return await trio.to_thread.run_sync(database_state, path)


class SelfCheck:
    """One task per daemon: watch, settle, reload."""

    def __init__(self, service: Reloadable,
                 fingerprint: Callable[[str], Awaitable[State]] = fingerprint) -> None:
        self.service = service
        self.fingerprint = fingerprint
        self.checks = 0  # states taken at the interval (for tests)
        self.reloads = 0  # reloads this task started
        self.failed: State = ""  # the directory state whose reload failed ("" = none)
        self.directory = ""  # "" = off
        self.last = ""  # the last self-check reload: "done", "kept" (broken set) or ""

    def stats(self) -> dict[str, object]:
        """STATS ``self_check``: what is watched and what happened."""
        return {"directory": self.directory or None,
                "interval": self.service.config.engine.self_check if self.directory else 0,
                "checks": self.checks, "reloads": self.reloads, "last": self.last or None,
                "kept_broken": bool(self.failed)}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        interval = self.service.config.engine.self_check
        directory = watched_directory(self.service)
        if not interval or not directory:
            log.info("self_check_off", directory=directory or None, interval=interval)
            task_status.started()
            return
        baseline = await self.fingerprint(directory)
        seen = self.service.reloads
        self.directory = directory
        log.info("self_check_on", directory=directory, interval=interval,
                 settle=self.service.config.engine.self_check_settle)
        task_status.started()
        while interval:
            await trio.sleep(interval)
            directory = self.directory = watched_directory(self.service)
            if not directory:
                break
            current = await self.fingerprint(directory)
            self.checks += 1
            if self.service.reloads != seen:  # reloaded from elsewhere: that is the set now
                baseline, self.failed, seen = current, "", self.service.reloads
            if current not in (baseline, self.failed):
                settled = await self._settle(directory, current)
                if settled != baseline and settled != self.failed:
                    baseline = await self._reload(directory, settled, baseline)
                    seen = self.service.reloads
            interval = self.service.config.engine.self_check
        log.info("self_check_off", directory=directory or None, interval=interval)

    async def _settle(self, directory: str, current: State) -> State:
        """Wait until two fingerprints ``self_check_settle`` apart agree; return it."""
        log.info("self_check_changed", directory=directory)
        while True:
            await trio.sleep(self.service.config.engine.self_check_settle)
            later = await self.fingerprint(directory)
            if later == current:
                return current
            current = later

    async def _reload(self, directory: str, settled: State, baseline: State) -> State:
        """Reload as RELOAD does; the new baseline (the old one if the set was kept)."""
        self.reloads += 1
        log.info("self_check_reload", directory=directory)
        if await self.service.reload():
            self.failed, self.last = "", "done"
            return settled
        self.failed, self.last = settled, "kept"
        log.warning("self_check_kept", directory=directory,
                    detail="the old set stays until the directory changes again")
        return baseline
