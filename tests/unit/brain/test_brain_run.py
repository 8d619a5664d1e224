"""run_brain over one small client: every module runs, recommendations are well-formed and JSON-safe."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from omnify.brain.run import BrainConfig, BrainFrames, BudgetPlan, Orders, run_brain
from omnify.brain.types import RFM, BrainInputError, DailyAdMetrics, JsonMixin, Pivot, pivot, to_jsonable

START = np.datetime64("2024-01-01")


def _client(n_ads: int = 12, n_days: int = 150, fatigued: str = "ad0", seed: int = 0) -> DailyAdMetrics:
    rng = np.random.default_rng(seed)
    cols: dict[str, list[object]] = {
        k: [] for k in ("ad", "camp", "plat", "date", "imps", "clicks", "conv", "spend", "rev")
    }
    for i in range(n_ads):
        ad = f"ad{i}"
        camp = f"c{i % 4}"
        level = 200.0 * (1 + i % 4) * np.repeat(np.exp(rng.normal(0, 0.3, n_days // 15 + 1)), 15)[:n_days]
        spend = level * np.exp(rng.normal(0, 0.05, n_days))
        imps = rng.poisson(spend * 120).astype(float)
        ctr = np.full(n_days, 0.015)
        if ad == fatigued:
            t = np.arange(n_days)
            ctr = np.where(t < 70, 0.015, 0.015 * (0.5 + 0.5 * np.exp(-(t - 70) / 8)))
        clicks = rng.binomial(imps.astype(int), ctr).astype(float)
        conv = rng.binomial(clicks.astype(int), 0.05).astype(float)
        cols["ad"] += [ad] * n_days
        cols["camp"] += [camp] * n_days
        cols["plat"] += ["meta" if i % 2 else "tiktok"] * n_days
        cols["date"].append(START + np.arange(n_days).astype("timedelta64[D]"))
        cols["imps"].append(imps)
        cols["clicks"].append(clicks)
        cols["conv"].append(conv)
        cols["spend"].append(np.round(spend, 2))
        cols["rev"].append(np.round(conv * 70.0, 2))
    return DailyAdMetrics.build(
        ad_id=cols["ad"],  # type: ignore[arg-type]
        date=np.concatenate(cols["date"]),  # type: ignore[arg-type]
        impressions=np.concatenate(cols["imps"]),  # type: ignore[arg-type]
        clicks=np.concatenate(cols["clicks"]),  # type: ignore[arg-type]
        conversions=np.concatenate(cols["conv"]),  # type: ignore[arg-type]
        spend=np.concatenate(cols["spend"]),  # type: ignore[arg-type]
        revenue=np.concatenate(cols["rev"]),  # type: ignore[arg-type]
        campaign_id=cols["camp"],  # type: ignore[arg-type]
        account_id=["acct"] * len(cols["ad"]),
        platform=cols["plat"],  # type: ignore[arg-type]
    )


def _orders(n: int = 400, seed: int = 1) -> Orders:
    rng = np.random.default_rng(seed)
    ids, days, amounts = [], [], []
    for c in range(n):
        first = int(rng.integers(0, 120))
        k = int(rng.geometric(0.35))
        for d in np.sort(rng.integers(first, 150, k)).tolist():
            ids.append(f"cust{c}")
            days.append(d)
            amounts.append(float(rng.gamma(5, 12)))
        ids.append(f"cust{c}")
        days.append(first)
        amounts.append(float(rng.gamma(5, 12)))
    return Orders.build(customer_id=ids, date=START + np.array(days).astype("timedelta64[D]"), amount=amounts)


def test_full_run_produces_recommendations_from_every_module() -> None:
    frames = BrainFrames(
        client_id="client-1",
        ads=_client(),
        orders=_orders(),
        profile={"products": ["linen shirt"], "platforms": ["meta", "tiktok", "google"], "goals": ["retention"]},
        budget=BudgetPlan(max_daily_change=0.2),
        currency="EUR",
    )
    result = run_brain(frames)
    assert result.as_of == str(START + 149)
    assert {"fatigue", "anomaly", "allocation", "ltv", "ideas", "total"} <= set(result.timings_ms)
    fat = [r for r in result.recommendations if r.module == "fatigue"]
    assert [r.target["id"] for r in fat] == ["ad0"]
    assert fat[0].action == {"type": "pause_ad", "ad_id": "ad0"}
    assert fat[0].confidence >= 0.5 and (fat[0].expected_impact or 0) > 0
    assert fat[0].dedupe_key.startswith("fatigue:ad0:")
    assert result.allocation is not None and len(result.allocation.campaigns) == 4
    assert result.ltv is not None and len(result.ltv.customer_id) == 400
    assert result.ideas, "the rules always find something to say for this client"
    assert len({r.dedupe_key for r in result.recommendations}) == len(result.recommendations)
    text = json.dumps(result.to_dict())
    assert "NaN" not in text and "Infinity" not in text
    # Pure: the run did not pull in an HTTP client.
    assert "omnify.brain.llm" not in sys.modules or "httpx" in sys.modules


def test_same_inputs_same_recommendation_keys() -> None:
    frames = BrainFrames(client_id="c", ads=_client(seed=3), orders=_orders(seed=4))
    first = run_brain(frames)
    again = run_brain(BrainFrames(client_id="c", ads=_client(seed=3), orders=_orders(seed=4)))
    assert [r.dedupe_key for r in first.recommendations] == [r.dedupe_key for r in again.recommendations]


def test_empty_client_runs_clean() -> None:
    empty = DailyAdMetrics.build(ad_id=[], date=[], impressions=[], clicks=[])
    result = run_brain(BrainFrames(client_id="empty", ads=empty))
    assert result.fatigue == [] and result.anomalies == [] and result.allocation is None
    assert result.recommendations == [] and result.warnings == []
    json.dumps(result.to_dict())


def test_infeasible_budget_plan_is_a_warning_not_a_failure() -> None:
    frames = BrainFrames(client_id="c", ads=_client(), budget=BudgetPlan(total_budget=1e12))
    result = run_brain(frames)
    assert result.allocation is None
    assert any("allocation skipped" in w for w in result.warnings)


def test_as_of_truncates_history() -> None:
    result = run_brain(BrainFrames(client_id="c", ads=_client(), as_of="2024-03-01"))
    assert result.as_of == "2024-03-01"
    assert all(not f.fatigued for f in result.fatigue)  # decline starts on day 70 (2024-03-11)


def test_rfm_input_and_small_config() -> None:
    rfm = RFM.build(frequency=[0, 1, 3], recency=[0, 10, 50], T=[20, 40, 90], monetary=[0, 20, 30])
    result = run_brain(BrainFrames(client_id="c", ads=_client(n_ads=4), customers=rfm), BrainConfig(max_ideas=1))
    assert result.ltv is not None and result.ltv.method == "naive"
    assert any("naive" in w for w in result.warnings)
    assert len(result.ideas) <= 1


def test_pivot_and_jsonable_helpers() -> None:
    pv = pivot(["b", "a", "b"], np.array(["2024-01-02", "2024-01-01", "2024-01-02"], dtype="datetime64[D]"),
               {"x": np.array([1.0, 2.0, 3.0])}, {"k": ["kb", "ka", "kb"]})  # fmt: skip
    assert isinstance(pv, Pivot)
    assert pv.keys == ["b", "a"] and pv.attrs["k"] == ["kb", "ka"]
    np.testing.assert_allclose(pv.values["x"], [[0.0, 4.0], [2.0, 0.0]])
    assert to_jsonable({"a": np.float64("nan"), "b": np.int64(3), "d": np.datetime64("2024-01-01")}) == {
        "a": None,
        "b": 3,
        "d": "2024-01-01",
    }
    assert isinstance(run_brain, object) and issubclass(BrainInputError, Exception) and JsonMixin


def test_orders_validation() -> None:
    with pytest.raises(BrainInputError):
        Orders.build(customer_id=["a"], date=["2024-01-01"], amount=[-5.0])


def test_frame_from_db_rows() -> None:
    rows = [
        {"ad_id": "a", "date": "2024-01-01", "impressions": 100, "clicks": 3, "spend": 1.5, "campaign_id": "c",
         "account_id": "x", "platform": "meta", "frequency": 1.1, "conversions": None, "revenue": None},
        {"ad_id": "a", "date": "2024-01-02", "impressions": 120, "clicks": 4, "spend": 1.7, "campaign_id": "c",
         "account_id": "x", "platform": "meta", "frequency": 1.2, "conversions": 1, "revenue": 30.0},
    ]  # fmt: skip
    frame = DailyAdMetrics.from_rows(rows)
    assert len(frame) == 2 and frame.frequency is not None
    assert frame.conversions.tolist() == [0.0, 1.0]
    pv = frame.ad_pivot()
    assert pv.attrs["platform"] == ["meta"] and pv.values["impressions"].tolist() == [[100.0, 120.0]]
    with pytest.raises(BrainInputError, match="missing the column"):
        DailyAdMetrics.from_rows([{"date": "2024-01-01", "impressions": 1, "clicks": 0}])


def test_store_without_order_values_runs_on_purchases_alone() -> None:
    rng = np.random.default_rng(3)
    ids, days = [], []
    for c in range(400):
        first = int(rng.integers(0, 300))
        ids.append(f"c{c}")
        days.append(first)
        for _ in range(int(rng.poisson(2.0))):
            ids.append(f"c{c}")
            days.append(min(first + int(rng.integers(1, 200)), 419))
    orders = Orders.build(
        customer_id=ids, date=START + np.array(days).astype("timedelta64[D]"), amount=np.zeros(len(ids))
    )
    result = run_brain(BrainFrames(client_id="c", ads=_client(n_ads=4), orders=orders))
    assert result.ltv is not None and result.ltv.method == "bgnbd"
    assert result.ltv.bgnbd is not None and result.ltv.gamma_gamma is None
    assert float(result.ltv.expected_purchases.sum()) > 0
    assert any("no amounts" in w for w in result.warnings)
    json.dumps(result.to_dict())


@pytest.mark.parametrize(
    "stamps",
    [
        np.array(["2024-01-01T10:00", "2024-01-01T11:00"], dtype="datetime64[m]"),
        ["2024-01-01T10:00:00", "2024-01-01T11:00:00"],
    ],
    ids=["datetime64", "iso"],
)
def test_hourly_rows_are_refused_with_a_clear_error(stamps: object) -> None:
    with pytest.raises(BrainInputError) as exc:
        DailyAdMetrics.build(ad_id=["a", "a"], date=stamps, impressions=[10.0, 10.0], clicks=[1.0, 1.0])
    assert "hourly" in exc.value.detail and exc.value.status == 422
    from datetime import datetime

    midnight = DailyAdMetrics.build(ad_id=["a"], date=[datetime(2024, 1, 1)], impressions=[1.0], clicks=[0.0])
    assert len(midnight) == 1  # a datetime at midnight is a day


def test_campaign_delivery_is_measured_on_days_some_ads_missed() -> None:
    """A lost ad row leaves the campaign day incomplete, but its cost per impression is still
    measured on the ads that reported: the delivery fit gets that day, scaled to the campaign's spend."""
    from omnify.brain.anomaly import EntitySeries
    from omnify.brain.run import _with_impressions

    ads = _client(n_ads=8, n_days=60)
    keep = ~((np.asarray(ads.ad_id) == "ad0") & (np.asarray(ads.date) == START + 30))
    sub = DailyAdMetrics.build(
        ad_id=np.asarray(ads.ad_id)[keep],  # type: ignore[arg-type]
        date=np.asarray(ads.date)[keep],  # type: ignore[arg-type]
        impressions=np.asarray(ads.impressions)[keep],
        clicks=np.asarray(ads.clicks)[keep],
        conversions=np.asarray(ads.conversions)[keep],
        spend=np.asarray(ads.spend)[keep],
        revenue=np.asarray(ads.revenue)[keep],
        campaign_id=np.asarray(ads.campaign_id)[keep],  # type: ignore[arg-type]
        account_id=np.asarray(ads.account_id)[keep],  # type: ignore[arg-type]
        platform=np.asarray(ads.platform)[keep],  # type: ignore[arg-type]
    )
    ad_pv = sub.ad_pivot()
    series = EntitySeries.from_pivot(ad_pv)
    camp = series.campaign_pivot()
    plain = _with_impressions(camp, ad_pv)
    full = _with_impressions(camp, ad_pv, series)
    c0 = camp.keys.index("c0")
    assert not camp.present[c0, 30]  # not every ad of c0 reported that day
    assert plain.values["impressions"][c0, 30] < full.values["impressions"][c0, 30]
    assert full.values["delivery_days"][c0, 30] == 1.0
    # on a complete day both are the plain sum over the campaign's ads
    assert full.values["impressions"][c0, 29] == pytest.approx(plain.values["impressions"][c0, 29])
    ratio = full.values["impressions"][c0, 30] / camp.values["spend"][c0, 30]
    assert ratio == pytest.approx(plain.values["impressions"][c0, 29] / camp.values["spend"][c0, 29], rel=0.15)
