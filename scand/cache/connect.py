"""Building the Redis client of the shared cache: one server, or a Sentinel service.

``cache.redis_url`` is ``unix:///path``, ``redis://host:port`` or, for Redis
replicated under Sentinel,
``redis+sentinel://host1:26379,host2:26379,host3:26379/mymaster``: the
sentinels to ask and the name of the master they watch. Either way the client
is one connection with one deadline and no retries (the store's contract:
:mod:`scand.cache.redis_store`).

With Sentinel, redis-py's ``SentinelConnectionPool`` asks the sentinels for
the master's address each time the connection is made: the first sentinel
that answers and sees the master up wins (each asked within the same
deadline). A failover breaks the connection (closed, or ``READONLY`` from a
demoted master, which redis-py turns into a connection error); the store
counts a miss, rests ``cache.redis_retry`` seconds, and the next connection
goes to the new master. So a failover costs scans, never a verdict: an entry
lost with the old master is a miss, and every entry that exists is one a
worker stored (signed entries: the ``trust`` branch).

Worker side: the stdlib and the redis package (passed in, imported by
:func:`scand.cache.redis_store.load_client`).
"""

from __future__ import annotations

import importlib
from typing import Any

SENTINEL_SCHEME = "redis+sentinel://"


class BadRedisUrl(ValueError):
    """``cache.redis_url`` cannot be used (config validation catches this first)."""


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str]:
    """``redis+sentinel://h1:p1,h2:p2/master`` -> ([(h1, p1), (h2, p2)], master)."""
    hosts, _, master = url.removeprefix(SENTINEL_SCHEME).partition("/")
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise BadRedisUrl(f"cache.redis_url: not host:port: {item!r}")
        sentinels.append((host.strip("[]"), int(port)))
    if not master or "/" in master:
        raise BadRedisUrl(f"cache.redis_url: no master name after the sentinels: {url!r}")
    return sentinels, master


def open_client(redis: Any, url: str, timeout: float, **extra: Any) -> Any:
    """A connected single-connection client for ``url`` (plain or Sentinel).

    ``redis`` is the imported package. ``extra`` goes to the data connections
    (username, password, ssl options of the cache's authentication); the
    sentinels get the deadline only.
    """
    common: dict[str, Any] = {
        "socket_timeout": timeout, "socket_connect_timeout": timeout,
        "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 0), "retry_on_timeout": False,
        "health_check_interval": 0,
    }
    if not url.startswith(SENTINEL_SCHEME):
        return redis.Redis.from_url(url, single_connection_client=True, **common, **extra)
    sentinel_mod = importlib.import_module("redis.sentinel")
    sentinels, master = parse_sentinel_url(url)
    sentinel = sentinel_mod.Sentinel(sentinels, sentinel_kwargs=dict(common))
    pool = sentinel_mod.SentinelConnectionPool(master, sentinel, is_master=True,
                                               **common, **extra)
    # Connects now (single_connection_client): the sentinels are asked here.
    return redis.Redis(connection_pool=pool, single_connection_client=True)


__all__ = ["SENTINEL_SCHEME", "BadRedisUrl", "open_client", "parse_sentinel_url"]
