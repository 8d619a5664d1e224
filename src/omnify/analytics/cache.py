"""The analytics cache: Redis when ``OMNIFY_REDIS_URL`` is set, an in-process TTL cache otherwise.

Invalidation is by *generation*, not by deleting keys: every entry carries the client's
generation number at the time it was computed, and :func:`invalidate_client` (called by
the sync service whenever it writes new rows for a client) bumps that number. Old
entries stop matching at once and age out through their TTL. The generation and the
entry are read together (``MGET``), and on a request that has rate limits to check, in
the limiter's own round trip: a cache hit costs one trip to Redis and none to PostgreSQL.

Entries are the report's JSON bytes (orjson), encoded once: what is stored is what a
hit sends, without decoding. Why: a client has many cached
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

import hashlib
import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
import structlog
from cachetools import TTLCache
from prometheus_client import REGISTRY, Counter
from redis.exceptions import RedisError

from omnify.core.ratelimit import PendingLimits
from omnify.core.redis_clients import PerLoopRedis
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


def report_key(org_id: uuid.UUID, client_id: uuid.UUID, params: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return f"{_PREFIX}:r:{org_id}:{client_id}:{digest}"


def _generation_key(org_id: uuid.UUID, client_id: uuid.UUID) -> str:
    return f"{_PREFIX}:gen:{org_id}:{client_id}"


def _entry(generation: int, body: bytes) -> bytes:
    """An entry is the generation it was computed at, a newline, then the JSON body."""
    return b"%d\n" % generation + body


def _valid_body(generation: int, raw: bytes | None) -> bytes | None:
    if raw is None:
        return None
    stamp, sep, body = raw.partition(b"\n")
    return body if sep and stamp == b"%d" % generation else None


def _int(raw: bytes | str | None) -> int:
    return int(raw or 0)


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a look-up found, and where to store the report if it found nothing."""

    key: str | None  # None: the cache is unavailable, do not store
    generation: int
    body: bytes | None


class MemoryBackend:
    """Thread-safe TTL + LRU map (cachetools), plus per-client generation counters."""

    name = "memory"

    def __init__(self, ttl: int = DEFAULT_TTL_SECONDS, maxsize: int = MEMORY_MAX_ENTRIES) -> None:
        self._entries: TTLCache[str, bytes] = TTLCache(maxsize=maxsize, ttl=ttl)
        self._generations: dict[str, int] = {}
        self._lock = threading.Lock()

    async def read(self, gen_key: str, key: str) -> tuple[bytes | None, bytes | None]:
        with self._lock:
            generation = self._generations.get(gen_key)
            return (None if generation is None else str(generation).encode()), self._entries.get(key)

    async def bump(self, gen_key: str) -> int:
        with self._lock:
            self._generations[gen_key] = self._generations.get(gen_key, 0) + 1
            return self._generations[gen_key]

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        with self._lock:
            self._entries[key] = value  # bytes: a caller cannot mutate what is cached


class RedisBackend:
    """Entries as bytes with ``EX``; generations as plain integers (``INCR``)."""

    name = "redis"

    def __init__(self, url: str) -> None:
        self.url = url
        self._clients = PerLoopRedis(url, socket_timeout=2.0, socket_connect_timeout=2.0)

    def _client(self) -> aioredis.Redis:
        return self._clients.get()

    async def read(self, gen_key: str, key: str) -> tuple[bytes | None, bytes | None]:
        generation, entry = await self._client().mget([gen_key, key])  # one command
        return cast(bytes | None, generation), cast(bytes | None, entry)

    async def bump(self, gen_key: str) -> int:
        return int(await self._client().incr(gen_key))

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        await self._client().set(key, value, ex=ttl)

    async def aclose(self) -> None:
        await self._clients.aclose()


class AnalyticsCache:
    def __init__(self, backend: MemoryBackend | RedisBackend, ttl: int = DEFAULT_TTL_SECONDS) -> None:
        self.backend = backend
        self.ttl = ttl

    async def lookup(self, org_id: uuid.UUID, client_id: uuid.UUID, params: dict[str, Any],
                     limits: PendingLimits | None = None) -> Lookup:
        """The cached report (JSON bytes), if any is current.

        ``limits`` (the request's pending rate limits) are applied first; on Redis they
        travel in the same round trip as the read (the limiter's script fetches the
        generation and the entry). Raises RateLimited when over a limit. A cache error is a
        miss that must not be stored."""
        gen_key, key = _generation_key(org_id, client_id), report_key(org_id, client_id, params)
        try:
            if limits is not None and isinstance(self.backend, RedisBackend) and limits.limiter.backend == "redis":
                raw_gen, raw = await limits.apply(fetch=[gen_key, key])
                if raw_gen is None and raw is None and limits.limiter.degraded:
                    raise OSError("rate-limit storage unavailable")
            else:
                if limits is not None:
                    await limits.apply()
                raw_gen, raw = await self.backend.read(gen_key, key)
            generation = _int(raw_gen)
        except (RedisError, OSError, ValueError) as exc:
            log.warning("analytics.cache_unavailable", backend=self.backend.name, error=type(exc).__name__)
            CACHE_REQUESTS.labels(cache=CACHE_NAME, result="miss").inc()
            return Lookup(None, 0, None)
        body = _valid_body(generation, raw)
        CACHE_REQUESTS.labels(cache=CACHE_NAME, result="hit" if body is not None else "miss").inc()
        return Lookup(key, generation, body)

    async def store(self, found: Lookup, body: bytes) -> None:
        if found.key is None:
            return
        try:
            await self.backend.set(found.key, _entry(found.generation, body), self.ttl)
        except (RedisError, OSError) as exc:
            log.warning("analytics.cache_unavailable", backend=self.backend.name, error=type(exc).__name__)

    async def invalidate(self, org_id: uuid.UUID, client_id: uuid.UUID) -> None:
        try:
            await self.backend.bump(_generation_key(org_id, client_id))
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
