"""The analytics cache on both backends: hit/miss counting, generation invalidation, TTL,
and the look-up riding in the rate limiter's Redis round trip."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from omnify.analytics import cache as cache_mod
from omnify.analytics.cache import AnalyticsCache, MemoryBackend, RedisBackend, get_cache, invalidate_client
from omnify.core.errors import RateLimited
from omnify.core.ratelimit import Limit, PendingLimits, RateLimiter
from omnify.settings import Settings
from tests.conftest import redis_or_skip

REDIS_URL = os.environ.get("OMNIFY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _count(result: str) -> float:
    return REGISTRY.get_sample_value("omnify_cache_requests_total", {"cache": "analytics", "result": result}) or 0.0


def _redis_or_skip() -> None:
    redis_or_skip(REDIS_URL)


@pytest.mark.parametrize("backend_name", ["memory", "redis"])
async def test_hit_miss_and_invalidation(backend_name: str) -> None:
    if backend_name == "redis":
        _redis_or_skip()
    backend = MemoryBackend(ttl=60) if backend_name == "memory" else RedisBackend(REDIS_URL)
    cache = AnalyticsCache(backend, ttl=60)
    org, client, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    params = {"since": "2026-03-01", "granularity": "day"}
    hits, misses = _count("hit"), _count("miss")

    found = await cache.lookup(org, client, params)
    assert found.body is None and found.key is not None and _count("miss") == misses + 1
    await cache.store(found, b'{"currencies":[{"currency":"USD"}]}')
    again = await cache.lookup(org, client, params)
    assert again.key == found.key and again.body == b'{"currencies":[{"currency":"USD"}]}'
    assert _count("hit") == hits + 1

    await cache.store(await cache.lookup(org, other, params), b'{"other":true}')
    await cache.invalidate(org, client)
    stale = await cache.lookup(org, client, params)
    assert stale.body is None  # new generation: a miss
    assert (await cache.lookup(org, other, params)).body == b'{"other":true}'  # other clients keep theirs
    # A report computed before an invalidation and stored after it is never served.
    await cache.store(stale, b'{"v":"computed before the bump"}')
    await cache.invalidate(org, client)
    assert (await cache.lookup(org, client, params)).body is None
    if isinstance(backend, RedisBackend):
        await backend.aclose()


async def test_redis_errors_are_misses_not_failures() -> None:
    cache = AnalyticsCache(RedisBackend("redis://127.0.0.1:1/0"), ttl=60)
    misses = _count("miss")
    found = await cache.lookup(uuid.uuid4(), uuid.uuid4(), {"a": 1})
    assert found.key is None and found.body is None and _count("miss") == misses + 1
    await cache.store(found, b"{}")
    await cache.invalidate(uuid.uuid4(), uuid.uuid4())  # logged, not raised


async def test_memory_entries_expire() -> None:
    backend = MemoryBackend(ttl=60)
    now = [1000.0]
    backend._entries = cache_mod.TTLCache(maxsize=10, ttl=60, timer=lambda: now[0])
    cache = AnalyticsCache(backend)
    org, client = uuid.uuid4(), uuid.uuid4()
    await cache.store(await cache.lookup(org, client, {}), b'{"v":1}')
    assert (await cache.lookup(org, client, {})).body == b'{"v":1}'
    now[0] += 61
    assert (await cache.lookup(org, client, {})).body is None


async def test_invalidate_client_reaches_every_cache_of_the_process(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=None)
    cache = get_cache(settings)
    assert get_cache(settings) is cache
    org, client = uuid.uuid4(), uuid.uuid4()
    await cache.store(await cache.lookup(org, client, {"p": 1}), b'{"v":1}')
    await invalidate_client(org, client)  # no settings: the caches this process opened
    assert (await cache.lookup(org, client, {"p": 1})).body is None
    await cache.store(await cache.lookup(org, client, {"p": 1}), b'{"v":2}')
    await invalidate_client(org, client, settings)
    assert (await cache.lookup(org, client, {"p": 1})).body is None


async def test_lookup_rides_in_the_rate_limit_round_trip(tmp_path: Path) -> None:
    """On Redis, the limits and the look-up are one script call; an exceeded limit refuses
    before anything is served, and counts nothing."""
    _redis_or_skip()
    limiter = RateLimiter(Settings(data_dir=tmp_path, redis_url=REDIS_URL))
    cache = AnalyticsCache(RedisBackend(REDIS_URL), ttl=60)
    org, client, ident = uuid.uuid4(), uuid.uuid4(), uuid.uuid4().hex
    checks = [Limit("org", ident, "2/minute"), Limit("api_key", ident, "100/minute")]
    try:
        first = await cache.lookup(org, client, {"p": 1}, PendingLimits(limiter, None, checks))
        assert first.body is None and first.key is not None
        await cache.store(first, b'{"v":1}')
        pending = PendingLimits(limiter, None, checks)
        assert (await cache.lookup(org, client, {"p": 1}, pending)).body == b'{"v":1}'
        assert pending.applied
        with pytest.raises(RateLimited) as refused:
            await cache.lookup(org, client, {"p": 1}, PendingLimits(limiter, None, checks))
        assert refused.value.headers["Retry-After"].isdigit()
    finally:
        await limiter.reset()
        await limiter.close()
        await cache.backend.aclose()  # type: ignore[union-attr]
