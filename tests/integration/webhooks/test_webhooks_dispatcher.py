"""Domain events -> webhook deliveries and alert e-mails, exactly once; the Celery task wrappers."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from omnify.core.db import Database, bind_tenant
from omnify.events import service as events
from omnify.events.models import DomainEvent
from omnify.notifications import runtime
from omnify.notifications.models import EmailOutbox
from omnify.settings import Settings
from omnify.webhooks import dispatcher
from omnify.webhooks.models import WebhookDelivery
from tests.factories import Account, add_member

from .conftest import Receiver
from .test_webhooks_delivery import HOST, create_endpoint, create_saved_endpoint, dev_config, drive


def owner_db(settings: Settings) -> Any:
    """A short-lived owner-role session (bypasses RLS) for assertions."""
    import contextlib

    @contextlib.asynccontextmanager
    async def session() -> Any:
        db = Database(settings, settings.resolved_migration_database_url)
        try:
            async with db.sessionmaker() as s:
                yield s
        finally:
            await db.dispose()

    return session()


async def _emit(database: Database, org_id: str, items: list[tuple[str, dict[str, Any]]]) -> list[uuid.UUID]:
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(org_id))
        ids = [(await events.emit(s, uuid.UUID(org_id), t, p)).id for t, p in items]
        await s.commit()
    return ids


async def test_domain_events_become_webhooks_and_emails_once(
    client: httpx.AsyncClient, owner: Account, database: Database, owner_database: Database, settings: Settings,
    receiver: Receiver,
) -> None:
    admin = await add_member(client, owner, "admin")
    await add_member(client, owner, "member")  # members get no alert e-mails
    endpoint = await create_endpoint(client, owner, receiver.url(host=HOST),
                                     event_types=["client.created", "client.onboarding_completed", "sync.failed"])
    client_id = str(uuid.uuid4())
    emitted = await _emit(database, owner.org_id, [
        ("client.created", {"client_id": client_id, "company_name": "Acme Outdoor", "status": "active"}),
        ("client.onboarding_completed", {"client_id": client_id, "company_name": "Acme Outdoor"}),
        ("sync.failed", {"client_id": client_id, "connection_id": "conn-1", "platform": "meta_ads",
                         "message": "Token expired"}),
        ("sync.failed", {"client_id": client_id, "connection_id": "conn-1", "platform": "meta_ads",
                         "message": "Token expired again"}),
        ("client.purged", {"client_id": client_id}),  # not in the webhook catalogue
    ])

    async with database.sessionmaker() as s:
        assert await dispatcher.dispatch_org(s, settings, uuid.UUID(owner.org_id)) == 5
    async with database.sessionmaker() as s:  # a second run finds nothing left
        assert await dispatcher.dispatch_org(s, settings, uuid.UUID(owner.org_id)) == 0

    async with owner_database.sessionmaker() as s:
        rows = (await s.scalars(select(DomainEvent).where(DomainEvent.id.in_(emitted)))).all()
        assert all(r.dispatched_at is not None for r in rows)
        deliveries = (await s.scalars(select(WebhookDelivery)
                                      .where(WebhookDelivery.org_id == uuid.UUID(owner.org_id)))).all()
        assert sorted(d.event_type for d in deliveries) == ["client.created", "client.onboarding_completed",
                                                             "sync.failed", "sync.failed"]
        assert {d.event_id for d in deliveries} <= set(emitted)  # webhook id = domain event id
        mails = (await s.scalars(select(EmailOutbox).where(EmailOutbox.org_id == uuid.UUID(owner.org_id),
                                                           EmailOutbox.template != "invitation"))).all()
        by_template: dict[str, set[str]] = {}
        for m in mails:
            by_template.setdefault(m.template, set()).add(m.to_email)
        # owners and admins only; the two sync failures of one connection on one day: one e-mail each
        assert by_template == {"onboarding_completed": {owner.email, admin.email},
                               "sync_failing": {owner.email, admin.email}}
        assert len(mails) == 4

    status = await drive(database, settings, dev_config(), owner.org_id, [d.id for d in deliveries])
    assert set(status.values()) == {"succeeded"}
    wh = Webhook(endpoint["secret"])
    payloads = [wh.verify(h.body, h.headers) for h in receiver.successes().values()]
    created = next(p for p in payloads if p["type"] == "client.created")
    assert created["data"] == {"client_id": client_id, "company_name": "Acme Outdoor", "status": "active"}


async def test_dispatch_pending_walks_every_organization(
    client: httpx.AsyncClient, owner: Account, outsider: Account, database: Database, settings: Settings,
) -> None:
    mine = await _emit(database, owner.org_id, [("client.created", {"client_id": "a"})])
    theirs = await _emit(database, outsider.org_id, [("client.created", {"client_id": "b"})])
    assert await dispatcher.dispatch_pending(database.sessionmaker, settings) >= 2
    for org_id, ids in ((owner.org_id, mine), (outsider.org_id, theirs)):
        async with database.sessionmaker() as s:
            await bind_tenant(s, uuid.UUID(org_id))
            row = await s.get(DomainEvent, ids[0])
            assert row is not None and row.dispatched_at is not None


class FutureSettings(Settings):
    """Settings with the webhook fields this area asks the lead to declare."""

    webhook_allowed_hosts: list[str] = []
    webhook_retry_schedule: list[float] = []


async def test_task_wrappers_run_the_services(
    client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings, receiver: Receiver,
    nudges: list[Any],
) -> None:
    """The Celery tasks, executed in-process (eagerly) against the test database, resolving
    ``localhost`` with the system resolver (allowed by the development allow-list)."""
    from omnify.jobs.celery_app import celery_app
    from omnify.webhooks import tasks

    assert {"omnify.webhooks.deliver", "omnify.webhooks.redeliver_due", "omnify.webhooks.dispatch_events",
            "omnify.webhooks.process_inbound", "omnify.webhooks.process_inbound_due",
            "omnify.webhooks.purge"} <= set(celery_app.tasks)
    receiver.fail_first = 1
    await create_saved_endpoint(database, settings, owner, f"http://localhost:{receiver.port}/task")
    await _emit(database, owner.org_id, [("client.created", {"client_id": "task"})])
    task_settings = FutureSettings(**{**settings.model_dump(), "webhook_allowed_hosts": ["localhost"],
                                      "webhook_retry_schedule": [0, 0.2]})
    with runtime.use_settings(task_settings):
        assert await asyncio.to_thread(lambda: tasks.dispatch_events.run()) >= 1
        async with owner_db(settings) as s:
            mine = (await s.scalars(select(WebhookDelivery.id)
                                    .where(WebhookDelivery.org_id == uuid.UUID(owner.org_id)))).one()
        assert await asyncio.to_thread(lambda: tasks.redeliver_due.run()) >= 1
        kwargs = {"delivery_id": str(mine), "org_id": owner.org_id}
        assert ("omnify.webhooks.deliver", kwargs, None) in nudges

        first = await asyncio.to_thread(lambda: tasks.deliver.run(**kwargs))
        assert first == {"status": "pending", "success": False}
        name, again, countdown = nudges[-1]  # the retry, queued with a countdown by the task
        assert (name, again) == ("omnify.webhooks.deliver", kwargs) and countdown is not None and countdown <= 0.25
        await asyncio.sleep(0.25)
        second = await asyncio.to_thread(lambda: tasks.deliver.run(**kwargs))
        assert second == {"status": "succeeded", "success": True}
        assert len(receiver.hits) == 2
        assert await asyncio.to_thread(lambda: tasks.purge.run()) == {"inbound": 0, "outbound": 0}


async def test_an_endpoint_added_later_does_not_receive_older_events(
    client: httpx.AsyncClient, owner: Account, database: Database, owner_database: Database, settings: Settings,
    receiver: Receiver,
) -> None:
    """An event still in the outbox when an endpoint is saved happened before that endpoint
    existed: the endpoint gets what happens afterwards, not that history."""
    before = await _emit(database, owner.org_id, [("client.created", {"client_id": str(uuid.uuid4()),
                                                                        "company_name": "Earlier", "status": "active"})])
    await create_endpoint(client, owner, receiver.url(host=HOST), event_types=["client.created"])
    after = await _emit(database, owner.org_id, [("client.created", {"client_id": str(uuid.uuid4()),
                                                                       "company_name": "Later", "status": "active"})])
    async with database.sessionmaker() as s:
        assert await dispatcher.dispatch_org(s, settings, uuid.UUID(owner.org_id)) == 2
    async with owner_database.sessionmaker() as s:
        delivered = (await s.scalars(select(WebhookDelivery.event_id)
                                     .where(WebhookDelivery.org_id == uuid.UUID(owner.org_id)))).all()
    assert list(delivered) == after and before[0] not in delivered
