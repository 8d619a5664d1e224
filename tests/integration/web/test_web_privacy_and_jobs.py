"""Two operator pages: a client's Shopify privacy requests (with the audited export link)
and the platform administrators' dead-letter queue (replay through a real broker, close)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import select, update

from omnify.audit.models import AuditLog
from omnify.auth.models import User
from omnify.connections.models import Connection
from omnify.core.db import Database, bind_tenant
from omnify.jobs import service as jobs
from omnify.jobs.celery_app import create_celery_app
from omnify.jobs.config import JobsSettings
from omnify.jobs.models import FailureStatus, JobFailure
from omnify.jobs.router import default_sender
from omnify.privacy import service as privacy
from omnify.privacy.models import PrivacyTopic
from omnify.settings import Settings
from tests.integration.connections.conn_support import SHOP, Env, boxes, env, new_team  # noqa: F401
from tests.integration.jobs.test_jobs_store import queue_size
from tests.integration.sync.sync_support import connected
from tests.integration.web.web_support import new_web, sign_in

QUEUE = "web-dead-letters"


async def test_privacy_requests_page_lists_and_hands_out_the_audited_export(env: Env) -> None:  # noqa: F811
    team = await new_team(env.api)
    org = uuid.UUID(team.owner.org_id)
    await connected(env, team, "shopify", shop=SHOP)
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, org)
        shop = await session.scalar(select(Connection).where(Connection.org_id == org,
                                                             Connection.platform == "shopify"))
        assert shop is not None
        asked = await privacy.handle(session, env.settings, shop, PrivacyTopic.CUSTOMERS_DATA_REQUEST,
                                     {"shop_domain": SHOP, "customer": {"id": 424242}, "data_request": {"id": 9001}})
        erased = await privacy.handle(session, env.settings, shop, PrivacyTopic.CUSTOMERS_REDACT,
                                      {"shop_domain": SHOP, "customer": {"id": 515151}})
        assert asked is not None and erased is not None
        await session.commit()
    base = f"/orgs/{org}/clients/{team.client_id}/privacy"

    owner = new_web(env.app)
    viewer = new_web(env.app)
    try:
        assert (await sign_in(owner, team.owner.email, team.owner.password)).status_code == 303
        page = await owner.get(base)
        assert page.status_code == 200, page.text[:500]
        assert "customers/data_request" in page.text and "customers/redact" in page.text
        assert f'{base}/{asked.id}/export' in page.text and f'{base}/{erased.id}/export' not in page.text
        only = await owner.get(base, params={"topic": "customers/redact"})
        assert "customers/redact" in only.text and f"request-{asked.id}" not in only.text
        bad = await owner.get(base, params={"topic": "nonsense"})
        assert bad.status_code == 200 and "Unknown topic" in bad.text

        handed = await owner.post(f"{base}/{asked.id}/export")
        assert handed.status_code == 303 and "customer-424242" in handed.headers["location"]
        download = await owner.http.get(handed.headers["location"])
        assert download.status_code == 200 and download.headers["content-type"].startswith("application/json")
        refused = await owner.post(f"{base}/{erased.id}/export")
        assert refused.status_code == 303 and refused.headers["location"].endswith("flash=no-export")
        assert (await owner.post(f"{base}/{asked.id}/export", csrf=False)).status_code == 403
        async with env.owner_db.sessionmaker() as session:
            audited = (await session.scalars(select(AuditLog).where(
                AuditLog.org_id == org, AuditLog.action == "privacy.export_downloaded"))).all()
        assert [a.target_id for a in audited] == [str(asked.id)]

        # The API's permission: a viewer has no audit:read, so neither the link nor the page.
        assert (await sign_in(viewer, team.viewer.email, team.viewer.password)).status_code == 303
        client_page = await viewer.get(f"/orgs/{org}/clients/{team.client_id}/connections")
        assert client_page.status_code == 200 and "Privacy requests" not in client_page.text
        assert (await viewer.get(base)).status_code == 403
    finally:
        await owner.aclose()
        await viewer.aclose()


@pytest.fixture
def broker_app(tmp_path: Path, settings: Settings) -> Iterator[Celery]:
    """A Celery app publishing to an embedded broker file of its own (the replay's target)."""
    app = create_celery_app(settings.model_copy(update={"data_dir": tmp_path, "broker_url": None}),
                            JobsSettings(default_queue=QUEUE))
    yield app
    app.close()


async def _dead_letter(db: Database) -> uuid.UUID:
    rec = jobs.FailureRecord(task_name=f"tests.web.{uuid.uuid4().hex[:8]}", task_id=str(uuid.uuid4()),
                             args=[1], kwargs={"x": "y"}, org_id=None, error_type="ValueError", error="boom",
                             traceback=None, attempts=3, trace_id=None, queue=QUEUE)
    async with db.sessionmaker() as session:
        failure = await session.run_sync(lambda s: jobs.record_failure(s, rec))
        failure_id = failure.id
        await session.commit()
    return failure_id


async def _status(db: Database, failure_id: uuid.UUID) -> str:
    async with db.sessionmaker() as session:
        row = await session.get(JobFailure, failure_id)
        assert row is not None
        return row.status


async def test_platform_admins_replay_and_close_dead_letters(env: Env, broker_app: Celery) -> None:  # noqa: F811
    team = await new_team(env.api)
    async with env.owner_db.sessionmaker() as session:
        await session.execute(update(User).where(User.id == uuid.UUID(team.owner.user_id))
                              .values(is_platform_admin=True))
        await session.commit()
    first, second = await _dead_letter(env.owner_db), await _dead_letter(env.owner_db)
    admin, member = new_web(env.app), new_web(env.app)
    env.app.dependency_overrides[default_sender] = lambda: broker_app
    try:
        assert (await sign_in(admin, team.owner.email, team.owner.password)).status_code == 303
        page = await admin.get("/admin/jobs")
        assert page.status_code == 200, page.text[:500]
        assert f"failure-{first}" in page.text and f"/admin/jobs/{first}/replay" in page.text
        assert 'href="/admin/jobs"' in page.text  # the nav's Admin entry points here
        assert "Unknown status" in (await admin.get("/admin/jobs", params={"status": "zzz"})).text

        before = queue_size(broker_app, QUEUE)
        replayed = await admin.post(f"/admin/jobs/{first}/replay")
        assert replayed.status_code == 303 and replayed.headers["location"].endswith("flash=job-replayed")
        assert queue_size(broker_app, QUEUE) == before + 1 and await _status(env.owner_db, first) == FailureStatus.REPLAYED
        again = await admin.post(f"/admin/jobs/{first}/replay")  # already replayed: refused, not 500
        assert again.status_code == 409 and queue_size(broker_app, QUEUE) == before + 1
        closed = await admin.post(f"/admin/jobs/{second}/resolve")
        assert closed.status_code == 303 and await _status(env.owner_db, second) == FailureStatus.RESOLVED
        waiting = await admin.get("/admin/jobs")
        assert f"failure-{first}" not in waiting.text and f"failure-{second}" not in waiting.text
        everything = await admin.get("/admin/jobs", params={"status": "all"})
        assert f"failure-{first}" in everything.text and f"failure-{second}" in everything.text

        # An organization's owner who is not a platform administrator: refused.
        other = await new_team(env.api)
        assert (await sign_in(member, other.owner.email, other.owner.password)).status_code == 303
        refused = await member.get("/admin/jobs")
        assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
        third = await _dead_letter(env.owner_db)
        await member.get(f"/orgs/{other.owner.org_id}")
        assert (await member.post(f"/admin/jobs/{third}/resolve")).status_code == 403
        assert await _status(env.owner_db, third) == FailureStatus.DEAD
    finally:
        env.app.dependency_overrides.pop(default_sender, None)
        await admin.aclose()
        await member.aclose()
