"""Creative fatigue: degenerate inputs never alert; a planted decline is found with its onset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from omnify.brain.fatigue import FatigueConfig, detect_fatigue, detect_fatigue_series
from omnify.brain.types import BrainInputError, DailyAdMetrics

START = np.datetime64("2024-01-01")


def _series(
    n_days: int,
    ctr: np.ndarray | float,
    *,
    imps: float = 8000.0,
    seed: int = 0,
    cvr: np.ndarray | float = 0.05,
    noise: float = 0.08,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    dates = START + np.arange(n_days).astype("timedelta64[D]")
    weekday = ((dates.astype(np.int64) + 3) % 7).astype(int)
    dow = np.array([0.97, 0.97, 0.98, 1.0, 1.02, 1.03, 1.03])[weekday]
    impressions = rng.poisson(imps * dow).astype(float)
    p = np.clip(np.broadcast_to(ctr, (n_days,)) * dow * np.exp(rng.normal(0, noise, n_days)), 0, 1)
    clicks = rng.binomial(impressions.astype(int), p).astype(float)
    conv = rng.binomial(clicks.astype(int), np.broadcast_to(cvr, (n_days,))).astype(float)
    return {
        "dates": dates,
        "impressions": impressions,
        "clicks": clicks,
        "conversions": conv,
        "spend": impressions * 0.008,
    }


def _decay(n_days: int, onset: int, base: float = 0.02, floor: float = 0.5, tau: float = 10.0) -> np.ndarray:
    t = np.arange(n_days)
    mult = np.where(t < onset, 1.0, floor + (1 - floor) * np.exp(-(t - onset) / tau))
    return base * mult


def test_empty_frame_gives_no_results() -> None:
    frame = DailyAdMetrics.build(ad_id=[], date=[], impressions=[], clicks=[])
    assert detect_fatigue(frame) == []
    res = detect_fatigue_series([], [], [])
    assert not res.fatigued and res.score == 0.0


@pytest.mark.parametrize(
    ("imps", "clicks"),
    [(5000.0, 100.0), (0.0, 0.0), (5000.0, 0.0)],
    ids=["constant", "all-zero", "no-clicks"],
)
def test_degenerate_series_never_alert(imps: float, clicks: float) -> None:
    n = 200
    dates = START + np.arange(n).astype("timedelta64[D]")
    res = detect_fatigue_series(dates, np.full(n, imps), np.full(n, clicks), np.zeros(n), np.full(n, imps / 100))
    assert not res.fatigued
    assert res.score < 0.5
    assert res.wasted_spend == 0.0
    json.dumps(res.to_dict())


def test_very_short_series_is_not_judged() -> None:
    s = _series(6, _decay(6, 2))
    res = detect_fatigue_series(s["dates"], s["impressions"], s["clicks"], s["conversions"], s["spend"])
    assert not res.fatigued
    assert "insufficient history" in res.reason


def test_planted_decline_is_detected_with_onset_and_waste() -> None:
    n, onset = 160, 70
    s = _series(n, _decay(n, onset), seed=1)
    res = detect_fatigue_series(s["dates"], s["impressions"], s["clicks"], s["conversions"], s["spend"], ad_id="a1")
    assert res.fatigued, res.reason
    assert res.score >= 0.5
    assert res.onset_date is not None and res.detected_date is not None
    onset_found = int((np.datetime64(res.onset_date) - START).astype(int))
    detected = int((np.datetime64(res.detected_date) - START).astype(int))
    assert abs(onset_found - onset) <= 10
    assert onset <= detected <= onset + 25
    assert 0.35 <= res.ctr_drop <= 0.6  # floor is 0.5 of baseline
    assert res.wasted_spend > 0
    series = res.evidence["series"]
    assert len(series["ctr"]) == len(series["baseline_ctr"]) > 10
    json.dumps(res.to_dict())


def test_transient_dip_that_recovers_is_not_fatigue() -> None:
    n = 160
    ctr = np.full(n, 0.02)
    ctr[80:90] *= 0.6
    s = _series(n, ctr, seed=2)
    res = detect_fatigue_series(s["dates"], s["impressions"], s["clicks"], s["conversions"], s["spend"])
    assert not res.fatigued


def test_small_decline_below_action_threshold_is_not_flagged() -> None:
    n = 160
    s = _series(n, _decay(n, 60, floor=0.9), seed=3)
    res = detect_fatigue_series(s["dates"], s["impressions"], s["clicks"], s["conversions"], s["spend"])
    assert not res.fatigued


def test_stable_noisy_ads_raise_no_false_alarms() -> None:
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("ad", "date", "imps", "clicks")}
    for i in range(30):
        s = _series(200, 0.015, imps=float(500 + 400 * i), seed=100 + i, noise=0.15)
        rows["ad"].append(np.full(200, f"ad{i}"))
        rows["date"].append(s["dates"])
        rows["imps"].append(s["impressions"])
        rows["clicks"].append(s["clicks"])
    frame = DailyAdMetrics.build(
        ad_id=np.concatenate(rows["ad"]).tolist(),
        date=np.concatenate(rows["date"]),
        impressions=np.concatenate(rows["imps"]),
        clicks=np.concatenate(rows["clicks"]),
    )
    results = detect_fatigue(frame)
    assert len(results) == 30
    assert sum(r.fatigued for r in results) == 0


def test_cvr_only_decline_is_evidence_not_fatigue() -> None:
    n = 160
    s = _series(n, 0.02, seed=4, cvr=_decay(n, 60, base=0.08, floor=0.4))
    res = detect_fatigue_series(s["dates"], s["impressions"], s["clicks"], s["conversions"], s["spend"])
    assert not res.fatigued
    assert res.evidence["cvr_declined"] is True
    assert res.cvr_drop is not None and res.cvr_drop > 0.3


def test_duplicate_rows_are_summed_and_as_of_cuts_the_series() -> None:
    n, onset = 160, 70
    s = _series(n, _decay(n, onset), seed=5)
    half = {k: v / 2 for k, v in s.items() if k != "dates"}
    frame = DailyAdMetrics.build(
        ad_id=["a"] * (2 * n),
        date=np.concatenate([s["dates"], s["dates"]]),
        impressions=np.concatenate([half["impressions"], half["impressions"]]),
        clicks=np.concatenate([half["clicks"], half["clicks"]]),
        spend=np.concatenate([half["spend"], half["spend"]]),
    )
    assert detect_fatigue(frame)[0].fatigued
    early = detect_fatigue(frame, as_of=s["dates"][onset - 1])[0]
    assert not early.fatigued
    assert early.evidence["active_days"] == onset


def test_frequency_is_reported_when_given() -> None:
    n = 160
    s = _series(n, _decay(n, 60), seed=6)
    freq = 1 + np.cumsum(s["impressions"]) / 200_000
    res = detect_fatigue_series(s["dates"], s["impressions"], s["clicks"], s["conversions"], s["spend"], freq)
    assert res.evidence["recent_frequency"] > res.evidence["baseline_frequency"]


def test_custom_config_threshold_changes_verdict() -> None:
    n = 160
    s = _series(n, _decay(n, 60, floor=0.7), seed=7)
    args = (s["dates"], s["impressions"], s["clicks"], s["conversions"], s["spend"])
    assert detect_fatigue_series(*args).fatigued
    assert not detect_fatigue_series(*args, config=FatigueConfig(min_drop=0.4)).fatigued


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("clicks", [10.0, 200.0], "more clicks than impressions"),
        ("impressions", [-1.0, 100.0], "negative"),
        ("impressions", [np.nan, 100.0], "NaN"),
        ("impressions", [100.0], "expected 2"),
        ("date", ["2024-01-01", "not a date"], "calendar dates"),
    ],
)
def test_bad_input_is_a_422(field: str, value: list[object], message: str) -> None:
    args: dict[str, object] = {
        "ad_id": ["a", "a"],
        "date": ["2024-01-01", "2024-01-02"],
        "impressions": [100.0, 100.0],
        "clicks": [1.0, 2.0],
    }
    args[field] = value
    with pytest.raises(BrainInputError) as exc:
        DailyAdMetrics.build(**args)  # type: ignore[arg-type]
    assert message in exc.value.detail
    assert exc.value.status == 422


def _wearout(n_days: int, onset: int, rate: float, base: float = 0.02) -> np.ndarray:
    t = np.arange(n_days)
    return base * np.where(t < onset, 1.0, np.maximum(1.0 - rate * (t - onset), 0.3))


def test_slow_wearout_is_forecast_before_it_crosses_and_recovery_drops_it() -> None:
    # CTR falls 1% a day from day 100: 14% down on day 114, the 20% threshold on day 120
    s = _series(115, _wearout(115, 100, 0.01), imps=60_000.0, seed=21, noise=0.03)
    res = detect_fatigue_series(s["dates"], s["impressions"], s["clicks"], s["conversions"], s["spend"])
    assert not res.fatigued and res.forecast is not None, res.evidence
    assert 2 <= res.forecast["days_to_threshold"] <= 14
    lo, hi = res.forecast["interval_days"]
    assert lo <= res.forecast["days_to_threshold"] <= hi
    assert res.evidence["series"]["ctr"]
    flat = _series(115, 0.02, imps=60_000.0, seed=22, noise=0.03)
    assert detect_fatigue_series(flat["dates"], flat["impressions"], flat["clicks"]).forecast is None
    # the same decline that turned back up: no warning any more
    ctr = _wearout(125, 100, 0.01)
    ctr[115:] = 0.02
    back = _series(125, ctr, imps=60_000.0, seed=21, noise=0.03)
    assert detect_fatigue_series(back["dates"], back["impressions"], back["clicks"]).forecast is None


def test_forecast_becomes_a_recommendation() -> None:
    from omnify.brain.run import BrainFrames, run_brain

    s = _series(115, _wearout(115, 100, 0.01), imps=60_000.0, seed=21, noise=0.03)
    frame = DailyAdMetrics.build(ad_id=["a"] * 115, date=s["dates"], impressions=s["impressions"],
                                 clicks=s["clicks"], spend=s["spend"])
    recs = [r for r in run_brain(BrainFrames(client_id="c", ads=frame)).recommendations if r.kind == "fatigue_forecast"]
    assert len(recs) == 1 and recs[0].title.startswith("Fatigue expected in ")
    assert recs[0].dedupe_key == "fatigue-forecast:a" and recs[0].action is None
    assert recs[0].evidence["forecast"]["threshold_drop"] == 0.2


def test_old_decline_onset_is_not_pulled_towards_recent_days() -> None:
    """An onset 80 days back (where the onset grid is sparse) is placed within a week."""
    n, onset = 200, 110
    s = _series(n, _decay(n, onset, tau=6.0, floor=0.5), seed=5, imps=3000.0)
    res = detect_fatigue_series(s["dates"], s["impressions"], s["clicks"], s["conversions"], s["spend"])
    assert res.fatigued, res.reason
    assert res.onset_date is not None
    assert abs(int((np.datetime64(res.onset_date) - START).astype(int)) - onset) <= 7


def test_ten_day_dip_judged_daily_is_never_fatigued() -> None:
    """A causal daily run over a deep 10-day dip and the fortnight after it never flags it."""
    n = 150
    ctr = np.full(n, 0.02)
    ctr[100:110] *= 0.6
    s = _series(n, ctr, seed=7)
    for end in range(100, n):
        res = detect_fatigue_series(
            s["dates"][: end + 1], s["impressions"][: end + 1], s["clicks"][: end + 1], s["conversions"][: end + 1]
        )
        assert not res.fatigued, (end, res.reason)
