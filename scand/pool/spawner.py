"""Daemon side of the zygote (:mod:`scand.worker.zygote`): ask it to fork workers.

A worker forked by the zygote is not the daemon's child, so it is watched and
signalled through a pidfd: immune to pid reuse, and readable once it exits.
"""

from __future__ import annotations

import array
import os
import select
import signal
import socket
import subprocess
import sys

import trio

import scand
from scand.config import Config
from scand.engines.base import EngineError
from scand.proc import terminate
from scand.worker import wire

START_TIMEOUT = 60.0
# After its socket closed, how long the zygote gets to exit before SIGKILL.
ZYGOTE_EXIT_GRACE = 2.0


def child_env() -> dict[str, str]:
    """The daemon's environment, with scand importable even from a source tree."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(scand.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


class WorkerHandle:
    """A forked worker: its pipes as trio streams, and its pidfd."""

    def __init__(self, pid: int, job_w: int, res_r: int, pidfd: int) -> None:
        self.pid = pid
        self.stdin: trio.lowlevel.FdStream | None = trio.lowlevel.FdStream(job_w)
        self.stdout: trio.lowlevel.FdStream | None = trio.lowlevel.FdStream(res_r)
        self._pidfd = pidfd
        self._exited = False
        self._waiting = False  # one task waits on the pidfd; the others on _changed
        self._changed = trio.Event()

    @property
    def returncode(self) -> int | None:
        """None while it runs; -1 once it has exited (the zygote reaps, not us)."""
        if not self._exited and self._pidfd >= 0:
            poller = select.poll()
            poller.register(self._pidfd, select.POLLIN)
            self._exited = bool(poller.poll(0))
        return -1 if self._exited else None

    async def wait(self) -> int:
        """Until the worker exits. trio lets one task wait on a descriptor; the others
        wait for that task's news (it exited, or the waiter was cancelled)."""
        while self.returncode is None:
            if self._waiting:
                await self._changed.wait()
                continue
            self._waiting = True
            try:
                await trio.lowlevel.wait_readable(self._pidfd)
                self._exited = True
            finally:
                self._waiting = False
                self._changed.set()
                self._changed = trio.Event()
        return -1

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            signal.pidfd_send_signal(self._pidfd, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        if self._pidfd >= 0 and self._exited:
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1


class Spawner:
    """Starts the zygote (while scand may still be root) and asks it for workers."""

    def __init__(self) -> None:
        self.proc: trio.Process | None = None
        self.sock: trio.socket.SocketType | None = None
        self.uid = -1
        self._lock = trio.Lock()

    async def start(self, config: Config) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "scand.worker.zygote"],
                stdin=child.fileno(), stdout=subprocess.DEVNULL, env=child_env(),
            )
        finally:
            child.close()
        self.sock = trio.socket.from_stdlib_socket(parent)
        try:
            with trio.fail_after(START_TIMEOUT):
                await self.sock.send(wire.dumps(wire.ZygoteInit(config)))
                reply = wire.loads(await self.sock.recv(wire.MAX_PACKET))
        except trio.TooSlowError:
            await self.aclose()
            raise EngineError("worker zygote did not start") from None
        if not isinstance(reply, wire.ZygoteReady):
            await self.aclose()
            raise EngineError(reply.error if isinstance(reply, wire.ZygoteFailed)
                              else "worker zygote died")
        self.uid = reply.uid

    async def fork(self, config: Config, generation: int) -> WorkerHandle:
        """A new worker of ``generation`` (whose engine the zygote loads once, from
        ``config``); raises EngineError if that engine does not load."""
        async with self._lock:
            if self.sock is None or self.proc is None or self.proc.returncode is not None:
                raise EngineError("worker zygote is not running")
            try:
                await self.sock.send(wire.dumps(wire.ForkRequest(generation, config)))
                data, ancdata, _, _ = await self.sock.recvmsg(
                    wire.MAX_PACKET, socket.CMSG_SPACE(3 * array.array("i").itemsize))
            except OSError as exc:
                raise EngineError(f"worker zygote: {exc}") from exc
            if not data:
                raise EngineError("worker zygote exited")
            reply = wire.loads(data)
            fds = self._fds(ancdata)
            if not isinstance(reply, wire.Forked) or len(fds) != 3:
                for fd in fds:
                    os.close(fd)
                if isinstance(reply, wire.ZygoteFailed):
                    raise EngineError(reply.error)
                raise EngineError(f"worker zygote sent {type(reply).__name__} "
                                  f"with {len(fds)} descriptors")
            pid = reply.pid
            if len(fds) != 3:
                for fd in fds:
                    os.close(fd)
                raise EngineError(f"worker zygote sent {len(fds)} descriptors")
            return WorkerHandle(pid, fds[0], fds[1], fds[2])

    async def drop(self, generation: int) -> None:
        """Let the zygote free every engine but ``generation``'s (workers already
        forked keep their own copy-on-write view of theirs)."""
        async with self._lock:
            if self.sock is None:
                return
            try:
                await self.sock.send(wire.dumps(wire.DropRequest(generation)))
                await self.sock.recv(wire.MAX_PACKET)
            except OSError as exc:
                raise EngineError(f"worker zygote: {exc}") from exc

    @staticmethod
    def _fds(ancdata: list[tuple[int, int, bytes]]) -> array.array[int]:
        fds = array.array("i")
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        return fds

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            if self.sock is not None:
                self.sock.close()
                self.sock = None
            if self.proc is not None:
                # It exits by itself when its socket closes; past the grace, KILL.
                await terminate(self.proc, ZYGOTE_EXIT_GRACE, first=None)
