"""`omnify up`'s demo has recommendations waiting that a user can act on (issue 15): on a bare
database, the demo organization is seeded and connected to the sandboxes exactly as `up`
does it (the real OAuth flow, an inline backfill of ``demo_backfill_days``: 60 days), then
the brain runs over what was synced, as the worker's start-up runs do. The inbox must hold
at least one applicable ``pause_ad`` finding: a creative whose CTR wore out inside those
60 days, which the sandbox really made fatigue (its ground truth), with the evidence chart
of the ad's daily CTR around the onset.

A database of its own: the other demo tests share one demo organization whose backfill
depth is whichever test connected it first; this one must see only what `up` syncs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from omnify.brain_runs import tasks as brain_tasks
from omnify.brain_runs.models import RunTrigger
from omnify.core import migrate
from omnify.core.db import Database, bind_tenant
from omnify.demo import ensure_demo
from omnify.demo_sync import ensure_demo_connections, sandbox_env
from omnify.integrations.base import Platform
from omnify.integrations.sandboxes import RunningSandboxes, start_all
from omnify.recommendations.models import Recommendation
from omnify.settings import Settings
from omnify.sync.models import AdMetricDaily
from tests.conftest import DatabaseUrls, _server_url, create_pg_database, drop_pg_database, make_settings
from tests.integration.sync.test_sync_demo import _settings_from_env


@pytest.fixture(scope="module")
def own_sandboxes() -> Iterator[RunningSandboxes]:
    """Sandboxes as `up` starts them, for this module alone (nothing paused by other tests)."""
    sandboxes = start_all(ports=dict.fromkeys(Platform, 0))
    yield sandboxes
    sandboxes.stop()


@pytest.fixture(scope="module")
def bare_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseUrls]:
    server = _server_url()
    if server:
        owner, app = create_pg_database(server, prefix="omnify_demo")
        yield DatabaseUrls(owner=owner, app=app, dialect="postgresql")
        drop_pg_database(server, owner)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('bare-db') / 'omnify.db'}"
        yield DatabaseUrls(owner=url, app=url, dialect="sqlite")


@pytest.fixture(scope="module")
def up_settings(bare_urls: DatabaseUrls, own_sandboxes: RunningSandboxes,
                tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = _settings_from_env(make_settings(tmp_path_factory.mktemp("up-data"), bare_urls),
                                  sandbox_env(own_sandboxes))
    migrate.upgrade(settings)
    return settings


@pytest.fixture(scope="module")
async def bare_db(up_settings: Settings) -> AsyncIterator[Database]:
    db = Database(up_settings)
    yield db
    await db.dispose()


async def test_up_demo_has_an_applicable_recommendation_from_its_synced_days(
        up_settings: Settings, bare_db: Database, own_sandboxes: RunningSandboxes) -> None:
    assert up_settings.demo_backfill_days == 60  # what `omnify up` syncs before it serves
    await ensure_demo(up_settings, bare_db)
    report = await ensure_demo_connections(up_settings, bare_db, backfill_days=up_settings.demo_backfill_days)
    assert report.errors == [] and report.org_id is not None, report.errors
    org_id = report.org_id

    async with bare_db.sessionmaker() as session:
        await bind_tenant(session, org_id)
        first, last = (await session.execute(select(func.min(AdMetricDaily.day), func.max(AdMetricDaily.day))
                                             .where(AdMetricDaily.org_id == org_id))).one()
    first, last = date.fromisoformat(str(first)[:10]), date.fromisoformat(str(last)[:10])
    assert (last - first).days + 1 <= up_settings.demo_backfill_days  # only what `up` synced

    for client_id in report.clients.values():  # the worker's start-up runs, as its task body runs them
        outcome = await brain_tasks._run_client(bare_db, org_id, client_id, RunTrigger.SCHEDULE, up_settings)
        assert outcome["status"] == "succeeded", outcome

    async with bare_db.sessionmaker() as session:
        await bind_tenant(session, org_id)
        recs = (await session.scalars(select(Recommendation).where(
            Recommendation.org_id == org_id, Recommendation.status == "open"))).all()
    pausable = [r for r in recs if (r.action or {}).get("type") == "pause_ad"]
    assert pausable, f"no applicable recommendation in the demo: {sorted({(r.module, r.kind) for r in recs})}"
    assert {r.client_id for r in pausable} == set(report.clients.values())  # every demo client has one waiting

    world = own_sandboxes.sandboxes[Platform.META_ADS].world
    on_meta = [r for r in pausable if r.platform == Platform.META_ADS.value]
    assert on_meta, [r.platform for r in pausable]
    for rec in on_meta:
        ad = world.find(str(rec.action["entity_id"]))[2]
        onset = ad.creative.fatigue_onset  # ground truth: the sandbox made this creative wear out ...
        assert onset is not None and first + timedelta(days=14) <= onset <= last - timedelta(days=12), (onset, first)
        found = date.fromisoformat(rec.evidence["onset_date"])
        assert abs((found - onset).days) <= 7, (found, onset)  # ... from about when the brain says it did
        assert rec.impact_minor and rec.impact_minor > 0 and rec.evidence["ctr_drop"] >= 0.2
        chart = rec.evidence["chart"]  # the ad's daily CTR around the onset, stored with the finding
        assert chart["metric"] == "ctr" and chart["marks"][0]["date"] == rec.evidence["onset_date"]
        assert chart["x"][0] < rec.evidence["onset_date"] < chart["x"][-1]
        ctr = [v for v in chart["series"][0]["values"] if v is not None]
        assert len(ctr) >= 30 and sum(ctr[-7:]) / 7 < 0.8 * sum(ctr[:7]) / 7  # the decline is in the picture
