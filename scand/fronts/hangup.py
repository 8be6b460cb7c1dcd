"""Clients that hang up while their scan runs, for every Sophie connection on a socket.

A connection on a plain socket reads its requests itself (no reader task beside
it: that would cost a task wake-up and a scheduler pass per request). Its socket
is in one epoll set shared by the whole daemon from its first request to its
close, registered for nothing but POLLHUP/POLLERR (a full close; a half-close is
no hang-up, as :func:`scand.fronts.transport.peer_gone` says). One system task
waits on that set: a peer that hangs up during a scan has the scan's scope
cancelled; one that hangs up between requests is marked, and the next scan it
starts is cancelled at once (what a registration at that scan's start saw).
Registered once per connection, not per scan: no ``epoll_ctl`` per request.
"""

from __future__ import annotations

import contextlib
import select

import trio

from scand.fronts.timers import per_run

_WATCH: trio.lowlevel.RunVar[HangupWatch] = trio.lowlevel.RunVar("scand_hangup_watch")


class Watched:
    """One connection's socket in the watch: its scope, and whether a scan runs."""

    __slots__ = ("gone", "scanning", "scope")

    def __init__(self, scope: trio.CancelScope) -> None:
        self.scope = scope
        self.scanning = False
        self.gone = False  # the peer hung up (seen by the watch)

    def start(self) -> None:
        """A scan starts: cancelled now if its peer already hung up."""
        self.scanning = True
        if self.gone:
            self.scope.cancel()

    def stop(self) -> None:
        self.scanning = False


class HangupWatch:
    """One epoll set of the connections' sockets, and the scope to cancel for each."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._watched: dict[int, Watched] = {}

    def add(self, fd: int, scope: trio.CancelScope) -> Watched | None:
        """Watch ``fd`` until :meth:`discard`: cancel ``scope`` if its peer hangs up
        during a scan (:meth:`Watched.start`); None if it cannot be watched."""
        try:
            self._epoll.register(fd, 0)  # HUP and ERR are always reported
        except (OSError, ValueError):
            return None
        watched = self._watched[fd] = Watched(scope)
        return watched

    def discard(self, fd: int) -> None:
        """Before ``fd`` is closed (a later socket may get its number)."""
        if self._watched.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    @property
    def watched(self) -> int:
        """Sockets whose scan is in progress."""
        return sum(1 for w in self._watched.values() if w.scanning)

    @property
    def connections(self) -> int:
        """Sockets in the watch (connections not yet closed, their peers there)."""
        return len(self._watched)

    async def run(self) -> None:
        try:
            while True:
                await trio.lowlevel.wait_readable(self._epoll.fileno())
                for fd, _events in self._epoll.poll(0):
                    watched = self._watched.pop(fd, None)
                    with contextlib.suppress(OSError, ValueError):
                        self._epoll.unregister(fd)  # level-triggered: reported once
                    if watched is not None:
                        watched.gone = True
                        if watched.scanning:
                            watched.scope.cancel()
        finally:
            self._watched.clear()
            self._epoll.close()


def current() -> HangupWatch:
    """This trio run's watch (started on first use, ended with the run)."""
    return per_run(_WATCH, HangupWatch, "scand.fronts.hangup")
