"""Clients that hang up while their scan runs, for every Sophie connection on a socket.

A connection on a plain socket reads its requests itself (no reader task beside
it: that would cost a task wake-up and a scheduler pass per request). While
its scan runs, its socket is in one epoll set shared by the whole daemon,
registered for nothing but POLLHUP/POLLERR (a full close; a half-close is no
hang-up, as :func:`scand.fronts.transport.peer_gone` says). One system task
waits on that set and cancels the scope of a connection whose peer is gone:
two ``epoll_ctl`` per scan, no task per connection.
"""

from __future__ import annotations

import contextlib
import select

import trio

_WATCH: trio.lowlevel.RunVar[HangupWatch] = trio.lowlevel.RunVar("scand_hangup_watch")


class HangupWatch:
    """One epoll set of sockets whose scan is in progress, and the scope to cancel."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._scopes: dict[int, trio.CancelScope] = {}

    def add(self, fd: int, scope: trio.CancelScope) -> bool:
        """Cancel ``scope`` if the peer of ``fd`` hangs up; False if it cannot be watched."""
        try:
            self._epoll.register(fd, 0)  # HUP and ERR are always reported
        except (OSError, ValueError):
            return False
        self._scopes[fd] = scope
        return True

    def discard(self, fd: int) -> None:
        if self._scopes.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    @property
    def watched(self) -> int:
        return len(self._scopes)

    async def run(self) -> None:
        try:
            while True:
                await trio.lowlevel.wait_readable(self._epoll.fileno())
                for fd, _events in self._epoll.poll(0):
                    scope = self._scopes.pop(fd, None)
                    with contextlib.suppress(OSError, ValueError):
                        self._epoll.unregister(fd)
                    if scope is not None:
                        scope.cancel()
        finally:
            self._scopes.clear()
            self._epoll.close()


def current() -> HangupWatch:
    """This trio run's watch (started on first use, ended with the run)."""
    try:
        return _WATCH.get()
    except LookupError:
        watch = HangupWatch()
        _WATCH.set(watch)
        trio.lowlevel.spawn_system_task(watch.run, name="scand.fronts.hangup")
        return watch
