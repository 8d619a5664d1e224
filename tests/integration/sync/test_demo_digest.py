"""The weekly digest of `omnify up`'s demo organization, with nothing faked (issue 14 item 3):
the demo clients are connected to the sandboxes and synced, the brain runs over what was
synced, one recommendation is applied at the platform, then the Monday beat job queues
the digest and the outbox sends it. Its sections come from the brain, the syncs and the
actions: the real providers, not test stand-ins."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from omnify.actions import service as actions
from omnify.brain_runs import tasks as brain_tasks
from omnify.brain_runs.models import RunTrigger
from omnify.core.context import Actor
from omnify.core.db import Database, bind_tenant, utcnow
from omnify.demo import DEMO_EMAIL, ensure_demo
from omnify.demo_sync import ensure_demo_connections, sandbox_env
from omnify.integrations.sandboxes import RunningSandboxes
from omnify.notifications import digest, service
from omnify.notifications.backends import FileBackend
from omnify.notifications.models import EmailOutbox
from omnify.orgs.models import Role
from omnify.recommendations.models import Recommendation
from tests.conftest import DatabaseUrls, make_settings
from tests.integration.sync.test_sync_demo import _settings_from_env


async def test_weekly_digest_is_sent_for_the_demo_organization(running: RunningSandboxes, db_urls: DatabaseUrls,
                                                               database: Database, owner_database: Database,
                                                               tmp_path: Path, demo_dir: Path) -> None:
    demo = _settings_from_env(make_settings(demo_dir, db_urls), sandbox_env(running))
    await ensure_demo(demo, database)
    # `omnify up` backfills 60 days inline and its worker the rest of the year; the brain
    # compares an ad's recent weeks with its early ones, so give it four months.
    report = await ensure_demo_connections(demo, database, backfill_days=120)
    assert report.errors == [] and report.org_id is not None
    org_id = report.org_id

    for client_id in report.clients.values():  # what the sync's brain task does on the worker
        outcome = await brain_tasks._run_client(database, org_id, client_id, RunTrigger.SYNC, demo)
        assert outcome["status"] == "succeeded", outcome
    async with database.sessionmaker() as session:
        await bind_tenant(session, org_id)
        recs = (await session.scalars(select(Recommendation).where(
            Recommendation.org_id == org_id, Recommendation.status == "open")
            .order_by(Recommendation.confidence.desc()))).all()
        pausable = [r for r in recs if (r.action or {}).get("type") == "pause_ad"]
        assert pausable, "the sandboxes plant fatigued creatives; the brain must find some in the demo"
        actor = Actor(actor_type="user", actor_id=None, label=DEMO_EMAIL, request_id="digest-test")
        applied = await actions.apply(session, demo, org_id, actions.Caller(Role.OWNER, actor), pausable[0].id)
    assert applied.action.status == "applied", applied.action.error

    # The Monday after this week: the digest covers the week in which all of this happened.
    monday = utcnow() + timedelta(days=7)
    assert await digest.queue_all_digests(database.sessionmaker, demo, now=monday) >= 1
    async with owner_database.sessionmaker() as session:
        [mail] = (await session.scalars(select(EmailOutbox).where(
            EmailOutbox.org_id == org_id, EmailOutbox.template == "weekly_digest",
            EmailOutbox.to_email == DEMO_EMAIL))).all()
    sections = {s["title"]: {r["label"]: r["value"] for r in s["rows"]} for s in mail.context["sections"]}
    assert list(sections) == ["Recommendations from the brain", "Spend and data", "Actions"]
    assert int(sections["Recommendations from the brain"]["New this week"].split()[0]) >= len(recs)
    assert sections["Actions"]["Applied"].startswith("1 (1 ")
    spend_rows = [label for label in sections["Spend and data"] if "(" in label]
    assert {label.split(" (")[0] for label in spend_rows} >= {"Meta Ads", "Google Ads", "Tiktok Ads"}
    assert sections["Spend and data"]["Syncs"].startswith(f"{len(report.connected)} succeeded")

    outbox = tmp_path / "mail"
    async with database.sessionmaker() as session:
        assert await service.send_message(session, FileBackend(outbox), service.EmailConfig(), mail.id) == "sent"
    [eml] = list(outbox.iterdir())
    text = eml.read_text()
    for title in sections:
        assert title in text
    assert uuid.UUID(str(org_id)).hex not in text  # people read names, not ids
