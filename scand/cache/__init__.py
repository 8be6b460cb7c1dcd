"""The verdict cache: definitive per-part verdicts keyed on content, signatures and policy.

Lives in the worker (no trio). :func:`open_cache` builds the cache a worker's
scanner uses from the config and its loaded engine. Lives here: ``keys``
(digests, signature generation, policy version), ``lookup`` (the per-part
cache and its counts), ``memory`` and ``redis_store`` (stores), ``encoded``
(the base64 fast path for worm floods).

May import: the stdlib, ``redis`` (lazily, for the Redis store),
:mod:`scand.config` and :mod:`scand.events`; never trio or anything daemon-side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from scand.cache import shared
from scand.cache.keys import policy_version
from scand.cache.lookup import PartCache, Store
from scand.cache.memory import MemoryStore
from scand.cache.redis_store import RedisStore, StoreUnavailable

if TYPE_CHECKING:
    from scand.config import Config


def open_cache(config: Config, generation: str,
               on_error: Callable[[str], None] | None = None) -> PartCache:
    """The cache for one worker; disabled when the backend is ``none`` or the engine
    has no generation id (its signature set changed while it loaded, or chaos)."""
    cfg = config.cache
    store: Store | None = None
    if cfg.backend == "memory":
        # One table for every worker of the daemon (made in the zygote before it
        # forked them: scand.cache.shared); a stand-alone worker keeps its own.
        table = shared.table(cfg.ttl)  # (not ``or``: an empty table is falsy)
        store = table if table is not None else MemoryStore(cfg.max_entries, cfg.ttl)
    elif cfg.backend == "redis":
        try:
            store = RedisStore(cfg.redis_url, cfg.redis_timeout, cfg.redis_retry, cfg.ttl)
        except StoreUnavailable as exc:
            if on_error is not None:
                on_error(str(exc))
    return PartCache(store, cfg.redis_prefix, generation, policy_version(config), on_error,
                     cfg.min_part_bytes)


__all__ = ["PartCache", "open_cache"]
