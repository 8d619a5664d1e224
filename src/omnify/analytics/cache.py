"""The analytics cache: Redis when ``OMNIFY_REDIS_URL`` is set, an in-process TTL cache otherwise.

Invalidation is by *generation*, not by deleting keys: every entry's key embeds the
client's current generation number, and :func:`invalidate_client` (called by the sync
service whenever it writes new rows for a client) bumps that number. Old entries become
unreachable at once and age out through their TTL. Why: a client has many cached
reports (every range x granularity x grouping), enumerating them to delete would need a
key scan or an index of keys, while a bump is one ``INCR``.

On Redis the generation lives in Redis, so a sync in a worker process invalidates what
every API process cached. The in-process cache only sees bumps made in its own process;
that is the embedded single-process set-up (``omnify up``), and its TTL bounds staleness
anywhere else. Cache failures never fail a request: a Redis error counts as a miss and
the report is computed from the database.

Hits and misses are counted in ``omnify_cache_requests_total{cache="analytics",result}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import uuid
import weakref
from typing import Any, Protocol

import redis.asyncio as aioredis
import structlog
from cachetools import TTLCache
from prometheus_client import REGISTRY, Counter
from redis.exceptions import RedisError

from omnify.settings import Settings

log = structlog.get_logger(__name__)

CACHE_NAME = "analytics"
DEFAULT_TTL_SECONDS = 300
MEMORY_MAX_ENTRIES = 2048
_PREFIX = "omnify:analytics"


def _cache_counter() -> Counter:
    """The project-wide counter (METRICS.md); reused if another module registered it first."""
    existing = getattr(REGISTRY, "_names_to_collectors", {}).get("omnify_cache_requests_total")
    if isinstance(existing, Counter):
        return existing
    return Counter("omnify_cache_requests_total", "Cache look-ups, by cache and result.", ["cache", "result"])


CACHE_REQUESTS = _cache_counter()


def report_key(org_id: uuid.UUID, client_id: uuid.UUID, generation: int, params: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return f"{_PREFIX}:r:{org_id}:{client_id}:{generation}:{digest}"


def _generation_key(org_id: uuid.UUID, client_id: uuid.UUID) -> str:
    return f"{_PREFIX}:gen:{org_id}:{client_id}"


class CacheBackend(Protocol):
    name: str

    async def generation(self, org_id: uuid.UUID, client_id: uuid.UUID) -> int: ...
    async def bump(self, org_id: uuid.UUID, client_id: uuid.UUID) -> int: ...
    async def get(self, key: str) -> dict[str, Any] | None: ...
    async def set(self, key: str, value: dict[str, Any], ttl: int) -> None: ...


class MemoryBackend:
    """Thread-safe TTL + LRU map (cachetools), plus per-client generation counters."""

    name = "memory"

    def __init__(self, ttl: int = DEFAULT_TTL_SECONDS, maxsize: int = MEMORY_MAX_ENTRIES) -> None:
        self._entries: TTLCache[str, str] = TTLCache(maxsize=maxsize, ttl=ttl)
        self._generations: dict[str, int] = {}
        self._lock = threading.Lock()

    async def generation(self, org_id: uuid.UUID, client_id: uuid.UUID) -> int:
        with self._lock:
            return self._generations.get(_generation_key(org_id, client_id), 0)

    async def bump(self, org_id: uuid.UUID, client_id: uuid.UUID) -> int:
        key = _generation_key(org_id, client_id)
        with self._lock:
            self._generations[key] = self._generations.get(key, 0) + 1
            return self._generations[key]

    async def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            raw = self._entries.get(key)
        # Stored as JSON text so a caller mutating a returned report cannot corrupt the cache.
        return None if raw is None else dict(json.loads(raw))

    async def set(self, key: str, value: dict[str, Any], ttl: int) -> None:
        with self._lock:
            self._entries[key] = json.dumps(value)


class RedisBackend:
    """Entries as JSON strings with ``EX``; generations as plain integers (``INCR``)."""

    name = "redis"

    def __init__(self, url: str) -> None:
        self.url = url
        # Async Redis connections belong to the event loop that opened them; Celery tasks
        # run each job in a fresh loop, so keep one client per loop.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
            weakref.WeakKeyDictionary()
        )

    def _client(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = aioredis.Redis.from_url(self.url, socket_timeout=2.0, socket_connect_timeout=2.0,
                                             decode_responses=True)
            self._clients[loop] = client
        return client

    async def generation(self, org_id: uuid.UUID, client_id: uuid.UUID) -> int:
        value = await self._client().get(_generation_key(org_id, client_id))
        return int(value or 0)

    async def bump(self, org_id: uuid.UUID, client_id: uuid.UUID) -> int:
        return int(await self._client().incr(_generation_key(org_id, client_id)))

    async def get(self, key: str) -> dict[str, Any] | None:
        raw = await self._client().get(key)
        return None if raw is None else dict(json.loads(raw))

    async def set(self, key: str, value: dict[str, Any], ttl: int) -> None:
        await self._client().set(key, json.dumps(value, separators=(",", ":")), ex=ttl)

    async def aclose(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()


class AnalyticsCache:
    def __init__(self, backend: MemoryBackend | RedisBackend, ttl: int = DEFAULT_TTL_SECONDS) -> None:
        self.backend = backend
        self.ttl = ttl

    async def get_report(
        self, org_id: uuid.UUID, client_id: uuid.UUID, params: dict[str, Any]
    ) -> tuple[str | None, dict[str, Any] | None]:
        """(key to store under, cached report or None). A backend error is a miss with no key."""
        try:
            generation = await self.backend.generation(org_id, client_id)
            key = report_key(org_id, client_id, generation, params)
            value = await self.backend.get(key)
        except (RedisError, OSError, ValueError) as exc:
            log.warning("analytics.cache_unavailable", backend=self.backend.name, error=type(exc).__name__)
            CACHE_REQUESTS.labels(cache=CACHE_NAME, result="miss").inc()
            return None, None
        CACHE_REQUESTS.labels(cache=CACHE_NAME, result="hit" if value is not None else "miss").inc()
        return key, value

    async def put_report(self, key: str | None, value: dict[str, Any]) -> None:
        if key is None:
            return
        try:
            await self.backend.set(key, value, self.ttl)
        except (RedisError, OSError) as exc:
            log.warning("analytics.cache_unavailable", backend=self.backend.name, error=type(exc).__name__)

    async def invalidate(self, org_id: uuid.UUID, client_id: uuid.UUID) -> None:
        try:
            await self.backend.bump(org_id, client_id)
        except (RedisError, OSError) as exc:
            # Entries expire by TTL anyway; a sync must not fail because the cache is away.
            log.warning("analytics.cache_invalidate_failed", backend=self.backend.name, error=type(exc).__name__)


_caches: dict[str, AnalyticsCache] = {}
_caches_lock = threading.Lock()


def get_cache(settings: Settings) -> AnalyticsCache:
    """The process's cache for these settings' backend (one per Redis URL, one in memory)."""
    ident = settings.redis_url or "memory"
    with _caches_lock:
        cache = _caches.get(ident)
        if cache is None:
            backend: MemoryBackend | RedisBackend = (
                RedisBackend(settings.redis_url) if settings.redis_url else MemoryBackend()
            )
            cache = _caches[ident] = AnalyticsCache(backend)
        return cache


async def invalidate_client(org_id: uuid.UUID, client_id: uuid.UUID, settings: Settings | None = None) -> None:
    """Forget every cached report of one client; the sync service calls this after writing rows.

    Bumps the generation in the cache ``settings`` point at (Redis: seen by every
    process) and in every cache this process has already opened.
    """
    targets: list[AnalyticsCache] = []
    if settings is not None:
        targets.append(get_cache(settings))
    with _caches_lock:
        targets.extend(c for c in _caches.values() if c not in targets)
    for cache in targets:
        await cache.invalidate(org_id, client_id)
