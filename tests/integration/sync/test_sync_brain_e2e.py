"""The product loop on the sandbox, with nothing in between faked: connect Meta through the
OAuth dance -> a real sync over HTTP writes the normalized tables -> the sync queues the
brain run -> the run (reading those tables) finds a fatigued creative -> apply it with an
Idempotency-Key (twice: one platform write) -> the sandbox shows the ad paused -> the audit
log, the domain events and a real webhook consumer show ``action.applied`` -> the next sync
reads the paused status back -> undo restores the ad at the platform.

Only the broker is absent: the tasks the sync publishes are recorded (conn_support's
``enqueued``) and their bodies run here, as a worker would run them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select

from omnify.brain_runs import tasks as brain_tasks
from omnify.brain_runs.loader import load_client_data
from omnify.brain_runs.models import RunTrigger
from omnify.core.db import Database, bind_tenant
from omnify.events import service as events
from omnify.settings import Settings
from omnify.sync import service as sync_service
from omnify.sync.models import SyncAd
from omnify.webhooks import dispatcher
from omnify.webhooks.models import WebhookDelivery
from tests.conftest import DatabaseUrls
from tests.integration.connections.conn_support import (
    HISTORY_DAYS,
    META_SMALL,
    Enqueued,
    Env,
    Sandboxes,
    Team,
    open_env,
)
from tests.integration.sync.sync_support import connected, run
from tests.integration.webhooks.conftest import Receiver, _serve
from tests.integration.webhooks.test_webhooks_delivery import create_saved_endpoint, dev_config, drive

API = "/api/v1"


@pytest.fixture(scope="module")
async def env(boxes: Sandboxes, settings: Settings, db_urls: DatabaseUrls, database: Database,
              owner_database: Database) -> AsyncIterator[Env]:
    """conn_support's env, backfilling the sandbox's whole history (the brain compares an
    ad's recent weeks with its early ones, so 45 days would hide most fatigue)."""
    async with open_env(boxes, settings, db_urls, database, owner_database,
                        sync_backfill_days=HISTORY_DAYS) as opened:
        yield opened


@pytest.fixture
def consumer() -> Iterator[Receiver]:
    yield from _serve(Receiver())


def org_url(team: Team, *rest: str) -> str:
    return "/".join([f"{API}/orgs/{team.owner.org_id}", *rest])


async def run_queued_brain(env: Env, enqueued: Enqueued, team: Team) -> list[dict[str, Any]]:
    """Run every brain task the sync queued for this client, as the worker would."""
    queued = [kw for kw in await enqueued.named(brain_tasks.RUN_CLIENT_TASK) if kw["client_id"] == team.client_id]
    return [await brain_tasks._run_client(env.db, uuid.UUID(kw["org_id"]), uuid.UUID(kw["client_id"]),
                                          RunTrigger(kw["trigger"])) for kw in queued]


async def synced_status(env: Env, team: Team, external_id: str) -> str:
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, uuid.UUID(team.owner.org_id))
        ad = (await session.scalars(select(SyncAd).where(SyncAd.org_id == uuid.UUID(team.owner.org_id),
                                                         SyncAd.external_id == external_id))).one()
        return ad.status


async def test_sync_brain_apply_undo_on_the_sandbox(env: Env, team: Team, enqueued: Enqueued,
                                                   consumer: Receiver) -> None:
    assert sync_service.BRAIN_RUN_TASK == brain_tasks.RUN_CLIENT_TASK
    org_id = uuid.UUID(team.owner.org_id)
    await create_saved_endpoint(env.db, env.settings, team.owner, consumer.url())

    # 1. Connect and sync for real.
    conn_id = await connected(env, team, "meta_ads", META_SMALL)
    synced = await run(env, team, conn_id)
    assert synced.status == "succeeded" and synced.mode == "backfill" and synced.rows_written > 0, synced

    # The brain's loader reads the synced rows with the names people know (titles use them).
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, org_id)
        loaded = await load_client_data(session, org_id, uuid.UUID(team.client_id), since=date(2000, 1, 1),
                                        until=date(2100, 1, 1), orders_since=date(2000, 1, 1))
    sandbox_account = env.boxes.meta.world.account(META_SMALL)
    assert loaded.ads and {a.account_name for a in loaded.ads.values()} == {sandbox_account.name}

    # 2. The sync queued exactly one brain run for this client; run it.
    [brain] = await run_queued_brain(env, enqueued, team)
    assert brain["status"] == "succeeded" and brain["created"] >= 1, brain
    runs = (await env.api.get(org_url(team, "clients", team.client_id, "brain-runs"),
                              headers=team.viewer.headers)).json()["items"]
    assert [(r["id"], r["trigger"]) for r in runs] == [(brain["run_id"], "sync")]

    # 3. A fatigue recommendation, about a creative the sandbox really made fatigue.
    recs = (await env.api.get(org_url(team, "recommendations"), headers=team.viewer.headers,
                              params={"client_id": team.client_id, "module": "fatigue", "status": "open"})
            ).json()["items"]
    assert recs, "the sandbox plants fatigued creatives; the run over synced rows must find one"
    rec = max(recs, key=lambda r: r["confidence"])
    assert rec["actionable"] and rec["action"]["type"] == "pause_ad" and rec["platform"] == "meta_ads"
    assert rec["action"]["account_id"].removeprefix("act_") == META_SMALL
    assert rec["expected_impact"]["amount_minor"] > 0 and rec["evidence"]["series"]
    external = rec["action"]["entity_id"]
    ad = env.boxes.meta.world.find(external)[2]
    assert ad.creative.fatigue_onset is not None and ad.status == "active"

    # 4. Apply twice with one Idempotency-Key: one write at the platform, one action.
    key = {"Idempotency-Key": f"e2e-{uuid.uuid4()}"}
    apply_url = org_url(team, "recommendations", rec["id"], "apply")
    first = await env.api.post(apply_url, headers={**team.admin.headers, **key})
    second = await env.api.post(apply_url, headers={**team.admin.headers, **key})
    assert first.status_code == second.status_code == 200, first.text
    assert first.json()["id"] == second.json()["id"] and first.json()["status"] == "applied"
    action_id = first.json()["id"]
    assert ad.status == "paused"
    writes = [e for e in env.boxes.meta.journal.entries() if e.method == "POST" and external in e.path]
    assert len(writes) == 1

    # 5. The audit log and the event log show it; a real consumer receives the webhook.
    audit = (await env.api.get(org_url(team, "audit"), headers=team.owner.headers,
                               params={"limit": 200})).json()["items"]
    assert [e for e in audit if e["action"] == "action.applied" and e["target_id"] == action_id]
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, org_id)
        applied = await events.list_for_org(session, org_id, "action.applied")
    assert [e for e in applied if e.payload["action_id"] == action_id]
    async with env.db.sessionmaker() as session:
        assert await dispatcher.dispatch_org(session, env.settings, org_id) >= 1
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, org_id)
        deliveries = (await session.scalars(select(WebhookDelivery).where(
            WebhookDelivery.org_id == org_id, WebhookDelivery.event_type == "action.applied"))).all()
    assert len(deliveries) == 1
    outcome = await drive(env.db, env.settings, dev_config(), team.owner.org_id, [deliveries[0].id])
    assert outcome == {deliveries[0].id: "succeeded"}
    bodies = [json.loads(h.body) for h in consumer.successes().values()]
    [hook] = [b for b in bodies if b["type"] == "action.applied"]
    assert hook["data"]["action_id"] == action_id

    # 6. The next (incremental) sync reads the paused status back into the synced tables.
    again = await run(env, team, conn_id)
    assert again.status == "succeeded" and again.mode == "incremental"
    assert await synced_status(env, team, external) == "paused"

    # 7. Undo restores the ad at the platform.
    undo = await env.api.post(org_url(team, "actions", action_id, "undo"), headers=team.admin.headers)
    assert undo.status_code == 200 and undo.json()["status"] == "undone", undo.text
    assert ad.status == "active"
    assert len([e for e in env.boxes.meta.journal.entries() if e.method == "POST" and external in e.path]) == 2
