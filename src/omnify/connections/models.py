"""Platform connections of a client, and the short-lived OAuth authorizations that create them.

A :class:`Connection` is the *product* side of a platform link: which ad accounts the
agency picked, whether the link works, and how far its data has synced. The tokens
themselves live in the encrypted credential store (``platform_credentials``), never here.

The row also carries the sync lease (``sync_lock_token`` / ``sync_lock_expires_at``): a
conditional UPDATE takes it, so at most one sync runs per connection on PostgreSQL and
SQLite alike, and a crashed worker's lease simply expires.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, JSONType, TenantMixin, TimestampMixin


class ConnectionStatus(enum.StrEnum):
    CONNECTED = "connected"
    #: The platform refused the stored authorization (revoked, expired, refresh failed).
    NEEDS_REAUTH = "needs_reauth"
    #: The last check or sync failed for another reason (permission, platform down).
    ERROR = "error"
    DISCONNECTED = "disconnected"


class BackfillStatus(enum.StrEnum):
    NONE = "none"
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Connection(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "connections"
    __table_args__ = (
        UniqueConstraint("client_id", "platform"),
        Index("ix_connections_org_id_client_id", "org_id", "client_id"),
        # run_due: connected connections whose next sync time has come.
        Index("ix_connections_org_id_status_next_sync_at", "org_id", "status", "next_sync_at"),
        # refresh_expiring: tokens about to expire.
        Index("ix_connections_org_id_token_expires_at", "org_id", "token_expires_at"),
    )

    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_profiles.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=ConnectionStatus.CONNECTED.value)
    #: Who authorized on the platform side (Meta user id, TikTok open id, the shop domain).
    external_user_id: Mapped[str | None] = mapped_column(String(255))
    shop_domain: Mapped[str | None] = mapped_column(String(255))
    #: What the authorization can reach: [{id, name, currency, timezone, status}].
    available_accounts: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    selected_account_ids: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    scopes: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    #: When the stored *access* token expires (the refresh job works from this column).
    token_expires_at: Mapped[datetime | None]
    connected_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"),
                                                              index=True)
    connected_at: Mapped[datetime | None]
    disconnected_at: Mapped[datetime | None]
    last_verified_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(1000))
    last_error_code: Mapped[str | None] = mapped_column(String(64))

    # Sync bookkeeping (written by omnify.sync through this domain's service).
    last_synced_at: Mapped[datetime | None]
    last_sync_status: Mapped[str | None] = mapped_column(String(16))
    next_sync_at: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    backfill_status: Mapped[str] = mapped_column(String(16), default=BackfillStatus.NONE.value)
    backfill_days: Mapped[int | None] = mapped_column(Integer)
    backfill_started_at: Mapped[datetime | None]
    backfill_finished_at: Mapped[datetime | None]
    backfill_units_total: Mapped[int] = mapped_column(Integer, default=0)
    backfill_units_done: Mapped[int] = mapped_column(Integer, default=0)
    backfill_rows: Mapped[int] = mapped_column(BigInteger, default=0)
    sync_lock_token: Mapped[str | None] = mapped_column(String(64))
    sync_lock_expires_at: Mapped[datetime | None]
    #: Shopify: the inbound webhook source its orders/app webhooks are delivered to
    #: (omnify.webhooks; no foreign key, that domain migrates on its own branch).
    inbound_source_id: Mapped[uuid.UUID | None]


class OAuthState(IdMixin, TimestampMixin, TenantMixin, Base):
    """One authorization in flight: the server-side half of the signed ``state``.

    The signed state proves *who* started the flow; this row makes it single-use and keeps
    what must never travel through the browser: the PKCE verifier (encrypted under the
    master key ring) and the exact redirect URI the code is bound to.
    """

    __tablename__ = "oauth_states"
    __table_args__ = (Index("ix_oauth_states_org_id_expires_at", "org_id", "expires_at"),)

    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_profiles.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(32))
    #: SHA-256 of the state's nonce; the nonce itself only exists inside the signed state.
    nonce_hash: Mapped[str] = mapped_column(String(64), unique=True)
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    shop_domain: Mapped[str | None] = mapped_column(String(255))
    verifier_blob: Mapped[bytes | None] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime]
    consumed_at: Mapped[datetime | None]
