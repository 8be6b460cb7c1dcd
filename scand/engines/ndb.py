"""ClamAV ``.ndb`` body signatures for the built-in engine.

Format: ``Name:TargetType:Offset:HexSignature[:MinFL[:MaxFL]]``. Supported
subset: hex bytes, ``??`` (any byte), ``*`` (any run), ``{n}``, ``{n-m}``,
``{-m}``, ``{n-}`` (bounded runs), ``(aa|bb|...)`` alternatives of byte
strings; offset ``*`` (anywhere) or an absolute number. The target type is
not used to narrow the search (every decoded part is scanned). Lines using
other features (EP/EOF/section offsets, nibble wildcards, anchored bytes,
``!``/``~`` negations) are skipped and counted, not half-loaded; a line that
is not valid ndb refuses the whole file, naming the file and the line.

Speed with many signatures: each signature is compiled to a bytes regex, and
indexed by its longest literal run (the "anchor"). One Aho-Corasick pass
(ahocorasick_rs, Rust) finds every anchor in the data; only signatures whose
anchor occurs are checked with their regex. Measured in bench/bench_ndb.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import ahocorasick_rs

from scand.engines.base import SignatureError
from scand.engines.signatures import signature_files

_HEX = re.compile(r"[0-9a-fA-F]{2}")
_RANGE = re.compile(r"\{(\d*)(?:(-)(\d*))?\}")
# Shortest anchor worth indexing; signatures with no literal run this long are
# checked by regex on every part (there should be few).
MIN_ANCHOR = 3


class Unsupported(Exception):
    """Valid ndb syntax outside the supported subset."""


@dataclass
class Compiled:
    name: str
    regex: re.Pattern[bytes]
    offset: int | None  # None = anywhere
    anchor: bytes


@dataclass
class BodySigDB:
    sigs: list[Compiled] = field(default_factory=list)
    skipped: int = 0
    _unanchored: list[int] = field(default_factory=list)
    _by_anchor: dict[bytes, list[int]] = field(default_factory=dict)
    _automaton: ahocorasick_rs.BytesAhoCorasick | None = None
    _anchors: list[bytes] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.sigs)

    def add(self, sig: Compiled) -> None:
        index = len(self.sigs)
        self.sigs.append(sig)
        if len(sig.anchor) >= MIN_ANCHOR:
            self._by_anchor.setdefault(sig.anchor, []).append(index)
        else:
            self._unanchored.append(index)
        self._automaton = None

    def _build(self) -> ahocorasick_rs.BytesAhoCorasick | None:
        if self._automaton is None and self._by_anchor:
            self._anchors = list(self._by_anchor)
            self._automaton = ahocorasick_rs.BytesAhoCorasick(self._anchors)
        return self._automaton

    def match(self, data: bytes) -> str | None:
        """The name of the first matching signature (in load order), or None."""
        if not self.sigs:
            return None
        candidates = set(self._unanchored)
        automaton = self._build()
        if automaton is not None:
            for pattern, _, _ in automaton.find_matches_as_indexes(data, overlapping=True):
                candidates.update(self._by_anchor[self._anchors[pattern]])
        for index in sorted(candidates):
            sig = self.sigs[index]
            found = (sig.regex.match(data, sig.offset) if sig.offset is not None
                     else sig.regex.search(data))
            if found:
                return sig.name
        return None


def compile_hex(body: str) -> tuple[re.Pattern[bytes], bytes]:
    """A ClamAV hex signature -> (bytes regex, longest literal anchor)."""
    out: list[bytes] = []
    anchor = b""
    run = bytearray()
    i = 0

    def flush() -> None:
        nonlocal anchor
        if len(run) > len(anchor):
            anchor = bytes(run)
        run.clear()

    while i < len(body):
        if _HEX.match(body, i):
            byte = bytes.fromhex(body[i : i + 2])
            out.append(re.escape(byte))
            run += byte
            i += 2
            continue
        flush()
        if body.startswith("??", i):
            out.append(b".")
            i += 2
        elif body[i] == "*":
            out.append(b".*?")
            i += 1
        elif body[i] == "{":
            m = _RANGE.match(body, i)
            if not m or not (m.group(1) or m.group(3)):
                raise ValueError(f"bad range at {i}")
            lo, dash, hi = m.group(1) or "0", m.group(2), m.group(3)
            out.append(b".{%s}" % (lo if not dash else f"{lo},{hi or ''}").encode())
            i = m.end()
        elif body[i] == "(":
            end = body.find(")", i)
            if end < 0:
                raise ValueError(f"unclosed ( at {i}")
            options = body[i + 1 : end].split("|")
            if not all(o and len(o) % 2 == 0 and re.fullmatch(r"[0-9a-fA-F]+", o)
                       for o in options):
                raise Unsupported("alternative with wildcards or negation")
            out.append(b"(?:" + b"|".join(re.escape(bytes.fromhex(o)) for o in options) + b")")
            i = end + 1
        elif body[i] in "?!~[]|B" or (body[i] in "0123456789abcdefABCDEF"
                                          and body[i + 1 : i + 2] == "?"):
            raise Unsupported(f"feature {body[i : i + 2]!r}")
        else:
            raise ValueError(f"unexpected {body[i]!r} at {i}")
    flush()
    if not out:
        raise ValueError("empty signature")
    return re.compile(b"".join(out), re.DOTALL), anchor


def load_ndb_file(path: Path, db: BodySigDB) -> None:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SignatureError(f"{path}: cannot read: {exc}") from exc
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{lineno}"
        fields = line.split(":")
        if len(fields) < 4 or len(fields) > 6:
            raise SignatureError(f"{where}: expected Name:TargetType:Offset:HexSignature")
        name, target, offset, body = fields[:4]
        if not name or any(c.isspace() for c in name) or not target.isdigit():
            raise SignatureError(f"{where}: bad name or target type")
        try:
            if offset == "*":
                at = None
            elif offset.isdigit():
                at = int(offset)
            else:
                raise Unsupported(f"offset {offset}")
            regex, anchor = compile_hex(body)
        except Unsupported:
            db.skipped += 1
            continue
        except (ValueError, re.error) as exc:
            raise SignatureError(f"{where}: bad hex signature: {exc}") from exc
        db.add(Compiled(name, regex, at, anchor))


def load_ndb_dir(directory: str) -> BodySigDB:
    db = BodySigDB()
    if directory:
        for path in signature_files(directory, (".ndb",)):
            load_ndb_file(path, db)
    return db
