"""Read access to the synced (normalized) tables, for analytics and the brain.

The tables belong to the sync domain (``omnify.sync``, migration 0005): ``ad_accounts``,
``campaigns``, ``ads``, ``ad_metrics_daily``, ``shop_orders``. This module reads them
through SQLAlchemy Core, found by table name in the shared metadata, and resolves each
column from a short list of accepted names, so the readers here do not depend on the
sync domain's Python class names. Every query is scoped by ``org_id`` and ``client_id``
(and RLS on PostgreSQL).

Until the sync domain is installed, every reader raises :class:`SyncUnavailable`
(a 503 problem naming what is missing) instead of failing at import time.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Column, Table, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.core.db import Base
from omnify.core.errors import ServiceUnavailable

#: column role -> accepted names, first match wins.
METRIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "day": ("day", "date", "metric_date"),
    "currency": ("currency",),
    "spend": ("spend_minor",),
    "impressions": ("impressions",),
    "clicks": ("clicks",),
    "conversions": ("conversions",),
    "revenue": ("revenue_minor",),
    "ad": ("ad_id",),
    "campaign": ("campaign_id",),
}
OPTIONAL_METRIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "frequency": ("frequency",), "level": ("level",), "platform": ("platform",),
}
ENTITY_COLUMNS: dict[str, tuple[str, ...]] = {"external_id": ("external_id",), "name": ("name",)}
OPTIONAL_ENTITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "status": ("status",), "platform": ("platform",), "account": ("ad_account_id", "account_id"),
    "campaign": ("campaign_id",), "budget": ("daily_budget_minor",),
}
ORDER_COLUMNS: dict[str, tuple[str, ...]] = {
    "customer": ("customer_external_id", "customer_id"),
    "created": ("created_at_platform", "ordered_at", "processed_at", "created_at"),
    "total": ("total_minor", "total_price_minor"),
    "currency": ("currency",),
}


class SyncUnavailable(ServiceUnavailable):
    code, title = "sync-unavailable", "Synced data is not available"


def _tables(*names: str) -> list[Table]:
    try:
        importlib.import_module("omnify.sync.models")
    except ModuleNotFoundError:
        raise SyncUnavailable("The sync domain (omnify.sync) is not installed in this build.") from None
    out = []
    for name in names:
        table = Base.metadata.tables.get(name)
        if table is None:
            raise SyncUnavailable(f"The synced table {name!r} does not exist in this build.")
        out.append(table)
    return out


def _col(table: Table, role: str, names: Sequence[str], required: bool = True) -> Column[Any] | None:
    for name in names:
        if name in table.c:
            return table.c[name]
    if required:
        raise SyncUnavailable(f"The synced table {table.name!r} has no {role} column ({' / '.join(names)}).")
    return None


def _cols(table: Table, spec: Mapping[str, Sequence[str]], optional: Mapping[str, Sequence[str]] | None = None,
          ) -> dict[str, Column[Any]]:
    out: dict[str, Column[Any]] = {}
    for role, names in spec.items():
        col = _col(table, role, names)
        assert col is not None
        out[role] = col
    for role, names in (optional or {}).items():
        col = _col(table, role, names, required=False)
        if col is not None:
            out[role] = col
    return out


def _scope(table: Table, org_id: uuid.UUID, client_id: uuid.UUID) -> Any:
    return and_(table.c.org_id == org_id, table.c.client_id == client_id)


def _platform_expr(m: dict[str, Column[Any]], a: dict[str, Column[Any]],
                   acc: dict[str, Column[Any]] | None) -> Any:
    for cols in (m, a, acc or {}):
        if "platform" in cols:
            return cols["platform"]
    raise SyncUnavailable("No synced table carries the platform of an ad.")


def _joins() -> tuple[Table, Table, Table, Table | None, dict[str, dict[str, Column[Any]]]]:
    metrics, ads, campaigns = _tables("ad_metrics_daily", "ads", "campaigns")
    accounts = Base.metadata.tables.get("ad_accounts")
    cols = {
        "m": _cols(metrics, METRIC_COLUMNS, OPTIONAL_METRIC_COLUMNS),
        "a": _cols(ads, ENTITY_COLUMNS, OPTIONAL_ENTITY_COLUMNS),
        "c": _cols(campaigns, ENTITY_COLUMNS, OPTIONAL_ENTITY_COLUMNS),
        "acc": _cols(accounts, ENTITY_COLUMNS, OPTIONAL_ENTITY_COLUMNS) if accounts is not None else {},
    }
    return metrics, ads, campaigns, accounts, cols


def _ad_level(m: dict[str, Column[Any]]) -> Any:
    return m["level"] == "ad" if "level" in m else m["ad"].is_not(None)


async def metric_sums(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, since: date, until: date, group_by: str,
) -> list[dict[str, Any]]:
    """Daily sums per currency (and platform / campaign / ad), summed in the database."""
    metrics, ads, campaigns, accounts, cols = _joins()
    m, a, c = cols["m"], cols["a"], cols["c"]
    keys: list[Any] = [m["day"].label("day"), m["currency"].label("currency")]
    stmt_from: Any = metrics
    need_ads = (group_by in ("platform", "ad") and "platform" not in m) or group_by == "ad"
    if need_ads:
        stmt_from = stmt_from.join(ads, ads.c.id == m["ad"])
        if "platform" not in m and "platform" not in a and accounts is not None and "account" in a:
            stmt_from = stmt_from.join(accounts, accounts.c.id == a["account"])
    if group_by == "campaign":
        stmt_from = stmt_from.join(campaigns, campaigns.c.id == m["campaign"])
        keys += [campaigns.c.id.label("key"), c["name"].label("label")]
        plat = m.get("platform", c.get("platform"))
        if plat is not None:
            keys.append(plat.label("platform"))
    elif group_by == "ad":
        keys += [ads.c.id.label("key"), a["name"].label("label"),
                 _platform_expr(m, a, cols["acc"] if accounts is not None else None).label("platform")]
    elif group_by == "platform":
        keys.append(_platform_expr(m, a, cols["acc"] if accounts is not None else None).label("platform"))
    sums = [func.sum(m["spend"]).label("spend_minor"), func.sum(m["impressions"]).label("impressions"),
            func.sum(m["clicks"]).label("clicks"), func.sum(m["conversions"]).label("conversions"),
            func.sum(m["revenue"]).label("revenue_minor")]
    stmt = (select(*keys, *sums).select_from(stmt_from)
            .where(_scope(metrics, org_id, client_id), m["day"] >= since, m["day"] <= until, _ad_level(m))
            .group_by(*keys))
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


async def ad_days(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, since: date, until: date
) -> list[dict[str, Any]]:
    metrics, _ads, _campaigns, _accounts, cols = _joins()
    m = cols["m"]
    fields = [m["ad"].label("ad_id"), m["day"].label("day"), m["currency"].label("currency"),
              m["spend"].label("spend_minor"), m["impressions"].label("impressions"), m["clicks"].label("clicks"),
              m["conversions"].label("conversions"), m["revenue"].label("revenue_minor")]
    if "frequency" in m:
        fields.append(m["frequency"].label("frequency"))
    stmt = select(*fields).where(_scope(metrics, org_id, client_id), m["day"] >= since, m["day"] <= until,
                                 _ad_level(m))
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


async def entities(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> tuple[
        list[dict[str, Any]], list[dict[str, Any]]]:
    """(ads, campaigns) with their platform and ad-account external id."""
    _metrics, ads, campaigns, accounts, cols = _joins()
    out: list[list[dict[str, Any]]] = []
    for table, c in ((ads, cols["a"]), (campaigns, cols["c"])):
        fields = [table.c.id.label("id"), c["external_id"].label("external_id"), c["name"].label("name")]
        for role in ("status", "campaign", "budget"):
            if role in c:
                fields.append(c[role].label(role))
        src: Any = table
        if "platform" in c:
            fields.append(c["platform"].label("platform"))
        if accounts is not None and "account" in c:
            src = table.outerjoin(accounts, accounts.c.id == c["account"])
            fields.append(cols["acc"]["external_id"].label("account_external_id"))
            if "name" in cols["acc"]:
                fields.append(cols["acc"]["name"].label("account_name"))
            if "platform" not in c and "platform" in cols["acc"]:
                fields.append(cols["acc"]["platform"].label("platform"))
        elif "account" in c:
            fields.append(c["account"].label("account_external_id"))
        stmt = select(*fields).select_from(src).where(_scope(table, org_id, client_id))
        out.append([dict(r) for r in (await session.execute(stmt)).mappings()])
    return out[0], out[1]


async def orders(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, since: date) -> list[dict[str, Any]]:
    table = Base.metadata.tables.get("shop_orders")
    if table is None:
        return []
    o = _cols(table, ORDER_COLUMNS)
    stmt = select(o["customer"].label("customer"), o["created"].label("created"), o["total"].label("total_minor"),
                  o["currency"].label("currency")).where(
        _scope(table, org_id, client_id), o["customer"].is_not(None),
        o["created"] >= datetime.combine(since, datetime.min.time()).astimezone())
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


async def clients_with_data(session: AsyncSession, org_id: uuid.UUID) -> list[uuid.UUID]:
    try:
        (metrics,) = _tables("ad_metrics_daily")
    except SyncUnavailable:
        return []
    rows = await session.scalars(select(metrics.c.client_id).where(metrics.c.org_id == org_id).distinct())
    return [uuid.UUID(str(r)) for r in rows]
