"""KPI rollups against numbers worked out by hand."""

from __future__ import annotations

from datetime import date

import pytest

from omnify.analytics.kpis import (
    Dimension,
    Granularity,
    MetricRow,
    Totals,
    bucket_start,
    change,
    kpis,
    previous_range,
    rollup,
)


def row(day: str, currency: str = "USD", spend: int = 0, imps: int = 0, clicks: int = 0, conv: float = 0.0,
        rev: int = 0, platform: str = "meta_ads", key: str | None = None, label: str | None = None) -> MetricRow:
    return MetricRow(date.fromisoformat(day), currency, spend, imps, clicks, conv, rev, platform, key, label)


def test_kpis_are_ratios_of_sums_and_none_on_zero_denominators() -> None:
    t = Totals()
    t.add(row("2026-03-02", spend=1000, imps=2000, clicks=40, conv=2, rev=5000))
    t.add(row("2026-03-03", spend=3000, imps=2000, clicks=10, conv=0, rev=1000))
    k = kpis(t)
    # spend 4000, imps 4000, clicks 50, conv 2, revenue 6000
    assert k["ctr"] == 0.0125  # 50 / 4000
    assert k["cpc_minor"] == 80.0  # 4000 / 50
    assert k["cpm_minor"] == 1000.0  # 4000 * 1000 / 4000
    assert k["cpa_minor"] == 2000.0  # 4000 / 2
    assert k["roas"] == 1.5  # 6000 / 4000
    empty = kpis(Totals())
    assert empty["ctr"] is None and empty["cpc_minor"] is None and empty["cpm_minor"] is None
    assert empty["cpa_minor"] is None and empty["roas"] is None and empty["spend_minor"] == 0


def test_buckets_weeks_start_monday_months_first_day_clipped_to_range() -> None:
    since = date(2026, 3, 4)  # a Wednesday
    assert bucket_start(date(2026, 3, 5), Granularity.WEEK, since) == since  # clipped
    assert bucket_start(date(2026, 3, 12), Granularity.WEEK, since) == date(2026, 3, 9)
    assert bucket_start(date(2026, 4, 20), Granularity.MONTH, since) == date(2026, 4, 1)
    assert bucket_start(date(2026, 3, 20), Granularity.MONTH, since) == since
    assert bucket_start(date(2026, 3, 20), Granularity.TOTAL, since) == since
    assert previous_range(date(2026, 3, 8), date(2026, 3, 14)) == (date(2026, 3, 1), date(2026, 3, 7))


def test_currencies_are_never_added_together() -> None:
    rows = [row("2026-03-02", "USD", spend=100, imps=10), row("2026-03-02", "EUR", spend=999, imps=10),
            row("2026-03-03", "usd", spend=50, imps=5)]
    reports = rollup(rows, since=date(2026, 3, 1), until=date(2026, 3, 31), granularity=Granularity.TOTAL,
                     dimension=Dimension.NONE)
    by = {r.currency: r.to_dict() for r in reports}
    assert set(by) == {"EUR", "USD"}
    assert by["USD"]["totals"]["spend_minor"] == 150 and by["EUR"]["totals"]["spend_minor"] == 999


def test_weekly_by_campaign_with_top_and_period_over_period() -> None:
    rows = [
        row("2026-03-02", spend=100, imps=1000, clicks=10, conv=1, rev=300, key="c1", label="One"),
        row("2026-03-08", spend=200, imps=1000, clicks=30, conv=1, rev=100, key="c1", label="One"),
        row("2026-03-09", spend=50, imps=500, clicks=5, conv=0, rev=0, key="c2", label="Two"),
        row("2026-03-10", spend=10, imps=100, clicks=1, conv=0, rev=0, key="c3", label="Three"),
        row("2026-04-01", spend=10_000, imps=1, key="c1"),  # outside the range: ignored
    ]
    prev = [row("2026-02-20", spend=200, imps=1000, clicks=20, conv=1, rev=200)]
    [rep] = rollup(rows, since=date(2026, 3, 2), until=date(2026, 3, 15), granularity=Granularity.WEEK,
                   dimension=Dimension.CAMPAIGN, previous_rows=prev, top=2)
    out = rep.to_dict()
    assert out["totals"]["spend_minor"] == 360 and out["totals"]["clicks"] == 46
    assert out["keys_total"] == 3 and out["keys_omitted"] == 1  # c3 has the least spend
    assert [(r["period"], r["key"], r["spend_minor"]) for r in out["rows"]] == [
        ("2026-03-02", "c1", 300), ("2026-03-09", "c2", 50)]
    first = out["rows"][0]
    assert first["label"] == "One" and first["ctr"] == 0.02 and first["roas"] == pytest.approx(400 / 300, abs=1e-4)
    # Period over period: spend 360 vs 200 = +80 %; conversions 2 vs 1 = +100 %.
    assert out["previous"]["spend_minor"] == 200
    assert out["change"]["spend_minor"] == 0.8 and out["change"]["conversions"] == 1.0
    assert change({"spend_minor": 5}, {"spend_minor": 0})["spend_minor"] is None


def test_daily_by_platform_and_empty_input() -> None:
    rows = [row("2026-03-02", platform="meta_ads", spend=10), row("2026-03-02", platform="google_ads", spend=20),
            row("2026-03-03", platform="meta_ads", spend=5)]
    [rep] = rollup(rows, since=date(2026, 3, 2), until=date(2026, 3, 3), granularity=Granularity.DAY,
                   dimension=Dimension.PLATFORM)
    assert [(r["period"], r["key"], r["spend_minor"]) for r in rep.rows] == [
        ("2026-03-02", "google_ads", 20), ("2026-03-02", "meta_ads", 10), ("2026-03-03", "meta_ads", 5)]
    assert rollup([], since=date(2026, 3, 2), until=date(2026, 3, 3), granularity=Granularity.DAY,
                  dimension=Dimension.AD) == []
