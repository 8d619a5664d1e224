"""Registration, login with brute-force throttling, rotating refresh tokens, passwords."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.audit import service as audit
from omnify.auth import repository, throttle
from omnify.auth.models import RefreshToken, User
from omnify.auth.schemas import TokenOut
from omnify.core.context import Actor
from omnify.core.db import Database, bind_tenant, utcnow
from omnify.core.errors import BadRequest, Conflict, Unauthorized, UnprocessableEntity
from omnify.core.secrets import keyring_cache
from omnify.core.security import (
    InvalidToken,
    create_access_token,
    create_reset_token,
    hash_password,
    new_refresh_token,
    password_needs_rehash,
    password_problems,
    reset_token_matches,
    reset_token_user,
    sha256_hex,
    verify_password,
)
from omnify.notifications import service as notifications
from omnify.orgs import repository as org_repo
from omnify.orgs import service as org_service
from omnify.orgs.models import Organization
from omnify.settings import Settings


def check_password_policy(settings: Settings, password: str, *, email: str, name: str) -> None:
    problems = password_problems(password, settings, [email, email.split("@")[0], name])
    if problems:
        raise UnprocessableEntity(
            "The password " + "; ".join(problems) + ".",
            code="weak-password",
            errors=[{"loc": ["body", "password"], "field": "password", "msg": p, "type": "password_policy"}
                    for p in problems],
        )


async def issue_tokens(
    session: AsyncSession,
    settings: Settings,
    user: User,
    actor: Actor,
    family_id: uuid.UUID | None = None,
) -> TokenOut:
    access, _ = create_access_token(settings, user.id, user.session_version)
    refresh = new_refresh_token()
    repository.add(
        session,
        RefreshToken(
            user_id=user.id,
            family_id=family_id or uuid.uuid4(),
            token_hash=sha256_hex(refresh),
            expires_at=utcnow() + timedelta(seconds=settings.refresh_token_ttl_seconds),
            ip=actor.ip,
            user_agent=(actor.user_agent or "")[:400] or None,
        ),
    )
    return TokenOut(
        access_token=access,
        expires_in=settings.access_token_ttl_seconds,
        refresh_token=refresh,
        refresh_expires_in=settings.refresh_token_ttl_seconds,
    )


@dataclass(slots=True)
class Registration:
    user: User
    org: Organization
    tokens: TokenOut


async def register(
    session: AsyncSession, settings: Settings, actor: Actor, *, email: str, password: str, name: str,
    organization_name: str,
) -> Registration:
    user, org = await create_account(session, settings, actor, email=email, password=password, name=name,
                                     organization_name=organization_name)
    assert org is not None
    tokens = await issue_tokens(session, settings, user, actor)
    await session.commit()
    return Registration(user=user, org=org, tokens=tokens)


async def create_account(
    session: AsyncSession, settings: Settings, actor: Actor, *, email: str, password: str, name: str,
    organization_name: str | None,
) -> tuple[User, Organization | None]:
    """A new user owning a new organization (none when joining by invitation), flushed;
    the caller signs in and commits (API tokens, or a browser session for the web app)."""
    email = email.lower()
    check_password_policy(settings, password, email=email, name=name)
    if await repository.get_user_by_email(session, email):
        raise Conflict("An account with this e-mail already exists; log in instead.", code="email-taken")
    user = User(id=uuid.uuid4(), email=email, name=name, password_hash=hash_password(password),
                password_changed_at=utcnow())
    repository.add(session, user)
    try:
        await session.flush()
    except IntegrityError as exc:  # lost a race with an identical registration
        await session.rollback()
        raise Conflict("An account with this e-mail already exists; log in instead.", code="email-taken") from exc
    user_actor = Actor("user", str(user.id), email, actor.ip, actor.user_agent, actor.request_id)
    if organization_name is None:
        return user, None
    org = await org_service.create_org(session, user, organization_name, user_actor)
    return user, org


async def _audit_everywhere(session: AsyncSession, user: User, actor: Actor, action: str) -> None:
    """Login events are audited in each organization the user belongs to."""
    for org_id in await org_service.org_ids_of_user(session, user.id):
        await bind_tenant(session, org_id, user_id=str(user.id))
        await audit.record(session, org_id, actor, action, target_type="user", target_id=user.id)


async def login(session: AsyncSession, settings: Settings, actor: Actor, *, email: str, password: str) -> TokenOut:
    user = await authenticate(session, settings, actor, email=email, password=password)
    tokens = await issue_tokens(session, settings, user, actor)
    await session.commit()
    return tokens


async def authenticate(session: AsyncSession, settings: Settings, actor: Actor, *, email: str,
                       password: str) -> User:
    """Check the password (throttle, audit) and return the user; the caller signs them in
    (API tokens or a browser session) and commits.

    An unknown e-mail and a wrong password are indistinguishable from outside: the same
    401, the same throttle (auth/throttle.py), a password hash verified either way.
    """
    email = email.lower()
    now = utcnow()
    keys = throttle.keys_for(settings, email, actor.ip)
    await throttle.check(session, settings, keys, now)
    user = await repository.get_user_by_email(session, email)
    if not verify_password(password, user.password_hash if user else None) or user is None or not user.is_active:
        await throttle.failed(session, settings, keys, now)
        if user is not None:
            failed_actor = Actor("user", str(user.id), email, actor.ip, actor.user_agent, actor.request_id)
            await _audit_everywhere(session, user, failed_actor, "auth.login_failed")
        await session.commit()
        raise Unauthorized("E-mail or password is wrong.", code="invalid-credentials")
    await throttle.succeeded(session, keys, now)
    user.last_login_at = now
    if password_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user_actor = Actor("user", str(user.id), email, actor.ip, actor.user_agent, actor.request_id)
    await _audit_everywhere(session, user, user_actor, "auth.login")
    return user


async def refresh(session: AsyncSession, settings: Settings, actor: Actor, token: str) -> TokenOut:
    now = utcnow()
    row = await repository.get_refresh(session, sha256_hex(token), for_update=True)
    if row is None:
        raise Unauthorized("Unknown refresh token.", code="invalid-refresh-token")
    if row.used_at is not None or row.revoked_at is not None:
        # A spent token came back: assume it was stolen and end the whole session family.
        await repository.revoke_family(session, row.family_id, now)
        user = await repository.get_user(session, row.user_id)
        if user and row.used_at is not None:
            reuse_actor = Actor("user", str(user.id), user.email, actor.ip, actor.user_agent, actor.request_id)
            await _audit_everywhere(session, user, reuse_actor, "auth.refresh_reuse_detected")
        await session.commit()
        raise Unauthorized("This refresh token was already used; the session has been revoked.",
                           code="refresh-token-reused")
    if row.expires_at <= now:
        raise Unauthorized("The refresh token has expired; log in again.", code="refresh-token-expired")
    user = await repository.get_user(session, row.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("The account is disabled.", code="invalid-refresh-token")
    row.used_at = now
    tokens = await issue_tokens(session, settings, user, actor, family_id=row.family_id)
    await session.commit()
    return tokens


async def logout(session: AsyncSession, user: User, token: str | None) -> None:
    """End the session family of ``token``; without one, every session of the user."""
    now = utcnow()
    if token:
        row = await repository.get_refresh(session, sha256_hex(token))
        if row is not None and row.user_id == user.id:
            await repository.revoke_family(session, row.family_id, now)
    else:
        await repository.revoke_all_for_user(session, user.id, now)
        user.session_version += 1
    await session.commit()


async def change_password(
    session: AsyncSession, settings: Settings, user: User, actor: Actor, *, current: str, new: str
) -> TokenOut:
    if not verify_password(current, user.password_hash):
        raise Unauthorized("The current password is wrong.", code="invalid-credentials")
    if current == new:
        raise UnprocessableEntity("The new password must differ from the current one.", code="weak-password")
    check_password_policy(settings, new, email=user.email, name=user.name)
    now = utcnow()
    user.password_hash = hash_password(new)
    user.password_changed_at = now
    user.session_version += 1  # every access token issued before now stops working
    await repository.revoke_all_for_user(session, user.id, now)
    await _audit_everywhere(session, user, actor, "auth.password_changed")
    tokens = await issue_tokens(session, settings, user, actor)
    await session.commit()
    return tokens


async def request_password_reset(session: AsyncSession, settings: Settings, email: str) -> None:
    """Queue a reset e-mail if the account exists; the caller answers the same either way."""
    user = await repository.get_user_by_email(session, email.lower())
    if user is None or not user.is_active:
        return
    token, expires = create_reset_token(settings, user.id, user.password_hash)
    await notifications.queue_email(
        session, to=user.email, template="password_reset",
        context={"name": user.name, "expires_at": expires.isoformat()},
        secrets={"reset_url": f"{settings.public_base_url}/reset-password?token={token}", "token": token},
        keyring=await keyring_cache(settings).get(),
    )
    await session.commit()


async def reset_password(session: AsyncSession, settings: Settings, actor: Actor, *, token: str, new: str) -> None:
    try:
        user_id, fingerprint = reset_token_user(settings, token)
    except InvalidToken as exc:
        raise BadRequest("This reset link is invalid or has expired; request a new one.",
                         code="invalid-reset-token") from exc
    user = await repository.get_user(session, user_id)
    if user is None or not user.is_active or not reset_token_matches(fingerprint, user.password_hash):
        raise BadRequest("This reset link is invalid or has expired; request a new one.", code="invalid-reset-token")
    check_password_policy(settings, new, email=user.email, name=user.name)
    now = utcnow()
    user.password_hash = hash_password(new)
    user.password_changed_at = now
    user.session_version += 1
    await throttle.forget(session, settings, user.email, now)
    await repository.revoke_all_for_user(session, user.id, now)
    user_actor = Actor("user", str(user.id), user.email, actor.ip, actor.user_agent, actor.request_id)
    await _audit_everywhere(session, user, user_actor, "auth.password_reset")
    await session.commit()


async def memberships(session: AsyncSession, user: User) -> list[tuple[uuid.UUID, str, str, str]]:
    rows = await org_service.memberships_of(session, user)
    return [(o.id, o.name, o.slug, m.role.value) for m, o in rows]


async def get_org_or_none(session: AsyncSession, org_id: uuid.UUID) -> Organization | None:
    return await org_repo.get_org(session, org_id)


async def update_profile(session: AsyncSession, user: User, *, name: str | None = None,
                         email_opt_out_digest: bool | None = None) -> User:
    """The user's own settings (name, weekly digest opt-out). Commits."""
    if name is not None:
        user.name = name
    if email_opt_out_digest is not None:
        user.email_opt_out_digest = email_opt_out_digest
    await session.commit()
    return user


@dataclass(frozen=True, slots=True)
class PurgeReport:
    refresh_tokens: int
    browser_sessions: int
    login_throttles: int
    invitations: int
    links_redacted: int


async def purge_expired(db: Database, settings: Settings, now: datetime | None = None) -> PurgeReport:
    """The nightly ``omnify.auth.purge_expired``: sign-in material nobody can use any more.

    Expired refresh tokens and browser sessions (revoked ones a day after revocation),
    idle login-throttle rows, invitations expired past their grace period (per
    organization, with its tenant bound, so it works under row-level security), and the
    reset and invitation links left in e-mails of the outbox once they have expired.
    """
    now = now or utcnow()
    async with db.sessionmaker() as session:
        tokens = await repository.purge_refresh_tokens(session, now)
        browsers = await repository.purge_browser_sessions(session, now, now - timedelta(days=1))
        throttles = await repository.purge_throttles(
            session, now - timedelta(seconds=settings.login_lockout_seconds), now)
        links = await notifications.redact_expired_links(session, {
            "password_reset": now - timedelta(seconds=settings.password_reset_ttl_seconds),
            "invitation": now - timedelta(seconds=settings.invitation_ttl_seconds),
        }, lookback=timedelta(days=90))
        await session.commit()
        org_ids = await audit.org_ids(session)
    invitations = 0
    for org_id in org_ids:
        async with db.sessionmaker() as session:
            await bind_tenant(session, org_id)
            invitations += await org_service.purge_expired_invitations(session, org_id, now)
            await session.commit()
    return PurgeReport(tokens, browsers, throttles, invitations, links)
