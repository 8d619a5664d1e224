"""Shopify: customers and orders into shop_customers/shop_orders (minor units, linked),
incremental by updated_at cursor, a new order and a refund picked up, idempotent reruns,
and the privacy helpers (export / erase one customer) the webhook processors call."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx

from omnify.core.db import bind_tenant
from omnify.integrations.shopify import mapping as shopify_mapping
from omnify.sync import service as sync
from omnify.sync.models import SyncShopCustomer, SyncShopOrder
from tests.integration.connections.conn_support import SHOP, Env, Team, snapshot, tenant_session_rows
from tests.integration.sync.sync_support import connected, run, runs_of


async def test_orders_and_customers_sync_incrementally(env: Env, team: Team) -> None:
    conn_id = await connected(env, team, "shopify", shop=SHOP)
    first = await run(env, team, conn_id)
    assert first.status == "succeeded" and first.mode == "backfill", first

    store = env.boxes.shopify.shops[SHOP].store
    horizon = datetime.now(UTC) - timedelta(days=44)
    expected_orders = {str(o.id): o for o in store.orders.values()
                       if (o.updated_at or o.created_at) >= horizon.replace(hour=0, minute=0, second=0, microsecond=0)}
    orders = {o.external_id: o for o in await tenant_session_rows(env.db, team.owner.org_id, SyncShopOrder)}
    customers = {c.external_id: c for c in await tenant_session_rows(env.db, team.owner.org_id, SyncShopCustomer)}
    assert orders and set(orders) == set(expected_orders)
    for ext, order in orders.items():
        source = expected_orders[ext]
        assert order.total_minor == int(source.total_price * 100) and order.currency == "USD"
        if order.customer_external_id in customers:
            assert order.customer_id == customers[order.customer_external_id].id
    assert any(o.customer_id is not None for o in orders.values())

    snap = await snapshot(env.owner_db, conn_id)
    assert (await run(env, team, conn_id)).rows_written == 0
    assert await snapshot(env.owner_db, conn_id) == snap

    # A new order (Shopify's admin) and a refund of an old one show up in the next run.
    async with httpx.AsyncClient(base_url=env.boxes.url("shopify")) as admin:
        known_customer = sorted(customers)[0]  # already synced, so the webhook can link it
        created = (await admin.post(f"/__sandbox/shops/{SHOP}/orders",
                                    json={"customer_id": int(known_customer)})).json()["order"]
        refunded_id = sorted(orders)[0]
        refunded = (await admin.post(f"/__sandbox/shops/{SHOP}/orders/{refunded_id}/refund", json={})).json()
    # The orders/create webhook's processor stores the new order first (ingest_shop_orders)...
    org = uuid.UUID(team.owner.org_id)
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, org)
        pushed = shopify_mapping.order_from(created, shop_currency="USD")
        assert await sync.ingest_shop_orders(session, org, uuid.UUID(conn_id), [pushed]) == 1
        await session.commit()
    # ... and the sync agrees with it row for row: only the refunded order changes.
    third = await run(env, team, conn_id)
    assert third.status == "succeeded" and third.mode == "incremental"
    assert third.rows_written >= 1
    streams = (await runs_of(env, team, conn_id))[-1].streams
    assert streams["shop_orders"]["written"] == 1
    orders = {o.external_id: o for o in await tenant_session_rows(env.db, team.owner.org_id, SyncShopOrder)}
    assert str(created["id"]) in orders
    assert orders[refunded_id].financial_status == refunded["order"]["financial_status"] == "refunded"


async def test_customer_export_and_erasure(env: Env, team: Team) -> None:
    conn_id = await connected(env, team, "shopify", shop=SHOP)
    assert (await run(env, team, conn_id)).status == "succeeded"
    orders = await tenant_session_rows(env.db, team.owner.org_id, SyncShopOrder)
    target = next(o.customer_external_id for o in orders if o.customer_id is not None)
    assert target is not None
    org = uuid.UUID(team.owner.org_id)
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, org)
        exported = await sync.export_shop_customer(session, org, uuid.UUID(conn_id), target)
        assert exported["customer"]["id"] == target and exported["customer"]["email"]
        assert {o["id"] for o in exported["orders"]} == {o.external_id for o in orders
                                                         if o.customer_external_id == target}
        assert await sync.redact_shop_customer(session, org, uuid.UUID(conn_id), target) == 1
        await session.commit()
        after = await sync.export_shop_customer(session, org, uuid.UUID(conn_id), target)
    assert after == {"customer": None, "orders": []}
    kept = await tenant_session_rows(env.db, team.owner.org_id, SyncShopOrder)
    assert len(kept) == len(orders)  # the shop's sales stay, without the person
