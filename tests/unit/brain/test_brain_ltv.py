"""BG/NBD and Gamma-Gamma: likelihood gradients, formulas against simulation, RFM, segments."""

from __future__ import annotations

import json

import numpy as np
import pytest

from omnify.brain import ltv
from omnify.brain.types import RFM, BGNBDParams, BrainInputError, GammaGammaParams

TRUE = {"r": 0.5, "alpha": 30.0, "a": 0.9, "b": 2.5}


def _simulate(n: int, seed: int, cal: int = 500, hold: int = 365) -> tuple[np.ndarray, ...]:
    """Continuous-time BG/NBD customers: calibration summary and holdout counts."""
    rng = np.random.default_rng(seed)
    big_t = rng.uniform(30, cal, n)
    lam = rng.gamma(TRUE["r"], 1 / TRUE["alpha"], n)
    k_max = rng.geometric(rng.beta(TRUE["a"], TRUE["b"], n))
    counts = rng.poisson(lam * (big_t + hold))
    owner = np.repeat(np.arange(n), counts)
    when = rng.uniform(0, 1, owner.shape[0]) * (big_t + hold)[owner]
    order = np.lexsort((when, owner))
    owner, when = owner[order], when[order]
    rank = np.arange(owner.shape[0]) - np.concatenate([[0], np.cumsum(counts)[:-1]])[owner]
    keep = rank < k_max[owner]
    owner, when = owner[keep], when[keep]
    cal_mask = when <= big_t[owner]
    x = np.bincount(owner[cal_mask], minlength=n).astype(float)
    tx = np.zeros(n)
    np.maximum.at(tx, owner[cal_mask], when[cal_mask])
    holdout = np.bincount(owner[~cal_mask], minlength=n).astype(float)
    return x, tx, big_t, holdout


def _num_grad(f: object, p: np.ndarray, h: float = 1e-6) -> np.ndarray:
    out = np.zeros_like(p)
    for i in range(p.shape[0]):
        e = np.zeros_like(p)
        e[i] = h
        out[i] = (f(p + e) - f(p - e)) / (2 * h)  # type: ignore[operator]
    return out


def test_bgnbd_gradient_matches_finite_differences() -> None:
    x, tx, big_t, _ = _simulate(300, 1)
    w = np.ones_like(x)
    lp = np.log([0.7, 2.0, 1.3, 3.1])
    _, grad = ltv._bgnbd_ll_grad(lp, x, tx / 50, big_t / 50, w)
    num = _num_grad(lambda p: ltv._bgnbd_ll_grad(p, x, tx / 50, big_t / 50, w)[0], lp)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-6)


def test_gamma_gamma_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(1, 8, 200).astype(float)
    m = rng.gamma(5, 10, 200) / 50
    lp = np.log([4.0, 3.0, 2.0])
    _, grad = ltv._gg_ll_grad(lp, x, m)
    num = _num_grad(lambda p: ltv._gg_ll_grad(p, x, m)[0], lp)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-6)


def test_bgnbd_fit_recovers_parameters_and_predicts_holdout() -> None:
    x, tx, big_t, holdout = _simulate(20_000, 3)
    params = ltv.fit_bgnbd(x, tx, big_t)
    assert params.converged
    for k, v in TRUE.items():
        assert abs(getattr(params, k) - v) / v < 0.2, (k, getattr(params, k))
    # The conditional expectation (eq. 10) is unbiased for the holdout under the true model.
    true = BGNBDParams(**TRUE, log_likelihood=0.0, n_customers=0, converged=True)
    pred = ltv.expected_purchases(true, 365.0, x, tx, big_t)
    assert abs(pred.sum() - holdout.sum()) / holdout.sum() < 0.05
    naive = np.where(big_t > 0, x / big_t, 0) * 365
    assert np.abs(pred - holdout).mean() < np.abs(naive - holdout).mean()


def test_expected_purchases_works_for_a_below_and_above_one() -> None:
    for a in (0.6, 1.0, 1.8):
        p = BGNBDParams(0.5, 30.0, a, 2.5, 0.0, 0, True)
        e = ltv.expected_purchases(p, 365.0, np.array([0.0, 3.0]), np.array([0.0, 100.0]), np.array([200.0, 200.0]))
        assert np.all(np.isfinite(e)) and np.all(e >= 0)


def test_probability_alive_behaves() -> None:
    p = BGNBDParams(0.5, 30.0, 0.9, 2.5, 0.0, 0, True)
    assert ltv.probability_alive(p, [0.0], [0.0], [300.0])[0] == pytest.approx(1.0)
    # Same history, longer silence since the last purchase: less likely alive.
    alive = ltv.probability_alive(p, [4.0, 4.0], [100.0, 100.0], [120.0, 400.0])
    assert alive[0] > alive[1]


def test_gamma_gamma_fit_and_shrinkage() -> None:
    rng = np.random.default_rng(4)
    n = 6000
    nu = rng.gamma(3.0, 1 / 40.0, n)
    x = rng.integers(1, 10, n).astype(float)
    m = np.array([rng.gamma(6.0, 1 / nu[i], int(x[i])).mean() for i in range(n)])
    params = ltv.fit_gamma_gamma(x, m)
    assert abs(params.p - 6.0) / 6.0 < 0.15
    assert abs(params.q - 3.0) / 3.0 < 0.15
    assert abs(params.v - 40.0) / 40.0 < 0.2
    population = params.p * params.v / (params.q - 1)
    e = ltv.expected_order_value(params, [1.0, 1.0, 50.0], [500.0, 10.0, 500.0])
    assert 10.0 < e[1] < population < e[0] < 500.0  # one order: pulled towards the mean
    assert e[2] == pytest.approx(500.0, rel=0.1)  # fifty orders: close to the own mean


def test_rfm_from_orders_counts_days_and_excludes_the_first_purchase() -> None:
    rfm = ltv.rfm_from_orders(
        ["a", "a", "a", "a", "b", "c"],
        ["2024-01-01", "2024-01-01", "2024-01-11", "2024-01-31", "2024-01-20", "2024-03-01"],
        [10.0, 5.0, 20.0, 40.0, 99.0, 7.0],
        observation_end="2024-02-10",
    )
    assert rfm.customer_id == ["a", "b"]
    np.testing.assert_allclose(rfm.frequency, [2, 0])
    np.testing.assert_allclose(rfm.recency, [30, 0])
    np.testing.assert_allclose(rfm.T, [40, 21])
    np.testing.assert_allclose(rfm.monetary, [30.0, 0.0])


def test_empty_and_tiny_inputs_fall_back_without_crashing() -> None:
    empty = ltv.rfm_from_orders([], [], [])
    assert len(empty) == 0
    res = ltv.customer_ltv(empty)
    assert res.method == "naive" and res.customer_id == []
    tiny = RFM.build(frequency=[0, 2, 0], recency=[0, 10, 0], T=[5, 30, 0], monetary=[0, 50, 0])
    res = ltv.customer_ltv(tiny)
    assert res.method == "naive" and "customers" in res.reason
    assert np.all(np.isfinite(res.expected_value))
    json.dumps(res.to_dict())


def test_no_repeat_customers_fall_back() -> None:
    rfm = RFM.build(frequency=np.zeros(200), recency=np.zeros(200), T=np.full(200, 100.0))
    res = ltv.customer_ltv(rfm)
    assert res.method == "naive" and "repeat customers" in res.reason
    assert np.all(res.expected_purchases == 0)


def test_customer_ltv_segments_and_at_risk() -> None:
    x, tx, big_t, _ = _simulate(3000, 5)
    rng = np.random.default_rng(5)
    m = np.where(x > 0, rng.gamma(6, 10, x.shape[0]), 0.0)
    res = ltv.customer_ltv(RFM.build(frequency=x, recency=tx, T=big_t, monetary=m))
    assert res.method == "bgnbd+gamma-gamma"
    assert isinstance(res.gamma_gamma, GammaGammaParams)
    seg = np.array(res.segment)
    at_risk = seg == "at_risk"
    assert at_risk.any()
    assert np.all(res.p_alive[at_risk] < 0.5) and np.all(x[at_risk] > 0)
    high = seg == "high_value"
    assert res.expected_value[high].min() >= res.expected_value[seg == "low_value"].max()
    counts = {s.segment: s.customers for s in res.segments}
    assert sum(counts.values()) == 3000
    assert "frequency_value_correlation" in res.evidence


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frequency": [1.5], "recency": [1], "T": [2]}, "whole numbers"),
        ({"frequency": [1], "recency": [5], "T": [2]}, "cannot exceed T"),
        ({"frequency": [-1], "recency": [0], "T": [2]}, "negative"),
    ],
)
def test_bad_rfm_is_a_422(kwargs: dict[str, list[float]], message: str) -> None:
    with pytest.raises(BrainInputError) as exc:
        RFM.build(**kwargs)  # type: ignore[arg-type]
    assert message in exc.value.detail


def test_free_repeat_orders_do_not_break_the_fit() -> None:
    rng = np.random.default_rng(11)
    n = 300
    x = rng.poisson(1.5, n).astype(float)
    big_t = rng.uniform(100, 300, n)
    rec = np.where(x > 0, big_t * rng.uniform(0.2, 1.0, n), 0.0)
    m = np.where(x > 0, rng.gamma(5, 10, n), 0.0)
    m[np.flatnonzero(x > 0)[:5]] = 0.0  # repeat customers whose repeat orders were free
    from omnify.brain.ltv import customer_ltv
    from omnify.brain.types import RFM

    res = customer_ltv(RFM.build(frequency=x, recency=rec, T=big_t, monetary=m))
    assert res.gamma_gamma is not None and res.gamma_gamma.n_customers == int((x > 0).sum()) - 5
    assert np.isfinite(res.expected_value).all()
