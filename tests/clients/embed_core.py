"""The client core block: one source (clients/scandclient.py), embedded in every script.

Each command-line client must stay a single copyable file, so it carries its
own copy of the core. ``python -m tests.clients.embed_core`` copies the block
from scandclient.py into every other clients/*.py; the test suite fails when a
copy has drifted.
"""

from __future__ import annotations

import sys
from pathlib import Path

CLIENTS = Path(__file__).resolve().parents[2] / "clients"
SOURCE = CLIENTS / "scandclient.py"
BEGIN = "# ----- BEGIN scand client core"
END = "# ----- END scand client core -----"


def split(text: str, name: str) -> tuple[str, str, str]:
    """(before, core block including both marker lines, after)."""
    start = text.find(BEGIN)
    stop = text.find(END)
    if start < 0 or stop < start:
        raise ValueError(f"{name}: no '{BEGIN}' ... '{END}' block")
    stop += len(END)
    return text[:start], text[start:stop], text[stop:]


def core() -> str:
    return split(SOURCE.read_text(), SOURCE.name)[1]


def scripts() -> list[Path]:
    return sorted(p for p in CLIENTS.glob("scand_*.py"))


def sync() -> list[Path]:
    """Rewrite every script's block from scandclient.py; return the files changed."""
    block = core()
    changed = []
    for path in scripts():
        before, old, after = split(path.read_text(), path.name)
        if old != block:
            path.write_text(before + block + after)
            changed.append(path)
    return changed


if __name__ == "__main__":
    for p in sync():
        print(f"updated {p}")
    sys.exit(0)
