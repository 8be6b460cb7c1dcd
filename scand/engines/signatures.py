"""ClamAV hash signature files (``.hdb``, ``.hsb``) for the built-in engine.

Formats (ClamAV "signatures.md"):

* ``.hdb``: ``MD5:Size:Name[:MinFL]``
* ``.hsb``: ``Hash:Size:Name[:MinFL]`` where Hash is SHA-1 (40 hex) or SHA-256
  (64 hex) and Size may be ``*`` (any size).

A file with one bad line refuses to load, naming the file and the line: a
half-loaded signature set would silently miss what the admin thinks is
covered. Blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from scand.engines.base import SignatureError

# Hex digest length -> hashlib algorithm, for the formats the built-in engine reads.
_ALGO_BY_LEN = {32: "md5", 40: "sha1", 64: "sha256"}
# A signature name longer than this is a broken file, not a name.
MAX_SIG_NAME = 200
# Files the loader reads; others in the directory (.cvd, .ndb before 4/7, ...) are skipped.
HASH_SUFFIXES = (".hdb", ".hsb")


@dataclass
class HashDB:
    """Hash signatures indexed by (algorithm, size) so only plausible files are hashed."""

    # algo -> size (None = any) -> hex digest -> name
    by_algo: dict[str, dict[int | None, dict[str, str]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    count: int = 0
    files: list[str] = field(default_factory=list)

    def add(self, algo: str, size: int | None, digest: str, name: str) -> None:
        self.by_algo[algo].setdefault(size, {})[digest] = name
        self.count += 1

    def lookup(self, data: bytes) -> str | None:
        """The name of the first signature matching ``data``, or None."""
        size = len(data)
        for algo, sizes in self.by_algo.items():
            candidates = [t for t in (sizes.get(size), sizes.get(None)) if t]
            if not candidates:
                continue
            digest = hashlib.new(algo, data, usedforsecurity=False).hexdigest()
            for table in candidates:
                name = table.get(digest)
                if name is not None:
                    return name
        return None


def _parse_line(path: Path, lineno: int, line: str, db: HashDB) -> None:
    parts = line.split(":")
    where = f"{path}:{lineno}"
    if len(parts) not in (3, 4):
        raise SignatureError(f"{where}: expected hash:size:name, got {line[:80]!r}")
    digest, size_text, name = parts[0].lower(), parts[1], parts[2]
    algo = _ALGO_BY_LEN.get(len(digest))
    if algo is None or any(c not in "0123456789abcdef" for c in digest):
        raise SignatureError(f"{where}: not an MD5/SHA-1/SHA-256 hex digest: {parts[0]!r}")
    if path.suffix == ".hdb" and algo != "md5":
        raise SignatureError(f"{where}: .hdb lines hold MD5 digests; use .hsb for {algo}")
    if path.suffix == ".hsb" and algo == "md5":
        raise SignatureError(f"{where}: .hsb lines hold SHA-1/SHA-256; use .hdb for MD5")
    size: int | None
    if size_text == "*" and path.suffix == ".hsb":
        size = None
    elif size_text.isdigit():
        size = int(size_text)
    else:
        raise SignatureError(f"{where}: bad size {size_text!r}")
    if not name or len(name) > MAX_SIG_NAME or any(c.isspace() for c in name):
        raise SignatureError(f"{where}: bad signature name {name!r}")
    if len(parts) == 4 and not parts[3].isdigit():
        raise SignatureError(f"{where}: bad minimum functionality level {parts[3]!r}")
    db.add(algo, size, digest, name)


def load_hash_file(path: Path, db: HashDB) -> None:
    """Add every signature of one ``.hdb``/``.hsb`` file to ``db``."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SignatureError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise SignatureError(f"{path}: cannot read: {exc.strerror}") from exc
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            _parse_line(path, lineno, line, db)
    db.files.append(str(path))


def signature_files(directory: str, suffixes: tuple[str, ...]) -> list[Path]:
    """The files in ``directory`` with one of ``suffixes``, sorted for a stable load order."""
    base = Path(directory)
    if not base.is_dir():
        raise SignatureError(f"{directory}: signature directory does not exist")
    try:
        entries = sorted(os.listdir(base))
    except OSError as exc:
        raise SignatureError(f"{directory}: cannot list: {exc.strerror}") from exc
    return [base / e for e in entries if e.endswith(suffixes) and (base / e).is_file()]


def load_hash_dir(directory: str) -> HashDB:
    """Load every hash signature file of a directory ("" loads nothing)."""
    db = HashDB()
    if directory:
        for path in signature_files(directory, HASH_SUFFIXES):
            load_hash_file(path, db)
    return db
