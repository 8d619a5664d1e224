"""All SQL of the sync domain: idempotent batched upserts, the metric writer (staged, with
its rollups), id maps, cursors, runs.

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

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.schema import CreateTable

from omnify.core.db import utcnow
from omnify.core.pagination import PageParams, keyset
from omnify.sync.models import (
    NO_CAMPAIGN,
    AdMetricDaily,
    AnalyticsDaily,
    SyncCursor,
    SyncRun,
    SyncShopCustomer,
    SyncShopOrder,
)


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


#: The staging table of :class:`MetricWriter` (per connection, temporary, emptied at commit).
_STAGE = Table(
    "omnify_stage_metrics", MetaData(),
    Column("batch", Integer, nullable=False),
    Column("id", Uuid, nullable=True),  # SQLite only: PostgreSQL draws ids with gen_random_uuid()
    Column("level", String(16), nullable=False),
    Column("entity_external_id", String(64), nullable=False),
    Column("day", Date, nullable=False),
    Column("campaign_id", Uuid), Column("ad_group_id", Uuid), Column("ad_id", Uuid),
    Column("currency", String(3), nullable=False),
    Column("spend_minor", BigInteger, nullable=False), Column("impressions", BigInteger, nullable=False),
    Column("clicks", BigInteger, nullable=False), Column("conversions", Float, nullable=False),
    Column("conversions_micros", BigInteger, nullable=False), Column("revenue_minor", BigInteger, nullable=False),
    Column("reach", BigInteger), Column("frequency", Float),
    prefixes=["TEMPORARY"], postgresql_on_commit="DELETE ROWS",
)
#: Staged per row, in this order (COPY's column list); the rest of a row is the window's.
_STAGED = ("batch", "level", "entity_external_id", "day", "campaign_id", "ad_group_id", "ad_id", "currency",
           "spend_minor", "impressions", "clicks", "conversions", "conversions_micros", "revenue_minor", "reach",
           "frequency")
#: Synced metric columns an update may change (the raw upsert's comparison).
METRIC_COMPARE = ("ad_account_id", "campaign_id", "ad_group_id", "ad_id", "currency", "spend_minor", "impressions",
                  "clicks", "conversions", "revenue_minor", "reach", "frequency")
ROLLUP_SUMS = ("spend_minor", "impressions", "clicks", "conversions_micros", "revenue_minor")


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


_M, _R = _table(AdMetricDaily), _table(AnalyticsDaily)


def conversions_micros(value: float) -> int:
    """Conversions as integer millionths: what the rollups sum, exactly and in any order."""
    return round(float(value) * 1_000_000)


class MetricWriter:
    """Writes one date window of one ad account's daily metrics, and that window's rollup.

    The rows of the window are the platform's truth for those days. Each batch is loaded
    into a temporary staging table (PostgreSQL: ``COPY``, binary; SQLite: one
    ``executemany``) and upserted into ``ad_metrics_daily`` by **one** set-based ``INSERT
    .. SELECT .. ON CONFLICT DO UPDATE .. WHERE <a value changed>``, so an unchanged row is
    neither rewritten nor counted. :meth:`finish` then, still in the caller's transaction:

    * deletes the window's rows the platform no longer reports (restated to nothing);
    * upserts the window's sums into ``analytics_daily`` **from the staging table**, and
      deletes the window's rollup rows that no longer have a source.

    Nothing just written is read back: the clean-up runs only when the window held rows
    before this run (one index probe up front), and the sums come from the staged rows.
    The caller commits; a rollback drops raw rows and rollups together.
    """

    def __init__(self, session: AsyncSession, *, org_id: uuid.UUID, client_id: uuid.UUID,
                 connection_id: uuid.UUID, account_id: uuid.UUID, platform: str, since: date, until: date) -> None:
        self.session = session
        self.org_id, self.client_id, self.connection_id = org_id, client_id, connection_id
        self.account_id, self.platform, self.since, self.until = account_id, platform, since, until
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.now = utcnow()
        self._batches = 0
        self._seen: dict[tuple[str, str, date], int] = {}
        self._had_rows: bool | None = None
        self.written = 0
        self.deleted = 0
        self.rollup_written = 0

    @property
    def staged(self) -> int:
        """Distinct (level, entity, day) keys written so far in this window."""
        return len(self._seen)

    async def _start(self) -> None:
        await self.session.execute(CreateTable(_STAGE, if_not_exists=True))
        await self.session.execute(delete(_STAGE))  # another window of this transaction, if any
        window = (_M.c.ad_account_id == self.account_id, _M.c.day >= self.since, _M.c.day <= self.until)
        rollup = (_R.c.ad_account_id == self.account_id, _R.c.day >= self.since, _R.c.day <= self.until)
        probe = select(or_(exists().where(*window), exists().where(*rollup)))
        self._had_rows = bool(await self.session.scalar(probe))

    async def write(self, rows: Sequence[dict[str, Any]]) -> int:
        """Stage and upsert one batch; returns the rows inserted or changed."""
        if self._had_rows is None:
            await self._start()
        self._batches += 1
        batch = self._batches
        unique: dict[tuple[str, str, date], dict[str, Any]] = {}
        for row in rows:
            unique[(row["level"], row["entity_external_id"], row["day"])] = row
        again = [k for k in unique if k in self._seen]
        if again:  # the platform repeated a key across pages: the last one wins, as in the raw table
            s = _STAGE.c
            await self.session.execute(delete(_STAGE).where(
                tuple_(s.level, s.entity_external_id, s.day).in_(again)))
        for key in unique:
            self._seen[key] = batch
        if not unique:
            return 0
        if self.postgres:
            await self._copy(batch, list(unique.values()))
        else:
            await self.session.execute(insert(_STAGE), [
                {**{c: r.get(c) for c in _STAGED[1:]}, "batch": batch, "id": uuid.uuid4(),
                 "conversions_micros": conversions_micros(r["conversions"])} for r in unique.values()])
        result = await self.session.execute(self._upsert(batch))
        written = max(int(getattr(result, "rowcount", 0) or 0), 0)
        self.written += written
        return written

    async def _copy(self, batch: int, rows: list[dict[str, Any]]) -> None:
        records = [(batch, r["level"], r["entity_external_id"], r["day"], r.get("campaign_id"), r.get("ad_group_id"),
                    r.get("ad_id"), r["currency"], r["spend_minor"], r["impressions"], r["clicks"],
                    float(r["conversions"]), conversions_micros(r["conversions"]), r["revenue_minor"], r.get("reach"),
                    r.get("frequency")) for r in rows]
        conn = await self.session.connection()
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.copy_records_to_table(_STAGE.name, records=records, columns=list(_STAGED))

    def _upsert(self, batch: int) -> Any:
        s = _STAGE.c
        const = {"org_id": literal(self.org_id, Uuid()), "client_id": literal(self.client_id, Uuid()),
                 "connection_id": literal(self.connection_id, Uuid()),
                 "ad_account_id": literal(self.account_id, Uuid()), "platform": literal(self.platform, String()),
                 "created_at": literal(self.now, _M.c.created_at.type),
                 "updated_at": literal(self.now, _M.c.updated_at.type)}
        per_row = ("level", "entity_external_id", "day", *METRIC_COMPARE[1:])
        ident = func.gen_random_uuid() if self.postgres else s.id
        names = ["id", *const, *per_row]
        source = select(ident, *const.values(), *(s[c] for c in per_row)).where(s.batch == batch)
        ins = _insert(self.session, _M).from_select(names, source)
        values = {c: ins.excluded[c] for c in METRIC_COMPARE}
        values["updated_at"] = ins.excluded["updated_at"]
        changed = or_(*(_M.c[c].is_distinct_from(ins.excluded[c]) for c in METRIC_COMPARE))
        return ins.on_conflict_do_update(index_elements=["connection_id", "level", "entity_external_id", "day"],
                                         set_=values, where=changed)

    async def finish(self) -> int:
        """Clean the window and write its rollup; returns the raw rows deleted."""
        if self._had_rows is None:
            await self._start()
        s = _STAGE.c
        if self._had_rows:
            unseen = ~exists().where(s.level == _M.c.level, s.entity_external_id == _M.c.entity_external_id,
                                     s.day == _M.c.day)
            result = await self.session.execute(
                delete(_M).where(_M.c.org_id == self.org_id, _M.c.connection_id == self.connection_id,
                                 _M.c.ad_account_id == self.account_id, _M.c.day >= self.since,
                                 _M.c.day <= self.until, unseen).execution_options(synchronize_session=False))
            self.deleted = max(int(getattr(result, "rowcount", 0) or 0), 0)
        campaign = func.coalesce(s.campaign_id, literal(NO_CAMPAIGN, Uuid()))
        source = (select(literal(self.org_id, Uuid()), literal(self.client_id, Uuid()),
                         literal(self.account_id, Uuid()), literal(self.platform, String()), s.day, s.currency,
                         campaign, *(func.sum(s[c]) for c in ROLLUP_SUMS), literal(self.now, _R.c.updated_at.type))
                  .where(s.level == "ad").group_by(s.day, s.currency, s.campaign_id))
        names = ["org_id", "client_id", "ad_account_id", "platform", "day", "currency", "campaign_id", *ROLLUP_SUMS,
                 "updated_at"]
        ins = _insert(self.session, _R).from_select(names, source)
        compare = ("platform", *ROLLUP_SUMS)
        values = {c: ins.excluded[c] for c in (*compare, "updated_at")}
        changed = or_(*(_R.c[c].is_distinct_from(ins.excluded[c]) for c in compare))
        result = await self.session.execute(ins.on_conflict_do_update(
            index_elements=["ad_account_id", "day", "currency", "campaign_id"], set_=values, where=changed))
        self.rollup_written = max(int(getattr(result, "rowcount", 0) or 0), 0)
        if self._had_rows:
            gone = ~exists().where(s.level == "ad", s.day == _R.c.day, s.currency == _R.c.currency,
                                   func.coalesce(s.campaign_id, literal(NO_CAMPAIGN, Uuid())) == _R.c.campaign_id)
            result = await self.session.execute(
                delete(_R).where(_R.c.org_id == self.org_id, _R.c.ad_account_id == self.account_id,
                                 _R.c.day >= self.since, _R.c.day <= self.until, gone)
                .execution_options(synchronize_session=False))
            self.rollup_written += max(int(getattr(result, "rowcount", 0) or 0), 0)
        return self.deleted


async def rebuild_rollups(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID | None = None) -> int:
    """Recompute ``analytics_daily`` from the raw rows (of one client, or the whole org).

    The sync never needs this (it maintains the rollups as it writes); it is for rows that
    arrived another way (a restore of raw rows only, test fixtures, an operator's repair).
    Returns the rollup rows written.
    """
    scope_r = [_R.c.org_id == org_id] + ([_R.c.client_id == client_id] if client_id else [])
    scope_m = [_M.c.org_id == org_id, _M.c.level == "ad"] + ([_M.c.client_id == client_id] if client_id else [])
    await session.execute(delete(_R).where(*scope_r).execution_options(synchronize_session=False))
    campaign = func.coalesce(_M.c.campaign_id, literal(NO_CAMPAIGN, Uuid()))
    micros = func.sum(cast(func.round(_M.c.conversions * 1_000_000), BigInteger))
    source = (select(_M.c.org_id, _M.c.client_id, _M.c.ad_account_id, _M.c.platform, _M.c.day, _M.c.currency,
                     campaign, func.sum(_M.c.spend_minor), func.sum(_M.c.impressions), func.sum(_M.c.clicks), micros,
                     func.sum(_M.c.revenue_minor), literal(utcnow(), _R.c.updated_at.type))
              .where(*scope_m)
              .group_by(_M.c.org_id, _M.c.client_id, _M.c.ad_account_id, _M.c.platform, _M.c.day, _M.c.currency,
                        _M.c.campaign_id))
    names = ["org_id", "client_id", "ad_account_id", "platform", "day", "currency", "campaign_id", *ROLLUP_SUMS,
             "updated_at"]
    result = await session.execute(insert(_R).from_select(names, source))
    return max(int(getattr(result, "rowcount", 0) or 0), 0)


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


async def digest_spend(session: AsyncSession, org_id: uuid.UUID, start: date,
                       end: date) -> list[tuple[str, str, int, int, float]]:
    """``(platform, currency, spend, revenue, conversions)`` over days ``[start, end)``."""
    rows = await session.execute(
        select(AdMetricDaily.platform, AdMetricDaily.currency, func.sum(AdMetricDaily.spend_minor),
               func.sum(AdMetricDaily.revenue_minor), func.sum(AdMetricDaily.conversions))
        .where(AdMetricDaily.org_id == org_id, AdMetricDaily.day >= start, AdMetricDaily.day < end)
        .group_by(AdMetricDaily.platform, AdMetricDaily.currency)
        .order_by(AdMetricDaily.platform, AdMetricDaily.currency))
    return [(str(p), str(c), int(s or 0), int(r or 0), float(v or 0)) for p, c, s, r, v in rows]


async def digest_runs(session: AsyncSession, org_id: uuid.UUID, start: datetime,
                      end: datetime) -> dict[str, int]:
    """Sync runs started in ``[start, end)`` by status."""
    rows = await session.execute(
        select(SyncRun.status, func.count()).where(SyncRun.org_id == org_id, SyncRun.started_at >= start,
                                                   SyncRun.started_at < end).group_by(SyncRun.status))
    return {str(status): int(count) for status, count in rows}
