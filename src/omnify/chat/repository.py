"""All SQL of the chat domain; every method takes the organization."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete as sa_delete
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.chat.models import ChatChannel, ChatConnection, ChatRoute, ChatUserLink
from omnify.webhooks.models import WebhookEndpoint

ALL_CLIENTS = "*"


def add(session: AsyncSession, obj: object) -> None:
    session.add(obj)


async def delete(session: AsyncSession, obj: ChatConnection | ChatChannel | ChatRoute) -> bool:
    """Delete ``obj``'s row now; False when a concurrent request deleted it first.

    A DELETE by primary key rather than ``session.delete``: two requests removing the same
    channel at once both load it, and the ORM's flush would let the second "succeed" (a
    warning, a second audit entry, a 204). The row count tells the caller to answer 404."""
    model = type(obj)
    result = await session.execute(sa_delete(model).where(model.id == obj.id)
                                   .execution_options(synchronize_session=False))
    session.expunge(obj)
    return (getattr(result, "rowcount", 0) or 0) == 1


async def delete_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    await session.delete(endpoint)


async def connections(session: AsyncSession, org_id: uuid.UUID) -> Sequence[ChatConnection]:
    return (await session.scalars(select(ChatConnection).where(ChatConnection.org_id == org_id)
                                  .order_by(ChatConnection.created_at))).all()


async def connection(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID) -> ChatConnection | None:
    return await session.scalar(select(ChatConnection).where(ChatConnection.org_id == org_id,
                                                             ChatConnection.id == connection_id))


async def slack_workspace(session: AsyncSession, org_id: uuid.UUID, team_id: str) -> ChatConnection | None:
    return await session.scalar(select(ChatConnection).where(
        ChatConnection.org_id == org_id, ChatConnection.kind == "slack_app", ChatConnection.slack_team_id == team_id))


async def channels(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID | None = None,
                   kinds: Sequence[str] | None = None) -> Sequence[ChatChannel]:
    stmt = select(ChatChannel).where(ChatChannel.org_id == org_id)
    if connection_id is not None:
        stmt = stmt.where(ChatChannel.connection_id == connection_id)
    if kinds:
        stmt = stmt.where(ChatChannel.kind.in_(list(kinds)))
    return (await session.scalars(stmt.order_by(ChatChannel.created_at))).all()


async def channel(session: AsyncSession, org_id: uuid.UUID, channel_id: uuid.UUID) -> ChatChannel | None:
    return await session.scalar(select(ChatChannel).where(ChatChannel.org_id == org_id, ChatChannel.id == channel_id))


async def endpoints_of(session: AsyncSession, org_id: uuid.UUID, endpoint_ids: Sequence[uuid.UUID]
                       ) -> Sequence[WebhookEndpoint]:
    """The backing endpoints (the webhooks engine's rows) of channels, read for fan-out."""
    if not endpoint_ids:
        return []
    return (await session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.org_id == org_id, WebhookEndpoint.id.in_(list(endpoint_ids)),
        WebhookEndpoint.enabled.is_(True)))).all()


async def routes(session: AsyncSession, org_id: uuid.UUID) -> Sequence[ChatRoute]:
    return (await session.scalars(select(ChatRoute).where(ChatRoute.org_id == org_id)
                                  .order_by(ChatRoute.created_at))).all()


async def route(session: AsyncSession, org_id: uuid.UUID, route_id: uuid.UUID) -> ChatRoute | None:
    return await session.scalar(select(ChatRoute).where(ChatRoute.org_id == org_id, ChatRoute.id == route_id))


async def matching_routes(session: AsyncSession, org_id: uuid.UUID, event_kind: str,
                          client_id: str | None) -> Sequence[ChatRoute]:
    keys = [ALL_CLIENTS] + ([client_id] if client_id else [])
    return (await session.scalars(select(ChatRoute).where(
        ChatRoute.org_id == org_id, ChatRoute.event_kind == event_kind,
        or_(*(ChatRoute.client_key == k for k in keys))))).all()


async def user_link(session: AsyncSession, org_id: uuid.UUID, team_id: str, slack_user_id: str) -> ChatUserLink | None:
    return await session.scalar(select(ChatUserLink).where(
        ChatUserLink.org_id == org_id, ChatUserLink.slack_team_id == team_id,
        ChatUserLink.slack_user_id == slack_user_id))
