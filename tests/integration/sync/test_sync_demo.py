"""`omnify up`'s demo data flow: the demo organization's clients connected to the four
sandboxes (started as `omnify up` starts them) through the real OAuth flow, then backfilled;
running it twice changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from omnify.core.db import Database, bind_tenant
from omnify.demo import ensure_demo
from omnify.demo_sync import DEMO_CLIENTS, ensure_demo_connections, sandbox_env
from omnify.integrations.sandboxes import RunningSandboxes
from omnify.settings import Settings
from omnify.sync.models import AdMetricDaily, SyncShopOrder
from tests.conftest import DatabaseUrls, make_settings
from tests.integration.connections.conn_support import SyncTestSettings, base_values


def _settings_from_env(base: Settings, env: dict[str, str]) -> Settings:
    """What OMNIFY_* variables do to Settings; the test subclass adds the sync knobs
    (look-back 7 days) so a 7-day backfill already covers the look-back window."""
    values: dict[str, Any] = base_values(base)
    values.update({k.removeprefix("OMNIFY_").lower(): v for k, v in env.items()})
    return SyncTestSettings.model_validate(values)


async def test_demo_connects_and_backfills_every_platform(running: RunningSandboxes, settings: Settings,
                                                          db_urls: DatabaseUrls, database: Database,
                                                          tmp_path: Path, demo_dir: Path) -> None:
    demo_settings = _settings_from_env(make_settings(demo_dir, db_urls), sandbox_env(running))
    await ensure_demo(demo_settings, database)
    report = await ensure_demo_connections(demo_settings, database, backfill_days=7)
    assert report.errors == []
    expected = [f"{c}/{p.value}" for c, platforms in DEMO_CLIENTS.items() for p, _a, _s in platforms]
    assert report.connected == expected
    assert all(report.synced[label] > 0 for label in expected), report.synced
    assert report.org_id is not None

    async with database.sessionmaker() as session:
        await bind_tenant(session, report.org_id)
        metrics = await session.scalar(select(func.count()).select_from(AdMetricDaily)
                                       .where(AdMetricDaily.org_id == report.org_id))
        orders = await session.scalar(select(func.count()).select_from(SyncShopOrder)
                                      .where(SyncShopOrder.org_id == report.org_id))
    assert metrics and metrics > 1000 and orders

    # The backfill covered the look-back window (7 days), so a second pass changes nothing.
    again = await ensure_demo_connections(demo_settings, database, backfill_days=7)
    assert again.errors == [] and again.clients == report.clients
    async with database.sessionmaker() as session:
        await bind_tenant(session, report.org_id)
        assert await session.scalar(select(func.count()).select_from(AdMetricDaily)
                                    .where(AdMetricDaily.org_id == report.org_id)) == metrics
