"""Entries of a shared store that nobody without the farm secret can forge or address.

Whoever can write to the cache's Redis (or answer on its port while it is down)
could otherwise whitelist malware: ``SET <key of a virus> 0``. With the farm
secret (``cache.secret_file``), two keyed BLAKE2b functions, each with its own
key derived from the secret:

* **names**: a key is ``<prefix><generation>:<policy>:<name>`` where ``name``
  is a keyed hash of the part's SHA-256, not the SHA-256 itself. Without the
  secret nobody can compute the key of a given attachment, so a key cannot be
  poisoned before that attachment arrives, and the keys in Redis do not tell
  a reader which known documents passed through the mail system.
* **tags**: a stored value is ``<16-byte tag><value>``, the tag a keyed hash
  over the whole key and the value. A value copied from another key (a ``0``
  moved onto an infected part's key), made up, truncated or answered by a fake
  server does not verify, and is a miss: the part is scanned. A miss costs a
  scan, never an answer.

What a tag cannot stop: deleting entries or flushing Redis (a miss each, so a
scan), and replaying an entry at its own key (the same bytes under the same
signatures and policy: the same verdict). Stdlib only; runs in the worker.
"""

from __future__ import annotations

import hashlib
import hmac

TAG_BYTES = 16  # 128-bit tags: forging one is a 2^-128 guess per try
NAME_BYTES = 16  # 128-bit names (32 hex digits): no collisions between parts


def _subkey(secret: bytes, purpose: bytes) -> bytes:
    return hashlib.blake2b(secret, digest_size=32, person=b"scand-cache-" + purpose).digest()


class Signer:
    """Names and tags under one farm secret."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("an empty secret signs nothing")
        self._name_key = _subkey(secret, b"name")
        self._tag_key = _subkey(secret, b"tag")

    def name(self, digest: str) -> str:
        """The key suffix for a part whose SHA-256 (hex) is ``digest``."""
        return hashlib.blake2b(digest.encode(), key=self._name_key,
                               digest_size=NAME_BYTES).hexdigest()

    def _tag(self, key: str, value: bytes) -> bytes:
        raw = key.encode("utf-8", "surrogateescape")
        h = hashlib.blake2b(key=self._tag_key, digest_size=TAG_BYTES)
        h.update(len(raw).to_bytes(4, "big"))  # (key, value) pairs cannot run together
        h.update(raw)
        h.update(value)
        return h.digest()

    def seal(self, key: str, value: bytes) -> bytes:
        """What to store at ``key``: the tag, then the value."""
        return self._tag(key, value) + value

    def open(self, key: str, stored: bytes) -> bytes | None:
        """The value stored at ``key`` if its tag verifies, else None."""
        if len(stored) <= TAG_BYTES:
            return None
        tag, value = stored[:TAG_BYTES], stored[TAG_BYTES:]
        return value if hmac.compare_digest(tag, self._tag(key, value)) else None
