"""Backfill, incremental runs by cursor with a look-back window, idempotence (a second
identical run changes no row), restated days, progress reporting, the per-connection
lock, the beat's due scan and the lag metric. Real sandboxes over HTTP, real database."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import date, timedelta

import pytest
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy import func, select, update

from omnify.analytics import synced
from omnify.connections import service as connections
from omnify.connections.config import SyncConfig
from omnify.connections.models import Connection
from omnify.core.db import bind_tenant, utcnow
from omnify.events.models import DomainEvent
from omnify.sync import service as sync
from omnify.sync.models import AdMetricDaily, SyncAd, SyncCampaign
from tests.integration.connections.conn_support import (
    META_MID,
    META_SMALL,
    Env,
    Team,
    fast_factory,
    snapshot,
    tenant_session_rows,
)
from tests.integration.sync.sync_support import connected, connection_view, run, runs_of


def _window_rows(env: Env, account: str, since: date, until: date) -> tuple[int, int]:
    """(rows, spend) the Meta sandbox reports at ad level for that window."""
    rows = env.boxes.meta.world.account(account).metric_rows(since, until, level="ad")
    return len(rows), sum(int(rows.row(i)["spend_minor"]) for i in range(len(rows)))


async def test_backfill_then_incremental_then_nothing_changes(env: Env, team: Team) -> None:
    conn_id = await connected(env, team, "meta_ads", META_SMALL)
    before = await connection_view(env, team, "meta_ads")
    assert before["backfill"]["status"] == "pending" and before["backfill"]["percent"] == 0

    first = await run(env, team, conn_id, trigger="connect")
    assert first.status == "succeeded" and first.mode == "backfill", first
    today = env.boxes.meta.world.end  # the sandbox's "today" (UTC), as the sync sees it
    expected_rows, expected_spend = _window_rows(env, META_SMALL, today - timedelta(days=44), today)
    org = uuid.UUID(team.owner.org_id)
    metrics = await tenant_session_rows(env.db, team.owner.org_id, AdMetricDaily)
    assert len(metrics) == expected_rows > 0
    assert sum(m.spend_minor for m in metrics) == expected_spend
    assert all(m.ad_id is not None and m.campaign_id is not None and m.currency == "USD" for m in metrics)
    assert len(await tenant_session_rows(env.db, team.owner.org_id, SyncAd)) == 12
    assert len(await tenant_session_rows(env.db, team.owner.org_id, SyncCampaign)) == 2

    view = await connection_view(env, team, "meta_ads")
    assert view["backfill"]["status"] == "done" and view["backfill"]["percent"] == 100
    assert view["backfill"]["days"] == 45 and view["backfill"]["rows"] >= expected_rows
    assert view["backfill"]["units_done"] == view["backfill"]["units_total"] == 3 + 2  # entities + 2 windows
    assert view["last_sync_status"] == "succeeded" and view["last_synced_at"]
    listed = (await env.api.get(team.url("meta_ads", "runs"), headers=team.viewer.headers)).json()["items"]
    assert [(r["mode"], r["status"], r["trigger"]) for r in listed] == [("backfill", "succeeded", "connect")]
    assert listed[0]["streams"]["daily_metrics"] == {"read": expected_rows, "written": expected_rows}

    snap = await snapshot(env.owner_db, conn_id)
    second = await run(env, team, conn_id)
    assert second.status == "succeeded" and second.mode == "incremental"
    assert second.rows_written == 0
    lookback_rows, _ = _window_rows(env, META_SMALL, today - timedelta(days=6), today)
    assert (await runs_of(env, team, conn_id))[-1].streams["daily_metrics"]["read"] == lookback_rows
    assert await snapshot(env.owner_db, conn_id) == snap  # not a single value or updated_at moved

    # The platform changes: a budget, an ad paused (its metrics stop from today).
    account = env.boxes.meta.world.account(META_SMALL)
    campaign = sorted(account.campaigns)[0]
    ad = sorted(account.ads)[0]
    env.boxes.meta.world.set_budget(campaign, 12_345)
    env.boxes.meta.world.set_status(ad, "paused")
    try:
        third = await run(env, team, conn_id)
        assert third.status == "succeeded" and third.rows_written >= 2
        async with env.db.sessionmaker() as session:
            await bind_tenant(session, org)
            row = (await session.scalars(select(SyncCampaign).where(SyncCampaign.org_id == org,
                                                                    SyncCampaign.external_id == campaign))).one()
            assert row.daily_budget_minor == 12_345
            paused = (await session.scalars(select(SyncAd).where(SyncAd.org_id == org, SyncAd.external_id == ad))
                      ).one()
            assert paused.status == "paused"
            today_rows = await session.scalar(select(func.count()).select_from(AdMetricDaily).where(
                AdMetricDaily.org_id == org, AdMetricDaily.entity_external_id == ad, AdMetricDaily.day == today))
            assert today_rows == 0  # restated away: the window is the platform's truth
        assert (await run(env, team, conn_id)).rows_written == 0
    finally:
        env.boxes.meta.world.reset()

    events = [e for e in await tenant_session_rows(env.db, team.owner.org_id, DomainEvent)
              if e.type == "sync.completed"]
    assert len(events) == 4 and events[0].payload["rows"]["daily_metrics"] > 0

    # What analytics and the brain read (omnify.analytics.synced) understands these tables.
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, org)
        read = await synced.ad_days(session, org, uuid.UUID(team.client_id), today - timedelta(days=44), today)
        ads_seen, campaigns_seen = await synced.entities(session, org, uuid.UUID(team.client_id))
    assert len(read) == len(await tenant_session_rows(env.db, team.owner.org_id, AdMetricDaily))
    assert {a["platform"] for a in ads_seen} == {"meta_ads"} and len(campaigns_seen) == 2
    assert {a["account_external_id"] for a in ads_seen} == {META_SMALL}


async def test_mid_size_backfill_finishes_with_progress(env: Env, team: Team) -> None:
    """The default run's smaller variant of bench/sync_backfill.py: 40 ads x 120 days."""
    conn_id = await connected(env, team, "meta_ads", META_MID)
    factory = fast_factory(env.settings.model_copy(update={"sync_backfill_days": 120}))
    result = await run(env, team, conn_id, factory)
    assert result.status == "succeeded", result
    today = env.boxes.meta.world.end  # the sandbox's "today" (UTC), as the sync sees it
    expected, _ = _window_rows(env, META_MID, today - timedelta(days=119), today)
    assert expected > 3000
    stored = await tenant_session_rows(env.db, team.owner.org_id, AdMetricDaily)
    assert len(stored) == expected
    view = await connection_view(env, team, "meta_ads")
    assert view["backfill"]["status"] == "done" and view["backfill"]["units_total"] == 3 + 4


async def test_at_most_one_run_per_connection(env: Env, team: Team) -> None:
    conn_id = await connected(env, team, "meta_ads", META_SMALL)
    org = uuid.UUID(team.owner.org_id)
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, org)
        assert await connections.acquire_sync_lock(session, org, uuid.UUID(conn_id), "someone-else", 60)
    held = await run(env, team, conn_id)
    assert held.status == "skipped" and "running" in (held.reason or "")
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, org)
        await connections.release_sync_lock(session, org, uuid.UUID(conn_id), "someone-else")

    results = await asyncio.gather(run(env, team, conn_id), run(env, team, conn_id))
    assert sorted(r.status for r in results) == ["skipped", "succeeded"]
    assert len(await runs_of(env, team, conn_id)) == 1

    # An expired lease (a worker that died) does not block forever.
    async with env.owner_db.sessionmaker() as session:
        await session.execute(update(Connection).where(Connection.id == uuid.UUID(conn_id)).values(
            sync_lock_token="dead-worker", sync_lock_expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()
    assert (await run(env, team, conn_id)).status == "succeeded"


async def test_the_heartbeat_keeps_a_slow_step_leased(env: Env, team: Team) -> None:
    """A step far longer than the lease (a slow platform) keeps the connection: the lease is
    renewed during the step, not only between steps, so a short lease is safe for a live
    run. Another run meanwhile is skipped and told how long the lease still has to go.
    PostgreSQL only: on SQLite the lease is renewed between steps (see run_connection)."""
    if env.db.dialect == "sqlite":
        pytest.skip("SQLite renews the lease between steps only: a concurrent commit would fail the step")
    conn_id = await connected(env, team, "meta_ads", META_SMALL)
    lease = 0.9
    cfg = dataclasses.replace(SyncConfig.from_settings(env.settings), lock_lease_seconds=lease,
                              metrics_chunk_days=366)  # one insights call for the whole backfill
    env.boxes.meta.injector.configure(latency_ms=3000, match="/insights")
    try:
        slow = asyncio.create_task(run(env, team, conn_id, config=cfg))
        await asyncio.sleep(1.5)  # past the first lease, inside the slow step
        assert not slow.done()
        other = await run(env, team, conn_id, config=cfg)
        assert other.status == "skipped" and other.locked_for is not None, other
        assert 0 < other.locked_for <= lease
        first = await slow
    finally:
        env.boxes.meta.injector.reset()
    assert first.status == "succeeded" and first.mode == "backfill", first
    assert len(await runs_of(env, team, conn_id)) == 1
    async with env.owner_db.sessionmaker() as session:
        conn = await session.get(Connection, uuid.UUID(conn_id))
        assert conn is not None and conn.sync_lock_token is None and conn.sync_lock_expires_at is None


async def test_beat_enqueues_due_connections_and_exports_lag(env: Env, team: Team) -> None:
    conn_id = await connected(env, team, "meta_ads", META_SMALL)
    sent: list[dict[str, str]] = []

    def send(name: str, kwargs: dict[str, str]) -> bool:
        assert name == sync.SYNC_TASK
        sent.append(kwargs)
        return True

    await sync.enqueue_due(env.db, enqueue=send)
    assert {"org_id": team.owner.org_id, "connection_id": conn_id, "trigger": "schedule"} in sent
    assert (await run(env, team, conn_id)).status == "succeeded"
    sent.clear()
    report = await sync.enqueue_due(env.db, enqueue=send)
    assert conn_id not in {s["connection_id"] for s in sent}  # next sync is an interval away
    assert report.organizations >= 1
    text = generate_latest(REGISTRY).decode()
    assert 'omnify_sync_lag_seconds{platform="meta_ads"}' in text
    assert 'omnify_sync_rows_total{platform="meta_ads",stream="daily_metrics"}' in text

    # "Sync now" makes it due at once (and nudges the task after commit).
    resp = await env.api.post(team.url("meta_ads", "sync"), headers=team.owner.headers)
    assert resp.status_code == 202, resp.text
    await sync.enqueue_due(env.db, enqueue=send)
    assert conn_id in {s["connection_id"] for s in sent}
