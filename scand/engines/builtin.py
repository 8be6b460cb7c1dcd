"""The built-in engine: EICAR plus ClamAV hash (.hdb/.hsb) and body (.ndb) signatures.

This is the embedded default: it needs nothing installed, so a fresh machine
can run scand and prove the whole path (socket, pool, verdicts) end to end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scand.engines.base import Engine, EngineInfo
from scand.engines.ndb import BodySigDB, load_ndb_dir
from scand.engines.signatures import HashDB, load_hash_dir
from scand.events import CLEAN, Infected, Verdict

if TYPE_CHECKING:
    from scand.config import Config

# Built from two halves so this source file is not itself an EICAR test file
# to any scanner that reads it (including this one scanning its own tree).
EICAR = (
    b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$"
    + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
)
EICAR_NAME = "Eicar-Test-Signature"


class BuiltinEngine(Engine):
    """EICAR anywhere in the object, then hash signatures from ``engine.signatures``."""

    name = "builtin"

    # The scanner hands this engine every decoded part (MIME, archives, ...).
    wants_parts = True

    def __init__(self, hashes: HashDB, bodies: BodySigDB | None = None) -> None:
        self.hashes = hashes
        self.bodies = bodies or BodySigDB()

    @classmethod
    def from_config(cls, config: Config) -> BuiltinEngine:
        sigdir = config.engine.signatures
        return cls(load_hash_dir(sigdir), load_ndb_dir(sigdir))

    def scan_bytes(self, data: bytes, name: str) -> Verdict:
        if EICAR in data:
            return Infected(EICAR_NAME)
        found = self.hashes.lookup(data) or self.bodies.match(data)
        return Infected(found) if found is not None else CLEAN

    def info(self) -> EngineInfo:
        # One token: 1 for the built-in EICAR plus every signature loaded.
        count = 1 + self.hashes.count + self.bodies.count
        skipped = f" ({self.bodies.skipped} ndb lines outside the subset)" * bool(
            self.bodies.skipped)
        return EngineInfo(self.name, f"sigs={count}", detail=skipped.strip())
