"""Processors for Shopify webhooks, run by the inbound framework once per delivery.

Imported by :func:`omnify.webhooks.inbound.processor_for` (listed in its
``PROCESSOR_MODULES``); each processor runs in the transaction that marks the event
processed, so its database writes land exactly once. The source a delivery came through
names the connection (``ref_type="connection"``), which names the organization and client.

* ``orders/create``, ``orders/updated`` -- upsert the order exactly as the sync writes it
  (same mapping, same row key), so the dashboard moves before the next scheduled sync and
  the sync later finds nothing new to write.
* ``app/uninstalled`` -- the shop removed the app: forget the token, stop listening.
* the three privacy topics -- :mod:`omnify.privacy.service`.

A delivery for a connection that no longer exists is acknowledged and dropped (there is
nothing left of it to update or erase); one that cannot be parsed raises, so the
framework retries it and finally marks it failed, where an operator sees it.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from omnify import analytics
from omnify.connections import service as connections
from omnify.connections.models import Connection, ConnectionStatus
from omnify.core.context import Actor
from omnify.core.errors import NotFound
from omnify.core.logging import get_logger
from omnify.integrations.shopify import mapping
from omnify.integrations.shopify.webhooks import Topic
from omnify.privacy import service as privacy
from omnify.privacy.models import PrivacyTopic
from omnify.settings import Settings, get_settings
from omnify.sync import service as sync
from omnify.webhooks.inbound import InboundMessage, Processor, register_processor

log = get_logger(__name__)

PROVIDER = "shopify"
ACTOR = Actor.system("shopify webhooks")


def _settings(message: InboundMessage) -> Settings:
    return message.settings or get_settings()


async def _connection(session: AsyncSession, message: InboundMessage) -> Connection | None:
    if message.ref_type != "connection" or not message.ref_id:
        return None
    try:
        conn = await connections.get_by_id(session, message.org_id, uuid.UUID(message.ref_id))
    except (NotFound, ValueError):
        return None
    if message.account and conn.shop_domain and conn.shop_domain.lower() != message.account:
        log.warning("shopify.webhook_shop_mismatch", connection_id=str(conn.id), topic=message.topic)
        return None
    return conn


def _payload(message: InboundMessage) -> dict[str, object]:
    payload = message.json()
    if not isinstance(payload, dict):
        raise ValueError(f"{message.topic} body is not a JSON object")
    return payload


def _shop_currency(conn: Connection) -> str:
    for account in conn.available_accounts or []:
        if isinstance(account, dict) and account.get("currency"):
            return str(account["currency"])
    return "USD"


async def process_order(session: AsyncSession, message: InboundMessage) -> None:
    conn = await _connection(session, message)
    if conn is None or conn.status == ConnectionStatus.DISCONNECTED.value:
        log.info("shopify.order_webhook_dropped", topic=message.topic, delivery_id=message.delivery_id)
        return
    order = mapping.order_from(_payload(message), shop_currency=_shop_currency(conn))
    written = await sync.ingest_shop_orders(session, conn.org_id, conn.id, [order])
    if written:
        await analytics.invalidate_client(conn.org_id, conn.client_id, _settings(message))
    log.info("shopify.order_ingested", topic=message.topic, connection_id=str(conn.id), rows=written)


async def process_uninstalled(session: AsyncSession, message: InboundMessage) -> None:
    conn = await _connection(session, message)
    if conn is None:
        return
    await connections.platform_revoked(session, conn.org_id, conn.id, ACTOR,
                                       reason="The shop uninstalled the Omnify app on Shopify.")


def _privacy(topic: PrivacyTopic) -> Processor:
    async def process(session: AsyncSession, message: InboundMessage) -> None:
        conn = await _connection(session, message)
        if conn is None:
            log.info("shopify.privacy_no_connection", topic=message.topic, delivery_id=message.delivery_id)
            return
        await privacy.handle(session, _settings(message), conn, topic, _payload(message))

    return process


register_processor(PROVIDER, Topic.ORDERS_CREATE.value, process_order)
register_processor(PROVIDER, Topic.ORDERS_UPDATED.value, process_order)
register_processor(PROVIDER, Topic.APP_UNINSTALLED.value, process_uninstalled)
for _topic in PrivacyTopic:
    register_processor(PROVIDER, _topic.value, _privacy(_topic))
