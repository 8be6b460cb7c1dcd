"""The verdict cache: definitive per-part verdicts keyed on content, signatures and policy.

Lives in the worker (no trio). :func:`open_cache` builds the cache a worker's
scanner uses from the config and its loaded engine. Lives here: ``keys``
(digests, signature generation, policy version), ``lookup`` (the per-part
cache and its counts), ``memory`` and ``redis_store`` (stores), ``signing``
(names and tags under the farm secret, for a shared store), ``encoded`` (the
base64 fast path for worm floods).

May import: the stdlib, ``redis`` (lazily, for the Redis store),
:mod:`scand.config` and :mod:`scand.events`; never trio or anything daemon-side.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from scand.cache import shared
from scand.cache.keys import policy_version
from scand.cache.lookup import PartCache, Store
from scand.cache.memory import MemoryStore
from scand.cache.redis_store import RedisStore, StoreUnavailable
from scand.cache.signing import Signer

if TYPE_CHECKING:
    from scand.config import Config


def log_bad_tag(count: int, key: str) -> None:
    """Entries whose tag did not verify (rate-limited by the cache): one JSON line on
    stderr, the worker's log stream."""
    print(json.dumps({"event": "cache_bad_tag", "pid": os.getpid(), "count": count,
                      "key": key[:120]}), file=sys.stderr, flush=True)


def open_cache(config: Config, generation: str,
               on_error: Callable[[str], None] | None = None) -> PartCache:
    """The cache for one worker; disabled when the backend is ``none`` or the engine
    has no generation id (its signature set changed while it loaded, or chaos).
    A shared store (Redis) is read and written only through entries signed with the
    farm secret (:mod:`scand.cache.signing`)."""
    cfg = config.cache
    store: Store | None = None
    signer: Signer | None = None
    if cfg.backend == "memory":
        # One table for every worker of the daemon (made in the zygote before it
        # forked them: scand.cache.shared); a stand-alone worker keeps its own.
        table = shared.table(cfg.ttl)  # (not ``or``: an empty table is falsy)
        store = table if table is not None else MemoryStore(cfg.max_entries, cfg.ttl)
    elif cfg.backend == "redis" and cfg.secret:
        signer = Signer(cfg.secret)
        try:
            store = RedisStore(cfg.redis_url, cfg.redis_timeout, cfg.redis_retry, cfg.ttl,
                               client_options(config))
        except StoreUnavailable as exc:
            if on_error is not None:
                on_error(str(exc))
    return PartCache(store, cfg.redis_prefix, generation, policy_version(config), on_error,
                     cfg.min_part_bytes, signer, log_bad_tag)


def client_options(config: Config) -> dict[str, object]:
    """redis-py connection options for ``[cache]``: ACL user, password, TLS files."""
    cfg = config.cache
    options: dict[str, object] = {}
    if cfg.redis_username:
        options["username"] = cfg.redis_username
    if cfg.redis_password:
        options["password"] = cfg.redis_password
    if cfg.redis_url.startswith("rediss://"):
        options["ssl_cert_reqs"] = "required"
        options["ssl_check_hostname"] = True
        for key, option in (("redis_ca_file", "ssl_ca_certs"),
                            ("redis_cert_file", "ssl_certfile"),
                            ("redis_key_file", "ssl_keyfile")):
            if getattr(cfg, key):
                options[option] = getattr(cfg, key)
    return options


__all__ = ["PartCache", "client_options", "open_cache"]
