"""clamd's reply texts for scand's verdicts, VERSION and STATS (PROTOCOL.md §6.2).

Pure functions, stdlib only. The one deliberate difference from clamd: a
verdict that is not a full scan (``Unchecked``) is ``<what>: <reason> ERROR``,
never ``OK``; or, for listeners configured with ``unchecked_as_found`` (rspamd
and other clients that know only OK and FOUND), ``<what>:
Scand.Unchecked.<reason> FOUND``.
"""

from __future__ import annotations

import re
from typing import Any

from scand.events import Clean, Infected, Unchecked, Verdict
from scand.fronts.clamd_events import COMMAND_LIST
from scand.protocol import sanitize_name

UNCHECKED_PREFIX = "Scand.Unchecked."
# clamd's text when the path named by the client does not exist (kept byte for byte).
PATH_CHECK_FAILURE = "File path check failure: {}. ERROR"


def unchecked_text(reason: str, *, as_found: bool) -> str:
    """The status part of a line for something not fully scanned."""
    if as_found:
        return f"{UNCHECKED_PREFIX}{reason} FOUND"
    return f"{reason} ERROR"


def status(verdict: Verdict, *, as_found: bool = False) -> str:
    """``OK``, ``<Name> FOUND`` or ``<reason> ERROR`` (never OK for Unchecked)."""
    if isinstance(verdict, Clean):
        return "OK"
    if isinstance(verdict, Infected):
        return f"{sanitize_name(verdict.name)} FOUND"
    if isinstance(verdict, Unchecked):
        return unchecked_text(str(verdict.reason), as_found=as_found)
    raise TypeError(f"not a verdict: {verdict!r}")  # pragma: no cover - type-checked


def line(what: str, verdict: Verdict, *, as_found: bool = False) -> str:
    """``<what>: <status>``; control bytes in a path cannot break the framing."""
    return f"{_printable(what)}: {status(verdict, as_found=as_found)}"


def _printable(text: str) -> str:
    return "".join("?" if ch in "\0\n\r" else ch for ch in text)


def version_text(version: str, signatures: str, loaded: str) -> str:
    """clamd's ``ClamAV 1.4.6/<dbver>/<date>`` shape, naming scand: ``scand <v>/<n>/<date>``.

    ``signatures`` is the engine's one-token description (``sigs=12``); its number is
    the version field. Without a number the reply is ``scand <v>`` alone, as clamd
    answers ``ClamAV 1.4.6`` when its database carries no version.
    """
    match = re.search(r"\d+", signatures)
    if not match:
        return f"scand {version}"
    return f"scand {version}/{match.group(0)}/{loaded}"


def versioncommands_text(version: str) -> str:
    """VERSIONCOMMANDS: the version, ``|``, and the command list (same list as clamd)."""
    return f"scand {version}| COMMANDS: {COMMAND_LIST}"


def stats_text(pool: dict[str, Any], idle_timeout: float) -> str:
    """STATS in clamd's shape, with scand's pool in place of clamd's threads.

    One queue line per worker: state, age in seconds, then pid, RSS, jobs.
    Lines are LF-separated, as clamd's; the caller adds the command's terminator.
    """
    rss_m = pool.get("rss_total", 0) / (1024 * 1024)
    lines = [
        "POOLS: 1", "", "STATE: VALID PRIMARY",
        f"THREADS: live {pool.get('live', 0)}  idle {pool.get('idle', 0)} "
        f"max {pool.get('size', 0)} idle-timeout {idle_timeout:g}",
        f"QUEUE: {pool.get('queue', 0)} items",
    ]
    for w in pool.get("workers", []):
        state = "SCAN" if w.get("state") == "busy" else "IDLE"
        lines.append(f"\t{state} {float(w.get('age', 0)):.6f} pid={w.get('pid')} "
                     f"rss={w.get('rss', 0) / (1024 * 1024):.3f}M jobs={w.get('jobs', 0)}")
    lines += ["", f"MEMSTATS: heap N/A mmap N/A used N/A free N/A releasable N/A pools 1 "
              f"pools_used {rss_m:.3f}M pools_total {rss_m:.3f}M", "END"]
    return "\n".join(lines)
