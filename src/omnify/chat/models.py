"""Slack and Microsoft Teams alerts: connections, channels, routes, and linked Slack users.

* ``chat_connections``: one Slack workspace (a Slack app installed with OAuth: its bot
  token, sealed), or one incoming webhook (Slack or Teams: its URL is the secret, sealed).
* ``chat_channels``: a place messages go. Each is backed by a webhook endpoint of its
  kind (``webhook_endpoints.kind``), so delivery is the webhooks engine's: retries,
  ``Retry-After``, dead letters, replay and the attempt log come with it.
* ``chat_routes``: which event kind goes to which channel, for one client or for all.
* ``chat_user_links``: a Slack user (workspace + user id) proven to be an Omnify user
  (through Slack's OAuth), so a button click acts as that user with that user's role.
"""

from __future__ import annotations

import enum
import uuid

from sqlalchemy import ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, TenantMixin, TimestampMixin
from omnify.webhooks import models as _webhooks  # noqa: F401  - webhook_endpoints.id is referenced below


class ChatKind(enum.StrEnum):
    SLACK_APP = "slack_app"
    SLACK_WEBHOOK = "slack_webhook"
    TEAMS_WEBHOOK = "teams_webhook"


class EventKind(enum.StrEnum):
    RECOMMENDATION_CREATED = "recommendation_created"
    RULE_FIRED = "rule_fired"
    ANOMALY = "anomaly"
    SYNC_FAILED = "sync_failed"
    CONNECTION_LOST = "connection_lost"
    GUARDRAIL_HIT = "guardrail_hit"


class ChatConnection(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "chat_connections"
    __table_args__ = (Index("ix_chat_connections_org_id_created_at", "org_id", "created_at"),)

    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    #: EncryptedBlob of the bot token (slack_app) or of the webhook URL (webhook kinds).
    secret_blob: Mapped[bytes] = mapped_column(LargeBinary)
    secret_hint: Mapped[str] = mapped_column(String(80))
    slack_team_id: Mapped[str | None] = mapped_column(String(32), index=True)
    slack_team_name: Mapped[str | None] = mapped_column(String(200))
    slack_bot_user_id: Mapped[str | None] = mapped_column(String(32))
    installed_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)


class ChatChannel(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "chat_channels"
    __table_args__ = (UniqueConstraint("connection_id", "channel_ref"),)

    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chat_connections.id", ondelete="CASCADE"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
                                                   index=True)
    kind: Mapped[str] = mapped_column(String(20))
    #: Slack's channel id (C0123...) for an app; "webhook" for an incoming webhook's own channel.
    channel_ref: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))


class ChatRoute(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "chat_routes"
    __table_args__ = (
        UniqueConstraint("org_id", "channel_id", "event_kind", "client_key"),
        Index("ix_chat_routes_org_id_event_kind", "org_id", "event_kind"),
    )

    channel_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chat_channels.id", ondelete="CASCADE"), index=True)
    event_kind: Mapped[str] = mapped_column(String(32))
    client_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("client_profiles.id", ondelete="CASCADE"),
                                                        index=True)
    #: The client id as text, or "*" for every client (unique constraints ignore NULLs).
    client_key: Mapped[str] = mapped_column(String(36))


class ChatUserLink(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "chat_user_links"
    __table_args__ = (UniqueConstraint("org_id", "slack_team_id", "slack_user_id"),)

    slack_team_id: Mapped[str] = mapped_column(String(32))
    slack_user_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
