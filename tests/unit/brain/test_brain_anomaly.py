"""Anomalies: weekly-aware baseline, one alert per incident, silence on degenerate series."""

from __future__ import annotations

import json

import numpy as np
import pytest

from omnify.brain.anomaly import AnomalyConfig, EntitySeries, detect_anomalies
from omnify.brain.types import BrainInputError, DailyAdMetrics

START = np.datetime64("2024-01-01")


def _campaign(
    n_days: int = 150,
    *,
    spend_level: float = 500.0,
    cpa: float = 20.0,
    aov: float = 60.0,
    seed: int = 0,
    weekend_boost: float = 1.0,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    dates = START + np.arange(n_days).astype("timedelta64[D]")
    weekday = ((dates.astype(np.int64) + 3) % 7).astype(int)
    dow = np.where(weekday >= 5, weekend_boost, 1.0)
    spend = spend_level * dow * np.exp(rng.normal(0, 0.06, n_days))
    conv = rng.poisson(spend / cpa * rng.gamma(30, 1 / 30, n_days)).astype(float)
    revenue = conv * aov * np.exp(rng.normal(0, 0.1, n_days))
    return {"date": dates, "spend": spend, "conversions": conv, "revenue": revenue}


def _series(*campaigns: tuple[str, dict[str, np.ndarray]], parent: str | None = None) -> EntitySeries:
    ids, dates, spend, conv, rev = [], [], [], [], []
    for cid, c in campaigns:
        ids += [cid] * len(c["date"])
        dates.append(c["date"])
        spend.append(c["spend"])
        conv.append(c["conversions"])
        rev.append(c["revenue"])
    return EntitySeries.from_long(
        entity_id=ids,
        date=np.concatenate(dates),
        spend=np.concatenate(spend),
        conversions=np.concatenate(conv),
        revenue=np.concatenate(rev),
        parent_id=[parent] * len(ids) if parent else None,
    )


def test_empty_series_gives_no_incidents() -> None:
    empty = EntitySeries.from_long(entity_id=[], date=[], spend=[], conversions=[])
    assert detect_anomalies(empty) == []


@pytest.mark.parametrize("value", [0.0, 250.0], ids=["all-zero", "constant"])
def test_constant_and_zero_series_never_alert(value: float) -> None:
    n = 120
    c = {
        "date": START + np.arange(n).astype("timedelta64[D]"),
        "spend": np.full(n, value),
        "conversions": np.full(n, value / 25),
        "revenue": np.full(n, value * 3),
    }
    assert detect_anomalies(_series(("k1", c))) == []


def test_short_series_is_not_judged_even_with_a_spike() -> None:
    c = _campaign(12)
    c["spend"][-1] *= 5
    assert detect_anomalies(_series(("k1", c))) == []


def test_planted_spend_spike_is_one_incident_with_direction() -> None:
    c = _campaign(seed=12)
    c["spend"][100:102] *= 3.0
    incidents = detect_anomalies(_series(("k1", c)))
    assert len(incidents) == 1
    inc = incidents[0]
    assert inc.entity_id == "k1" and inc.primary_metric == "spend" and inc.direction == "up"
    assert inc.start_date == str(START + 100) and inc.end_date == str(START + 101)
    assert inc.money_at_stake > 0.8 * 2 * 2 * 500  # about two days of double extra spend
    assert inc.severity in ("medium", "high")
    json.dumps(inc.to_dict())


def test_tracking_outage_is_one_incident_across_metrics() -> None:
    c = _campaign(seed=2)
    c["conversions"][110:113] = 0.0
    c["revenue"][110:113] = 0.0
    incidents = detect_anomalies(_series(("k1", c)))
    assert len(incidents) == 1
    inc = incidents[0]
    assert inc.start_date == str(START + 110) and inc.end_date == str(START + 112)
    assert inc.direction == "down"
    assert "conversions" in inc.metrics
    assert inc.evidence["days"] == 3
    assert len(inc.evidence["series"]["observed"]) == len(inc.evidence["series"]["dates"])


def test_value_drop_is_found_through_order_value() -> None:
    c = _campaign(seed=3)
    c["revenue"][120:123] *= 0.3
    incidents = detect_anomalies(_series(("k1", c)))
    assert len(incidents) == 1
    assert {"roas", "aov"} & set(incidents[0].metrics)
    assert incidents[0].direction == "down"


def test_strong_weekly_rhythm_is_not_an_anomaly() -> None:
    c = _campaign(seed=4, weekend_boost=2.5)
    assert detect_anomalies(_series(("k1", c))) == []


def test_noise_alone_raises_no_alerts_across_many_campaigns() -> None:
    camps = [(f"k{i}", _campaign(seed=50 + i, spend_level=50.0 * (i + 1))) for i in range(15)]
    assert detect_anomalies(_series(*camps)) == []


def test_parent_incident_explained_by_child_is_suppressed() -> None:
    big = _campaign(seed=5)
    small = _campaign(seed=6, spend_level=100.0)
    big["spend"][100:102] *= 3.0
    ads = DailyAdMetrics.build(
        ad_id=["a1"] * 150 + ["a2"] * 150,
        date=np.concatenate([big["date"], small["date"]]),
        impressions=np.full(300, 1e5),
        clicks=np.full(300, 1e3),
        conversions=np.concatenate([big["conversions"], small["conversions"]]),
        spend=np.concatenate([big["spend"], small["spend"]]),
        revenue=np.concatenate([big["revenue"], small["revenue"]]),
        campaign_id=["big"] * 150 + ["small"] * 150,
        account_id=["acct"] * 300,
    )
    incidents = detect_anomalies(EntitySeries.from_ads(ads))
    assert [(i.level, i.entity_id) for i in incidents] == [("campaign", "big")]
    assert incidents[0].evidence["also_visible_at"] == ["acct"]


def test_campaign_launch_does_not_alert_the_account() -> None:
    old = _campaign(seed=7)
    new = _campaign(seed=8, spend_level=800.0)
    for k in ("spend", "conversions", "revenue"):
        new[k][:100] = 0.0
    series = EntitySeries.concat(
        [
            _series(("acct", {k: old[k] + new[k] if k != "date" else old[k] for k in old})),
            _series(("new", new), parent="acct"),
        ]
    )
    series = EntitySeries(
        series.entity_id, ["account", "campaign"], [None, "acct"], series.dates,
        series.spend, series.conversions, series.revenue,
    )  # fmt: skip
    assert detect_anomalies(series) == []


def test_since_keeps_recent_incidents_only() -> None:
    c = _campaign(seed=9)
    c["spend"][60] *= 4
    c["spend"][140] *= 4
    s = _series(("k1", c))
    assert len(detect_anomalies(s)) == 2
    recent = detect_anomalies(s, since=START + 130)
    assert [i.start_date for i in recent] == [str(START + 140)]
    assert recent[0].ongoing is False


def test_stricter_threshold_removes_weaker_incident() -> None:
    c = _campaign(seed=10)
    c["spend"][100] *= 1.9
    s = _series(("k1", c))
    assert len(detect_anomalies(s)) == 1
    assert detect_anomalies(s, AnomalyConfig(min_spend_change=1.5)) == []


def test_unknown_level_is_rejected() -> None:
    ads = DailyAdMetrics.build(ad_id=["a"], date=["2024-01-01"], impressions=[1.0], clicks=[0.0])
    with pytest.raises(BrainInputError):
        EntitySeries.from_ads(ads, levels=("adset",))


def test_group_rows_equals_add_at_exactly() -> None:
    from omnify.brain.anomaly import _group_rows

    rng = np.random.default_rng(2)
    codes = rng.integers(0, 7, 300)
    codes[codes == 3] = 4  # a group with no rows stays zero
    values = rng.lognormal(0.0, 2.0, (300, 50)) * (rng.random((300, 50)) < 0.9)
    want = np.zeros((7, 50))
    np.add.at(want, codes, values)
    np.testing.assert_array_equal(_group_rows(codes, 7, values), want)
    assert _group_rows(np.zeros(0, dtype=np.int64), 2, np.zeros((0, 4))).shape == (2, 4)
