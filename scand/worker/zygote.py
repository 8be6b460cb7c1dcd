"""The zygote: a small, trio-free process that forks the scan workers.

Why not exec each worker? Two reasons, both measured here:

* privileges: scand drops to ``server.user`` before it accepts. After that
  the daemon may no longer be able to exec Python at all (here the
  interpreter lives under /root, mode 0700), so a worker replaced later could
  never start. The zygote is started while scand is still root, imports
  everything a worker needs, drops privileges itself, and from then on only
  forks: no exec, no imports, no root.
* speed: a fork of a warm interpreter is a few milliseconds; an exec plus
  imports was about 55 ms (bench/pool_overhead.py).

The engine is loaded once per signature generation, by a child of the zygote
that serves that generation only (:class:`Generation`), and shared by every
worker forked from it (copy-on-write). So a worker replaced later gets
exactly the set its generation validated, even if a broken file has since
appeared in the signature directory; and a big set is not parsed per worker.

Protocol, over a SOCK_SEQPACKET socket on fd 0 (one pickle per packet):
the typed messages of :mod:`scand.worker.wire`: ``ZygoteInit`` -> ``ZygoteReady``;
``DropRequest`` -> ``Dropped``: every other generation's zygote exits, freeing
its set (sent by the pool once no worker of those generations is left, and
after a failed reload); ``ForkRequest`` -> ``Forked`` carrying three
descriptors (SCM_RIGHTS): the worker's job pipe (write end), its result pipe
(read end) and a pidfd; any failure -> ``ZygoteFailed`` (for example when that
generation's engine does not load). The zygote ignores SIGCHLD, so the kernel reaps its
children; the daemon watches each worker through its pidfd.
"""

from __future__ import annotations

import array
import gc
import os
import random
import signal
import socket
import sys

from scand import privileges
from scand.cache import redis_store, shared
from scand.config import Config
from scand.engines import base as engine_base
from scand.engines.base import Engine, EngineError
from scand.engines.registry import REGISTRY
from scand.worker import child, wire


def preload(config: Config) -> None:
    """Import every engine now, while the code is still readable: workers import nothing.
    The Redis client only when the config uses it (a reload that turns it on imports
    it in the generation's workers, or runs without the cache if it cannot)."""
    for name in REGISTRY:
        try:
            engine_base.engine_class(name)
        except ImportError as exc:  # e.g. pyclamd missing: that engine fails at load
            child.log("zygote_preload_failed", engine=name, error=str(exc))
    if config.engine.name == "clamav":
        # Load and relocate libclamav once, here: every generation zygote and worker
        # then shares those pages instead of holding its own copy (a set is still
        # loaded only in its generation zygote).
        from scand.engines.clamav import libclamav
        try:
            libclamav.open_library(config.clamav.library)
        except libclamav.LibclamavError as exc:  # the generation reports it on load
            child.log("zygote_preload_failed", engine="clamav", error=str(exc))
    # The memory backend's one table per daemon, shared by every worker forked from
    # here (made even when the cache is off: a reload may turn it on; untouched
    # pages cost nothing).
    shared.prepare(config.cache.max_entries, config.cache.ttl)
    if config.cache.backend == "redis":
        try:
            redis_store.load_client()
        except redis_store.StoreUnavailable as exc:
            child.log("zygote_preload_failed", cache="redis", error=str(exc))


def fork_worker(config: Config, engine: Engine, control: socket.socket) -> None:
    """Fork one worker and hand its pipes and pidfd to the daemon."""
    job_r, job_w = os.pipe()
    res_r, res_w = os.pipe()
    go_r, go_w = os.pipe()
    # Objects that exist now are never collected in the worker, so its collector
    # does not write to (and copy) the pages it shares with us: measured 8.8 ->
    # 7.7 MiB private per worker with the clamav engine after 600 messages.
    gc.freeze()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            control.close()
            for fd in (job_w, res_r, go_w):
                os.close(fd)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            child.die_with_parent()
            os.read(go_r, 1)  # wait until the zygote holds our pidfd (see below)
            os.close(go_r)
            random.seed()  # forks must not share one random stream
            engine.forked()
            code = child.serve(config, job_r, res_w, engine)
        finally:
            os._exit(code)
    for fd in (job_r, res_w, go_r):
        os.close(fd)
    # The child waits on go_r, so it cannot exit and be reaped (SIGCHLD is
    # ignored) before its pidfd exists: no pid-reuse window.
    pidfd = os.pidfd_open(pid)
    os.close(go_w)
    try:
        fds = array.array("i", [job_w, res_r, pidfd])
        control.sendmsg([wire.dumps(wire.Forked(pid))],
                        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    finally:
        for fd in (job_w, res_r, pidfd):
            os.close(fd)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    # No PR_SET_PDEATHSIG here: it fires when the *thread* that started us exits,
    # and trio starts processes from short-lived worker threads (seen: the zygote
    # died 10 s after start). The daemon's death shows as EOF on the control socket.
    control = socket.socket(fileno=os.dup(0))
    os.dup2(2, 1)  # stray prints go to the log, never into the control socket
    first = wire.loads(control.recv(wire.MAX_PACKET))
    if not isinstance(first, wire.ZygoteInit) or not isinstance(first.config, Config):
        return 2
    config = first.config
    preload(config)
    try:
        privileges.become(privileges.resolve(config.server.user, config.server.group))
    except privileges.PrivilegeError as exc:
        control.send(wire.dumps(wire.ZygoteFailed(str(exc))))
        return 1
    control.send(wire.dumps(wire.ZygoteReady(os.getpid(), os.getuid())))
    generations: dict[int, Generation | str] = {}
    while True:
        packet = control.recv(wire.MAX_PACKET)
        if not packet:
            return 0  # the daemon is gone (each generation zygote sees EOF and exits)
        try:
            request = wire.loads(packet)
            if isinstance(request, wire.DropRequest):  # only ``keep`` is needed now
                for old in [g for g in generations if g != request.keep]:
                    dropped = generations.pop(old)
                    if isinstance(dropped, Generation):
                        dropped.close()  # it exits: its set is gone with it, no free()
                control.send(wire.dumps(wire.Dropped(len(generations))))
                continue
            if not isinstance(request, wire.ForkRequest):
                raise TypeError(f"unexpected {type(request).__name__}")
            generation, config = request.generation, request.config
            if generation not in generations:
                others = [g.sock for g in generations.values() if isinstance(g, Generation)]
                generations[generation] = Generation.start(config, control, others)
            gen = generations[generation]
            if isinstance(gen, str):
                control.send(wire.dumps(wire.ZygoteFailed(gen)))
            elif not gen.fork(request, control):
                del generations[generation]  # it died: the next request loads it afresh
                control.send(wire.dumps(wire.ZygoteFailed("generation zygote exited")))
        except Exception as exc:  # one bad request must not take the zygote down
            child.log("zygote_error", error=repr(exc))
            control.send(wire.dumps(wire.ZygoteFailed(f"zygote: {exc!r}")))


class Generation:
    """A child of the zygote that loaded one generation's engine and forks its workers.

    The zygote itself never loads a set: so loading a new one never writes to
    pages the old set's workers still share (measured with the clamav engine
    and one zygote for all sets: 20-40 MB of the old set copied during each
    reload), and an old set is freed by its generation zygote's exit (no
    ``free()`` walking, and copying, its pages) once the daemon says ``drop``,
    i.e. after its last worker has left. Workers die with their generation
    zygote (PR_SET_PDEATHSIG), which dies with the zygote.
    """

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid, self.sock = pid, sock

    @classmethod
    def start(cls, config: Config, control: socket.socket,
              others: list[socket.socket]) -> Generation | str:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the generation zygote
            code = 1
            try:
                for sock in (control, ours, *others):  # else an old one never sees EOF
                    sock.close()
                child.die_with_parent()
                code = serve_generation(config, theirs)
            finally:
                os._exit(code)
        theirs.close()
        reply = wire.loads(ours.recv(wire.MAX_PACKET))
        if not isinstance(reply, wire.Loaded):
            ours.close()
            return reply.error if isinstance(reply, wire.ZygoteFailed) else repr(reply)
        return cls(pid, ours)

    def fork(self, request: wire.ForkRequest, control: socket.socket) -> bool:
        """Ask for a worker and pass its reply (and descriptors) on to the daemon."""
        try:
            self.sock.send(wire.dumps(request))
            data, ancdata, _, _ = self.sock.recvmsg(
                wire.MAX_PACKET, socket.CMSG_SPACE(3 * array.array("i").itemsize))
        except OSError:
            return False
        if not data:
            return False
        fds = array.array("i")
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        try:
            control.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)] if fds else [])
        finally:
            for fd in fds:
                os.close(fd)
        return True

    def close(self) -> None:
        self.sock.close()


def serve_generation(config: Config, sock: socket.socket) -> int:
    """In a generation zygote: load the engine once, then fork workers until EOF."""
    try:
        engine = load(config)
    except Exception as exc:  # a bug, not a bad set: say so rather than die silently
        engine = f"zygote: {exc!r}"
    if isinstance(engine, str):
        sock.send(wire.dumps(wire.ZygoteFailed(engine)))
        return 1
    sock.send(wire.dumps(wire.Loaded(engine.info().signatures)))
    while True:
        packet = sock.recv(wire.MAX_PACKET)
        if not packet:
            return 0  # dropped, or the zygote is gone: the set goes with this process
        try:
            request = wire.loads(packet)
            if not isinstance(request, wire.ForkRequest):
                raise TypeError(f"unexpected {type(request).__name__}")
            fork_worker(request.config, engine, sock)
        except Exception as exc:
            child.log("zygote_error", error=repr(exc))
            sock.send(wire.dumps(wire.ZygoteFailed(f"zygote: {exc!r}")))


def load(config: Config) -> Engine | str:
    """The engine for a generation, or the reason it does not load."""
    try:
        return engine_base.load_engine(config)
    except EngineError as exc:
        return str(exc)


if __name__ == "__main__":
    sys.exit(main())
