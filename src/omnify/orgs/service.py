"""Organizations, memberships, invitations and API keys: the rules.

Rules worth knowing: only an owner can grant or take away ownership; an organization
always keeps at least one owner; invitations hold a member seat while pending; API keys
are shown once and only their SHA-256 is stored.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from omnify.audit import service as audit
from omnify.auth.models import User
from omnify.core.context import Actor
from omnify.core.db import bind_tenant, utcnow
from omnify.core.errors import Conflict, Forbidden, Gone, NotFound, UnprocessableEntity
from omnify.core.pagination import PageParams
from omnify.core.secrets import keyring_cache
from omnify.core.security import invitation_org, new_api_key, new_invitation_token, sha256_hex
from omnify.notifications import service as notifications
from omnify.orgs import quotas, repository
from omnify.orgs.models import ApiKey, Invitation, Membership, Organization, Role
from omnify.settings import Settings


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:60] or "org"


async def _unique_slug(session: AsyncSession, name: str) -> str:
    base = slugify(name)
    slug = base
    while await repository.slug_taken(session, slug):
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


async def create_org(session: AsyncSession, owner: User, name: str, actor: Actor, plan: str = "free") -> Organization:
    org = Organization(id=uuid.uuid4(), name=name, slug=await _unique_slug(session, name), plan=plan, settings={})
    repository.add(session, org)
    await session.flush()
    await bind_tenant(session, org.id, user_id=str(owner.id))
    repository.add(session, Membership(org_id=org.id, user_id=owner.id, role=Role.OWNER))
    await audit.record(session, org.id, actor, "org.created", target_type="organization", target_id=org.id,
                       changes={"name": name, "plan": plan})
    await session.flush()
    return org


async def org_ids_of_user(session: AsyncSession, user_id: uuid.UUID) -> list[uuid.UUID]:
    await bind_tenant(session, None, user_id=str(user_id))
    rows = await repository.memberships_of_user(session, user_id, PageParams(limit=1000))
    return [m.org_id for m, _ in rows]


async def memberships_of(
    session: AsyncSession, user: User, params: PageParams | None = None
) -> Sequence[tuple[Membership, Organization]]:
    await bind_tenant(session, None, user_id=str(user.id))
    return await repository.memberships_of_user(session, user.id, params or PageParams(limit=200))


async def role_of(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> Role | None:
    """The user's role in the organization (None: not a member)."""
    membership = await repository.get_membership(session, org_id, user_id)
    return membership.role if membership is not None else None


async def get_org(session: AsyncSession, org_id: uuid.UUID) -> Organization:
    org = await repository.get_org(session, org_id)
    if org is None:
        raise NotFound("Organization not found.")
    return org


async def update_org(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, *, name: str | None, settings: dict[str, Any] | None
) -> Organization:
    org = await get_org(session, org_id)
    changes: dict[str, Any] = {}
    if name is not None and name != org.name:
        changes["name"] = {"from": org.name, "to": name}
        org.name = name
    if settings is not None and settings != org.settings:
        changes["settings"] = {"from": org.settings, "to": settings}
        org.settings = settings
    if changes:
        await audit.record(session, org_id, actor, "org.updated", target_type="organization", target_id=org_id,
                           changes=changes)
    await session.commit()
    await session.refresh(org)
    return org


# ----------------------------------------------------------------------------- members
async def list_members(
    session: AsyncSession, org_id: uuid.UUID, params: PageParams, role: Role | None = None
) -> Sequence[tuple[Membership, User]]:
    return await repository.list_members(session, org_id, params, role)


async def _membership_or_404(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> Membership:
    membership = await repository.get_membership(session, org_id, user_id)
    if membership is None:
        raise NotFound("Member not found.")
    return membership


async def _keep_an_owner(session: AsyncSession, org_id: uuid.UUID, membership: Membership) -> None:
    if membership.role == Role.OWNER and await repository.count_members(session, org_id, Role.OWNER) <= 1:
        raise Conflict("An organization must keep at least one owner; promote another member first.",
                       code="last-owner")


async def change_role(
    session: AsyncSession, org_id: uuid.UUID, actor_role: Role, actor: Actor, user_id: uuid.UUID, role: Role
) -> tuple[Membership, User]:
    membership = await _membership_or_404(session, org_id, user_id)
    touches_owner = Role.OWNER in (membership.role, role)
    if touches_owner and actor_role != Role.OWNER:
        raise Forbidden("Only an owner can grant or remove the owner role.", code="insufficient-role")
    if membership.role != role:
        if role != Role.OWNER:
            await _keep_an_owner(session, org_id, membership)
        old = membership.role
        membership.role = role
        await audit.record(session, org_id, actor, "member.role_changed", target_type="user", target_id=user_id,
                           changes={"role": {"from": old.value, "to": role.value}})
    await session.commit()
    user = await session.get(User, user_id)
    assert user is not None
    return membership, user


async def remove_member(
    session: AsyncSession, org_id: uuid.UUID, actor_role: Role, actor: Actor, user_id: uuid.UUID
) -> None:
    membership = await _membership_or_404(session, org_id, user_id)
    if membership.role == Role.OWNER and actor_role != Role.OWNER:
        raise Forbidden("Only an owner can remove an owner.", code="insufficient-role")
    await _keep_an_owner(session, org_id, membership)
    await repository.delete(session, membership)
    await audit.record(session, org_id, actor, "member.removed", target_type="user", target_id=user_id,
                       changes={"role": membership.role.value})
    await session.commit()


# ----------------------------------------------------------------------------- invitations
def invitation_status(inv: Invitation) -> str:
    if inv.accepted_at:
        return "accepted"
    if inv.revoked_at:
        return "revoked"
    if inv.expires_at <= utcnow():
        return "expired"
    return "pending"


async def invite(
    session: AsyncSession,
    settings: Settings,
    org_id: uuid.UUID,
    actor_role: Role,
    actor: Actor,
    *,
    email: str,
    role: Role,
) -> Invitation:
    email = email.lower()
    if role == Role.OWNER and actor_role != Role.OWNER:
        raise Forbidden("Only an owner can invite another owner.", code="insufficient-role")
    now = utcnow()
    if await repository.pending_invitation_for_email(session, org_id, email, now):
        raise Conflict("A pending invitation for this e-mail already exists; revoke it to send a new one.",
                       code="invitation-pending")
    existing = await _member_by_email(session, org_id, email)
    if existing:
        raise Conflict("This person is already a member.", code="already-member")
    await quotas.check_quota(session, org_id, "members")
    token = new_invitation_token(org_id)
    inv = Invitation(
        org_id=org_id, email=email, role=role, token_hash=sha256_hex(token),
        invited_by_id=uuid.UUID(actor.actor_id) if actor.actor_type == "user" and actor.actor_id else None,
        expires_at=now + timedelta(seconds=settings.invitation_ttl_seconds),
    )
    repository.add(session, inv)
    await session.flush()
    org = await get_org(session, org_id)
    await notifications.queue_email(
        session, to=email, template="invitation", org_id=org_id, dedupe_key=f"invitation:{inv.id}",
        context={"org_name": org.name, "role": role.value, "inviter": actor.label,
                 "expires_at": inv.expires_at.isoformat()},
        secrets={"token": token, "accept_url": f"{settings.public_base_url}/invitations/accept?token={token}"},
        keyring=await keyring_cache(settings).get(),
    )
    await audit.record(session, org_id, actor, "invitation.created", target_type="invitation", target_id=inv.id,
                       changes={"email": email, "role": role.value})
    await session.commit()
    return inv


async def _member_by_email(session: AsyncSession, org_id: uuid.UUID, email: str) -> Membership | None:
    from omnify.auth import repository as auth_repo  # users are owned by auth

    user = await auth_repo.get_user_by_email(session, email)
    return await repository.get_membership(session, org_id, user.id) if user else None


async def list_invitations(session: AsyncSession, org_id: uuid.UUID, params: PageParams) -> Sequence[Invitation]:
    return await repository.list_invitations(session, org_id, params)


async def revoke_invitation(session: AsyncSession, org_id: uuid.UUID, actor: Actor, invitation_id: uuid.UUID) -> None:
    inv = await repository.get_invitation(session, org_id, invitation_id)
    if inv is None:
        raise NotFound("Invitation not found.")
    if invitation_status(inv) != "pending":
        raise Conflict(f"The invitation is already {invitation_status(inv)}.", code="invitation-not-pending")
    inv.revoked_at = utcnow()
    await audit.record(session, org_id, actor, "invitation.revoked", target_type="invitation", target_id=inv.id,
                       changes={"email": inv.email})
    await session.commit()


@dataclass(frozen=True, slots=True)
class InvitationPreview:
    """What the invitation page shows before anyone signs in (the link is the secret)."""

    org_name: str
    email: str
    role: Role
    status: str


async def invitation_preview(session: AsyncSession, token: str) -> InvitationPreview:
    org_id = invitation_org(token)
    if org_id is None:
        raise NotFound("Invitation not found.", code="invitation-not-found")
    token_hash = sha256_hex(token)
    await bind_tenant(session, org_id, invitation_hash=token_hash)
    inv = await repository.get_invitation_by_hash(session, org_id, token_hash)
    if inv is None:
        raise NotFound("Invitation not found.", code="invitation-not-found")
    org = await get_org(session, org_id)
    return InvitationPreview(org_name=org.name, email=inv.email, role=inv.role, status=invitation_status(inv))


async def accept_invitation(session: AsyncSession, user: User, actor: Actor, token: str) -> Membership:
    org_id = invitation_org(token)
    if org_id is None:
        raise NotFound("Invitation not found.", code="invitation-not-found")
    token_hash = sha256_hex(token)
    await bind_tenant(session, org_id, user_id=str(user.id), invitation_hash=token_hash)
    inv = await repository.get_invitation_by_hash(session, org_id, token_hash)
    if inv is None:
        raise NotFound("Invitation not found.", code="invitation-not-found")
    status = invitation_status(inv)
    if status == "expired":
        raise Gone("This invitation has expired; ask for a new one.", code="invitation-expired")
    if status != "pending":
        raise Conflict(f"This invitation was {status}.", code="invitation-not-pending")
    if inv.email != user.email.lower():
        raise Forbidden("This invitation was sent to another e-mail address.", code="invitation-email-mismatch")
    if await repository.get_membership(session, org_id, user.id):
        raise Conflict("You are already a member of this organization.", code="already-member")
    inv.accepted_at = utcnow()
    inv.accepted_by_id = user.id
    membership = Membership(org_id=org_id, user_id=user.id, role=inv.role)
    repository.add(session, membership)
    await audit.record(session, org_id, actor, "invitation.accepted", target_type="invitation", target_id=inv.id,
                       changes={"email": inv.email, "role": inv.role.value})
    await session.commit()
    return membership


# ----------------------------------------------------------------------------- API keys
async def create_api_key(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, *, name: str, scopes: list[str],
    expires_at: Any = None,
) -> tuple[ApiKey, str]:
    if expires_at is not None and expires_at <= utcnow():
        raise UnprocessableEntity("expires_at must be in the future.", code="validation-error")
    new = new_api_key()
    key = ApiKey(
        org_id=org_id, name=name, prefix=new.prefix, key_hash=new.key_hash, scopes=scopes, expires_at=expires_at,
        created_by_id=uuid.UUID(actor.actor_id) if actor.actor_type == "user" and actor.actor_id else None,
    )
    repository.add(session, key)
    await session.flush()
    await audit.record(session, org_id, actor, "api_key.created", target_type="api_key", target_id=key.id,
                       changes={"name": name, "prefix": new.prefix, "scopes": scopes})
    await session.commit()
    return key, new.token


async def list_api_keys(session: AsyncSession, org_id: uuid.UUID, params: PageParams) -> Sequence[ApiKey]:
    return await repository.list_api_keys(session, org_id, params)


async def revoke_api_key(session: AsyncSession, org_id: uuid.UUID, actor: Actor, key_id: uuid.UUID) -> None:
    key = await repository.get_api_key(session, org_id, key_id)
    if key is None:
        raise NotFound("API key not found.")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await audit.record(session, org_id, actor, "api_key.revoked", target_type="api_key", target_id=key.id,
                           changes={"prefix": key.prefix})
    await session.commit()


#: Expired invitations stay listed (so an admin sees what lapsed and can re-invite) this long.
EXPIRED_INVITATION_GRACE = timedelta(days=30)


async def purge_expired_invitations(session: AsyncSession, org_id: uuid.UUID, now: datetime) -> int:
    """Delete invitations expired more than :data:`EXPIRED_INVITATION_GRACE` ago; the
    session is bound to ``org_id`` and the caller commits. Their history is in the audit log."""
    return await repository.delete_invitations_expired_before(session, org_id, now - EXPIRED_INVITATION_GRACE)
