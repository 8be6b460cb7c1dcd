"""What a cached verdict is valid for: the bytes, the signature set, the policy.

A key is ``<prefix><generation>:<policy>:<sha256 of the bytes>``. Both
``generation`` and ``policy`` are short digests, so a reload with any change to
the signature set, or any change to the policy, makes every older entry
unreachable at once (they age out by TTL), on every host sharing the store.

The generation is taken when the engine is loaded (:func:`generation_id`),
from the engine's own report (name, signature count or clamd's database
version) plus a stat of every file in the signature directory, *before and
after* the load: if the directory changed while it was being read, nobody can
say which set the engine holds, and that engine gets no cache at all. A
fingerprint taken at scan time instead could describe a file the engine never
loaded and file a stale ``0`` under the new set's name.

Stdlib only: workers import this.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scand.config import Config
    from scand.engines.base import EngineInfo

# Hex digits kept of the generation and policy digests: 64 bits, collision-free
# across any realistic number of reloads.
SHORT = 16


def directory_fingerprint(path: str) -> str:
    """Name, size, mtime and inode of every file in the signature directory."""
    if not path:
        return "none"
    h = hashlib.sha256()
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    for name in names:
        try:
            st = os.stat(os.path.join(path, name))
        except OSError:
            h.update(f"{name}:gone\n".encode())
            continue
        h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}\n".encode())
    return h.hexdigest()


def generation_id(before: str, after: str, info: EngineInfo) -> str:
    """The signature generation of a freshly loaded engine; "" = do not cache."""
    if before != after:
        return ""
    text = f"{info.name}\n{info.signatures}\n{info.detail}\n{before}"
    return hashlib.sha256(text.encode()).hexdigest()[:SHORT]


def policy_version(config: Config) -> str:
    """A digest of everything besides the signatures that shapes a part's verdict
    (the limits and libclamav's encrypted-archive alert too: a reload may change
    them under the same generation, and the shared table outlives the workers)."""
    text = repr((config.engine.name, config.policy, config.content, config.clamd.transfer,
                 config.limits, config.clamav.alert_encrypted))
    return hashlib.sha256(text.encode()).hexdigest()[:SHORT]


def content_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
