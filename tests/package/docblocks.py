"""The fenced blocks of docs/CLIENTS.md, each named by the marker on the line before it.

Every block has a marker, ``<!-- NAME -->``, and every name is claimed by a test
(tests/package/test_clients_doc.py keeps the list), so a command added to the
document without a test fails the suite.
"""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "CLIENTS.md"
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```\n", re.M | re.S)
MARKER = re.compile(r"<!-- ([a-z0-9_.:-]+) -->\n$")


def blocks(text: str | None = None) -> list[tuple[str | None, str, str]]:
    """(marker or None, language, body) for every fenced block, in order."""
    text = DOC.read_text() if text is None else text
    out = []
    for found in FENCE.finditer(text):
        before = text[:found.start()]
        marker = MARKER.search(before[before.rfind("\n", 0, len(before) - 1) + 1:])
        out.append((marker.group(1) if marker else None, found.group(1), found.group(2)))
    return out


def block(name: str) -> str:
    """The body of the block marked ``name`` (exactly one)."""
    found = [body for marker, _, body in blocks() if marker == name]
    assert len(found) == 1, f"docs/CLIENTS.md: {len(found)} blocks marked {name}"
    return found[0]
