"""Platform credentials: one encrypted secret bundle per client and platform."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, JSONType, TenantMixin, TimestampMixin


class PlatformCredential(IdMixin, TimestampMixin, TenantMixin, Base):
    """``secret_blob`` is an :class:`omnify.core.crypto.EncryptedBlob` (binary form) of the
    JSON secret bundle, with associated data binding it to org, client and platform: a
    blob copied into another row does not decrypt. ``master_key_id`` repeats the blob's
    wrapping key id so rotation can find rows still under an old key with an index.
    Nothing else in the row is secret: ``hints`` are masked (at most a quarter shown).
    """

    __tablename__ = "platform_credentials"
    __table_args__ = (
        UniqueConstraint("client_id", "platform"),
        Index("ix_platform_credentials_org_id_client_id", "org_id", "client_id"),
        Index("ix_platform_credentials_org_id_status", "org_id", "status"),
    )

    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("client_profiles.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(32))
    secret_blob: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(64), index=True)
    hints: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    account_id: Mapped[str | None] = mapped_column(String(255))
    scopes: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    expires_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | invalid
    last_verified_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_used_at: Mapped[datetime | None]
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
