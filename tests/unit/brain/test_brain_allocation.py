"""Response curves and budget allocation: recovery, guardrails, degenerate histories."""

from __future__ import annotations

import json

import numpy as np
import pytest

from omnify.brain import allocation
from omnify.brain.allocation import (
    AllocationConfig,
    allocate_budget,
    allocation_from_history,
    curve_revenue,
    fit_response_curve,
)
from omnify.brain.types import BrainInputError, Pivot, ResponseCurve


def _history(
    decay: float, beta: float, kappa: float, shape: float, *, n: int = 300, level: float = 100.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    steps = np.repeat(np.exp(rng.normal(0, 0.35, n // 20 + 1)), 20)[:n]
    spend = level * steps * np.exp(rng.normal(0, 0.1, n))
    a = allocation._adstock(spend, decay)
    k_ad = kappa / (1 - decay)
    mean = beta * (a / k_ad) ** shape / (1 + (a / k_ad) ** shape)
    revenue = mean * np.exp(rng.normal(-0.005, 0.1, n))
    return spend, revenue


def _curve(cid: str, beta: float, kappa: float, shape: float) -> ResponseCurve:
    return ResponseCurve(cid, beta, kappa, shape, 0.3, 1.0, 100, 0.0, [[0.0] * 4 for _ in range(4)], (0.0, 0.0))


def test_fit_recovers_the_steady_state_curve() -> None:
    spend, revenue = _history(0.4, 600.0, 120.0, 1.6, seed=1)
    curve = fit_response_curve("c1", spend, revenue)
    assert isinstance(curve, ResponseCurve)
    for x in (60.0, 100.0, 160.0):
        truth = allocation.steady_state(600.0, 120.0, 1.6, x)
        assert abs(curve_revenue(curve, x) - truth) / truth < 0.1
    assert curve.r2 > 0.5
    assert len(curve.covariance) == 4
    json.dumps(curve.to_dict())


@pytest.mark.parametrize(
    ("spend", "revenue", "reason"),
    [
        (np.full(200, 100.0), np.full(200, 300.0), "barely varied"),
        (np.zeros(200), np.zeros(200), "days with spend"),
        (np.linspace(50, 150, 20), np.linspace(100, 300, 20), "days with spend"),
        (np.linspace(50, 150, 200), np.zeros(200), "no revenue"),
    ],
    ids=["constant", "all-zero", "short", "no-revenue"],
)
def test_unfit_histories_give_a_reason(spend: np.ndarray, revenue: np.ndarray, reason: str) -> None:
    out = fit_response_curve("c", spend, revenue)
    assert isinstance(out, str) and reason in out


def test_noise_without_signal_is_refused() -> None:
    rng = np.random.default_rng(3)
    spend = 100 * np.exp(rng.normal(0, 0.3, 200))
    revenue = 300 * np.exp(rng.normal(0, 0.3, 200))
    out = fit_response_curve("c", spend, revenue)
    assert isinstance(out, str) and "too uncertain" in out


def test_saturated_campaign_keeps_a_flat_curve_despite_low_r2() -> None:
    # Revenue barely follows spend because the campaign is saturated: a precise, flat curve.
    spend, revenue = _history(0.2, 1000.0, 20.0, 1.5, seed=5, level=300.0)
    curve = fit_response_curve("sat", spend, revenue)
    assert isinstance(curve, ResponseCurve), curve
    assert curve.r2 < 0.3
    assert curve.marginal_roas_band is not None and curve.marginal_roas_band[1] < 0.5


def test_budget_moves_from_saturated_to_unsaturated_within_guardrail() -> None:
    curves = {"sat": _curve("sat", 300.0, 20.0, 1.0), "open": _curve("open", 3000.0, 1000.0, 1.0)}
    result = allocate_budget(curves, {"sat": 100.0, "open": 100.0}, config=AllocationConfig(max_daily_change=0.2))
    rec = {c.campaign_id: c.recommended for c in result.campaigns}
    assert rec["sat"] == pytest.approx(80.0)
    assert rec["open"] == pytest.approx(120.0)
    assert sum(rec.values()) == pytest.approx(200.0)
    assert result.expected_revenue_change > 0
    json.dumps(result.to_dict())


def test_total_budget_min_and_max_are_respected() -> None:
    curves = {c: _curve(c, 1000.0 * (i + 1), 150.0, 1.3) for i, c in enumerate(("a", "b", "c"))}
    current = {"a": 100.0, "b": 100.0, "c": 100.0}
    result = allocate_budget(
        curves, current, 320.0, min_budget={"c": 110.0}, max_budget={"b": 105.0}, config=AllocationConfig(0.3)
    )
    rec = {c.campaign_id: c.recommended for c in result.campaigns}
    assert sum(rec.values()) == pytest.approx(320.0)
    assert rec["b"] <= 105.0 + 1e-6
    assert rec["c"] >= 110.0 - 1e-6
    for c in result.campaigns:
        assert 70.0 - 1e-6 <= c.recommended <= 130.0 + 1e-6


def test_s_curve_foot_is_handled() -> None:
    # An S-curve whose foot makes small moves look worthless: the greedy start finds the gain.
    curves = {"s": _curve("s", 1000.0, 150.0, 3.0), "flat": _curve("flat", 120.0, 10.0, 1.0)}
    result = allocate_budget(curves, {"s": 100.0, "flat": 100.0}, config=AllocationConfig(max_daily_change=0.5))
    rec = {c.campaign_id: c.recommended for c in result.campaigns}
    assert rec["s"] == pytest.approx(150.0)
    assert rec["flat"] == pytest.approx(50.0)


def test_uncurved_and_zero_budget_campaigns_stay_put() -> None:
    curves: dict[str, ResponseCurve | None] = {"a": _curve("a", 500.0, 50.0, 1.0), "b": None}
    result = allocate_budget(curves, {"a": 100.0, "b": 40.0, "z": 0.0}, reasons={"b": "too short"})
    by_id = {c.campaign_id: c for c in result.campaigns}
    assert by_id["b"].locked and by_id["b"].recommended == 40.0 and by_id["b"].reason == "too short"
    assert by_id["z"].recommended == 0.0
    assert by_id["a"].recommended == pytest.approx(100.0)
    assert result.expected_revenue_change == pytest.approx(0.0, abs=1e-6)


def test_plan_is_unboxed_and_the_guarded_path_reaches_it() -> None:
    curves = {"sat": _curve("sat", 300.0, 20.0, 1.0), "open": _curve("open", 3000.0, 1000.0, 1.0)}
    result = allocate_budget(curves, {"sat": 100.0, "open": 100.0}, config=AllocationConfig(max_daily_change=0.2))
    by_id = {c.campaign_id: c for c in result.campaigns}
    assert by_id["sat"].planned is not None and by_id["sat"].planned < 60.0  # the plan is not the +-20% box
    assert by_id["sat"].recommended == pytest.approx(80.0)  # today's step is within the guardrail
    path = result.path
    assert 2 <= len(path) <= 10 and result.evidence["steps_to_plan"] == len(path)
    for prev, step in zip([{"sat": 100.0, "open": 100.0}, *[p["budgets"] for p in path]], [p["budgets"] for p in path]):
        for cid in prev:
            assert step[cid] <= prev[cid] * 1.2 + 0.02 and step[cid] >= prev[cid] * 0.8 - 0.02
        assert sum(step.values()) == pytest.approx(200.0, abs=0.05)
    revenue = [p["expected_revenue"] for p in path]
    assert revenue == sorted(revenue)  # every step is expected to earn more than the one before
    assert path[-1]["budgets"]["sat"] == pytest.approx(by_id["sat"].planned, abs=1.0)  # within 1% of the mean budget
    assert result.expected_revenue_change == pytest.approx(path[-1]["revenue_change"], rel=0.02)


def test_infeasible_total_is_a_client_error() -> None:
    curves = {"a": _curve("a", 500.0, 50.0, 1.0)}
    with pytest.raises(BrainInputError) as exc:
        allocate_budget(curves, {"a": 100.0}, 200.0, max_budget={"a": 150.0})
    assert "outside what the budget limits allow" in exc.value.detail
    with pytest.raises(BrainInputError):
        allocate_budget(curves, {"a": 100.0}, 100.0, min_budget={"a": 130.0})
    with pytest.raises(BrainInputError):
        allocate_budget(curves, {"a": -1.0})


def test_end_to_end_from_history_with_uncertainty_band() -> None:
    ids: list[str] = []
    dates: list[np.ndarray] = []
    spends: list[np.ndarray] = []
    revenues: list[np.ndarray] = []
    truth = {"lo": (0.3, 400.0, 60.0, 1.2), "hi": (0.3, 2000.0, 600.0, 1.2)}
    for k, (cid, params) in enumerate(truth.items()):
        s, r = _history(*params, seed=10 + k)
        ids += [cid] * s.shape[0]
        dates.append(np.datetime64("2024-01-01") + np.arange(s.shape[0]).astype("timedelta64[D]"))
        spends.append(s)
        revenues.append(r)
    result = allocation_from_history(ids, np.concatenate(dates), np.concatenate(spends), np.concatenate(revenues))
    rec = {c.campaign_id: c for c in result.campaigns}
    assert rec["hi"].recommended > rec["hi"].current
    assert rec["lo"].recommended < rec["lo"].current
    assert result.band_low <= result.expected_revenue_change <= result.band_high
    assert result.probability_positive > 0.8
    true_gain = sum(
        allocation.steady_state(p[1], p[2], p[3], rec[c].recommended)
        - allocation.steady_state(p[1], p[2], p[3], rec[c].current)
        for c, p in truth.items()
    )
    assert true_gain > 0


def test_model_jacobian_matches_finite_differences() -> None:
    rng = np.random.default_rng(7)
    x = 100 * np.exp(rng.normal(0, 0.4, 120))
    theta = np.array([0.35, 800.0, 90.0, 1.7])
    _, jac = allocation._predict_and_jac(theta, x)
    num = np.empty_like(jac)
    for j in range(4):
        h = 1e-6 * theta[j]
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        num[:, j] = (allocation._predict_and_jac(up, x)[0] - allocation._predict_and_jac(down, x)[0]) / (2 * h)
    np.testing.assert_allclose(jac, num, rtol=1e-4, atol=1e-6)
    extreme = allocation._predict_and_jac(np.array([0.5, 1e30, 1e-30, 3.0]), x)
    assert np.all(np.isfinite(extreme[0])) and np.all(np.isfinite(extreme[1]))


def _reference_band(
    fitted: list[ResponseCurve | None], cur: np.ndarray, rec: np.ndarray, level: float
) -> tuple[float, float, float]:
    """The band as a per-campaign loop of scalar delta-method calls (the form before vectorising)."""
    from scipy.stats import norm

    var, delta = 0.0, 0.0
    for i, c in enumerate(fitted):
        if c is None or abs(rec[i] - cur[i]) < 1e-9:
            continue
        params = np.array([c.beta, c.half_saturation, c.shape])

        def change(b: float, k: float, sh: float, i: int = i) -> float:
            return float(allocation.steady_state(b, k, sh, rec[i]) - allocation.steady_state(b, k, sh, cur[i]))

        delta += change(*params)
        var += allocation._delta_sd(change, params, np.asarray(c.covariance)[1:, 1:]) ** 2
    sd = float(np.sqrt(var))
    z = float(norm.ppf(0.5 + level / 2.0))
    return delta - z * sd, delta + z * sd, float(norm.cdf(delta / sd)) if sd > 0 else float(delta > 0)


def test_vectorised_band_equals_the_per_campaign_delta_method() -> None:
    rng = np.random.default_rng(3)
    fitted: list[ResponseCurve | None] = []
    for k in range(12):
        if k == 4:
            fitted.append(None)
            continue
        e = float(rng.uniform(0.2, 0.8))
        beta = float(rng.uniform(1.0, 30.0))
        cov = np.zeros((4, 4))
        cov[1, 1], cov[3, 3] = (0.1 * beta) ** 2, 0.01
        cov[1, 3] = cov[3, 1] = -0.02 * beta
        if k % 3 == 0:  # a Hill curve with a finite, uncertain half-saturation
            hill_cov = [[0.0] * 4, [0.0, 25.0, 1.0, 0.0], [0.0, 1.0, 16.0, 0.1], [0.0, 0.0, 0.1, 0.01]]
            fitted.append(ResponseCurve(f"c{k}", beta * 50, 80.0, 1.0 + e, 0.3, 0.5, 200, 1.0, hill_cov, (0.0, 300.0)))
        else:
            fitted.append(ResponseCurve(f"c{k}", beta, float("inf"), e, 0.0, 0.0, 200, 1.0, cov.tolist(), (0.0, 300.0)))
    cur = rng.uniform(20.0, 200.0, 12)
    for rec in (cur * rng.uniform(0.8, 1.2, 12), cur.copy(), cur * 1.5):
        got = allocation._band(allocation._BandInputs.of(fitted), cur, rec, AllocationConfig())
        want = _reference_band(fitted, cur, rec, AllocationConfig().band_level)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_reach_capped_campaign_gets_a_saturating_curve() -> None:
    """Revenue capped by reach (cap (1 - exp(-s / cap))): the elasticity falls with spend, so
    the curve must flatten above today's spend instead of extrapolating a constant elasticity."""
    rng = np.random.default_rng(5)
    n = 240
    dates = np.arange(np.datetime64("2025-01-01"), np.datetime64("2025-01-01") + n)
    levels = np.repeat(np.exp(rng.uniform(-0.7, 0.7, n // 20 + 1)), 20)[:n]
    rows: dict[str, list[object]] = {"cid": [], "date": [], "spend": [], "revenue": []}
    spends: list[float] = []
    for cid in ("capped", "power"):
        spend = 150.0 * levels * np.exp(rng.normal(0, 0.05, n))
        mean = 300.0 * (1.0 - np.exp(-spend / 100.0)) if cid == "capped" else 30.0 * np.sqrt(spend)
        revenue = mean * np.exp(rng.normal(0, 0.03, n))
        spends += spend.tolist()
        rows["cid"] += [cid] * n
        rows["date"] += list(dates)
        rows["spend"] += spend.tolist()
        rows["revenue"] += revenue.tolist()
    res = allocation_from_history(rows["cid"], rows["date"], rows["spend"], rows["revenue"])
    curves = {c.campaign_id: c for c in res.curves}
    assert curves["capped"].family == "saturating"
    cap = curves["capped"]
    # the fitted curve gains far less from doubling spend than a constant elasticity would
    today = float(np.mean(spends[n - 28 : n]))
    gain = curve_revenue(cap, 2 * today) / curve_revenue(cap, today)
    assert gain < 2 ** float(cap.elasticity or 0.0) - 0.02
    assert abs(gain - (1 - np.exp(-2 * today / 100.0)) / (1 - np.exp(-today / 100.0))) < 0.1


@pytest.mark.parametrize("mix", ["mixed", "hill-only", "power-only"])
def test_optimiser_revenue_is_exactly_steady_state(mix: str) -> None:
    rng = np.random.default_rng(11)
    n = 9
    beta = rng.uniform(0.5, 50.0, n)
    kappa = rng.uniform(10.0, 500.0, n)
    if mix == "mixed":
        kappa[::2] = np.inf
    elif mix == "power-only":
        kappa[:] = np.inf
    shape = rng.uniform(0.2, 2.5, n)
    rev = allocation._Revenue(beta, kappa, shape)
    for x in (rng.uniform(0.0, 800.0, n), np.zeros(n), np.array([0.0, -1e-12, 1e-9, 5.0, 1e6, 3.0, 0.0, 2.0, 7.0])):
        np.testing.assert_array_equal(rev(x), allocation.steady_state(beta, kappa, shape, x))


def _funnel_pivot(seed: int = 3, n: int = 300) -> tuple[Pivot, dict[str, object]]:
    """Campaigns whose delivery saturates by reach or follows a power law; revenue = yield x impressions."""
    rng = np.random.default_rng(seed)
    dates = np.arange(np.datetime64("2025-01-01"), np.datetime64("2025-01-01") + n)
    truth: dict[str, object] = {
        "capped": lambda s: 400.0 * (1.0 - np.exp(-s / 300.0)) * 100.0,  # impressions
        "power": lambda s: 60.0 * s**0.5 * 100.0,
        "small": lambda s: 20.0 * s**0.7 * 100.0,
    }
    scale = {"capped": 200.0, "power": 400.0, "small": 30.0}
    spend, imps, rev = [], [], []
    for cid, fn in truth.items():
        level = np.repeat(np.exp(rng.uniform(-0.5, 0.5, n // 28 + 1)), 28)[:n]
        s = scale[cid] * level * np.exp(rng.normal(0, 0.08, n))
        m = fn(s) * np.exp(rng.normal(0, 0.05, n))  # type: ignore[operator]
        spend.append(s)
        imps.append(m)
        rev.append(0.02 * m * np.exp(rng.normal(0, 0.3, n)))
    pv = Pivot(
        list(truth),
        dates,
        {"spend": np.array(spend), "revenue": np.array(rev), "impressions": np.array(imps)},
        {},
        np.ones((len(truth), n)),
    )
    return pv, truth


def test_funnel_fit_recovers_delivery_shapes_and_trusts_them_beyond_twice_the_seen_spend() -> None:
    pv, truth = _funnel_pivot()
    curves, reasons = allocation.fit_funnel(pv)
    assert not reasons
    assert curves["capped"].family == "exponential"
    assert curves["power"].family in ("constant-elasticity", "exponential")
    for cid, c in curves.items():
        i = pv.keys.index(cid)
        today = float(pv.values["spend"][i, -28:].mean())
        rpi = float(pv.values["revenue"][i, -28:].sum() / pv.values["impressions"][i, -28:].sum())
        for mult in (0.5, 1.0, 3.0):
            want = rpi * float(truth[cid](mult * today))  # type: ignore[operator]
            assert abs(curve_revenue(c, mult * today) / want - 1.0) < 0.12, (cid, mult)
        assert c.max_spend is not None and c.max_spend >= c.spend_range[1]
        assert c.elasticity is not None and 0.0 < c.elasticity < 1.0
    # the power law is measured precisely: it is trusted well beyond twice the highest spend seen
    assert curves["power"].max_spend > 2.0 * curves["power"].spend_range[1]  # type: ignore[operator]
    json.dumps(curves["capped"].to_dict())


def test_funnel_plan_is_unboxed_and_each_guarded_step_reports_revenue_and_band() -> None:
    pv, _ = _funnel_pivot()
    current = {"capped": 400.0, "power": 200.0, "small": 30.0}  # the reach-capped one is overfunded
    res = allocation.allocation_from_pivot(pv, current=current, config=AllocationConfig(max_daily_change=0.2))
    plan = {c.campaign_id: c.planned for c in res.campaigns}
    assert plan["capped"] is not None and plan["capped"] < 400.0 * 0.8**3  # more than three guarded steps away
    assert sum(v for v in plan.values() if v is not None) == pytest.approx(630.0, abs=0.05)  # rounded to cents
    prev = current
    for step in res.path:
        for cid, v in step["budgets"].items():
            assert abs(v - prev[cid]) <= 0.2 * prev[cid] + 0.02
        lo, hi = step["band"]
        assert lo <= step["revenue_change"] <= hi
        assert 0.0 <= step["probability_positive"] <= 1.0
        prev = step["budgets"]
    assert res.path[-1]["revenue_change"] >= res.path[0]["revenue_change"] > 0
    assert res.expected_revenue_change >= res.path[0]["revenue_change"]


def test_funnel_falls_back_to_revenue_fit_without_impressions() -> None:
    pv, _ = _funnel_pivot()
    bare = Pivot(pv.keys, pv.dates, {k: pv.values[k] for k in ("spend", "revenue")}, {}, pv.rows)
    res = allocation.allocation_from_pivot(bare)
    assert {c.family for c in res.curves} <= {"constant-elasticity", "saturating"}


def test_optimiser_revenue_is_exactly_steady_state_with_exponential_curves() -> None:
    rng = np.random.default_rng(12)
    n = 9
    beta = rng.uniform(0.5, 50.0, n)
    kappa = rng.uniform(10.0, 500.0, n)
    kappa[::3] = np.inf
    kappa[1::3] *= -1.0  # the exponential family's array code
    shape = rng.uniform(0.2, 1.0, n)
    rev = allocation._Revenue(beta, kappa, shape)
    for x in (rng.uniform(0.0, 800.0, n), np.zeros(n)):
        np.testing.assert_array_equal(rev(x), allocation.steady_state(beta, kappa, shape, x))
    x = rng.uniform(1.0, 800.0, n)
    x[1::3] = rng.uniform(0.2, 2.0, 3) * -kappa[1::3]  # exponential curves where they still rise
    h = 1e-4
    num = (allocation.steady_state(beta, kappa, shape, x + h) - allocation.steady_state(beta, kappa, shape, x - h)) / (
        2 * h
    )
    np.testing.assert_allclose(allocation._slope(beta, kappa, shape, x), num, rtol=1e-5, atol=1e-12)
    c = ResponseCurve(
        "e", 5.0, 120.0, 0.8, 0.0, 0.0, 100, 0.0, [[0.0] * 4 for _ in range(4)], (0.0, 0.0), family="exponential"
    )
    assert curve_revenue(c, 100.0) == pytest.approx(5.0 * (1 - np.exp(-100.0 / 120.0)) ** 0.8)


def test_young_campaign_gets_a_pooled_curve_instead_of_a_lock() -> None:
    """A campaign with fewer than ``min_days`` usable days borrows the client's elasticity (not locked)."""
    pv, truth = _funnel_pivot()
    n = pv.shape[1]
    young = pv.keys.index("small")
    rows = pv.rows.copy()
    values = {k: v.copy() for k, v in pv.values.items()}
    rows[young, : n - 30] = 0.0
    for k in values:
        values[k][young, : n - 30] = 0.0
    pv_young = Pivot(pv.keys, pv.dates, values, {}, rows)
    locked = AllocationConfig(min_pooled_days=42)
    _, reasons = allocation.fit_funnel(pv_young, locked)
    assert reasons["small"].startswith("only 30 usable days")
    curves, reasons = allocation.fit_funnel(pv_young, AllocationConfig(min_pool_campaigns=2))
    assert "small" not in reasons
    c = curves["small"]
    assert c.n_obs == 30 and c.max_spend is not None and c.max_spend >= c.spend_range[1]
    assert c.elasticity is not None and 0.0 < c.elasticity < 1.0
    # the pooled curve is close to the truth around today's spend
    today = float(values["spend"][young, -28:].mean())
    rpi = float(values["revenue"][young, -28:].sum() / values["impressions"][young, -28:].sum())
    for mult in (0.7, 1.0, 1.5):
        want = rpi * float(truth["small"](mult * today))  # type: ignore[operator]
        assert abs(curve_revenue(c, mult * today) / want - 1.0) < 0.15, mult
