"""The analytics cache on both backends: hit/miss counting, generation invalidation, TTL."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import redis
from prometheus_client import REGISTRY

from omnify.analytics import cache as cache_mod
from omnify.analytics.cache import AnalyticsCache, MemoryBackend, RedisBackend, get_cache, invalidate_client
from omnify.settings import Settings

REDIS_URL = os.environ.get("OMNIFY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _count(result: str) -> float:
    return REGISTRY.get_sample_value("omnify_cache_requests_total", {"cache": "analytics", "result": result}) or 0.0


def _redis_or_skip() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"Redis not reachable at {REDIS_URL}")


@pytest.mark.parametrize("backend_name", ["memory", "redis"])
async def test_hit_miss_and_invalidation(backend_name: str) -> None:
    if backend_name == "redis":
        _redis_or_skip()
    backend = MemoryBackend(ttl=60) if backend_name == "memory" else RedisBackend(REDIS_URL)
    cache = AnalyticsCache(backend, ttl=60)
    org, client, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    params = {"since": "2026-03-01", "granularity": "day"}
    hits, misses = _count("hit"), _count("miss")

    key, value = await cache.get_report(org, client, params)
    assert value is None and key is not None and _count("miss") == misses + 1
    await cache.put_report(key, {"currencies": [{"currency": "USD"}]})
    key2, value = await cache.get_report(org, client, params)
    assert key2 == key and value == {"currencies": [{"currency": "USD"}]} and _count("hit") == hits + 1
    value["currencies"].clear()  # a caller mutating its copy does not touch the cache
    assert (await cache.get_report(org, client, params))[1] == {"currencies": [{"currency": "USD"}]}

    await cache.put_report((await cache.get_report(org, other, params))[0], {"other": True})
    await cache.invalidate(org, client)
    assert (await cache.get_report(org, client, params))[1] is None  # new generation: a miss
    assert (await cache.get_report(org, other, params))[1] == {"other": True}  # other clients keep theirs
    if isinstance(backend, RedisBackend):
        await backend.aclose()


async def test_redis_errors_are_misses_not_failures() -> None:
    cache = AnalyticsCache(RedisBackend("redis://127.0.0.1:1/0"), ttl=60)
    misses = _count("miss")
    key, value = await cache.get_report(uuid.uuid4(), uuid.uuid4(), {"a": 1})
    assert key is None and value is None and _count("miss") == misses + 1
    await cache.put_report(None, {"x": 1})
    await cache.invalidate(uuid.uuid4(), uuid.uuid4())  # logged, not raised


async def test_memory_entries_expire() -> None:
    backend = MemoryBackend(ttl=60)
    now = [1000.0]
    backend._entries = cache_mod.TTLCache(maxsize=10, ttl=60, timer=lambda: now[0])
    cache = AnalyticsCache(backend)
    org, client = uuid.uuid4(), uuid.uuid4()
    key, _ = await cache.get_report(org, client, {})
    await cache.put_report(key, {"v": 1})
    assert (await cache.get_report(org, client, {}))[1] == {"v": 1}
    now[0] += 61
    assert (await cache.get_report(org, client, {}))[1] is None


async def test_invalidate_client_reaches_every_cache_of_the_process(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=None)
    cache = get_cache(settings)
    assert get_cache(settings) is cache
    org, client = uuid.uuid4(), uuid.uuid4()
    key, _ = await cache.get_report(org, client, {"p": 1})
    await cache.put_report(key, {"v": 1})
    await invalidate_client(org, client)  # no settings: the caches this process opened
    assert (await cache.get_report(org, client, {"p": 1}))[1] is None
    key, _ = await cache.get_report(org, client, {"p": 1})
    await cache.put_report(key, {"v": 2})
    await invalidate_client(org, client, settings)
    assert (await cache.get_report(org, client, {"p": 1}))[1] is None
