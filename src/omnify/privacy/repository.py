"""Queries on shop privacy requests; every one is scoped to the caller's organization."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.core import db
from omnify.core.pagination import PageParams, keyset
from omnify.privacy.models import PrivacyTopic, ShopPrivacyRequest


async def insert_once(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert unless this request (connection, topic, request key) is already recorded."""
    return await db.insert_once(session, ShopPrivacyRequest, values, ["connection_id", "topic", "request_key"])


async def get(session: AsyncSession, org_id: uuid.UUID, request_id: uuid.UUID) -> ShopPrivacyRequest | None:
    return await session.scalar(select(ShopPrivacyRequest).where(
        ShopPrivacyRequest.org_id == org_id, ShopPrivacyRequest.id == request_id))


async def list_for_client(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, params: PageParams,
                          topic: str | None = None) -> Sequence[ShopPrivacyRequest]:
    stmt = select(ShopPrivacyRequest).where(ShopPrivacyRequest.org_id == org_id,
                                            ShopPrivacyRequest.client_id == client_id)
    if topic:
        stmt = stmt.where(ShopPrivacyRequest.topic == topic)
    return (await session.scalars(keyset(stmt, ShopPrivacyRequest.created_at, ShopPrivacyRequest.id, params))).all()


async def exports_of(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID,
                     customer_external_id: str | None = None) -> Sequence[ShopPrivacyRequest]:
    """Stored exports of one shop (or of one of its customers), to erase with the data."""
    stmt = select(ShopPrivacyRequest).where(
        ShopPrivacyRequest.org_id == org_id, ShopPrivacyRequest.connection_id == connection_id,
        ShopPrivacyRequest.topic == PrivacyTopic.CUSTOMERS_DATA_REQUEST.value,
        ShopPrivacyRequest.storage_key.is_not(None))
    if customer_external_id is not None:
        stmt = stmt.where(ShopPrivacyRequest.customer_external_id == customer_external_id)
    return (await session.scalars(stmt)).all()


async def export_keys_of_client(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> list[str]:
    rows = await session.scalars(select(ShopPrivacyRequest.storage_key).where(
        ShopPrivacyRequest.org_id == org_id, ShopPrivacyRequest.client_id == client_id,
        ShopPrivacyRequest.storage_key.is_not(None)))
    return [key for key in rows if key]
