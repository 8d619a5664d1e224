"""Customers drawn from the BG/NBD and Gamma-Gamma stories, for the LTV section of brain_eval.

The generative model is the LTV model's own (this section checks that the fit recovers
known parameters and beats a naive forecast); the honest test of LTV on data nobody
generated is the CDNOW section (bench/brain_public.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from omnify.brain import ltv

START = np.datetime64("2024-01-01", "D")


TRUE_BGNBD = {"r": 0.6, "alpha": 60.0, "a": 0.8, "b": 3.0}  # time unit: days
TRUE_GG = {"p": 6.0, "q": 3.5, "v": 40.0}


@dataclass
class Customers:
    frequency: np.ndarray
    recency: np.ndarray
    T: np.ndarray
    monetary: np.ndarray
    holdout_purchases: np.ndarray
    holdout_value: np.ndarray
    orders: tuple[list[str], np.ndarray, np.ndarray]  # customer id, date, amount (calibration)


def simulate_customers(
    rng: np.random.Generator, n: int, cal_days: int = 730, holdout_days: int = 365, with_orders: bool = False
) -> Customers:
    """Customers drawn from the BG/NBD and Gamma-Gamma generative stories.

    First purchases arrive uniformly over the calibration window; each customer buys as a
    Poisson process with a Gamma-distributed rate and drops out after each repeat purchase
    with a Beta-distributed probability; order values are Gamma with a Gamma-distributed
    rate per customer. Purchases in the following ``holdout_days`` are the ground truth
    for the 12-month prediction.
    """
    t = TRUE_BGNBD
    first = rng.integers(0, cal_days, n)
    big_t = (cal_days - first).astype(np.float64)
    lam = rng.gamma(t["r"], 1.0 / t["alpha"], n)
    p_drop = rng.beta(t["a"], t["b"], n)
    k_max = rng.geometric(p_drop)  # repeat purchases made before dropping out
    span = big_t + holdout_days
    counts = rng.poisson(lam * span)
    owner = np.repeat(np.arange(n), counts)
    when = rng.uniform(0.0, 1.0, owner.shape[0]) * span[owner]
    order = np.lexsort((when, owner))
    owner, when = owner[order], when[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(owner.shape[0]) - starts[owner]
    alive = rank < k_max[owner]
    owner, when = owner[alive], when[alive]
    when = np.ceil(when)  # daily data: a purchase lands on a day
    cal = when <= big_t[owner]
    # several purchases on one day count once (as rfm_from_orders does)
    key = owner * 100_000 + when.astype(np.int64)
    _, idx = np.unique(key, return_index=True)
    owner_u, when_u, cal_u = owner[idx], when[idx], cal[idx]
    freq = np.bincount(owner_u[cal_u], minlength=n).astype(np.float64)
    rec = np.zeros(n)
    np.maximum.at(rec, owner_u[cal_u], when_u[cal_u])
    hold = np.bincount(owner_u[~cal_u], minlength=n).astype(np.float64)

    g = TRUE_GG
    nu = rng.gamma(g["q"], 1.0 / g["v"], n)
    values = rng.gamma(g["p"], 1.0 / nu[owner_u])
    sum_cal = np.bincount(owner_u[cal_u], weights=values[cal_u], minlength=n)
    monetary = np.divide(sum_cal, freq, out=np.zeros(n), where=freq > 0)
    hold_value = np.bincount(owner_u[~cal_u], weights=values[~cal_u], minlength=n)
    orders: tuple[list[str], np.ndarray, np.ndarray] = ([], np.array([], dtype="datetime64[D]"), np.array([]))
    if with_orders:
        first_val = rng.gamma(g["p"], 1.0 / nu)
        cid = np.concatenate([np.arange(n), owner_u[cal_u]])
        day = np.concatenate([first, first[owner_u[cal_u]] + when_u[cal_u].astype(np.int64)])
        amt = np.concatenate([first_val, values[cal_u]])
        orders = ([f"cust{c}" for c in cid.tolist()], START + day.astype("timedelta64[D]"), np.round(amt, 2))
    return Customers(freq, rec, big_t, monetary, hold, hold_value, orders)


def eval_ltv(seed: int, n_customers: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    c = simulate_customers(rng, n_customers)
    rfm = ltv.RFM.build(frequency=c.frequency, recency=c.recency, T=c.T, monetary=c.monetary)
    t0 = time.perf_counter()
    result = ltv.customer_ltv(rfm, ltv.LTVConfig(horizon_days=365.0))
    fit_s = time.perf_counter() - t0
    assert result.bgnbd is not None and result.gamma_gamma is not None
    bg, gg = result.bgnbd, result.gamma_gamma
    rel = {k: round(abs(getattr(bg, k) - v) / v, 4) for k, v in TRUE_BGNBD.items()}
    rel_gg = {k: round(abs(getattr(gg, k) - v) / v, 4) for k, v in TRUE_GG.items()}
    naive = np.divide(c.frequency, c.T, out=np.zeros_like(c.T), where=c.T > 0) * 365.0
    mae = float(np.mean(np.abs(result.expected_purchases - c.holdout_purchases)))
    mae_naive = float(np.mean(np.abs(naive - c.holdout_purchases)))
    val_mae = float(np.mean(np.abs(result.expected_value - c.holdout_value)))
    naive_val = naive * np.where(c.frequency > 0, c.monetary, float(c.monetary[c.frequency > 0].mean()))
    val_mae_naive = float(np.mean(np.abs(naive_val - c.holdout_value)))
    return {
        "customers": n_customers,
        "bgnbd": {k: round(getattr(bg, k), 4) for k in TRUE_BGNBD},
        "bgnbd_true": TRUE_BGNBD,
        "bgnbd_rel_error": rel,
        "bgnbd_max_rel_error": max(rel.values()),
        "gamma_gamma": {k: round(getattr(gg, k), 4) for k in TRUE_GG},
        "gamma_gamma_true": TRUE_GG,
        "gamma_gamma_rel_error": rel_gg,
        "gamma_gamma_mean_value_rel_error": round(
            abs(gg.p * gg.v / (gg.q - 1) - TRUE_GG["p"] * TRUE_GG["v"] / (TRUE_GG["q"] - 1))
            / (TRUE_GG["p"] * TRUE_GG["v"] / (TRUE_GG["q"] - 1)),
            4,
        ),
        "holdout_mae_purchases_12m": round(mae, 4),
        "holdout_mae_purchases_12m_naive": round(mae_naive, 4),
        "holdout_total_purchases_pred_vs_actual": [
            round(float(result.expected_purchases.sum()), 1),
            float(c.holdout_purchases.sum()),
        ],
        "holdout_mae_value_12m": round(val_mae, 2),
        "holdout_mae_value_12m_naive": round(val_mae_naive, 2),
        "fit_seconds": round(fit_s, 3),
    }
