"""Rollups and KPIs over daily metric rows: pure functions, no I/O.

Why this lives apart from the SQL: the arithmetic is where analytics go wrong (a CPA
averaged over days instead of recomputed from sums, two currencies added together, a
week that starts on Sunday for one chart and Monday for another), so it is one small
module with unit tests against hand-computed numbers.

Rules every figure here follows:

* Money is integer minor units and is only ever summed within one currency. Rows are
  partitioned by currency first; a client with a USD and a EUR account gets two
  reports, never one total.
* Ratios (CTR, CPC, CPM, CPA, ROAS) are recomputed from the summed components of each
  bucket (a ratio of sums, not a mean of daily ratios), and are ``None`` when their
  denominator is zero: "no clicks" is not a CPC of 0.
* Weeks are ISO weeks (Monday first), months are calendar months; a bucket is named by
  its first day, clipped to the requested range so the first bucket of a range that
  starts mid-week is labelled with the range start.
* Period-over-period compares the range with the same number of days just before it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any


class Granularity(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    TOTAL = "total"


class Dimension(enum.StrEnum):
    NONE = "none"
    PLATFORM = "platform"
    CAMPAIGN = "campaign"
    AD = "ad"


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One (day, currency, dimension key) sum as read from the normalized daily metrics."""

    day: date
    currency: str
    spend_minor: int
    impressions: int
    clicks: int
    conversions: float
    revenue_minor: int
    platform: str | None = None
    key: str | None = None  # campaign or ad id (as text) when grouping by those
    label: str | None = None  # its name, for display


@dataclass(slots=True)
class Totals:
    """Additive components; every KPI is derived from these."""

    spend_minor: int = 0
    impressions: int = 0
    clicks: int = 0
    conversions: float = 0.0
    revenue_minor: int = 0

    def add(self, row: MetricRow | Totals) -> None:
        # Both carry ints (and a float), typed at construction: no conversion per call.
        self.spend_minor += row.spend_minor
        self.impressions += row.impressions
        self.clicks += row.clicks
        self.conversions += row.conversions
        self.revenue_minor += row.revenue_minor

    def kpis(self) -> dict[str, Any]:
        return kpis(self)


def kpis(t: Totals) -> dict[str, Any]:
    """The KPI block of one bucket. Money KPIs stay in minor units (fractional: a CPC of
    12.5 cents is 12.5), so a client formats every money figure the same way."""
    # Inlined (no helper call per ratio): this runs for every cell of every report.
    spend, impressions, clicks, conv = t.spend_minor, t.impressions, t.clicks, t.conversions
    return {
        "spend_minor": spend,
        "impressions": impressions,
        "clicks": clicks,
        "conversions": round(conv, 4),
        "revenue_minor": t.revenue_minor,
        "ctr": round(clicks / impressions, 6) if impressions else None,
        "cpc_minor": round(spend / clicks, 4) if clicks else None,
        "cpm_minor": round(spend * 1000 / impressions, 4) if impressions else None,
        "cpa_minor": round(spend / conv, 4) if conv > 1e-9 else None,
        "roas": round(t.revenue_minor / spend, 4) if spend else None,
    }


KPI_NAMES = ("spend_minor", "impressions", "clicks", "conversions", "revenue_minor", "ctr", "cpc_minor",
             "cpm_minor", "cpa_minor", "roas")


def change(current: dict[str, Any], previous: dict[str, Any]) -> dict[str, float | None]:
    """Relative change of every KPI (0.25 = +25 %); ``None`` when the previous value is 0 or
    missing, where a percentage would be infinite or meaningless."""
    out: dict[str, float | None] = {}
    for name in KPI_NAMES:
        cur, prev = current.get(name), previous.get(name)
        if cur is None or prev is None or prev == 0:
            out[name] = None
        else:
            value = (float(cur) - float(prev)) / abs(float(prev))
            out[name] = round(value, 6) if math.isfinite(value) else None
    return out


def bucket_start(day: date, granularity: Granularity, since: date) -> date:
    """First day of the bucket holding ``day``, never before the range start."""
    if granularity == Granularity.DAY:
        start = day
    elif granularity == Granularity.WEEK:
        start = day - timedelta(days=day.weekday())
    elif granularity == Granularity.MONTH:
        start = day.replace(day=1)
    else:
        start = since
    return max(start, since)


def previous_range(since: date, until: date) -> tuple[date, date]:
    """The same number of days immediately before ``since``."""
    days = (until - since).days + 1
    return since - timedelta(days=days), since - timedelta(days=1)


@dataclass(slots=True)
class _KeyInfo:
    platform: str | None
    label: str | None
    totals: Totals = field(default_factory=Totals)


@dataclass(slots=True)
class CurrencyReport:
    currency: str
    totals: Totals
    previous: Totals | None
    rows: list[dict[str, Any]]
    keys_total: int
    keys_omitted: int

    def to_dict(self) -> dict[str, Any]:
        current = self.totals.kpis()
        prev = self.previous.kpis() if self.previous is not None else None
        return {
            "currency": self.currency,
            "totals": current,
            "previous": prev,
            "change": change(current, prev) if prev is not None else None,
            "rows": self.rows,
            "keys_total": self.keys_total,
            "keys_omitted": self.keys_omitted,
        }


def _dimension_key(row: MetricRow, dimension: Dimension) -> str | None:
    if dimension == Dimension.NONE:
        return None
    if dimension == Dimension.PLATFORM:
        return row.platform or "unknown"
    return row.key


def rollup(
    rows: Iterable[MetricRow],
    *,
    since: date,
    until: date,
    granularity: Granularity,
    dimension: Dimension,
    previous_rows: Iterable[MetricRow] | None = None,
    top: int | None = None,
) -> list[CurrencyReport]:
    """Bucket rows by (currency, period, dimension key) and compute KPIs.

    ``top`` keeps the rows of the ``top`` keys with the most spend in the range (per
    currency; ties broken by key for a stable answer); totals always include every key.
    Rows outside ``since..until`` are ignored, so a caller may pass a wider read.
    """
    per_currency: dict[str, dict[tuple[date, str | None], Totals]] = {}
    key_info: dict[str, dict[str | None, _KeyInfo]] = {}
    totals: dict[str, Totals] = {}
    for row in rows:
        if row.day < since or row.day > until:
            continue
        cur = row.currency.upper()
        key = _dimension_key(row, dimension)
        period = bucket_start(row.day, granularity, since)
        cell = per_currency.setdefault(cur, {}).setdefault((period, key), Totals())
        cell.add(row)
        info = key_info.setdefault(cur, {}).get(key)
        if info is None:
            info = key_info[cur][key] = _KeyInfo(
                platform=row.platform if dimension != Dimension.NONE else None,
                label=row.label if dimension in (Dimension.CAMPAIGN, Dimension.AD) else None,
            )
        info.totals.add(row)
        totals.setdefault(cur, Totals()).add(row)

    prev_totals: dict[str, Totals] = {}
    if previous_rows is not None:
        for row in previous_rows:
            prev_totals.setdefault(row.currency.upper(), Totals()).add(row)

    reports: list[CurrencyReport] = []
    for cur in sorted(set(totals) | set(prev_totals)):
        infos = key_info.get(cur, {})
        ranked = sorted(infos, key=lambda k: (-infos[k].totals.spend_minor, k or ""))
        kept = set(ranked if top is None else ranked[:top])
        out_rows: list[dict[str, Any]] = []
        for (period, key), cell in sorted(per_currency.get(cur, {}).items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            if key not in kept:
                continue
            item: dict[str, Any] = {"period": period.isoformat()}
            if dimension != Dimension.NONE:
                item["key"] = key
                item["label"] = infos[key].label
                item["platform"] = infos[key].platform
            item.update(cell.kpis())
            out_rows.append(item)
        reports.append(
            CurrencyReport(
                currency=cur,
                totals=totals.get(cur, Totals()),
                previous=prev_totals.get(cur, Totals()) if previous_rows is not None else None,
                rows=out_rows,
                keys_total=len(infos) if dimension != Dimension.NONE else 0,
                keys_omitted=max(len(infos) - len(kept), 0) if dimension != Dimension.NONE else 0,
            )
        )
    return reports


def split_by_range(rows: Sequence[MetricRow], since: date, until: date) -> list[MetricRow]:
    return [r for r in rows if since <= r.day <= until]
