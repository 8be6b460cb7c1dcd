"""Private memory of a process, from ``/proc/<pid>/smaps_rollup``.

Workers are forked from a zygote that holds the loaded engine, so most of a
worker's RSS is shared, copy-on-write, with its siblings: RSS overstates what
one worker costs. Private_Clean + Private_Dirty (USS) is what recycling it
would free, and what grows when a parser leaks (DESIGN.md §2b).
"""

from __future__ import annotations

# The fields of smaps_rollup (kB) that make up a process's private memory.
PRIVATE_FIELDS = ("Private_Clean:", "Private_Dirty:")


def parse_private(text: str) -> int:
    """Bytes of private memory in the text of an smaps_rollup file."""
    total = 0
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name in PRIVATE_FIELDS:
            total += int(rest.split()[0]) * 1024
    return total


def private_bytes(pid: int) -> int | None:
    """Private memory of ``pid`` in bytes, or None if it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            return parse_private(fh.read())
    except (OSError, ValueError, IndexError):
        return None
