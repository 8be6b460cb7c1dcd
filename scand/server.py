"""trio glue: the Unix listener, the accept loop and the graceful drain.

Each accepted client is served by a :class:`~scand.connection.ClientConnection`
(one task per connection). Here: the socket file (stale, live, mode, group),
the descriptor budget, refusing connections over ``max_connections`` with
``-1:busy``, surviving EMFILE with a reserve descriptor, and stopping.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import resource
import socket as stdsocket
import stat

import structlog
import trio

from scand import safedir
from scand.config import Config
from scand.connection import RECV_SIZE, ClientConnection, SocketTransport
from scand.events import Reason
from scand.privileges import Identity
from scand.protocol import format_unchecked
from scand.service import Service

log = structlog.get_logger("scand.server")

BACKLOG = 4096  # the kernel caps it at net.core.somaxconn
# Descriptors kept back from connections: listener, logs, signal pipe, reserve, spawns.
FD_RESERVE = 32
# Pipes per worker (stdin, stdout) plus one for a replacement being started.
FDS_PER_WORKER = 4
# Pause after a failed accept() (EMFILE, ENFILE, ENOBUFS) before trying again.
ACCEPT_BACKOFF = 0.05
# accept() errors that mean "out of capacity": back off and retry. Any other
# error is a bug or a broken listener and is raised (as trio.serve_listeners does).
CAPACITY_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


class SocketPathError(RuntimeError):
    """The socket path cannot be used (exists and is not a socket, or is in use)."""


def _resolve_group(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise SocketPathError(f"server.socket_group: no such group {group!r}") from None


def prepare_socket_path(path: str, key: str = "server.socket",
                        owner: Identity | None = None) -> None:
    """Remove a stale socket; refuse a live one or anything that is not a socket."""
    safedir.ensure_dir(os.path.dirname(path) or ".", key, mode=0o755,  # ours, or refused
                       owners=(owner.uid,) if owner else ())
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketPathError(f"{path} exists and is not a socket; refusing to replace it")
    probe = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise SocketPathError(f"{path}: cannot probe: {exc.strerror}") from exc
        os.unlink(path)  # stale: nobody is listening
        log.info("stale_socket_removed", path=path)
    else:
        raise SocketPathError(f"{path}: another daemon is listening there")
    finally:
        probe.close()


def bind_unix(config: Config, owner: Identity | None = None) -> stdsocket.socket:
    """Create and bind the listening socket; set its owner, group and mode before listen."""
    path = config.socket_path
    prepare_socket_path(path, "server.socket", owner)
    sock = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    sock.setblocking(False)
    old_umask = os.umask(0o177)  # never expose the socket wider than asked, even briefly
    try:
        sock.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, config.server.socket_mode)
    uid = owner.uid if owner else -1
    gid = _resolve_group(config.server.socket_group) if config.server.socket_group else -1
    if uid != -1 or gid != -1:
        os.chown(path, uid, gid)
    sock.listen(BACKLOG)
    return sock


def fd_budget(config: Config) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE as far as allowed; return (limit, usable max_connections).

    Each connection costs one descriptor; the rest is kept for the listener,
    the worker pipes, log files and the reserve descriptor.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    spare = FD_RESERVE + FDS_PER_WORKER * config.worker_count
    return soft, max(1, min(config.server.max_connections, soft - spare))


class Server:
    """Accept loop plus graceful drain."""

    def __init__(
        self,
        service: Service,
        raw_listener: stdsocket.socket,
        path: str,
        max_connections: int,
    ) -> None:
        self.service = service
        self.raw_listener = raw_listener
        self.listener = trio.socket.from_stdlib_socket(raw_listener)
        self.path = path
        self.connections: set[ClientConnection] = set()
        self._all_closed = trio.Event()
        self._accepting = trio.CancelScope()
        self.max_connections = max_connections
        self.accept_errors = 0
        self.refused = 0
        # Kept open so that, when descriptors run out, one can be freed to accept
        # a client and tell it -1:busy instead of leaving it in the backlog.
        self._reserve: int | None = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            with self._accepting:
                while True:
                    try:
                        conn_sock, _ = await self.listener.accept()
                    except OSError as exc:
                        await self._accept_failed(exc)
                        continue
                    if len(self.connections) >= self.max_connections:
                        with trio.move_on_after(1.0):  # a fresh socket's buffer is empty
                            with contextlib.suppress(OSError):
                                await conn_sock.send(format_unchecked(
                                    Reason.BUSY, f"over {self.max_connections} connections"))
                        conn_sock.close()
                        self.refused += 1
                        continue
                    conn = ClientConnection(SocketTransport(conn_sock), self.service)
                    nursery.start_soon(self.serve_connection, conn)

    async def _accept_failed(self, exc: OSError) -> None:
        """EMFILE/ENFILE: free the reserve descriptor, accept one client, answer it
        ``-1:busy``, and back off; never spin. Other errors are raised."""
        if exc.errno not in CAPACITY_ERRORS:
            raise exc
        self.accept_errors += 1
        if exc.errno in (errno.EMFILE, errno.ENFILE) and self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
            try:
                raw, _ = self.raw_listener.accept()  # the listener is non-blocking
                with raw, contextlib.suppress(OSError):
                    raw.setblocking(False)
                    raw.send(format_unchecked(Reason.BUSY, "out of file descriptors"))
                    self.refused += 1
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    self._reserve = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        if self.accept_errors % 100 == 1:
            log.warning("accept_failed", error=exc.strerror, count=self.accept_errors)
        await trio.sleep(ACCEPT_BACKOFF)

    async def serve_connection(self, conn: ClientConnection) -> None:
        """Serve one connection, counted for max_connections and the drain."""
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            if not self.connections:
                self._all_closed.set()

    def stop_accepting(self) -> None:
        """Close the listener and remove the socket file: new clients get ECONNREFUSED/ENOENT.

        Clients already queued in the backlog are accepted and told
        ``-1:shutting-down`` (so the MTA defers) instead of being reset.
        """
        self._accepting.cancel()
        refusal = format_unchecked(Reason.SHUTTING_DOWN)
        while True:
            try:
                raw, _ = self.raw_listener.accept()
            except OSError:
                break  # EAGAIN: the backlog is empty
            with raw, contextlib.suppress(OSError):
                raw.setblocking(False)
                with contextlib.suppress(OSError):
                    raw.recv(RECV_SIZE)  # read what it sent, so closing does not reset it
                raw.send(refusal)
                log.info("request_rejected", reason=str(Reason.SHUTTING_DOWN), detail="backlog")
        self.listener.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:  # after dropping root the directory may not be ours
            log.warning("socket_not_removed", path=self.path, error=exc.strerror)

    async def drain(self, grace: float) -> None:
        """Stop accepting; let requests in progress finish within ``grace``; close the rest."""
        self.stop_accepting()
        self.service.draining = True
        for conn in list(self.connections):
            conn.draining = True
            conn.wake()
        with trio.move_on_after(grace):
            if self.connections:
                self._all_closed = trio.Event()
                await self._all_closed.wait()
        if self.connections:
            log.warning("drain_timeout", connections=len(self.connections))
        self._nursery.cancel_scope.cancel()


__all__ = ["ClientConnection", "Server", "SocketPathError", "bind_unix", "fd_budget"]
