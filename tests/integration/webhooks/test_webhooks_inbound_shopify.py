"""Shopify inbound webhooks through the real route: HMAC, duplicates, staleness, processing once.

Deliveries are built with ``omnify.integrations.shopify.webhooks.webhook_request``, the
Shopify sandbox's own signer (the integrations layer's implementation, not ours), so the
receiver's verification is checked against an independent signer.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from omnify.audit import service as audit
from omnify.audit.models import AuditLog
from omnify.core.context import Actor
from omnify.core.db import Database, bind_tenant, utcnow
from omnify.integrations.shopify.webhooks import webhook_request
from omnify.settings import Settings
from omnify.webhooks import inbound
from omnify.webhooks.config import WebhookConfig
from omnify.webhooks.inbound import InboundMessage
from omnify.webhooks.models import InboundEvent, InboundSource
from tests.factories import Account

SECRET = "shpss_custom_app_secret_0123456789abcdef"
SHOP = "acme-outdoor.myshopify.com"


async def make_source(database: Database, settings: Settings, who: Account, *, secret: str | None = SECRET,
                      account: str | None = SHOP) -> InboundSource:
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(who.org_id))
        source = await inbound.create_source(s, settings, uuid.UUID(who.org_id), provider="shopify",
                                             name="Acme store", account=account, ref_type="client",
                                             ref_id=str(uuid.uuid4()), secret=secret)
        await s.commit()
    return source


def delivery(topic: str = "orders/create", payload: dict[str, Any] | None = None, *, secret: str = SECRET,
             shop: str = SHOP, webhook_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    return webhook_request(topic=topic, shop_domain=shop, payload=payload or {"id": 450789469, "total": "10.00"},
                           secret=secret, webhook_id=webhook_id or str(uuid.uuid4()))


def path(source: InboundSource) -> str:
    return inbound.receiver_path(source)


async def stored(database: Database, org_id: str) -> list[InboundEvent]:
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(org_id))
        return list((await s.scalars(select(InboundEvent).where(InboundEvent.org_id == uuid.UUID(org_id))
                                     .order_by(InboundEvent.received_at))).all())


@pytest.fixture
async def processed() -> AsyncIterator[list[InboundMessage]]:
    """A processor for orders/create whose effect is an audit entry in the same transaction."""
    seen: list[InboundMessage] = []

    async def on_order(session: Any, message: InboundMessage) -> None:
        order = message.json()
        await audit.record(session, message.org_id, Actor.system("shopify"), "shopify.order_received",
                           target_type="order", target_id=str(order["id"]), changes={"topic": message.topic})
        seen.append(message)

    with inbound.processor_override("shopify", "orders/create", on_order):
        yield seen


async def order_effects(database: Database, org_id: str) -> int:
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(org_id))
        return int(await s.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.org_id == uuid.UUID(org_id), AuditLog.action == "shopify.order_received")) or 0)


async def test_valid_delivery_is_accepted_once_and_processed_once(
    client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings,
    processed: list[InboundMessage], nudges: list[Any],
) -> None:
    source = await make_source(database, settings, owner)
    body, headers = delivery(payload={"id": 1001, "note": "ünïcode"})
    first = await client.post(path(source), content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "accepted"
    again = await client.post(path(source), content=body, headers=headers)  # Shopify retries
    assert again.status_code == 200 and again.json() == {"status": "duplicate", "id": first.json()["id"]}

    rows = await stored(database, owner.org_id)
    assert len(rows) == 1
    event = rows[0]
    assert event.body == body  # the raw bytes, stored before any processing
    assert event.status == "received" and event.topic == "orders/create"
    assert event.delivery_id == headers["X-Shopify-Webhook-Id"]
    assert event.headers["X-Shopify-Shop-Domain"] == SHOP and "X-Shopify-Hmac-Sha256" not in event.headers

    from omnify.notifications import dispatch

    await dispatch.drain()
    assert ("omnify.webhooks.process_inbound", {"event_id": str(event.id), "org_id": owner.org_id}, None) in nudges

    # The task runs (twice: a redelivered message, concurrently): the effect happens once.
    async def process() -> str | None:
        async with database.sessionmaker() as s:
            return await inbound.process_event(s, event.id, uuid.UUID(owner.org_id))

    results = await asyncio.gather(process(), process())
    assert sorted(r or "" for r in results) == ["", "processed"]
    assert await process() is None
    assert await order_effects(database, owner.org_id) == 1
    assert len(processed) == 1
    msg = processed[0]
    assert msg.json() == {"id": 1001, "note": "ünïcode"} and msg.account == SHOP and msg.ref_type == "client"
    assert (await stored(database, owner.org_id))[0].status == "processed"


async def test_invalid_or_missing_hmac_is_401_and_nothing_stored(
    client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings,
) -> None:
    source = await make_source(database, settings, owner)
    body, headers = delivery(secret="the-wrong-secret")
    wrong = await client.post(path(source), content=body, headers=headers)
    assert wrong.status_code == 401
    assert wrong.headers["content-type"].startswith("application/problem+json")
    assert wrong.json()["type"].endswith("invalid-signature")

    body, headers = delivery()
    tampered = await client.post(path(source), content=body.replace(b"10.00", b"99.00"), headers=headers)
    assert tampered.status_code == 401
    missing = await client.post(path(source), content=body,
                                headers={k: v for k, v in headers.items() if k != "X-Shopify-Hmac-Sha256"})
    assert missing.status_code == 401
    garbage = await client.post(path(source), content=body, headers={**headers, "X-Shopify-Hmac-Sha256": "!!not base64!!"})
    assert garbage.status_code == 401
    assert await stored(database, owner.org_id) == []


async def test_stale_unknown_and_mismatched_deliveries_are_refused(
    client: httpx.AsyncClient, owner: Account, outsider: Account, database: Database, settings: Settings,
) -> None:
    source = await make_source(database, settings, owner)
    body, headers = delivery()
    old = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    stale = await client.post(path(source), content=body, headers={**headers, "X-Shopify-Triggered-At": old})
    assert stale.status_code == 400 and stale.json()["type"].endswith("stale-webhook")
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    ahead = await client.post(path(source), content=body, headers={**headers, "X-Shopify-Triggered-At": future})
    assert ahead.status_code == 400
    bad_time = await client.post(path(source), content=body, headers={**headers, "X-Shopify-Triggered-At": "soon"})
    assert bad_time.status_code == 400

    no_id = await client.post(path(source), content=body,
                              headers={k: v for k, v in headers.items() if k != "X-Shopify-Webhook-Id"})
    assert no_id.status_code == 400 and no_id.json()["type"].endswith("malformed-webhook")

    other_shop_body, other_shop = delivery(shop="someone-else.myshopify.com")
    mismatch = await client.post(path(source), content=other_shop_body, headers=other_shop)
    assert mismatch.status_code == 403

    assert (await client.post(f"/api/v1/webhooks/inbound/shopify/{uuid.uuid4()}", content=body,
                              headers=headers)).status_code == 404
    assert (await client.post(f"/api/v1/webhooks/inbound/stripe/{source.id}", content=body,
                              headers=headers)).status_code == 404
    assert (await client.post("/api/v1/webhooks/inbound/shopify/not-a-uuid", content=body,
                              headers=headers)).status_code == 422

    # Another organization's source with the same secret: the delivery lands there, not here.
    theirs = await make_source(database, settings, outsider)
    assert (await client.post(path(theirs), content=body, headers=headers)).status_code == 200
    assert await stored(database, owner.org_id) == []
    assert len(await stored(database, outsider.org_id)) == 1

    async with database.sessionmaker() as s:  # a disabled source answers 404
        await bind_tenant(s, uuid.UUID(owner.org_id))
        await inbound.disable_source(s, uuid.UUID(owner.org_id), source.id)
        await s.commit()
    body, headers = delivery()
    assert (await client.post(path(source), content=body, headers=headers)).status_code == 404


async def test_app_secret_from_settings_and_its_rotation(
    client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings,
) -> None:
    source = await make_source(database, settings, owner, secret=None, account=None)
    body, headers = delivery(secret="app-secret-new")
    # The API's settings have no app secret yet: refused as not configured, not accepted.
    unconfigured = await client.post(path(source), content=body, headers=headers)
    assert unconfigured.status_code == 503

    config = WebhookConfig(shopify_secrets=("app-secret-new", "app-secret-old"))
    for secret in ("app-secret-new", "app-secret-old"):
        body, headers = delivery(secret=secret)
        async with database.sessionmaker() as s:
            received = await inbound.receive(s, settings, config, "shopify", source.id, headers, body)
        assert received.duplicate is False
    assert len(await stored(database, owner.org_id)) == 2


async def test_failures_retry_without_partial_effects_and_unhandled_topics_wait(
    client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings,
) -> None:
    source = await make_source(database, settings, owner)
    calls = {"n": 0}

    async def flaky(session: Any, message: InboundMessage) -> None:
        calls["n"] += 1
        await audit.record(session, message.org_id, Actor.system("shopify"), "shopify.order_received",
                           target_type="order", target_id="1")
        if calls["n"] == 1:
            raise RuntimeError("downstream briefly unavailable")

    with inbound.processor_override("shopify", "orders/create", flaky):
        body, headers = delivery()
        event_id = uuid.UUID((await client.post(path(source), content=body, headers=headers)).json()["id"])
        async with database.sessionmaker() as s:
            assert await inbound.process_event(s, event_id, uuid.UUID(owner.org_id)) == "received"
        assert await order_effects(database, owner.org_id) == 0  # the failed attempt left nothing behind
        event = (await stored(database, owner.org_id))[0]
        assert event.attempts == 1 and event.last_error and "briefly unavailable" in event.last_error
        assert event.next_attempt_at is not None and event.next_attempt_at > utcnow()

        async with database.sessionmaker() as s:  # the retry time has come
            await bind_tenant(s, uuid.UUID(owner.org_id))
            await s.execute(update(InboundEvent).where(InboundEvent.id == event_id)
                            .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
            await s.commit()
        counts = await inbound.process_due(database.sessionmaker)
        assert counts.get("processed", 0) >= 1
        assert await order_effects(database, owner.org_id) == 1

    # A topic nobody handles yet is kept, then processed once a processor exists.
    body, headers = delivery(topic="products/update", payload={"id": 1})
    event_id = uuid.UUID((await client.post(path(source), content=body, headers=headers)).json()["id"])
    async with database.sessionmaker() as s:
        assert await inbound.process_event(s, event_id, uuid.UUID(owner.org_id)) == "unhandled"
    seen: list[str] = []

    async def product_updated(session: Any, message: InboundMessage) -> None:
        seen.append(message.topic)

    with inbound.processor_override("shopify", "*", product_updated):
        async with database.sessionmaker() as s:
            await bind_tenant(s, uuid.UUID(owner.org_id))
            assert await inbound.requeue(s, uuid.UUID(owner.org_id), topic="products/update") == 1
            await s.commit()
        async with database.sessionmaker() as s:
            assert await inbound.process_event(s, event_id, uuid.UUID(owner.org_id)) == "processed"
        assert seen == ["products/update"]


async def test_purge_keeps_the_dedupe_window(
    client: httpx.AsyncClient, owner: Account, database: Database, owner_database: Database, settings: Settings,
) -> None:
    source = await make_source(database, settings, owner)
    old_body, old_headers = delivery(topic="shop/update")
    new_body, new_headers = delivery(topic="shop/update")
    for body, headers in ((old_body, old_headers), (new_body, new_headers)):
        assert (await client.post(path(source), content=body, headers=headers)).status_code == 200
    async with database.sessionmaker() as s:
        await bind_tenant(s, uuid.UUID(owner.org_id))
        await s.execute(update(InboundEvent).where(InboundEvent.delivery_id == old_headers["X-Shopify-Webhook-Id"])
                        .values(status="processed", received_at=utcnow() - timedelta(days=30)))
        await s.commit()
    assert await inbound.purge_processed(database.sessionmaker, WebhookConfig()) >= 1
    remaining = [e.delivery_id for e in await stored(database, owner.org_id)]
    assert remaining == [new_headers["X-Shopify-Webhook-Id"]]
    assert json.loads(new_body)["id"] == 450789469
