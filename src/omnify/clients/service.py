"""Business rules of client profiles: uniqueness, quota, soft deletion and purge.

Deletion is soft: an archived client keeps its files, credentials and ideas and can be
restored for :data:`RESTORE_WINDOW`; after that :func:`purge_archived_clients` (a
scheduled job) removes its stored objects first and its rows second, so a purge that
fails half-way is simply run again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.audit import service as audit
from omnify.clients import repository
from omnify.clients.models import ClientProfile, ClientStatus
from omnify.clients.schemas import ClientCreateIn, ClientUpdateIn
from omnify.clients.validators import name_key
from omnify.core.context import Actor
from omnify.core.db import Database, bind_tenant, utcnow
from omnify.core.errors import Conflict, NotFound
from omnify.core.pagination import PageParams
from omnify.events import service as events
from omnify.orgs import quotas

if TYPE_CHECKING:
    from omnify.core.storage import Storage

log = structlog.get_logger(__name__)

RESTORE_WINDOW = timedelta(days=30)
#: Profile fields whose changes are worth an audit line (all of them but the noise).
_AUDITED = ("company_name", "industry", "website", "contact_name", "contact_email", "contact_phone",
            "timezone", "currency", "status", "tags")


class ClientArchived(Conflict):
    code, title = "client-archived", "Client is archived"


class DuplicateClientName(Conflict):
    code, title = "duplicate-client-name", "Client name already in use"


def user_id_of(actor: Actor) -> uuid.UUID | None:
    if actor.actor_type == "user" and actor.actor_id:
        return uuid.UUID(actor.actor_id)
    return None


def purge_after(client: ClientProfile) -> datetime | None:
    return client.archived_at + RESTORE_WINDOW if client.archived_at else None


async def _count_live(session: AsyncSession, org_id: uuid.UUID) -> int:
    return await repository.count_live(session, org_id)


# Live clients count against the plan; archived ones do not (they cannot be used).
quotas.register_usage("clients", _count_live)


async def _progress_changed(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, actor: Actor) -> None:
    # Late import: onboarding reads this domain, so a module-level import would be circular.
    from omnify.onboarding import service as onboarding

    await onboarding.refresh(session, org_id, client_id, actor)


# ------------------------------------------------------------------------------- reads
async def get_client(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> ClientProfile:
    client = await repository.get(session, org_id, client_id)
    if client is None:
        raise NotFound("Client not found.")
    return client


async def get_live_client(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> ClientProfile:
    """The client, refusing an archived one: its sub-resources are frozen until restored."""
    client = await get_client(session, org_id, client_id)
    if client.archived_at is not None:
        raise ClientArchived("The client is archived; restore it before changing it.")
    return client


async def list_clients(
    session: AsyncSession,
    org_id: uuid.UUID,
    params: PageParams,
    *,
    search: str | None = None,
    status: ClientStatus | None = None,
    industry: str | None = None,
    include_archived: bool = False,
) -> list[ClientProfile]:
    term = name_key(search) if search else None
    return list(await repository.list_clients(session, org_id, params, search=term or None, status=status,
                                              industry=industry, include_archived=include_archived))


# ------------------------------------------------------------------------------ writes
def _apply(client: ClientProfile, values: dict[str, Any]) -> dict[str, Any]:
    """Copy validated values onto the row; return the audited before/after pairs."""
    changes: dict[str, Any] = {}
    for name, value in values.items():
        attr = "extra" if name == "metadata" else name
        before = getattr(client, attr)
        if before == value:
            continue
        setattr(client, attr, value)
        if name == "company_name":
            client.name_key = name_key(value)
        if name in _AUDITED:
            changes[name] = {"from": before, "to": value}
        else:
            changes[name] = "changed"
    return changes


def _values(body: ClientCreateIn | ClientUpdateIn) -> dict[str, Any]:
    data = body.model_dump(mode="json", exclude_unset=True)
    if "brand" in data and data["brand"] is None:
        data["brand"] = {}
    for key in ("tags",):
        if key in data and data[key] is None:
            data[key] = []
    if "metadata" in data and data["metadata"] is None:
        data["metadata"] = {}
    return data


async def create_client(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, body: ClientCreateIn
) -> ClientProfile:
    await repository.lock_org(session, org_id)
    await quotas.check_quota(session, org_id, "clients")
    key = name_key(body.company_name)
    if await repository.live_name_taken(session, org_id, key):
        raise DuplicateClientName(f"A client named {body.company_name!r} already exists in this organization.")
    values = _values(body)
    client = ClientProfile(
        id=uuid.uuid4(), org_id=org_id, company_name=body.company_name, name_key=key,
        status=values.pop("status", None) or ClientStatus.ACTIVE.value, brand={}, tags=[], extra={},
        created_by_id=user_id_of(actor),
    )
    values.pop("company_name", None)
    _apply(client, values)
    repository.add(session, client)
    await _flush_unique(session, body.company_name)
    await audit.record(session, org_id, actor, "client.created", target_type="client", target_id=client.id,
                       changes={"company_name": client.company_name})
    await events.emit(session, org_id, "client.created",
                      {"client_id": client.id, "company_name": client.company_name, "status": client.status})
    await _progress_changed(session, org_id, client.id, actor)
    await session.commit()
    return client


async def _flush_unique(session: AsyncSession, company_name: str) -> None:
    """The partial unique index is the real guard against two concurrent creates."""
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise DuplicateClientName(
            f"A client named {company_name!r} already exists in this organization."
        ) from None


async def update_client(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID, body: ClientUpdateIn
) -> ClientProfile:
    client = await get_live_client(session, org_id, client_id)
    values = _values(body)
    if "company_name" in values:
        key = name_key(values["company_name"])
        if key != client.name_key and await repository.live_name_taken(session, org_id, key, exclude_id=client.id):
            raise DuplicateClientName(f"A client named {values['company_name']!r} already exists.")
    changes = _apply(client, values)
    if not changes:
        return client
    await _flush_unique(session, client.company_name)
    await audit.record(session, org_id, actor, "client.updated", target_type="client", target_id=client.id,
                       changes=changes)
    await _progress_changed(session, org_id, client.id, actor)
    await session.commit()
    return client


async def archive_client(session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID) -> None:
    client = await get_client(session, org_id, client_id)
    if client.archived_at is not None:
        return  # idempotent: DELETE twice is still "deleted"
    now = utcnow()
    client.status_before_archive = client.status
    client.status = ClientStatus.ARCHIVED.value
    client.archived_at = now
    await audit.record(session, org_id, actor, "client.archived", target_type="client", target_id=client.id,
                       changes={"purge_after": (now + RESTORE_WINDOW).isoformat()})
    await events.emit(session, org_id, "client.archived",
                      {"client_id": client.id, "purge_after": now + RESTORE_WINDOW})
    await session.commit()


async def restore_client(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID
) -> ClientProfile:
    await repository.lock_org(session, org_id)
    client = await get_client(session, org_id, client_id)
    if client.archived_at is None:
        return client
    if await repository.live_name_taken(session, org_id, client.name_key, exclude_id=client.id):
        raise DuplicateClientName(
            f"Another live client is now named {client.company_name!r}; rename it before restoring this one."
        )
    await quotas.check_quota(session, org_id, "clients")
    client.archived_at = None
    client.status = client.status_before_archive or ClientStatus.ACTIVE.value
    client.status_before_archive = None
    await _flush_unique(session, client.company_name)
    await audit.record(session, org_id, actor, "client.restored", target_type="client", target_id=client.id)
    await events.emit(session, org_id, "client.restored", {"client_id": client.id})
    await session.commit()
    return client


# ------------------------------------------------------------------------------- purge
@dataclass
class PurgeReport:
    clients: int = 0
    objects: int = 0
    errors: list[str] = field(default_factory=list)


async def purge_archived_clients(
    db: Database,
    storage: Storage,
    *,
    now: datetime | None = None,
    retention: timedelta = RESTORE_WINDOW,
    batch: int = 50,
) -> PurgeReport:
    """Delete clients archived longer than ``retention``, with their stored files.

    Walks organizations one at a time with the tenant bound (works under the app role and
    its row-level security). Per client: objects first (idempotent deletes), then one
    transaction removes the row, cascading to files, credentials, ideas and onboarding
    rows, and records the audit entry. A failing client is reported and skipped; the
    next run retries it.
    """
    from omnify.files import service as files  # late imports: both depend on clients
    from omnify.privacy import service as privacy

    cutoff = (now or utcnow()) - retention
    report = PurgeReport()
    async with db.sessionmaker() as session:
        orgs = await repository.org_ids(session)
    for org_id in orgs:
        while True:
            async with db.sessionmaker() as session:
                await bind_tenant(session, org_id)
                due = await repository.archived_before(session, org_id, cutoff, batch)
                if not due:
                    break
                progressed = False
                # Plain values: a rollback below expires ORM objects, and reloading them
                # lazily is not possible in async code.
                items = [(c.id, c.company_name, c.archived_at) for c in due]
                for client_id, company_name, archived_at in items:
                    try:
                        report.objects += await files.delete_client_objects(session, storage, org_id, client_id)
                        report.objects += await privacy.delete_client_exports(session, storage, org_id, client_id)
                        await repository.delete_client(session, org_id, client_id)
                        await audit.record(session, org_id, Actor.system("client purge"), "client.purged",
                                           target_type="client", target_id=client_id,
                                           changes={"company_name": company_name,
                                                    "archived_at": archived_at.isoformat() if archived_at else None})
                        await events.emit(session, org_id, "client.purged", {"client_id": client_id})
                        await session.commit()
                        report.clients += 1
                        progressed = True
                    except Exception as exc:  # one bad client must not stop the others
                        await session.rollback()
                        log.warning("client_purge_failed", org_id=str(org_id), client_id=str(client_id),
                                    error_type=type(exc).__name__)
                        report.errors.append(f"{org_id}/{client_id}: {type(exc).__name__}")
                if not progressed or len(due) < batch:
                    break
    return report


# ---------------------------------------------------------------- shared with other domains
async def serialize_org_writes(session: AsyncSession, org_id: uuid.UUID) -> None:
    """Take the organization's write lock for a quota-checked insert (see repository.lock_org)."""
    await repository.lock_org(session, org_id)


async def all_org_ids(session: AsyncSession) -> list[uuid.UUID]:
    return await repository.org_ids(session)
