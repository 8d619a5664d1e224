"""Users and their refresh-token sessions. Users are global (one person, many orgs)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from omnify.core.db import Base, IdMixin, TimestampMixin


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True)
    is_platform_admin: Mapped[bool] = mapped_column(default=False)
    #: Bumped to invalidate every access token at once (password change, log out everywhere).
    session_version: Mapped[int] = mapped_column(default=0)
    last_login_at: Mapped[datetime | None]
    password_changed_at: Mapped[datetime | None]
    email_opt_out_digest: Mapped[bool] = mapped_column(default=False)


class RefreshToken(IdMixin, TimestampMixin, Base):
    """One link of a rotating refresh-token chain; the chain is the ``family_id``.

    Presenting a token that was already used means it leaked (or a client raced): the
    whole family is revoked, logging out both the thief and the victim.
    """

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_family_id", "family_id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[uuid.UUID]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))


class BrowserSession(IdMixin, TimestampMixin, Base):
    """A signed-in browser: the web app's session, referenced by an HttpOnly cookie.

    Server-side rather than the API's access/refresh pair because a browser makes many
    parallel requests (HTMX polls, several tabs): rotating a refresh token under them
    races into the reuse detection and logs the user out. Only the SHA-256 of the cookie
    value is stored; ``session_version`` is the user's at sign-in, so a password change
    or "log out everywhere" (which bump the user's) ends it without touching this row.
    """

    __tablename__ = "browser_sessions"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    session_version: Mapped[int]
    expires_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    #: The organization last opened, where ``GET /`` lands next time (membership is re-checked).
    last_org_id: Mapped[uuid.UUID | None]
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))


class LoginThrottle(Base):
    """Failed-login bookkeeping for one (e-mail, client address) pair or one e-mail.

    Keyed on what was *typed*, never on whether an account exists, so an unknown address
    is throttled exactly like a real one (no enumeration). Keys are HMACs under the
    secret key: the table does not disclose which addresses were tried. ``known_until``
    marks a pair that signed in successfully: the account-wide threshold does not slow
    it, so a stranger guessing from many addresses cannot lock the owner out.
    """

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    account: Mapped[str] = mapped_column(String(64), index=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failed_at: Mapped[datetime | None]
    blocked_until: Mapped[datetime | None]
    known_until: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(index=True)
