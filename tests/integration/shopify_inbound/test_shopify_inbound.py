"""Shopify webhooks end to end: the sandbox's signed deliveries, through the receiver
routes, processed by the Shopify processors into the synced tables and the privacy log.

orders/create and orders/updated land before any sync and agree with the next sync row
for row; the three mandatory privacy topics arrive at the app-wide address (as Shopify
sends them) and export, erase one shopper, then erase the shop; app/uninstalled
disconnects. Every step is checked in the database, through the API and in storage.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select

from omnify.audit.models import AuditLog
from omnify.clients import service as clients_service
from omnify.clients.models import ClientProfile
from omnify.connections.models import Connection
from omnify.core.db import bind_tenant, utcnow
from omnify.files.service import storage_for
from omnify.integrations.shopify.webhooks import webhook_request
from omnify.privacy.models import ShopPrivacyRequest
from omnify.sync.models import SyncShopCustomer, SyncShopOrder
from omnify.webhooks import inbound
from omnify.webhooks.models import InboundEvent, InboundSource
from tests.integration.connections.conn_support import API, SHOP, Enqueued, Env, Team, new_team, tenant_session_rows
from tests.integration.sync.sync_support import connected, run, runs_of
from tests.integration.webhooks.conftest import Hit, Receiver

APP_WIDE = f"{API}/webhooks/inbound/shopify"
OTHER_SHOP = "bright-smiles.myshopify.com"
FORWARDED = ("content-type", "x-shopify-topic", "x-shopify-hmac-sha256", "x-shopify-shop-domain",
             "x-shopify-api-version", "x-shopify-webhook-id", "x-shopify-event-id", "x-shopify-triggered-at")


async def forward(env: Env, hit: Hit, **replace: str) -> httpx.Response:
    """Hand the app exactly what the sandbox sent (same path, bytes and signed headers)."""
    headers = {k: v for k, v in hit.headers.items() if k in FORWARDED}
    headers.update({k.lower(): v for k, v in replace.items()})
    return await env.api.post(urlsplit(hit.path).path, content=hit.body, headers=headers)


async def deliver(env: Env, team: Team, relay: Receiver, topic: str) -> list[str]:
    """Forward every relayed delivery of ``topic``; the ids of the events stored for
    ``team`` (the app-wide address also gives a copy to every other organization that
    connected the same shop, e.g. in an earlier test of this module)."""
    ids: list[str] = []
    for hit in [h for h in relay.hits if h.headers.get("x-shopify-topic") == topic]:
        resp = await forward(env, hit)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        ids.extend(body["ids"] if "ids" in body else [body["id"]])
    relay.hits.clear()
    mine = {str(e.id) for e in await tenant_session_rows(env.db, team.owner.org_id, InboundEvent)}
    return [i for i in ids if i in mine]


async def process(env: Env, team: Team, enqueued: Enqueued, event_ids: list[str]) -> list[str | None]:
    """What the worker does with each nudge: ``process_event`` with its settings."""
    nudged = {kw["event_id"] for kw in await enqueued.named(inbound.PROCESS_TASK)}
    assert set(event_ids) <= nudged, "every stored delivery is handed to the worker"
    out = []
    for event_id in event_ids:
        async with env.db.sessionmaker() as session:
            out.append(await inbound.process_event(session, uuid.UUID(event_id), uuid.UUID(team.owner.org_id),
                                                   env.settings))
    return out


async def sandbox(env: Env, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=env.boxes.url("shopify")) as admin:
        resp = await admin.post(f"/__sandbox/shops/{SHOP}/{path}", json=body or {})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def audit_actions(env: Env, team: Team, prefix: str) -> list[str]:
    rows = await tenant_session_rows(env.db, team.owner.org_id, AuditLog)
    return [r.action for r in sorted(rows, key=lambda r: r.seq) if r.action.startswith(prefix)]


async def test_order_webhooks_land_before_the_sync_and_agree_with_it(
    env: Env, team: Team, relay: Receiver, enqueued: Enqueued,
) -> None:
    conn_id = await connected(env, team, "shopify", shop=SHOP)
    assert (await run(env, team, conn_id)).status == "succeeded"
    customers = {c.external_id: c for c in await tenant_session_rows(env.db, team.owner.org_id, SyncShopCustomer)}
    buyer = sorted(customers)[0]

    created = (await sandbox(env, "orders", {"customer_id": int(buyer)}))["order"]
    [hit] = [h for h in relay.hits if h.headers.get("x-shopify-topic") == "orders/create"]
    assert hit.path.startswith(f"{API}/webhooks/inbound/shopify/")  # the per-shop address Omnify registered
    event_ids = await deliver(env, team, relay, "orders/create")
    assert await process(env, team, enqueued, event_ids) == ["processed"]

    orders = {o.external_id: o for o in await tenant_session_rows(env.db, team.owner.org_id, SyncShopOrder)}
    new = orders[str(created["id"])]
    assert new.total_minor == round(float(created["total_price"]) * 100) and new.currency == "USD"
    assert new.customer_external_id == buyer and new.customer_id == customers[buyer].id
    assert new.financial_status == created["financial_status"]

    # Shopify retries the same delivery: acknowledged as a duplicate, stored once.
    again = await forward(env, hit)
    assert again.status_code == 200 and again.json() == {"status": "duplicate", "id": event_ids[0]}

    refunded = (await sandbox(env, f"orders/{created['id']}/refund"))["order"]
    assert await process(env, team, enqueued, await deliver(env, team, relay, "orders/updated")) == ["processed"]
    orders = {o.external_id: o for o in await tenant_session_rows(env.db, team.owner.org_id, SyncShopOrder)}
    assert orders[str(created["id"])].financial_status == refunded["financial_status"] == "refunded"

    # The next sync reads both changes from the API and finds nothing left to write.
    third = await run(env, team, conn_id)
    assert third.status == "succeeded" and third.mode == "incremental"
    assert (await runs_of(env, team, conn_id))[-1].streams["shop_orders"]["written"] == 0


async def test_privacy_webhooks_export_then_erase_a_shopper_then_the_shop(
    env: Env, team: Team, relay: Receiver, enqueued: Enqueued,
) -> None:
    conn_id = await connected(env, team, "shopify", shop=SHOP)
    assert (await run(env, team, conn_id)).status == "succeeded"
    orders = await tenant_session_rows(env.db, team.owner.org_id, SyncShopOrder)
    shopper = next(o.customer_external_id for o in orders if o.customer_id is not None)
    assert shopper is not None
    theirs = {o.external_id for o in orders if o.customer_external_id == shopper}
    base = f"{API}/orgs/{team.owner.org_id}/clients/{team.client_id}/privacy-requests"

    # customers/data_request goes to the app-wide address, like Shopify's compliance webhooks.
    sent = await sandbox(env, "privacy/customers_data_request", {"customer_id": int(shopper),
                                                                 "url": relay.url(APP_WIDE)})
    [hit] = relay.hits
    ids = await deliver(env, team, relay, "customers/data_request")
    assert len(ids) == 1 and await process(env, team, enqueued, ids) == ["processed"]
    # The same request re-sent under a new webhook id (headers are not signed) is not redone.
    resent = await forward(env, hit, **{"X-Shopify-Webhook-Id": str(uuid.uuid4())})
    assert resent.status_code == 200 and resent.json()["status"] == "accepted"
    [again] = set(resent.json()["ids"]) & {str(e.id) for e in await tenant_session_rows(
        env.db, team.owner.org_id, InboundEvent)}
    assert await process(env, team, enqueued, [again]) == ["processed"]

    listed = await env.api.get(base, headers=team.owner.headers)
    assert listed.status_code == 200, listed.text
    [request] = listed.json()["items"]
    assert request["topic"] == "customers/data_request" and request["customer_external_id"] == shopper
    assert request["shopify_request_id"] == str(sent["payload"]["data_request"]["id"])
    assert request["has_export"] is True and request["rows_affected"] == 1 + len(theirs)
    # Guards: admins and owners only, other organizations see nothing, bad ids are 422/404.
    assert (await env.api.get(base)).status_code == 401
    viewer = await env.api.get(base, headers=team.viewer.headers)
    assert viewer.status_code == 403 and viewer.json()["type"].endswith("insufficient-role")
    assert (await env.api.get(f"{base}/{request['id']}/export", headers=team.viewer.headers)).status_code == 403
    for url in (base, f"{base}/{request['id']}", f"{base}/{request['id']}/export"):
        assert (await env.api.get(url, headers=team.outsider.headers)).status_code == 404
    assert (await env.api.get(f"{base}/not-an-id", headers=team.owner.headers)).status_code == 422
    assert (await env.api.get(f"{base}/{uuid.uuid4()}", headers=team.owner.headers)).status_code == 404
    assert (await env.api.get(base, headers=team.owner.headers, params={"topic": "orders/create"})).status_code == 422

    link = await env.api.get(f"{base}/{request['id']}/export", headers=team.admin.headers)
    assert link.status_code == 200, link.text
    url = urlsplit(link.json()["url"])
    download = await env.api.get(f"{url.path}?{url.query}")
    assert download.status_code == 200, download.text[:300]
    assert "attachment" in download.headers["content-disposition"]
    export = json.loads(download.content)
    assert export["customer_id"] == shopper and export["shop_domain"] == SHOP
    assert export["data_held"]["customer"]["id"] == shopper and export["data_held"]["customer"]["email"]
    assert {o["id"] for o in export["data_held"]["orders"]} == theirs
    assert sorted(export["orders_requested"]) == sorted(str(i) for i in sent["payload"]["orders_requested"])

    [row] = await tenant_session_rows(env.db, team.owner.org_id, ShopPrivacyRequest)
    assert row.storage_key and await storage_for(env.settings).exists(row.storage_key)

    # customers/redact: the shopper's row goes, their orders stay unlinked, the export goes too.
    await sandbox(env, "privacy/customers_redact", {"customer_id": int(shopper), "url": relay.url(APP_WIDE)})
    assert await process(env, team, enqueued, await deliver(env, team, relay, "customers/redact")) == ["processed"]
    customers = await tenant_session_rows(env.db, team.owner.org_id, SyncShopCustomer)
    assert shopper not in {c.external_id for c in customers} and customers
    kept = await tenant_session_rows(env.db, team.owner.org_id, SyncShopOrder)
    assert len(kept) == len(orders) and not any(o.customer_external_id == shopper for o in kept)
    gone = await env.api.get(f"{base}/{request['id']}/export", headers=team.owner.headers)
    assert gone.status_code == 404 and gone.json()["type"].endswith("export-erased")
    requests = (await env.api.get(base, headers=team.owner.headers)).json()["items"]
    assert [r["topic"] for r in requests] == ["customers/redact", "customers/data_request"]
    assert requests[1]["status"] == "export_erased" and requests[0]["rows_affected"] == 1
    assert not await storage_for(env.settings).exists(row.storage_key)

    # app/uninstalled (signed by the sandbox's signer) disconnects and stops the per-shop receiver...
    source_path = await _source_path(env, team, conn_id)
    body, headers = webhook_request(topic="app/uninstalled", shop_domain=SHOP, payload={"domain": SHOP},
                                    secret=env.boxes.shopify.api_secret)
    resp = await env.api.post(source_path, content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert await process(env, team, enqueued, [resp.json()["id"]]) == ["processed"]
    view = await env.api.get(team.url("shopify"), headers=team.owner.headers)
    assert view.json()["status"] == "disconnected"
    body, headers = webhook_request(topic="orders/create", shop_domain=SHOP, payload={"id": 1},
                                    secret=env.boxes.shopify.api_secret)
    assert (await env.api.post(source_path, content=body, headers=headers)).status_code == 404

    # ... and 48 hours later shop/redact still reaches the organization and erases the shop.
    await sandbox(env, "privacy/shop_redact", {"url": relay.url(APP_WIDE)})
    assert await process(env, team, enqueued, await deliver(env, team, relay, "shop/redact")) == ["processed"]
    assert await tenant_session_rows(env.db, team.owner.org_id, SyncShopOrder) == []
    assert await tenant_session_rows(env.db, team.owner.org_id, SyncShopCustomer) == []
    assert await audit_actions(env, team, "privacy.") == [
        "privacy.customer_data_exported", "privacy.export_downloaded", "privacy.customer_redacted",
        "privacy.shop_redacted"]
    assert "connection.revoked_by_platform" in await audit_actions(env, team, "connection.")


async def _source_path(env: Env, team: Team, conn_id: str) -> str:
    org = uuid.UUID(team.owner.org_id)
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, org)
        conn = await session.get(Connection, uuid.UUID(conn_id))
        assert conn is not None and conn.inbound_source_id is not None
        return f"{API}/webhooks/inbound/shopify/{conn.inbound_source_id}"


async def test_app_wide_address_fans_out_per_organization_and_refuses_what_it_must(
    env: Env, team: Team, enqueued: Enqueued,
) -> None:
    """(A shop of its own: earlier tests of this module connected SHOP in other orgs.)"""
    other = await new_team(env.api)
    await connected(env, team, "shopify", shop=OTHER_SHOP)
    await connected(env, other, "shopify", shop=OTHER_SHOP)  # a second agency connected the same shop
    secret = env.boxes.shopify.api_secret
    payload = {"shop_id": 1, "shop_domain": OTHER_SHOP, "customer": {"id": 424242}, "orders_to_redact": []}

    body, headers = webhook_request(topic="customers/redact", shop_domain=OTHER_SHOP, payload=payload, secret=secret)
    resp = await env.api.post(APP_WIDE, content=body, headers=headers)
    assert resp.status_code == 200 and resp.json()["status"] == "accepted"
    ids = resp.json()["ids"]
    assert len(ids) == len(set(ids)) >= 2  # (other test modules may have connected this shop too)
    for who in (team, other):
        mine = [e for e in await tenant_session_rows(env.db, who.owner.org_id, InboundEvent)
                if e.topic == "customers/redact"]
        assert len(mine) == 1 and str(mine[0].id) in ids  # each organization holds its own copy
    again = await env.api.post(APP_WIDE, content=body, headers=headers)
    assert again.json() == {"status": "duplicate", "ids": resp.json()["ids"]}

    unknown_body, unknown_headers = webhook_request(topic="shop/redact", shop_domain="nobody.myshopify.com",
                                                    payload={"shop_domain": "nobody.myshopify.com"}, secret=secret)
    ignored = await env.api.post(APP_WIDE, content=unknown_body, headers=unknown_headers)
    assert ignored.status_code == 200 and ignored.json() == {"status": "ignored", "ids": []}

    forged_body, forged_headers = webhook_request(topic="shop/redact", shop_domain=OTHER_SHOP,
                                                  payload={"shop_domain": OTHER_SHOP}, secret="not-the-app-secret")
    forged = await env.api.post(APP_WIDE, content=forged_body, headers=forged_headers)
    assert forged.status_code == 401 and forged.headers["content-type"].startswith("application/problem+json")

    order_body, order_headers = webhook_request(topic="orders/create", shop_domain=OTHER_SHOP, payload={"id": 1},
                                                secret=secret)
    wrong_topic = await env.api.post(APP_WIDE, content=order_body, headers=order_headers)
    assert wrong_topic.status_code == 400 and wrong_topic.json()["type"].endswith("topic-not-accepted")
    assert (await env.api.post(f"{API}/webhooks/inbound/nosuch", content=order_body,
                               headers=order_headers)).status_code == 404

    # Nothing else was stored for the refused deliveries, in either organization.
    for who in (team, other):
        events = await tenant_session_rows(env.db, who.owner.org_id, InboundEvent)
        assert [e.topic for e in events if e.topic != "customers/redact"] == []
        async with env.db.sessionmaker() as session:
            await bind_tenant(session, uuid.UUID(who.owner.org_id))
            sources = await session.scalar(select(func.count()).select_from(InboundSource).where(
                InboundSource.org_id == uuid.UUID(who.owner.org_id)))
        assert sources == 1


async def test_purging_a_client_deletes_its_privacy_exports(
    env: Env, team: Team, relay: Receiver, enqueued: Enqueued,
) -> None:
    conn_id = await connected(env, team, "shopify", shop=SHOP)
    assert (await run(env, team, conn_id)).status == "succeeded"
    shopper = next(c.external_id for c in await tenant_session_rows(env.db, team.owner.org_id, SyncShopCustomer))
    await sandbox(env, "privacy/customers_data_request", {"customer_id": int(shopper), "url": relay.url(APP_WIDE)})
    assert await process(env, team, enqueued, await deliver(env, team, relay, "customers/data_request")) == [
        "processed"]
    [row] = await tenant_session_rows(env.db, team.owner.org_id, ShopPrivacyRequest)
    storage = storage_for(env.settings)
    assert row.storage_key and await storage.exists(row.storage_key)

    client_url = f"{API}/orgs/{team.owner.org_id}/clients/{team.client_id}"
    assert (await env.api.delete(client_url, headers=team.owner.headers)).status_code in (200, 204)
    async with env.owner_db.sessionmaker() as session:  # the 30-day restore window has passed
        client = await session.get(ClientProfile, uuid.UUID(team.client_id))
        assert client is not None
        client.archived_at = utcnow() - timedelta(days=31)
        await session.commit()
    report = await clients_service.purge_archived_clients(env.db, storage)
    assert report.errors == [] and report.clients >= 1 and report.objects >= 1
    assert not await storage.exists(row.storage_key)
    assert await tenant_session_rows(env.db, team.owner.org_id, ShopPrivacyRequest) == []
