"""The shared store: Redis, reached from every worker of every scand host.

Redis is an accelerator, never a dependency of the answer. Every call has one
deadline (``cache.redis_timeout``, connect and reply, no retries); a failure
or a timeout raises :class:`StoreUnavailable`, the caller scans as if it had
missed, and Redis is left alone for ``cache.redis_retry`` seconds (so a dead
or slow Redis costs at most one timeout per worker per retry period, not one
per part). After any failure the connection is thrown away: a reply that
arrives late must never be read as the answer to the next lookup.

The client is created lazily, in the worker, after the fork.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

_CLIENT: Any = None  # the redis package, once imported (load_client)


def load_client() -> Any:
    """Import redis-py. The zygote calls this before it forks when the backend is
    ``redis`` (workers should import nothing); nobody else pays for it: the package
    and asyncio, which it pulls in, cost 0.4 s and several MiB in every process."""
    global _CLIENT
    if _CLIENT is None:
        try:
            import redis
            import redis.backoff
            import redis.retry
        except ImportError as exc:
            raise StoreUnavailable(
                f"the redis package is not installed (scand[redis]): {exc}") from exc
        _CLIENT = redis
    return _CLIENT


class StoreUnavailable(Exception):
    """The store did not answer in time or at all: scan without it."""


class RedisStore:
    """``get``/``put`` against Redis with one short deadline per call."""

    shared = True

    def __init__(self, url: str, timeout: float, retry: float, ttl: float) -> None:
        self.redis = load_client()
        self.url = url
        self.timeout = timeout
        self.retry = retry
        self.ttl = max(1, int(ttl))
        self._client: Any = None
        self._down_until = 0.0
        self.failures = 0
        self.last_error = ""

    def _connection(self) -> Any:
        if time.monotonic() < self._down_until:
            raise StoreUnavailable(f"resting after: {self.last_error}")
        if self._client is None:  # (this connects at once: single_connection_client)
            redis = self.redis
            self._client = redis.Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
                retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0), retry_on_timeout=False,
                health_check_interval=0, single_connection_client=True)
        return self._client

    def _failed(self, exc: Exception) -> StoreUnavailable:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        self._down_until = time.monotonic() + self.retry
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        return StoreUnavailable(self.last_error)

    def get(self, key: str) -> bytes | None:
        try:
            value = self._connection().get(key)
        except StoreUnavailable:
            raise
        except Exception as exc:  # any client failure costs a scan, never a -1:
            raise self._failed(exc) from exc
        return value if isinstance(value, bytes) else None

    def put(self, key: str, value: bytes) -> None:
        try:
            self._connection().set(key, value, ex=self.ttl)
        except StoreUnavailable:
            raise
        except Exception as exc:  # any client failure costs a scan, never a -1:
            raise self._failed(exc) from exc
