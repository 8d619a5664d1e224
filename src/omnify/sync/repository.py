"""All SQL of the sync domain: idempotent batched upserts, id maps, cursors, runs.

The upsert is ``INSERT ... ON CONFLICT (natural key) DO UPDATE SET ... WHERE <any synced
column IS DISTINCT FROM the incoming value> RETURNING id`` on both PostgreSQL and SQLite
(3.35+). The ``WHERE`` is what makes a repeated sync a no-op: unchanged rows are neither
rewritten nor returned, so ``updated_at`` keeps its value and the count of returned ids
is the number of rows really written.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Table, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.core.db import utcnow
from omnify.core.pagination import PageParams, keyset
from omnify.sync.models import AdMetricDaily, SyncCursor, SyncRun, SyncShopCustomer, SyncShopOrder


def _insert(session: AsyncSession, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"upserts are not implemented for {dialect}")


async def upsert(
    session: AsyncSession,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    key: Sequence[str],
    compare: Sequence[str],
    batch_size: int = 1000,
) -> int:
    """Insert or update ``rows`` on ``key``; returns how many rows were inserted or changed.

    ``compare`` lists the columns a platform can change; only they are updated (ids and
    ``created_at`` of an existing row stay), and ``updated_at`` moves only with them.
    """
    if not rows:
        return 0
    now = utcnow()
    ins = _insert(session, table)
    values = {c: ins.excluded[c] for c in compare}
    values["updated_at"] = ins.excluded["updated_at"]
    changed = or_(*(table.c[c].is_distinct_from(ins.excluded[c]) for c in compare))
    stmt = ins.on_conflict_do_update(index_elements=list(key), set_=values, where=changed).returning(table.c.id)
    written = 0
    for start in range(0, len(rows), batch_size):
        chunk = [{**r, "id": uuid.uuid4(), "created_at": now, "updated_at": now}
                 for r in rows[start:start + batch_size]]
        result = await session.execute(stmt, chunk)
        written += len(result.all())
    return written


async def id_map(session: AsyncSession, table: Table, org_id: uuid.UUID, connection_id: uuid.UUID,
                 external_ids: Iterable[str] | None = None) -> dict[str, uuid.UUID]:
    """``external_id -> id`` of one connection's rows (optionally only some of them)."""
    stmt = select(table.c.external_id, table.c.id).where(table.c.org_id == org_id,
                                                         table.c.connection_id == connection_id)
    wanted = list(external_ids) if external_ids is not None else None
    if wanted is not None:
        if not wanted:
            return {}
        stmt = stmt.where(table.c.external_id.in_(wanted))
    return {str(ext): row_id for ext, row_id in (await session.execute(stmt)).all()}


async def delete_unseen_metrics(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID,
                                account_id: uuid.UUID, since: date, until: date,
                                seen: set[tuple[str, str, date]]) -> int:
    """Delete one account's metric rows in ``[since, until]`` whose key was not just read."""
    stmt = select(AdMetricDaily.id, AdMetricDaily.level, AdMetricDaily.entity_external_id, AdMetricDaily.day).where(
        AdMetricDaily.org_id == org_id, AdMetricDaily.connection_id == connection_id,
        AdMetricDaily.ad_account_id == account_id, AdMetricDaily.day >= since, AdMetricDaily.day <= until)
    stale = [row_id for row_id, level, entity, day in (await session.execute(stmt)).all()
             if (level, entity, day) not in seen]
    for start in range(0, len(stale), 500):
        await session.execute(delete(AdMetricDaily).where(AdMetricDaily.id.in_(stale[start:start + 500]))
                              .execution_options(synchronize_session=False))
    return len(stale)


# ------------------------------------------------------------------------------ cursors
async def cursors(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID) -> dict[tuple[str, str], str]:
    stmt = select(SyncCursor).where(SyncCursor.org_id == org_id, SyncCursor.connection_id == connection_id)
    return {(c.account_external_id, c.stream): c.value for c in (await session.scalars(stmt)).all()}


async def set_cursor(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID, account: str,
                     stream: str, value: str) -> None:
    table = SyncCursor.__table__
    assert isinstance(table, Table)
    ins = _insert(session, table)
    stmt = ins.values(id=uuid.uuid4(), org_id=org_id, connection_id=connection_id, account_external_id=account,
                      stream=stream, value=value, updated_at=utcnow())
    stmt = stmt.on_conflict_do_update(index_elements=["connection_id", "account_external_id", "stream"],
                                      set_={"value": ins.excluded.value, "updated_at": ins.excluded.updated_at},
                                      where=table.c.value.is_distinct_from(ins.excluded.value))
    await session.execute(stmt)


# ------------------------------------------------------------------------------ runs
def add(session: AsyncSession, obj: object) -> None:
    session.add(obj)


async def get_run(session: AsyncSession, org_id: uuid.UUID, run_id: uuid.UUID) -> SyncRun | None:
    stmt = select(SyncRun).where(SyncRun.org_id == org_id, SyncRun.id == run_id)
    return (await session.scalars(stmt)).one_or_none()


async def list_runs(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID,
                    params: PageParams) -> Sequence[SyncRun]:
    stmt = select(SyncRun).where(SyncRun.org_id == org_id, SyncRun.connection_id == connection_id)
    return (await session.scalars(keyset(stmt, SyncRun.created_at, SyncRun.id, params))).all()


async def running_before(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID,
                         before: datetime) -> Sequence[SyncRun]:
    """Runs still 'running' that started before a lease could have lapsed: their worker died."""
    stmt = select(SyncRun).where(SyncRun.org_id == org_id, SyncRun.connection_id == connection_id,
                                 SyncRun.status == "running", SyncRun.started_at < before)
    return (await session.scalars(stmt)).all()


# ------------------------------------------------------------------------------ shop privacy
async def shop_customer_rows(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID,
                             customer_external_id: str) -> tuple[SyncShopCustomer | None, Sequence[SyncShopOrder]]:
    customer = (await session.scalars(select(SyncShopCustomer).where(
        SyncShopCustomer.org_id == org_id, SyncShopCustomer.connection_id == connection_id,
        SyncShopCustomer.external_id == customer_external_id))).one_or_none()
    orders = (await session.scalars(select(SyncShopOrder).where(
        SyncShopOrder.org_id == org_id, SyncShopOrder.connection_id == connection_id,
        SyncShopOrder.customer_external_id == customer_external_id).order_by(SyncShopOrder.ordered_at))).all()
    return customer, orders


async def delete_shop_customer(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID,
                               customer_external_id: str) -> int:
    """Erase a shop customer's personal data: the customer row, and the link from their orders.

    Orders stay (they are the shop's sales, needed for revenue) but lose what points at the
    person (``customer_external_id``, ``customer_id``); they carry no other personal field.
    """
    orders = (await session.scalars(select(SyncShopOrder).where(
        SyncShopOrder.org_id == org_id, SyncShopOrder.connection_id == connection_id,
        SyncShopOrder.customer_external_id == customer_external_id))).all()
    for order in orders:
        order.customer_external_id = None
        order.customer_id = None
    result = await session.execute(delete(SyncShopCustomer).where(
        SyncShopCustomer.org_id == org_id, SyncShopCustomer.connection_id == connection_id,
        SyncShopCustomer.external_id == customer_external_id).execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


async def delete_shop_data(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID) -> None:
    """shop/redact: everything synced from that shop goes."""
    for model in (SyncShopOrder, SyncShopCustomer):
        await session.execute(delete(model).where(model.org_id == org_id, model.connection_id == connection_id)
                              .execution_options(synchronize_session=False))
