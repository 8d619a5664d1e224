"""The request budget of issue 16, counted: database statements and transactions through
SQLAlchemy's engine events, Redis commands through the client, on SQLite and PostgreSQL.

* a cache hit by a known caller: **no** database round trip, **one** Redis command (the
  limiter's script, which also reads the cached report);
* a cache miss: one transaction with one analytics statement (plus, on PostgreSQL, the
  one ``set_config`` that binds the tenant), and one Redis write to cache the report;
* any other route: every rate limit of the request in one Redis command;
* caching callers does not delay a revoke, a removed membership or a plan change.

A regression (a query before the cache, a second ``set_config``, a limiter call per
limit) changes a count and fails here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio.client as aioredis_client
from sqlalchemy import event, select, text

from omnify.app import create_app
from omnify.core import invalidation
from omnify.core.db import Database, bind_tenant
from omnify.orgs.models import Organization, OrgQuota
from omnify.settings import Settings
from tests.conftest import DatabaseUrls, is_postgres, make_settings, redis_or_skip
from tests.factories import Account as User
from tests.factories import add_member, register
from tests.integration.perf.perf_support import ad_row, make_accounts, write_window

REDIS_URL = os.environ.get("OMNIFY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _redis_or_skip() -> None:
    redis_or_skip(REDIS_URL)


@dataclass
class Counts:
    statements: list[tuple[int, str]] = field(default_factory=list)  # (transaction number, SQL)
    transactions: int = 0
    redis: list[str] = field(default_factory=list)

    def sql(self, needle: str) -> list[str]:
        return [s for _t, s in self.statements if needle in s]

    def set_configs_per_transaction(self) -> list[int]:
        return [sum(1 for t, s in self.statements if t == n and "set_config" in s)
                for n in range(1, self.transactions + 1)]


@contextlib.contextmanager
def counting(database: Database) -> Iterator[Counts]:
    counts = Counts()
    engine = database.engine.sync_engine

    def on_begin(_conn: Any) -> None:
        counts.transactions += 1

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        counts.statements.append((counts.transactions, statement))

    real = aioredis_client.Redis.execute_command

    async def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        counts.redis.append(str(args[0]).upper())
        return await real(self, *args, **options)

    event.listen(engine, "begin", on_begin)
    event.listen(engine, "before_cursor_execute", on_execute)
    aioredis_client.Redis.execute_command = execute_command  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        aioredis_client.Redis.execute_command = real  # type: ignore[method-assign]
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "begin", on_begin)


@pytest.fixture(scope="module")
def budget_settings(db_urls: DatabaseUrls, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    _redis_or_skip()
    data: Path = tmp_path_factory.mktemp("budget")
    return make_settings(data, db_urls, redis_url=REDIS_URL)


@pytest.fixture(scope="module")
async def api(budget_settings: Settings, database: Database) -> Any:
    app = create_app(budget_settings, database)
    async with app.router.lifespan_context(app):  # the invalidation listener runs, as in production
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
            yield c
    await app.state.rate_limiter.reset()


async def _setup(api: httpx.AsyncClient, database: Database) -> tuple[User, str, str]:
    """An owner, a client with a week of rows, and a read-only API key."""
    owner = await register(api)
    resp = await api.post(f"/api/v1/orgs/{owner.org_id}/clients", headers=owner.headers,
                          json={"company_name": f"Budget {uuid.uuid4().hex[:6]}", "currency": "USD"})
    assert resp.status_code == 201, resp.text
    client_id = str(resp.json()["id"])
    meta = (await make_accounts(database, owner.org_id, client_id,
                                {"m": ("meta_ads", "USD", {"C": ["a1", "a2"]})}))["m"]
    rows = [ad_row(meta, ad, f"2026-03-0{d}", 100 * d, 1000, 10, 1.0, 300) for d in range(1, 8) for ad in ("a1", "a2")]
    await write_window(database, owner.org_id, client_id, meta, "2026-03-01", "2026-03-07", rows, batch_size=100)
    resp = await api.post(f"/api/v1/orgs/{owner.org_id}/api-keys", headers=owner.headers,
                          json={"name": "dashboards", "scopes": ["read"]})
    assert resp.status_code == 201, resp.text
    return owner, client_id, str(resp.json()["key"])


def _url(org_id: str, client_id: str) -> str:
    return f"/api/v1/orgs/{org_id}/clients/{client_id}/analytics"


def _assert_one_transaction_one_query(counts: Counts) -> None:
    assert counts.transactions == 1, counts.statements
    analytics = counts.sql("analytics_daily")
    assert len(analytics) == 1, counts.statements
    others = [s for _t, s in counts.statements if "analytics_daily" not in s and "set_config" not in s]
    assert others == [], others
    assert counts.set_configs_per_transaction() == ([1] if is_postgres() else [0])


async def test_cache_hits_cost_no_database_round_trip_and_one_redis_command(
    api: httpx.AsyncClient, database: Database
) -> None:
    owner, client_id, key = await _setup(api, database)
    key_headers = {"Authorization": f"Bearer {key}"}
    url = _url(owner.org_id, client_id)
    week = {"since": "2026-03-01", "until": "2026-03-07"}

    first = await api.get(url, headers=key_headers, params=week)  # a new caller, a new report
    assert first.status_code == 200 and first.headers["X-Cache"] == "miss", first.text

    with counting(database) as hit:
        resp = await api.get(url, headers=key_headers, params=week)
    assert resp.status_code == 200 and resp.headers["X-Cache"] == "hit"
    assert resp.content == first.content  # the same bytes: encoded once
    assert "RateLimit-Limit" in resp.headers
    assert (hit.transactions, hit.statements) == (0, [])
    assert hit.redis == ["EVALSHA"]

    with counting(database) as miss:
        resp = await api.get(url, headers=key_headers, params={"since": "2026-03-02", "until": "2026-03-07"})
    assert resp.status_code == 200 and resp.headers["X-Cache"] == "miss"
    _assert_one_transaction_one_query(miss)
    assert miss.redis == ["EVALSHA", "SET"]

    # A user with a JWT: the same budget once known.
    viewer = await add_member(api, owner, "viewer")
    assert (await api.get(url, headers=viewer.headers, params=week)).status_code == 200
    with counting(database) as hit:
        resp = await api.get(url, headers=viewer.headers, params=week)
    assert resp.status_code == 200 and resp.headers["X-Cache"] == "hit"
    assert (hit.transactions, hit.statements, hit.redis) == (0, [], ["EVALSHA"])
    with counting(database) as miss:
        resp = await api.get(url, headers=viewer.headers, params={"since": "2026-03-03", "until": "2026-03-07"})
    assert resp.status_code == 200 and resp.headers["X-Cache"] == "miss"
    _assert_one_transaction_one_query(miss)


async def test_first_request_of_a_caller_stays_bounded(api: httpx.AsyncClient, database: Database) -> None:
    """Unknown caller: the key by its hash in one short transaction, then the report's."""
    owner, client_id, key = await _setup(api, database)
    invalidation.clear_all()
    with counting(database) as cold:
        resp = await api.get(_url(owner.org_id, client_id), headers={"Authorization": f"Bearer {key}"},
                             params={"since": "2026-03-01", "until": "2026-03-04"})
    assert resp.status_code == 200, resp.text
    assert cold.transactions <= 3, cold.statements  # key look-up, plan limits + report, last_used_at touch
    assert all(n <= 1 for n in cold.set_configs_per_transaction()), cold.statements
    assert cold.redis.count("EVALSHA") == 1


async def test_all_rate_limits_of_a_request_are_one_redis_command(api: httpx.AsyncClient, database: Database) -> None:
    owner, _client_id, key = await _setup(api, database)
    await api.get(f"/api/v1/orgs/{owner.org_id}/clients", headers={"Authorization": f"Bearer {key}"})
    with counting(database) as counts:
        resp = await api.get(f"/api/v1/orgs/{owner.org_id}/clients", headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200, resp.text
    assert counts.redis == ["EVALSHA"]  # the key's, the org's per-minute and its daily limit together
    assert all(n <= 1 for n in counts.set_configs_per_transaction())


async def test_revocations_and_plan_changes_apply_at_once(api: httpx.AsyncClient, database: Database) -> None:
    owner, client_id, key = await _setup(api, database)
    key_headers = {"Authorization": f"Bearer {key}"}
    url, week = _url(owner.org_id, client_id), {"since": "2026-03-01", "until": "2026-03-07"}
    assert (await api.get(url, headers=key_headers, params=week)).status_code == 200
    viewer = await add_member(api, owner, "viewer")
    assert (await api.get(url, headers=viewer.headers, params=week)).status_code == 200

    # the plan's daily quota shrinks: the very next request is refused
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(owner.org_id))
        s.add(OrgQuota(org_id=uuid.UUID(owner.org_id), api_calls_per_day=1))
        await s.commit()
    refused = await api.get(url, headers=key_headers, params=week)
    assert refused.status_code == 429 and refused.json()["scope"] == "org"
    async with database.sessionmaker() as s:
        org = await s.get(Organization, uuid.UUID(owner.org_id))
        assert org is not None
        org.plan = "enterprise"  # a plan change is seen too (the override still wins)
        await s.commit()
    assert (await api.get(url, headers=key_headers, params=week)).status_code == 429
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(owner.org_id))
        quota = await s.scalar(select(OrgQuota).where(OrgQuota.org_id == uuid.UUID(owner.org_id)))
        assert quota is not None
        await s.delete(quota)
        await s.commit()
    assert (await api.get(url, headers=key_headers, params=week)).status_code == 200

    # the viewer is removed: 404 at once, not after the cache's TTL
    resp = await api.delete(f"/api/v1/orgs/{owner.org_id}/members/{viewer.user_id}", headers=owner.headers)
    assert resp.status_code == 204, resp.text
    assert (await api.get(url, headers=viewer.headers, params=week)).status_code == 404

    # the key is revoked: 401 at once
    keys = (await api.get(f"/api/v1/orgs/{owner.org_id}/api-keys", headers=owner.headers)).json()["items"]
    resp = await api.delete(f"/api/v1/orgs/{owner.org_id}/api-keys/{keys[0]['id']}", headers=owner.headers)
    assert resp.status_code == 204, resp.text
    assert (await api.get(url, headers=key_headers, params=week)).status_code == 401


async def test_other_processes_learn_of_changes_through_redis() -> None:
    """A change committed elsewhere reaches this process's caches by pub/sub."""
    _redis_or_skip()
    cache: invalidation.LocalCache[str, int] = invalidation.LocalCache("budget-test")
    listener = await invalidation.start_listener(REDIS_URL)
    try:
        cache.put("k", 1, [("api_key", "abc")])
        publisher = redis.Redis.from_url(REDIS_URL)
        publisher.publish(invalidation.CHANNEL, '{"from": "another process", "targets": [["api_key", "abc"]]}')
        publisher.close()
        for _ in range(100):
            if cache.get("k") is None:
                break
            await asyncio.sleep(0.05)
        assert cache.get("k") is None
    finally:
        await invalidation.stop_listener(listener)


@pytest.mark.skipif(not is_postgres(), reason="dropped server connections: PostgreSQL")
async def test_a_dropped_connection_is_retried_not_failed(api: httpx.AsyncClient, database: Database,
                                                          owner_database: Database) -> None:
    """No ping per checkout: a pooled connection the server killed is replaced on use."""
    owner, client_id, key = await _setup(api, database)
    headers = {"Authorization": f"Bearer {key}"}
    url = _url(owner.org_id, client_id)
    assert (await api.get(url, headers=headers, params={"since": "2026-03-01", "until": "2026-03-02"})).status_code == 200
    async with owner_database.engine.connect() as conn:
        killed = (await conn.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND usename = 'omnify_app' AND pid <> pg_backend_pid()"))).scalar()
        await conn.commit()
    assert killed and killed >= 1
    for day in ("03", "04", "05"):
        resp = await api.get(url, headers=headers, params={"since": "2026-03-01", "until": f"2026-03-{day}"})
        assert resp.status_code == 200, resp.text
