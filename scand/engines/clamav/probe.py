"""``python -m scand.engines.clamav.probe [LIBRARY]``: can libclamav load here?

Run by :func:`scand.engines.auto.libclamav_version` in a child interpreter, so
the daemon never maps libclamav itself (only the zygote and its workers do).
Prints libclamav's version and exits 0, or prints why not on stderr and exits 1.
"""

from __future__ import annotations

import sys

from scand.engines.clamav import libclamav


def probe(library: str) -> int:
    """Load libclamav, print its version (or why not, on stderr)."""
    try:
        libclamav.open_library(library)
    except libclamav.LibclamavError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(libclamav.version())
    return 0


if __name__ == "__main__":
    sys.exit(probe(sys.argv[1] if len(sys.argv) > 1 else ""))
