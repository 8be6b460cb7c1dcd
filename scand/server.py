"""trio glue: the Unix listener and one task per connection. It only moves bytes.

Per connection, a reader task keeps feeding the sans-IO parser (bounded
read-ahead) and watches for the client vanishing; the main task answers
requests strictly in order, one ``send()`` per reply. A client that closes
while its scan runs cancels the scan and gets nothing written; a client that
only half-closes (``shutdown(SHUT_WR)``) still gets its pending replies.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import resource
import select
import socket as stdsocket
import stat

import structlog
import trio

from scand.config import Config
from scand.events import BadRequest, Reason
from scand.privileges import Identity
from scand.protocol import NEED_DATA, Closed, Connection, format_unchecked
from scand.remote_policy import remote_filter
from scand.service import Service

log = structlog.get_logger("scand.server")

# Pipelined bytes buffered ahead of the request being answered. Past this the
# reader stops reading (back-pressure), except to finish a STREAM body.
READ_AHEAD = 64 * 1024
RECV_SIZE = 64 * 1024
# How often a connection whose read-ahead is full checks whether its peer hung up.
HUP_POLL = 0.1
BACKLOG = 4096  # the kernel caps it at net.core.somaxconn
# Descriptors kept back from connections: listener, logs, signal pipe, reserve, spawns.
FD_RESERVE = 32
# Pipes per worker (stdin, stdout) plus one for a replacement being started.
FDS_PER_WORKER = 4
# How often a draining server checks whether its last connection has finished.
DRAIN_POLL = 0.05
# Draining: how often, and how long each time, to wait for a request already in flight.
DRAIN_READ_TRIES = 5
DRAIN_READ_PAUSE = 0.01
# Pause after a failed accept() (EMFILE, ENFILE, ENOBUFS) before trying again.
ACCEPT_BACKOFF = 0.05


class SocketPathError(RuntimeError):
    """The socket path cannot be used (exists and is not a socket, or is in use)."""


def _resolve_group(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise SocketPathError(f"server.socket_group: no such group {group!r}") from None


def prepare_socket_path(path: str) -> None:
    """Remove a stale socket; refuse a live one or anything that is not a socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
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
    prepare_socket_path(path)
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


def peer_gone(sock: trio.socket.SocketType) -> bool:
    """True if the peer fully closed; False if it only shut down its write side."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLHUP)
    return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0))


class ClientConnection:
    """One accepted client."""

    def __init__(self, sock: trio.socket.SocketType, service: Service,
                 remote: bool = False) -> None:
        self.sock = sock
        self.service = service
        self.remote = remote  # over TCP: STREAM and PING/VERSION/STATS only (scand.remote)
        cfg = service.config
        self.proto = Connection(max_stream=cfg.server.max_stream_bytes)
        self._wake = trio.Event()
        self._eof = False
        self._waiting = False  # the main task needs bytes to make progress
        self._request_started: float | None = None
        self.draining = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, nursery.cancel_scope)
                await self._answer_loop()
                nursery.cancel_scope.cancel()
        finally:
            self.sock.close()

    async def _reader(self, scope: trio.CancelScope) -> None:
        while True:
            if self.proto.buffered >= READ_AHEAD and not self._waiting:
                await trio.sleep(HUP_POLL)
                if peer_gone(self.sock):
                    scope.cancel()
                    return
                continue
            try:
                data = await self.sock.recv(RECV_SIZE)
            except OSError:
                data = b""
            if not data:
                if peer_gone(self.sock):
                    scope.cancel()  # gone: cancel the running scan, write nothing
                    return
                self._eof = True
            self.proto.receive_data(data)
            self.wake()
            if not data:
                return

    async def _wait_for_bytes(self) -> bool:
        """Wait for more input; on timeout answer if mid-request. False = close."""
        cfg = self.service.config.server
        mid = self.proto.mid_request
        if not mid:
            self._request_started = None
            deadline = trio.current_time() + cfg.idle_timeout
        else:
            # The request deadline runs from its first byte: a client dribbling
            # one byte a second does not reset it.
            if self._request_started is None:
                self._request_started = trio.current_time()
            deadline = self._request_started + cfg.request_timeout
        self._waiting = True
        try:
            with trio.move_on_at(deadline):
                await self._wake.wait()
                self._wake = trio.Event()
                return not (self.draining and not self.proto.mid_request)
        finally:
            self._waiting = False
        if mid:
            await self._send(format_unchecked(Reason.TIMEOUT, "request not completed in time"))
        return False

    async def _answer_loop(self) -> None:
        while True:
            event = self.proto.next_event()
            if event is NEED_DATA:
                if self.draining:
                    if await self._last_bytes():
                        continue  # answer what the client sent just before the stop
                    return
                if not await self._wait_for_bytes():
                    return
                continue
            if isinstance(event, Closed):
                return
            self._request_started = None
            if self.remote:
                event = remote_filter(event)
            reply = await self.service.handle(event)
            await self._send(reply)
            if isinstance(event, BadRequest) and event.fatal:
                return

    async def _last_bytes(self) -> bool:
        """While draining: let the reader take bytes already queued in the socket,
        so a request sent just before the stop is answered, not dropped."""
        for _ in range(DRAIN_READ_TRIES):
            poller = select.poll()
            poller.register(self.sock.fileno(), select.POLLIN)
            if not poller.poll(0) or self._eof:
                return False
            before = self.proto.buffered
            await trio.sleep(DRAIN_READ_PAUSE)
            if self.proto.buffered != before:
                return True
        return False

    async def _send(self, reply: bytes) -> None:
        """One reply, one send() (PROTOCOL.md §3); the rest only if the kernel split it."""
        try:
            sent = await self.sock.send(reply)
            while sent < len(reply):
                sent += await self.sock.send(reply[sent:])
        except OSError:
            pass  # the client left; it gets nothing, as the protocol says


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
                    conn = ClientConnection(conn_sock, self.service)
                    nursery.start_soon(self.serve_connection, conn)

    async def _accept_failed(self, exc: OSError) -> None:
        """EMFILE/ENFILE: free the reserve descriptor, accept one client, answer it
        ``-1:busy``, and back off; never spin, never crash the loop."""
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
            while self.connections:
                await trio.sleep(DRAIN_POLL)
        if self.connections:
            log.warning("drain_timeout", connections=len(self.connections))
        self._nursery.cancel_scope.cancel()


__all__ = ["ClientConnection", "Server", "SocketPathError", "bind_unix", "fd_budget"]
