"""Customer lifetime value: BG/NBD purchase frequency and Gamma-Gamma order value.

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way")
-------------------------------------------------------------------------
While alive, a customer buys as a Poisson process with rate ``lambda``; after each
repeat purchase she drops out for good with probability ``p``. Across customers
``lambda ~ Gamma(r, alpha)`` and ``p ~ Beta(a, b)``. For a customer with ``x`` repeat
purchases, the last at ``t_x``, observed for ``T`` since her first purchase, the
log-likelihood is (their eq. 6, in the numerically stable form)::

    ln L = ln G(r+x) - ln G(r) + r ln(alpha) + ln B(a, b+x) - ln B(a, b)
           + ln[ (alpha+T)^-(r+x) + 1{x>0} a/(b+x-1) (alpha+t_x)^-(r+x) ]

We maximise the summed log-likelihood over log-parameters with L-BFGS-B and the
analytic gradient (digamma terms), after rescaling time so that ``alpha`` is of order
one; ``alpha`` is scaled back afterwards (``r``, ``a``, ``b`` are unit-free).

Predictions: the expected number of purchases in the next ``t`` days (eq. 10, with
the Gauss hypergeometric function ``2F1``) and the probability of being alive (eq. 11).

Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV", and Fader & Hardie's note)
--------------------------------------------------------------------------------
Order values of a customer are Gamma(p, nu) with a customer-specific rate
``nu ~ Gamma(q, v)``. The likelihood of a customer's mean repeat-order value ``m`` over
``x`` orders is closed form, fitted on repeat customers only, and the conditional
expectation ``E[M | x, m] = (p (v + x m)) / (p x + q - 1)`` shrinks each customer's
average towards the population mean, more so for customers with few orders.

Assumptions: purchases are counted per day (several orders on one day are one
purchase); spend per order is independent of purchase frequency (checked: the
correlation is reported in the evidence); the population is stationary over the
history. The 12-month value is undiscounted revenue, not margin.

Segments: customers are ranked by expected 12-month value into ``high_value`` (top
20%), ``medium_value`` (next 30%) and ``low_value``; repeat customers whose probability
of being alive fell below ``at_risk_below`` are ``at_risk`` whatever their tier (they
had a habit and probably lost it: the win-back audience).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, digamma, gammaln, hyp2f1

from omnify.brain.types import (
    RFM,
    BGNBDParams,
    BrainInputError,
    DateLike,
    FloatArray,
    GammaGammaParams,
    LTVResult,
    SegmentSummary,
    as_dates,
    as_float,
    as_labels,
    factorize,
    to_day,
)

_LOG_BOUNDS = (-12.0, 12.0)


@dataclass(frozen=True)
class LTVConfig:
    horizon_days: float = 365.0
    min_customers: int = 50
    min_repeat_customers: int = 20
    at_risk_below: float = 0.5
    high_share: float = 0.2
    medium_share: float = 0.3
    penalizer: float = 0.0
    """L2 penalty on the parameters (as in lifetimes); 0 = plain maximum likelihood."""


# --------------------------------------------------------------------------- RFM


def rfm_from_orders(customer_id: Any, order_date: Any, amount: Any, observation_end: DateLike | None = None) -> RFM:
    """Per-customer frequency/recency/T (days) and mean repeat-order value from raw orders.

    Orders on the same day are one purchase (summed). The first purchase day is the
    trial and is excluded from ``frequency`` and ``monetary``. Orders after
    ``observation_end`` are ignored.
    """
    dates = as_dates(order_date, "order_date")
    n = dates.shape[0]
    ids = as_labels(customer_id, "customer_id", n)
    amt = as_float(amount, "amount", n)
    end = to_day(observation_end) if observation_end is not None else (dates.max() if n else None)
    if n == 0 or end is None:
        return RFM.build(frequency=[], recency=[], T=[], monetary=[], customer_id=[])
    keep = dates <= end
    labels, codes = factorize([c for c, k in zip(ids, keep.tolist(), strict=True) if k])
    day = (dates[keep] - end).astype(np.int64)  # <= 0
    amt = amt[keep]
    if not labels:
        return RFM.build(frequency=[], recency=[], T=[], monetary=[], customer_id=[])
    # One row per (customer, day), amounts summed.
    order = np.lexsort((day, codes))
    codes, day, amt = codes[order], day[order], amt[order]
    new_group = np.ones(codes.shape[0], dtype=bool)
    new_group[1:] = (codes[1:] != codes[:-1]) | (day[1:] != day[:-1])
    starts = np.flatnonzero(new_group)
    c_u, d_u = codes[starts], day[starts]
    a_u = np.add.reduceat(amt, starts)
    n_c = len(labels)
    first = np.full(n_c, np.iinfo(np.int64).max)
    last = np.full(n_c, np.iinfo(np.int64).min)
    np.minimum.at(first, c_u, d_u)
    np.maximum.at(last, c_u, d_u)
    count = np.bincount(c_u, minlength=n_c).astype(np.float64)
    total = np.bincount(c_u, weights=a_u, minlength=n_c)
    is_first = d_u == first[c_u]
    first_amt = np.bincount(c_u[is_first], weights=a_u[is_first], minlength=n_c)
    freq = count - 1.0
    monetary = np.divide(total - first_amt, freq, out=np.zeros(n_c), where=freq > 0)
    has_values = bool((amt > 0).any())
    return RFM.build(
        frequency=freq,
        recency=(last - first).astype(np.float64),
        T=(-first).astype(np.float64),
        # a store whose orders carry no amounts still has a purchase history worth modelling
        monetary=np.maximum(monetary, 0.0) if has_values else None,
        customer_id=labels,
    )


# --------------------------------------------------------------------------- BG/NBD


def _bgnbd_ll_grad(
    log_params: FloatArray, x: FloatArray, tx: FloatArray, big_t: FloatArray, w: FloatArray
) -> tuple[float, FloatArray]:
    r, alpha, a, b = np.exp(log_params)
    pos = x > 0
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + big_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(pos, np.log(a) - np.log(np.where(pos, b + x - 1.0, 1.0)) - (r + x) * np.log(alpha + tx), -np.inf)
    m = np.maximum(a3, a4)
    e3 = np.exp(a3 - m)
    e4 = np.exp(a4 - m)
    ll = a1 + a2 + m + np.log(e3 + e4)
    w3 = e3 / (e3 + e4)
    w4 = 1.0 - w3
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - w3 * np.log(alpha + big_t) - w4 * np.log(alpha + tx)
    d_alpha = r / alpha - w3 * (r + x) / (alpha + big_t) - w4 * (r + x) / (alpha + tx)
    d_a = digamma(a + b) - digamma(a + b + x) + w4 / a
    d_b = (
        digamma(a + b)
        + digamma(b + x)
        - digamma(b)
        - digamma(a + b + x)
        - np.where(pos, w4 / np.where(pos, b + x - 1.0, 1.0), 0.0)
    )
    total = float(w @ ll)
    grad = np.array([w @ d_r * r, w @ d_alpha * alpha, w @ d_a * a, w @ d_b * b])
    return total, grad


def fit_bgnbd(frequency: Any, recency: Any, T: Any, *, weights: Any = None, penalizer: float = 0.0) -> BGNBDParams:
    """Maximum-likelihood BG/NBD parameters (time unit: that of ``recency`` and ``T``)."""
    rfm = RFM.build(frequency=frequency, recency=recency, T=T)
    n = len(rfm)
    if n == 0:
        raise BrainInputError("BG/NBD needs at least one customer")
    w = np.ones(n) if weights is None else as_float(weights, "weights", n)
    if (rfm.T <= 0).all():
        raise BrainInputError("BG/NBD needs customers observed for some time (T > 0)")
    scale = max(float(np.mean(rfm.T)) / 10.0, 1e-9)
    x, tx, big_t = rfm.frequency, rfm.recency / scale, np.maximum(rfm.T / scale, 1e-9)
    wsum = float(w.sum())

    def objective(lp: FloatArray) -> tuple[float, FloatArray]:
        ll, grad = _bgnbd_ll_grad(lp, x, tx, big_t, w)
        pen = penalizer * float(np.exp(lp) @ np.exp(lp))
        gpen = 2.0 * penalizer * np.exp(2.0 * lp)
        return -ll / wsum + pen, -grad / wsum + gpen

    best: Any = None
    for start in (np.log([1.0, 1.0, 1.0, 1.0]), np.log([0.3, 0.5, 0.8, 3.0])):
        res = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[_LOG_BOUNDS] * 4)
        if best is None or res.fun < best.fun:
            best = res
    r, alpha, a, b = np.exp(best.x)
    return BGNBDParams(
        r=float(r),
        alpha=float(alpha * scale),
        a=float(a),
        b=float(b),
        log_likelihood=float(-best.fun * wsum),
        n_customers=n,
        converged=bool(best.success),
    )


def expected_purchases(params: BGNBDParams, t: float, frequency: Any, recency: Any, T: Any) -> FloatArray:
    """Expected repeat purchases in the next ``t`` time units, per customer (eq. 10)."""
    x = np.asarray(frequency, dtype=np.float64)
    tx = np.asarray(recency, dtype=np.float64)
    big_t = np.asarray(T, dtype=np.float64)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    if abs(a - 1.0) < 1e-6:  # the closed form has a removable singularity at a = 1
        a = 1.0 + 1e-6
    z = t / (alpha + big_t + t)
    hyp = hyp2f1(r + x, b + x, a + b + x - 1.0, z)
    first = (a + b + x - 1.0) / (a - 1.0)
    second = 1.0 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp
    out: FloatArray = first * second / _alive_denominator(params, x, tx, big_t)
    return np.maximum(np.nan_to_num(out, nan=0.0, posinf=0.0), 0.0)


def _alive_denominator(params: BGNBDParams, x: FloatArray, tx: FloatArray, big_t: FloatArray) -> FloatArray:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    pos = x > 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_ratio = (r + x) * (np.log(alpha + big_t) - np.log(alpha + tx))
        term = np.where(pos, a / np.where(pos, b + x - 1.0, 1.0) * np.exp(np.minimum(log_ratio, 700.0)), 0.0)
    out: FloatArray = 1.0 + term
    return out


def probability_alive(params: BGNBDParams, frequency: Any, recency: Any, T: Any) -> FloatArray:
    """P(customer still active | history) (eq. 11); 1 for customers without repeat purchases."""
    x = np.asarray(frequency, dtype=np.float64)
    out: FloatArray = 1.0 / _alive_denominator(
        params, x, np.asarray(recency, dtype=np.float64), np.asarray(T, dtype=np.float64)
    )
    return out


# --------------------------------------------------------------------------- Gamma-Gamma


def _gg_ll_grad(log_params: FloatArray, x: FloatArray, m: FloatArray) -> tuple[float, FloatArray]:
    p, q, v = np.exp(log_params)
    px = p * x
    xm_v = x * m + v
    ll = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(xm_v)
    )
    d_p = x * (digamma(px + q) - digamma(px) + np.log(m) + np.log(x) - np.log(xm_v))
    d_q = digamma(px + q) - digamma(q) + np.log(v) - np.log(xm_v)
    d_v = q / v - (px + q) / xm_v
    return float(ll.sum()), np.array([d_p.sum() * p, d_q.sum() * q, d_v.sum() * v])


def fit_gamma_gamma(frequency: Any, monetary: Any, *, penalizer: float = 0.0) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma parameters from repeat customers (frequency > 0)."""
    x_all = np.asarray(frequency, dtype=np.float64).ravel()
    m_all = as_float(monetary, "monetary", x_all.shape[0])
    keep = (x_all > 0) & (m_all > 0)
    x, m = x_all[keep], m_all[keep]
    if x.shape[0] == 0:
        raise BrainInputError("Gamma-Gamma needs customers with repeat purchases")
    scale = float(np.mean(m))
    ms = m / scale
    n = x.shape[0]

    def objective(lp: FloatArray) -> tuple[float, FloatArray]:
        ll, grad = _gg_ll_grad(lp, x, ms)
        pen = penalizer * float(np.exp(lp) @ np.exp(lp))
        return -ll / n + pen, -grad / n + 2.0 * penalizer * np.exp(2.0 * lp)

    best: Any = None
    for start in (np.log([1.0, 2.0, 1.0]), np.log([5.0, 5.0, 5.0])):
        res = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[_LOG_BOUNDS] * 3)
        if best is None or res.fun < best.fun:
            best = res
    p, q, v = np.exp(best.x)
    # v is a rate on the value scale: undo the rescaling of m. The likelihood of the
    # original data differs from the scaled one by the Jacobian of m -> m/scale.
    ll = float(-best.fun * n - n * math.log(scale))
    return GammaGammaParams(
        p=float(p), q=float(q), v=float(v * scale), log_likelihood=ll, n_customers=n, converged=bool(best.success)
    )


def expected_order_value(params: GammaGammaParams, frequency: Any, monetary: Any) -> FloatArray:
    """E[order value | history]: the customer's mean shrunk towards the population mean."""
    x = np.asarray(frequency, dtype=np.float64)
    m = np.asarray(monetary, dtype=np.float64)
    p, q, v = params.p, params.q, params.v
    population = p * v / (q - 1.0) if q > 1.0 else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        cond = p * (v + x * m) / (p * x + q - 1.0)
    out: FloatArray = np.where(x > 0, cond, population)
    return out


# --------------------------------------------------------------------------- LTV


def customer_ltv(rfm: RFM, config: LTVConfig | None = None, *, first_order_value: Any = None) -> LTVResult:
    """12-month (``horizon_days``) purchases and value per customer, with segments.

    ``first_order_value`` (optional, per customer) is used for the order value of
    customers without repeat purchases when Gamma-Gamma cannot be fitted.
    """
    cfg = config or LTVConfig()
    n = len(rfm)
    x, tx, big_t, m = rfm.frequency, rfm.recency, rfm.T, rfm.monetary
    repeaters = int((x > 0).sum())
    evidence: dict[str, Any] = {"customers": n, "repeat_customers": repeaters}
    bg: BGNBDParams | None = None
    gg: GammaGammaParams | None = None
    reason = ""
    if n < cfg.min_customers:
        reason = f"only {n} customers, need {cfg.min_customers} to fit BG/NBD"
    elif repeaters < cfg.min_repeat_customers:
        reason = f"only {repeaters} repeat customers, need {cfg.min_repeat_customers}"
    has_values = bool((m[x > 0] > 0).any())
    if not reason:
        bg = fit_bgnbd(x, tx, big_t, penalizer=cfg.penalizer)
        if has_values:
            gg = fit_gamma_gamma(x, m, penalizer=cfg.penalizer)
            if gg.q <= 1.0:
                reason = "Gamma-Gamma population mean is undefined (q <= 1): order values too heavy-tailed"
                gg = None
    if bg is not None and not has_values:
        # Orders without amounts: purchases and survival from BG/NBD, no money figures;
        # customers are ranked (and segmented) by expected purchases.
        purchases = expected_purchases(bg, cfg.horizon_days, x, tx, big_t)
        alive = probability_alive(bg, x, tx, big_t)
        value = np.zeros(n)
        method = "bgnbd"
        reason = "orders carry no amounts: value not estimated, customers ranked by expected purchases"
        evidence["order_values"] = False
    elif bg is not None and gg is not None:
        purchases = expected_purchases(bg, cfg.horizon_days, x, tx, big_t)
        value = expected_order_value(gg, x, m)
        alive = probability_alive(bg, x, tx, big_t)
        method = "bgnbd+gamma-gamma"
        rep = x > 0
        if rep.sum() > 2 and np.std(x[rep]) > 0 and np.std(m[rep]) > 0:
            evidence["frequency_value_correlation"] = round(float(np.corrcoef(x[rep], m[rep])[0, 1]), 4)
    else:
        bg = None
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(big_t > 0, x / big_t, 0.0)
        purchases = rate * cfg.horizon_days
        fallback = float(m[x > 0].mean()) if repeaters else 0.0
        if first_order_value is not None:
            fov = as_float(first_order_value, "first_order_value", n)
            value = np.where(x > 0, m, fov)
        else:
            value = np.where(x > 0, m, fallback)
        alive = np.ones(n)
        method = "naive"
    ltv = purchases * value
    segment = _segments(ltv if has_values else purchases, alive, x, cfg)
    summaries = [
        SegmentSummary(
            segment=name,
            customers=int(mask.sum()),
            expected_purchases=round(float(purchases[mask].sum()), 2),
            expected_value=round(float(ltv[mask].sum()), 2),
            historical_value=round(float((x[mask] * m[mask]).sum()), 2),
        )
        for name in ("high_value", "medium_value", "low_value", "at_risk")
        for mask in [np.array([s == name for s in segment], dtype=bool)]
    ]
    return LTVResult(
        method=method,
        reason=reason or "fitted",
        horizon_days=cfg.horizon_days,
        bgnbd=bg,
        gamma_gamma=gg,
        customer_id=list(rfm.customer_id),
        expected_purchases=purchases,
        expected_order_value=value,
        expected_value=ltv,
        p_alive=alive,
        segment=segment,
        segments=summaries,
        evidence=evidence,
    )


def _segments(ltv: FloatArray, alive: FloatArray, x: FloatArray, cfg: LTVConfig) -> list[str]:
    n = ltv.shape[0]
    if n == 0:
        return []
    order = np.argsort(-ltv, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    share = rank / n
    seg = np.where(
        share < cfg.high_share,
        "high_value",
        np.where(share < cfg.high_share + cfg.medium_share, "medium_value", "low_value"),
    ).astype(object)
    seg[(x > 0) & (alive < cfg.at_risk_below)] = "at_risk"
    return [str(s) for s in seg]
