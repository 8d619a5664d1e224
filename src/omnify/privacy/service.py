"""Shopify's mandatory privacy webhooks, carried out on the data Omnify synced from a shop.

Shopify requires every app to honour three requests; what each one does here:

* ``customers/data_request`` -- a shopper asked the merchant for their data. Shopify
  forwards nothing to the shopper: the merchant answers, so we build a JSON export of
  everything we hold on that customer of that shop (profile row and orders), store it
  in object storage and index it in ``shop_privacy_requests``, where an admin fetches it
  (``GET .../privacy-requests/{id}/export``).
* ``customers/redact`` -- erase one shopper: the customer row goes, their orders lose the
  link to them (orders are the shop's revenue and carry no other personal field), and
  any export made for them earlier is deleted too (it is a copy of the same data).
* ``shop/redact`` -- sent 48 hours after an uninstall: every row synced from the shop
  and every export goes.

Each request is recorded once (see :mod:`omnify.privacy.models` for the natural key), so
a re-sent webhook does nothing twice; everything is audited with ids only, never the
shopper's e-mail. The caller (the inbound processor) owns the transaction.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.audit import service as audit
from omnify.clients import service as clients
from omnify.connections.models import Connection
from omnify.core.context import Actor
from omnify.core.db import utcnow
from omnify.core.errors import NotFound
from omnify.core.logging import get_logger
from omnify.core.pagination import PageParams
from omnify.core.storage import Storage, build_object_key
from omnify.files.service import SignedLink, signed_link, storage_for
from omnify.privacy import repository
from omnify.privacy.models import PrivacyStatus, PrivacyTopic, ShopPrivacyRequest
from omnify.settings import Settings
from omnify.sync import service as sync

log = get_logger(__name__)

ACTOR = Actor.system("shopify privacy")
EXPORT_CATEGORY = "privacy"
EXPORT_FORMAT_VERSION = 1


def _shopify_request_id(payload: Mapping[str, Any]) -> str | None:
    data_request = payload.get("data_request")
    if isinstance(data_request, Mapping) and data_request.get("id") is not None:
        return str(data_request["id"])
    return None


def request_key(topic: str, payload: Mapping[str, Any]) -> str:
    """The request's identity: Shopify's ``data_request.id`` when it sends one, else the
    canonical payload (the redact topics carry no id; a re-send has the same body)."""
    shopify_id = _shopify_request_id(payload)
    if shopify_id is not None:
        identity = f"{topic}|id|{shopify_id}"
    else:
        identity = f"{topic}|body|{json.dumps(payload, sort_keys=True, separators=(',', ':'), default=str)}"
    return hashlib.sha256(identity.encode()).hexdigest()


def _customer_id(payload: Mapping[str, Any]) -> str | None:
    customer = payload.get("customer")
    if isinstance(customer, Mapping) and customer.get("id") is not None:
        return str(customer["id"])[:64]
    return None


def _ids(values: Any) -> list[str]:
    return [str(v) for v in values] if isinstance(values, list) else []


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def handle(session: AsyncSession, settings: Settings, conn: Connection, topic: PrivacyTopic,
                 payload: Mapping[str, Any]) -> ShopPrivacyRequest | None:
    """Carry out one privacy request for ``conn``'s shop; ``None`` if it was done before."""
    customer_id = _customer_id(payload)
    if topic is not PrivacyTopic.SHOP_REDACT and customer_id is None:
        raise ValueError(f"{topic.value} payload has no customer.id")
    key = request_key(topic.value, payload)
    shopify_id = _shopify_request_id(payload)
    row_id = uuid.uuid4()
    inserted = await repository.insert_once(session, {
        "id": row_id, "org_id": conn.org_id, "client_id": conn.client_id, "connection_id": conn.id,
        "topic": topic.value, "shop_domain": (conn.shop_domain or str(payload.get("shop_domain") or ""))[:255],
        "customer_external_id": customer_id,
        "shopify_request_id": shopify_id[:64] if shopify_id else None,
        "request_key": key, "status": PrivacyStatus.COMPLETED.value, "rows_affected": 0, "created_at": utcnow(),
    })
    if not inserted:
        log.info("privacy.duplicate", topic=topic.value, connection_id=str(conn.id))
        return None
    row = await repository.get(session, conn.org_id, row_id)
    assert row is not None
    storage = storage_for(settings)
    if topic is PrivacyTopic.CUSTOMERS_DATA_REQUEST:
        assert customer_id is not None
        await _export(session, storage, conn, row, customer_id, payload)
        action = "privacy.customer_data_exported"
    elif topic is PrivacyTopic.CUSTOMERS_REDACT:
        assert customer_id is not None
        await _erase_exports(storage, await repository.exports_of(session, conn.org_id, conn.id, customer_id))
        row.rows_affected = await sync.redact_shop_customer(session, conn.org_id, conn.id, customer_id)
        action = "privacy.customer_redacted"
    else:
        await _erase_exports(storage, await repository.exports_of(session, conn.org_id, conn.id))
        await sync.redact_shop(session, conn.org_id, conn.id)
        action = "privacy.shop_redacted"
    row.completed_at = utcnow()
    await audit.record(session, conn.org_id, ACTOR, action, target_type="shop_privacy_request", target_id=row.id,
                       changes={"connection_id": str(conn.id), "topic": topic.value,
                                "customer_external_id": customer_id, "rows_affected": row.rows_affected})
    await session.flush()
    log.info("privacy.completed", topic=topic.value, connection_id=str(conn.id), rows=row.rows_affected)
    return row


async def _export(session: AsyncSession, storage: Storage, conn: Connection, row: ShopPrivacyRequest,
                  customer_id: str, payload: Mapping[str, Any]) -> None:
    """Write the export under a key derived from the request (a retry overwrites, never
    leaves a second copy behind)."""
    held = await sync.export_shop_customer(session, conn.org_id, conn.id, customer_id)
    document = {
        "format_version": EXPORT_FORMAT_VERSION,
        "generated_at": utcnow().isoformat(),
        "shop_domain": row.shop_domain,
        "customer_id": customer_id,
        "shopify_request_id": row.shopify_request_id,
        "orders_requested": _ids(payload.get("orders_requested")),
        "data_held": held,
    }
    object_key = build_object_key(conn.org_id, conn.client_id, EXPORT_CATEGORY, uuid.UUID(hex=row.request_key[:32]))
    data = json.dumps(document, indent=2, default=str).encode()
    await storage.put_stream(object_key, _one_chunk(data), content_type="application/json")
    row.storage_key = object_key
    row.rows_affected = (1 if held["customer"] is not None else 0) + len(held["orders"])


async def _erase_exports(storage: Storage, exports: Sequence[ShopPrivacyRequest]) -> None:
    for export in exports:
        if export.storage_key:
            await storage.delete(export.storage_key)
        export.storage_key = None
        export.status = PrivacyStatus.EXPORT_ERASED.value


async def delete_client_exports(session: AsyncSession, storage: Storage, org_id: uuid.UUID,
                                client_id: uuid.UUID) -> int:
    """Remove a purged client's export objects (its rows go with the client's by cascade)."""
    keys = await repository.export_keys_of_client(session, org_id, client_id)
    for key in keys:
        await storage.delete(key)
    return len(keys)


# ------------------------------------------------------------------------------ merchant API
async def list_requests(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, params: PageParams,
                        topic: PrivacyTopic | None = None) -> Sequence[ShopPrivacyRequest]:
    await clients.get_client(session, org_id, client_id)
    return await repository.list_for_client(session, org_id, client_id, params, topic.value if topic else None)


async def get_request(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID,
                      request_id: uuid.UUID) -> ShopPrivacyRequest:
    row = await repository.get(session, org_id, request_id)
    if row is None or row.client_id != client_id:
        raise NotFound("Privacy request not found.")
    return row


async def export_link(session: AsyncSession, settings: Settings, actor: Actor, org_id: uuid.UUID,
                      client_id: uuid.UUID, request_id: uuid.UUID) -> SignedLink:
    """A short-lived link to a data request's export; handing out personal data is audited."""
    row = await get_request(session, org_id, client_id, request_id)
    if row.topic != PrivacyTopic.CUSTOMERS_DATA_REQUEST.value:
        raise NotFound("Only customers/data_request requests have an export.", code="no-export")
    if not row.storage_key:
        raise NotFound("This export was erased by a later redaction request.", code="export-erased")
    link = await signed_link(settings, storage_for(settings), row.storage_key,
                             filename=f"shopify-customer-{row.customer_external_id}-data.json",
                             content_type="application/json")
    await audit.record(session, org_id, actor, "privacy.export_downloaded", target_type="shop_privacy_request",
                       target_id=row.id, changes={"customer_external_id": row.customer_external_id})
    await session.commit()
    return link
