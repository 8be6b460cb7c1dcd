"""Managed mode for the clamd engine: scand runs and babysits its own clamd.

* scand writes ``clamd-<n>.conf`` into its run directory (limits from
  ``[clamd]``, ``AlertExceedsMax yes`` always), starts ``clamd --foreground``
  on ``clamd-<n>.sock``, and waits for ``PING``.
* Workers connect through the symlink ``clamd.sock``, which always points at
  the live clamd: moving traffic is one atomic ``rename``.
* If clamd dies, requests in flight get ``-1:engine-unavailable`` (the worker
  sees the connection drop) and clamd is restarted with backoff.
* If clamd's RSS grows past ``rss_limit_mb`` above its loaded baseline, a new
  clamd is started and warmed on a fresh socket, the symlink moves, and the
  old one is stopped once its STATS show no scan in progress. RELOAD uses the
  same switch, so a broken signature set never replaces a working one.
* A clamd that is replaced (switched, or restarted after it died) leaves no
  files: its ``clamd-<n>.sock``, ``.conf`` and ``.log`` are removed; at start,
  a clamd a killed daemon left running is stopped, and its files are removed
  (only names scand gives: :mod:`scand.clamd.rundir`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import structlog
import trio

from scand import config as configmod
from scand import safedir
from scand.clamd.rundir import GENERATION_FILES, stop_orphans, sweep_run_dir
from scand.config import Config
from scand.engines.base import EngineError
from scand.engines.clamav import tmpdir
from scand.privileges import Identity
from scand.proc import retry, terminate

log = structlog.get_logger("scand.clamd")

# Restart delays after clamd dies: quick first (a one-off crash), then backing off.
BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
# A drained clamd is stopped at the latest this long after traffic moved away.
DRAIN_LIMIT = 60.0
TERM_GRACE = 5.0
# Signature files counted for VERSION (one signature per non-comment line).
SIG_SUFFIXES = (".hdb", ".hsb", ".ndb", ".ldb", ".mdb", ".msb", ".db", ".ign2", ".fp", ".sfp")
# The files scand names in the run directory for generation <n>; nothing else is removed.


@dataclass(eq=False)
class ClamdProcess:
    proc: trio.Process
    generation: int
    socket: str
    started: float = field(default_factory=time.monotonic)
    baseline_rss: int = 0

    def rss(self) -> int:
        try:
            return int(psutil.Process(self.proc.pid).memory_info().rss)
        except psutil.Error:
            return 0


def find_binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise EngineError(f"clamd.binary: {name!r} not found (install Debian's clamav-daemon)")
    return found


def count_signatures(directory: str) -> int:
    total = 0
    for entry in sorted(Path(directory).iterdir()):
        if entry.suffix in SIG_SUFFIXES and entry.is_file():
            with entry.open("rb") as fh:
                total += sum(1 for line in fh if line.strip() and not line.startswith(b"#"))
    return total


async def clamd_command(path: str, command: bytes, timeout: float = 5.0) -> bytes:
    """Send one ``n``-framed command to a clamd Unix socket; clamd replies, then closes."""
    with trio.fail_after(timeout):
        stream = await trio.open_unix_socket(path)
        async with stream:
            await stream.send_all(b"n" + command + b"\n")
            reply = b""
            while chunk := await stream.receive_some(65536):
                reply += chunk
            return reply


class ManagedClamd:
    """Start with ``await nursery.start(managed.run)``; then use :meth:`worker_config`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        if not config.engine.signatures:
            raise EngineError("engine.signatures: managed clamd needs a signature directory")
        base = os.path.dirname(config.socket_path)
        self.run_dir = Path(config.clamd.run_dir or os.path.join(base, "scand-clamd"))
        self.link = str(self.run_dir / "clamd.sock")
        self.tmp_dir = self.run_dir / "tmp"
        self._shm_tmp = shm_tmp_dir(config, self.run_dir)
        self.binary = find_binary(config.clamd.binary)
        self.current: ClamdProcess | None = None
        self.generation = 0
        self.events: Counter[str] = Counter()
        self.version = ""
        self.signatures = 0
        self._last_switch = time.monotonic()
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None

    def worker_config(self, config: Config) -> Config:
        """``config`` with the workers pointed at the managed clamd."""
        return configmod.override(config, "clamd", sockets=[self.link])

    def prepare(self, owner: Identity | None) -> None:
        """Create the run directory (while still root) for the user clamd will run as,
        and clamd's temp directory: on /dev/shm when it is a large enough tmpfs (the
        rule of the clamav engine, :mod:`scand.engines.clamav.tmpdir`: clamd writes
        every decoded mail part there; measured, clamd direct did 18-25 % more
        messages a second with its temp files on tmpfs), else ``<run_dir>/tmp``."""
        ids = (owner.uid, owner.gid) if owner is not None else None
        for d, mode in ((self.run_dir, 0o750), (self.run_dir / "tmp", 0o700)):
            safedir.ensure_dir(str(d), "clamd.run_dir", mode=mode, chown=ids)  # ours, or refused
        if self._shm_tmp is None:
            return
        try:  # /dev/shm is everyone's: only a directory made here, or ours already
            self._shm_tmp.mkdir(mode=0o700)
            if owner is not None:  # (made by us in a sticky directory: nobody can swap it)
                os.chown(self._shm_tmp, owner.uid, owner.gid, follow_symlinks=False)
        except FileExistsError:
            pass  # left by an earlier run of ours, or planted: checked below
        except OSError as exc:
            log.warning("clamd_tmp_refused", path=str(self._shm_tmp), error=str(exc))
        if private_dir(self._shm_tmp, owner.uid if owner is not None else os.getuid()):
            self.tmp_dir = self._shm_tmp
        else:
            log.warning("clamd_tmp_refused", path=str(self._shm_tmp),
                        using=str(self.run_dir / "tmp"))
            self._shm_tmp, self.tmp_dir = None, self.run_dir / "tmp"

    # -- lifecycle -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.prepare(None)
        stopped = await trio.to_thread.run_sync(stop_orphans, self.run_dir, TERM_GRACE,
                                                self.binary)
        if stopped:  # a clamd that outlived a killed daemon (scand.clamd.rundir)
            log.warning("clamd_orphans_stopped", pids=stopped)
        swept = sweep_run_dir(self.run_dir)
        if swept:
            log.info("clamd_run_dir_swept", removed=swept)  # left by a killed daemon
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._activate(await self._start(self.config))
                task_status.started()
                await self._supervise()
        finally:
            with trio.CancelScope(shield=True):
                if self.current is not None:
                    await self._stop(self.current)
                if self._shm_tmp is not None:  # ours alone (named after the run dir)
                    shutil.rmtree(self._shm_tmp, ignore_errors=True)

    async def _supervise(self) -> None:
        cfg = self.config.clamd
        while True:
            current = self.current
            assert current is not None
            with trio.move_on_after(cfg.rss_check_interval):
                await current.proc.wait()
            if current is not self.current:
                continue  # switched meanwhile
            if current.proc.returncode is not None:
                self.events["restart"] += 1
                log.error("clamd_died", pid=current.proc.pid, returncode=current.proc.returncode,
                          log_tail=_tail(self._path(current.generation, ".log")))
                self._retire(current.generation)
                self._activate(await retry(
                    lambda: self._start(self.config), BACKOFF, (EngineError,),
                    lambda exc, n: log.error("clamd_restart_failed", error=str(exc), attempt=n),
                    delay_first=True))
                continue
            grown = (current.rss() - current.baseline_rss) / 2**20
            since = time.monotonic() - self._last_switch
            if cfg.rss_limit_mb and grown > cfg.rss_limit_mb and since >= cfg.min_switch_interval:
                log.warning("clamd_rss_limit", pid=current.proc.pid, grown_mb=round(grown, 1))
                with contextlib.suppress(EngineError):
                    await self.switch("rss")

    async def switch(self, reason: str, config: Config | None = None) -> None:
        """Warm a fresh clamd, move traffic to it, drain and stop the old one.

        Raises EngineError (and keeps the current clamd) if the new one will not start.
        """
        async with self._lock:
            new = await self._start(config or self.config)
            if config is not None:
                self.config = config
            old = self.current
            self._activate(new)
            self._last_switch = time.monotonic()
            self.events[f"switch_{reason}"] += 1
            log.info("clamd_switched", reason=reason, old=old and old.proc.pid, new=new.proc.pid)
            if old is not None:
                assert self._nursery is not None
                self._nursery.start_soon(self._drain, old)

    async def _drain(self, old: ClamdProcess) -> None:
        """Stop ``old`` once STATS shows only the STATS thread itself busy, twice in a row."""
        quiet = 0
        with trio.move_on_after(DRAIN_LIMIT):
            while quiet < 2 and old.proc.returncode is None:
                await trio.sleep(0.2)
                try:
                    stats = (await clamd_command(old.socket, b"STATS")).decode(errors="replace")
                except (OSError, trio.TooSlowError):
                    break
                quiet = quiet + 1 if _idle(stats) else 0
        await self._stop(old)

    def _activate(self, new: ClamdProcess) -> None:
        tmp = self.link + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(new.socket, tmp)
        os.replace(tmp, self.link)  # atomic: a worker connects to the old or the new one
        self.current = new

    def _path(self, generation: int, suffix: str) -> Path:
        return self.run_dir / f"clamd-{generation}{suffix}"

    def _retire(self, generation: int) -> None:
        """Remove a replaced clamd's socket, configuration and log."""
        for suffix in GENERATION_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(generation, suffix))

    async def _start(self, config: Config) -> ClamdProcess:
        self.generation += 1
        gen = self.generation
        sock = str(self._path(gen, ".sock"))
        conf = self._path(gen, ".conf")
        logfile = self._path(gen, ".log")
        for stale in (sock, str(logfile)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        conf.write_text(render_conf(config, sock, str(logfile), str(self.tmp_dir)))
        proc = await trio.lowlevel.open_process(
            [self.binary, "--foreground", f"--config-file={conf}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        started = ClamdProcess(proc, gen, sock)
        try:
            with trio.fail_after(config.clamd.start_timeout):
                while True:
                    if proc.returncode is not None or proc.poll() is not None:
                        raise EngineError(f"clamd exited {proc.returncode}: {_tail(logfile)}")
                    with contextlib.suppress(OSError, trio.TooSlowError):
                        if await clamd_command(sock, b"PING", 2.0) == b"PONG\n":
                            break
                    await trio.sleep(0.05)
        except trio.TooSlowError:
            tail = _tail(logfile)  # read before _stop removes the log
            await self._stop(started)
            raise EngineError(f"clamd did not answer PING in {config.clamd.start_timeout}s: "
                              f"{tail}") from None
        except BaseException:
            await self._stop(started)
            raise
        started.baseline_rss = started.rss()
        with contextlib.suppress(OSError, trio.TooSlowError):
            self.version = (await clamd_command(sock, b"VERSION")).decode().strip()
        self.signatures = count_signatures(config.engine.signatures)
        log.info("clamd_ready", pid=proc.pid, socket=sock, version=self.version,
                 signatures=self.signatures, rss_mb=round(started.baseline_rss / 2**20, 1))
        return started

    async def _stop(self, old: ClamdProcess) -> None:
        await terminate(old.proc, TERM_GRACE)
        self._retire(old.generation)

    def down_reason(self) -> str:
        """"" while a clamd runs; else why not (the HAProxy agent answers ``down``)."""
        if self.current is None or self.current.proc.returncode is not None:
            return "clamd down"
        return ""

    def stats(self) -> dict[str, Any]:
        cur = self.current
        return {
            "mode": "managed",
            "version": self.version,
            "signatures": self.signatures,
            "pid": cur.proc.pid if cur else None,
            "rss": cur.rss() if cur else 0,
            "baseline_rss": cur.baseline_rss if cur else 0,
            "socket": cur.socket if cur else None,
            "generation": self.generation,
            "restarts": self.events.get("restart", 0),
            "switches": {k.removeprefix("switch_"): v for k, v in self.events.items()
                         if k.startswith("switch_")},
        }


def _idle(stats: str) -> bool:
    """clamd STATS: only our own STATS thread live-and-busy, nothing queued."""
    queue_empty = "QUEUE: 0 items" in stats
    busy = 0
    for line in stats.splitlines():
        if line.startswith("THREADS:"):
            words = line.split()
            live, idle = int(words[2]), int(words[4])
            busy = live - idle
    return queue_empty and busy <= 1


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def shm_tmp_dir(config: Config, run_dir: Path) -> Path | None:
    """clamd's temp directory on /dev/shm for this run directory, or None when /dev/shm
    is no tmpfs, too small, or not writable (:func:`tmpdir.default_parent`)."""
    if tmpdir.default_parent(config) != tmpdir.SHM:
        return None
    tag = hashlib.sha256(os.fsencode(os.path.abspath(run_dir))).hexdigest()[:16]
    return Path(tmpdir.SHM) / f"scand-clamd-{tag}"


def private_dir(path: Path, uid: int) -> bool:
    """A real directory (no symlink), owned by ``uid``, that nobody else may enter."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o077


def render_conf(config: Config, sock: str, logfile: str, tmpdir: str) -> str:
    c = config.clamd
    return "\n".join([
        "# written by scand; edit scand's [clamd] section instead",
        "Foreground yes",
        f"LocalSocket {sock}",
        "LocalSocketMode 660",
        f"DatabaseDirectory {config.engine.signatures}",
        f"LogFile {logfile}",
        f"TemporaryDirectory {tmpdir}",
        "AlertExceedsMax yes",
        f"MaxFileSize {c.max_file_size_mb}M",
        f"MaxScanSize {c.max_scan_size_mb}M",
        f"StreamMaxLength {c.stream_max_length_mb}M",
        f"MaxRecursion {c.max_recursion}",
        f"MaxFiles {c.max_files}",
        f"MaxThreads {c.max_threads}",
        "SelfCheck 0",
        f"DisableCache {'yes' if c.disable_cache else 'no'}",
        "ConcurrentDatabaseReload no",
        "",
    ])
