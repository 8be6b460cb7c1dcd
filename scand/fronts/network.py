"""What a network peer may ask, on every front: bytes it sends, never files on this host.

A path request over the network would let any allowed peer make the scanning
host read files it names, and probe its filesystem (an answer that differs
between a missing and an existing path is an existence oracle); RELOAD and
SHUTDOWN would let it roll every worker over or stop the daemon. So over
TCP/TLS every front answers only streamed data and the harmless commands
(:data:`NETWORK_COMMANDS`); the rest gets a refusal that reads the same
whatever the path. The clamd front may opt back in to paths with
``clamd_front.tcp_allow_paths`` (documented with its risk). Pure and stdlib-only.
"""

from __future__ import annotations

from scand.events import BadRequest, Command, Event, Reason, ScanPath

# Commands a network peer may send (clamd names; Sophie's are a subset).
NETWORK_COMMANDS = frozenset({"PING", "VERSION", "VERSIONCOMMANDS", "STATS"})


def network_may(command: str, *, is_path: bool, allow_paths: bool = False) -> bool:
    """True if a network peer may send ``command`` (a path request if ``is_path``)."""
    if is_path:
        return allow_paths
    return command in NETWORK_COMMANDS


def network_filter(event: Event) -> Event:
    """A Sophie event itself if a network peer may ask it, else a ``-1:not-allowed`` request."""
    if isinstance(event, ScanPath):
        return BadRequest(Reason.NOT_ALLOWED, "paths are not scanned for TCP clients; use STREAM")
    if isinstance(event, Command) and not network_may(event.name, is_path=False):
        return BadRequest(Reason.NOT_ALLOWED, f"{event.name} is not allowed over TCP")
    return event
