"""Who is calling, cached: API keys, users and roles, as immutable facts.

Resolving a caller from the database costs a transaction per request (the key by its hash,
or the user and their membership). These facts change rarely and each change is a commit
of a watched ORM row, so they live in :mod:`omnify.core.invalidation` caches: a few seconds
at most, dropped everywhere as soon as a key is revoked, a user's session version moves
(logout everywhere, password change), a user is disabled or a role changes.

Only positive answers about keys are cached: an unknown key is looked up every time, so
random guesses cannot fill the cache (they are rate limited per IP elsewhere).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.auth import repository as auth_repo
from omnify.auth.models import User
from omnify.core.db import Database, bind_tenant, set_tenant
from omnify.core.invalidation import LocalCache, Target, watch
from omnify.orgs import repository as org_repo
from omnify.orgs.models import ApiKey, Membership, Organization, Role


@dataclass(frozen=True, slots=True)
class KeyFacts:
    id: uuid.UUID
    org_id: uuid.UUID
    scopes: tuple[str, ...]
    label: str
    expires_at: datetime | None
    revoked: bool
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class UserFacts:
    id: uuid.UUID
    email: str
    is_active: bool
    session_version: int
    is_platform_admin: bool


KEYS: LocalCache[str, KeyFacts] = LocalCache("api_keys")
USERS: LocalCache[uuid.UUID, UserFacts] = LocalCache("users")
#: (org, user) -> (role or None,): a 1-tuple, so "not a member" is a cached answer too.
ROLES: LocalCache[tuple[uuid.UUID, uuid.UUID], tuple[Role | None]] = LocalCache("roles")


def _key_targets(key: ApiKey) -> Iterable[Target]:
    return [("api_key", key.key_hash)]


def _user_targets(user: User) -> Iterable[Target]:
    return [("user", str(user.id))]


def _membership_targets(m: Membership) -> Iterable[Target]:
    return [("membership", f"{m.org_id}:{m.user_id}")]


def _org_targets(org: Organization) -> Iterable[Target]:
    return [("org", str(org.id))]


watch(ApiKey, _key_targets)
watch(User, _user_targets)
watch(Membership, _membership_targets)
watch(Organization, _org_targets)


async def key_facts(session: AsyncSession, key_hash: str) -> KeyFacts | None:
    """The API key with this hash. A cache miss reads it in a transaction of its own
    (bound to the hash for row-level security) and ends it, so the request's next
    transaction carries only the organization's settings."""
    facts = KEYS.get(key_hash)
    if facts is not None:
        return facts
    await bind_tenant(session, None, api_key_hash=key_hash)
    key = await org_repo.get_api_key_by_hash(session, key_hash)
    if key is not None:
        facts = KeyFacts(id=key.id, org_id=key.org_id, scopes=tuple(str(s) for s in key.scopes),
                         label=f"{key.prefix} ({key.name})", expires_at=key.expires_at,
                         revoked=key.revoked_at is not None, last_used_at=key.last_used_at)
        KEYS.put(key_hash, facts, [("api_key", key_hash), ("org", str(key.org_id))])
    await session.rollback()
    set_tenant(session, None, api_key_hash=None)
    return facts


def note_key_used(key_hash: str, facts: KeyFacts, when: datetime) -> None:
    """Remember locally that the key was just touched (until the cache entry goes)."""
    KEYS.put(key_hash, KeyFacts(facts.id, facts.org_id, facts.scopes, facts.label, facts.expires_at,
                                facts.revoked, when), [("api_key", key_hash), ("org", str(facts.org_id))])


async def touch_key(db: Database, facts: KeyFacts, when: datetime) -> None:
    """Write ``last_used_at`` in a session of its own, as a plain UPDATE (no ORM event: the
    cached facts stay valid). Runs after the response (a background task)."""
    async with db.sessionmaker() as session:
        await bind_tenant(session, facts.org_id)
        await session.execute(update(ApiKey).where(ApiKey.org_id == facts.org_id, ApiKey.id == facts.id)
                              .values(last_used_at=when).execution_options(synchronize_session=False))
        await session.commit()


async def user_facts(session: AsyncSession, user_id: uuid.UUID) -> UserFacts | None:
    facts = USERS.get(user_id)
    if facts is not None:
        return facts
    user = await auth_repo.get_user(session, user_id)
    if user is None:
        return None
    facts = UserFacts(id=user.id, email=user.email, is_active=user.is_active, session_version=user.session_version,
                      is_platform_admin=user.is_platform_admin)
    USERS.put(user_id, facts, [("user", str(user_id))])
    return facts


async def role_of(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> Role | None:
    """The user's role in the organization, or None; the session must be bound to the org."""
    key = (org_id, user_id)
    cached = ROLES.get(key)
    if cached is not None:
        return cached[0]
    membership = await org_repo.get_membership(session, org_id, user_id)
    role = membership.role if membership is not None else None
    ROLES.put(key, (role,), [("membership", f"{org_id}:{user_id}"), ("user", str(user_id)), ("org", str(org_id))])
    return role
