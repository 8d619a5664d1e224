"""Organizations (tenants), memberships, invitations, API keys and plan quotas."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, JSONType, TenantMixin, TimestampMixin


class Role(enum.StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


ROLE_ENUM = Enum(Role, name="member_role", values_callable=lambda e: [m.value for m in e], native_enum=False,
                 length=16)


class Organization(IdMixin, TimestampMixin, Base):
    """The tenant root. Not itself RLS-protected: access goes through memberships."""

    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    plan: Mapped[str] = mapped_column(String(40), default="free")
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    #: Serializes audit appends per organization (see audit.repository).
    audit_seq: Mapped[int] = mapped_column(default=0)


class Membership(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("org_id", "user_id"),)
    #: A user may read their own memberships across organizations (to list their orgs).
    __rls_extra__ = "user_id = NULLIF(current_setting('app.user_id', true), '')::uuid"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(ROLE_ENUM)


class Invitation(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "invitations"
    __table_args__ = (Index("ix_invitations_org_id_email", "org_id", "email"),)
    __rls_extra__ = "token_hash = current_setting('app.invitation_hash', true)"

    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[Role] = mapped_column(ROLE_ENUM)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    accepted_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"),
                                                             index=True)
    revoked_at: Mapped[datetime | None]


class ApiKey(IdMixin, TimestampMixin, TenantMixin, Base):
    __tablename__ = "api_keys"
    __rls_extra__ = "key_hash = current_setting('app.api_key_hash', true)"

    name: Mapped[str] = mapped_column(String(120))
    prefix: Mapped[str] = mapped_column(String(20), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class OrgQuota(IdMixin, TimestampMixin, TenantMixin, Base):
    """Per-organization overrides of the plan's limits (null = the plan's default)."""

    __tablename__ = "org_quotas"
    __table_args__ = (UniqueConstraint("org_id"),)

    members: Mapped[int | None]
    clients: Mapped[int | None]
    storage_bytes: Mapped[int | None]
    api_calls_per_day: Mapped[int | None]
