"""Outbound webhook endpoints, events, deliveries and attempts; inbound sources and events.

Row-level security: every table is tenant-owned. Background sweeps (due deliveries,
unprocessed inbound events, the dead-letter gauge) must read across organizations, so
their tables' read policy also admits a transaction that set
``app.sweep`` to a list naming the table (see :func:`omnify.core.db.open_sweep`). The
flag is transaction-local and opens that one table for reads and retention deletes only:
an INSERT or UPDATE must still produce rows matching ``app.org_id`` (the policies' WITH
CHECK), so a sweep binds each row's organization before changing it. The
inbound receiver looks its source up before it knows the organization; that read is
bound to the one source id in the URL (``app.inbound_source_id``), the same pattern
the foundation uses for API-key hashes.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, JSONType, TenantMixin, TimestampMixin, utcnow


def sweep_clause(table: str) -> str:
    """Read (and retention-delete) access for a transaction that opened ``table``."""
    return f"'{table}' = ANY(string_to_array(current_setting('app.sweep', true), ','))"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its next attempt
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # dead-lettered: retries exhausted or endpoint disabled; replayable


class InboundStatus(enum.StrEnum):
    RECEIVED = "received"  # stored, waiting for (or being) processed
    PROCESSED = "processed"
    UNHANDLED = "unhandled"  # no processor for this topic (yet); kept for reprocessing
    FAILED = "failed"  # the processor kept failing


#: The endpoint kinds: a customer's receiver (signed Standard Webhooks), or a chat
#: destination whose body is rendered per platform (see :mod:`omnify.webhooks.formats`).
STANDARD = "standard"


class WebhookEndpoint(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_org_id_created_at", "org_id", "created_at"),)

    #: standard | slack_webhook | slack_app | teams_webhook (chat destinations, migration 0171).
    kind: Mapped[str] = mapped_column(String(20), default=STANDARD, server_default=STANDARD)
    #: Per-kind settings, e.g. the Slack channel id of a slack_app destination.
    options: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(500))
    #: Subscribed event types; empty means every event type.
    event_types: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(40))  # manual | failing
    disabled_at: Mapped[datetime | None]
    #: EncryptedBlob bytes of the signing secret (envelope encryption, AAD = org + endpoint).
    secret_blob: Mapped[bytes] = mapped_column(LargeBinary)
    secret_hint: Mapped[str] = mapped_column(String(20))
    #: The secret before the last rotation, still signing until ``previous_secret_expires_at``.
    previous_secret_blob: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_expires_at: Mapped[datetime | None]
    secret_rotated_at: Mapped[datetime | None]
    #: Start of the current unbroken run of failed attempts (null after any success).
    failing_since: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_failure_at: Mapped[datetime | None]


class WebhookEvent(IdMixin, TenantMixin, Base):
    """One message, stored once whatever the number of endpoints it goes to."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_org_id_created_at", "org_id", "created_at"),)
    __rls_extra__ = sweep_clause("webhook_events")

    type: Mapped[str] = mapped_column(String(80))
    version: Mapped[int]
    #: The full envelope as sent: {"type", "version", "id", "created_at", "org_id", "data"}.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(IdMixin, TimestampMixin, TenantMixin, Base):
    """One event for one endpoint; unique so a repeated fan-out cannot send it twice."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_id_created_at", "endpoint_id", "created_at"),
    )
    __rls_extra__ = sweep_clause("webhook_deliveries")

    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True)
    event_type: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    #: Every attempt ever made (numbers the attempt rows).
    attempts: Mapped[int] = mapped_column(default=0)
    #: Attempts in the current retry cycle; a replay starts a new cycle.
    cycle_attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    #: When the attempt in flight claimed the delivery; cleared when its result is recorded.
    #: Still set when the lease (``next_attempt_at``) has lapsed, it is an attempt whose
    #: worker died mid-call: the next claim logs it as lost and counts it (migration 0173).
    attempt_started_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    succeeded_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    replay_count: Mapped[int] = mapped_column(default=0)


class WebhookAttempt(IdMixin, TenantMixin, Base):
    __tablename__ = "webhook_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "number"),)

    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    number: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    url: Mapped[str] = mapped_column(String(2048))
    ip: Mapped[str | None] = mapped_column(String(64))
    success: Mapped[bool]
    status_code: Mapped[int | None]
    duration_ms: Mapped[int]
    #: At most 1 KB of the response body.
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(String(500))


# ------------------------------------------------------------------------------ inbound
class InboundSource(IdMixin, TimestampMixin, TenantMixin, Base):
    """Where a platform delivers to: ``POST /api/v1/webhooks/inbound/{provider}/{id}``.

    Created by the integrations layer when a platform account is connected. ``secret_blob``
    holds a per-source signing secret (e.g. a Shopify custom app's secret); without one the
    provider's app-wide secret from settings is used. ``account`` (e.g. the shop domain),
    when set, must match what the platform says it is.
    """

    __tablename__ = "inbound_webhook_sources"
    #: The receiver reads its one source; the app-wide privacy receiver sweeps (0007).
    __rls_extra__ = ("(id = NULLIF(current_setting('app.inbound_source_id', true), '')::uuid) OR "
                     f"({sweep_clause('inbound_webhook_sources')})")

    provider: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    account: Mapped[str | None] = mapped_column(String(255))
    ref_type: Mapped[str | None] = mapped_column(String(40))
    ref_id: Mapped[str | None] = mapped_column(String(64))
    secret_blob: Mapped[bytes | None] = mapped_column(LargeBinary)
    enabled: Mapped[bool] = mapped_column(default=True)


class InboundEvent(IdMixin, TenantMixin, Base):
    """A verified delivery, stored raw before any processing."""

    __tablename__ = "inbound_webhook_events"
    __table_args__ = (
        UniqueConstraint("source_id", "delivery_id"),
        Index("ix_inbound_webhook_events_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_inbound_webhook_events_org_id_received_at", "org_id", "received_at"),
    )
    __rls_extra__ = sweep_clause("inbound_webhook_events")

    source_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("inbound_webhook_sources.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(40))
    #: The platform's delivery id (X-Shopify-Webhook-Id): the de-duplication key.
    delivery_id: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(120))
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default=InboundStatus.RECEIVED.value)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
