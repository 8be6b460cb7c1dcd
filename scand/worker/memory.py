"""Memory of a process as it really costs: private pages and PSS, not RSS. Stdlib only.

Workers forked from the zygote share its pages copy-on-write: with the clamav
engine that is the whole compiled signature set (about 200 MB for 550,000
signatures). RSS counts those shared pages again in every worker, so a pool
of 8 would *look* like 8 x 200 MB and any RSS-based recycle rule would fire at
once. ``/proc/<pid>/smaps_rollup`` gives the truth:

* ``private`` (USS) = Private_Clean + Private_Dirty: what the process alone
  holds, what would be freed if it exited. The recycle rule uses this.
* ``pss``: every shared page divided among its sharers; summed over the
  zygote and its workers, it is their real total.

Reading smaps_rollup walks the page tables (about 2 ms for 200 MB here), so a
worker measures it exactly every :data:`EXACT_EVERY` jobs, or when its RSS
moved by more than :data:`RSS_SLACK`, and in between adds RSS growth to the
last exact figure (new pages are private).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_PAGE = os.sysconf("SC_PAGE_SIZE")
EXACT_EVERY = 32
RSS_SLACK = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Usage:
    rss: int
    pss: int
    private: int


def usage(pid: int | str = "self") -> Usage:
    """RSS, PSS and private bytes of ``pid`` (OSError if it is gone)."""
    with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
        text = fh.read()
    fields: dict[bytes, int] = {}
    for line in text.split(b"\n")[1:]:
        key, _, value = line.partition(b":")
        parts = value.split()
        if parts:
            fields[key] = int(parts[0]) * 1024
    private = fields.get(b"Private_Clean", 0) + fields.get(b"Private_Dirty", 0)
    return Usage(fields.get(b"Rss", 0), fields.get(b"Pss", 0), private)


_STATM: list[int] = []  # [pid, fd]: /proc/self/statm opened once per process


def statm() -> tuple[int, int]:
    """(address space, resident set) of this process, in pages: one pread on a
    descriptor kept open (2 us against 13 us for open, read and close each job)."""
    if not _STATM or _STATM[0] != os.getpid():  # first call, or a forked copy
        _STATM[:] = [os.getpid(), os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)]
    size, resident = os.pread(_STATM[1], 128, 0).split()[:2]
    return int(size), int(resident)


def rss_self() -> int:
    return statm()[1] * _PAGE


class PrivateMeter:
    """A worker's private memory after each job, cheap enough to ask every time."""

    def __init__(self) -> None:
        self.jobs = 0
        self.last_rss = 0
        self.last_private = 0
        self._exact()

    def _exact(self) -> int:
        try:
            self.last_private = usage().private
        except OSError:  # no smaps_rollup (old kernel): fall back to RSS
            self.last_private = rss_self()
        self.last_rss = rss_self()
        return self.last_private

    def private(self) -> int:
        self.jobs += 1
        rss = rss_self()
        if self.jobs % EXACT_EVERY == 0 or abs(rss - self.last_rss) > RSS_SLACK:
            return self._exact()
        return max(0, self.last_private + rss - self.last_rss)
