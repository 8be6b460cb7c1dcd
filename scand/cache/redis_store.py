"""The shared store: Redis, reached from every worker of every scand host.

Redis is an accelerator, never a dependency of the answer. Every call has one
deadline (``cache.redis_timeout``, connect and reply, no retries); a failure
or a timeout raises :class:`StoreUnavailable`, the caller scans as if it had
missed, and Redis is left alone for ``cache.redis_retry`` seconds (so a dead
or slow Redis costs at most one timeout per worker per retry period, not one
per part). After any failure the connection is thrown away: a reply that
arrives late must never be read as the answer to the next lookup.

The client is created lazily, in the worker, after the fork. A wrong password
or a server certificate that does not verify fails the connection like a dead
Redis: a scan, never an answer.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from scand.cache.connect import open_client

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
    """``get``/``put`` against Redis with one short deadline per call.

    A store is sent at once but its reply is not waited for: ``+OK`` is read with
    the next lookup's reply (or by :meth:`flush`). So the entry reaches Redis
    before the worker answers (every host sees it), and a part costs one round
    trip (the lookup) instead of two. Measured on a corpus with no repeats: the
    second wait was most of what Redis cost over the in-memory cache.
    """

    shared = True

    def __init__(self, url: str, timeout: float, retry: float, ttl: float,
                 options: dict[str, Any] | None = None) -> None:
        self.redis = load_client()
        self.url = url
        self.options = options or {}  # ACL user, password, TLS files (cache.client_options)
        self.timeout = timeout
        self.retry = retry
        self.ttl = max(1, int(ttl))
        self._client: Any = None
        self._down_until = 0.0
        self.failures = 0
        self.last_error = ""
        self._unread = 0  # replies of stores sent and not read yet

    def _connection(self) -> Any:
        if time.monotonic() < self._down_until:
            raise StoreUnavailable(f"resting after: {self.last_error}")
        if self._client is None:  # (this connects at once: single_connection_client)
            # plain, TLS or Sentinel; ACL and TLS options from the cache keys
            self._client = open_client(self.redis, self.url, self.timeout, **self.options)
        return self._client

    def _failed(self, exc: Exception) -> StoreUnavailable:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        self._down_until = time.monotonic() + self.retry
        self._unread = 0  # the connection is thrown away with its unread replies
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        return StoreUnavailable(self.last_error)

    def get(self, key: str) -> bytes | None:
        try:
            client = self._connection()
            if self._unread:  # read the stores' replies first: the connection stays in step
                conn = client.connection
                conn.send_command("GET", key)
                self._drain(conn)
                value = conn.read_response()
            else:
                value = client.get(key)
        except StoreUnavailable:
            raise
        except Exception as exc:  # any client failure costs a scan, never a -1:
            raise self._failed(exc) from exc
        return value if isinstance(value, bytes) else None

    def put(self, key: str, value: bytes) -> None:
        try:
            self._connection().connection.send_command("SET", key, value, "EX", self.ttl)
        except StoreUnavailable:
            raise
        except Exception as exc:  # any client failure costs a scan, never a -1:
            raise self._failed(exc) from exc
        self._unread += 1

    def flush(self) -> None:
        """Read the replies of stores sent so far (a refused store shows here)."""
        if not self._unread:
            return
        try:
            self._drain(self._connection().connection)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise self._failed(exc) from exc

    def _drain(self, conn: Any) -> None:
        """Read the stores' replies; a refused store (e.g. OOM) raises ResponseError."""
        while self._unread:
            self._unread -= 1
            conn.read_response()
