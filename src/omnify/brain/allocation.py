"""Budget reallocation: fit a saturating revenue response per campaign, then reallocate.

Response model
--------------
Advertising works with a delay and with diminishing returns. Per campaign, daily
revenue is modelled as a Hill function of *adstocked* spend:

    a_t = x_t + decay * a_{t-1}                      (geometric adstock)
    revenue_t = beta * a_t^s / (K^s + a_t^s) + noise   (Hill saturation)

``beta`` is the revenue ceiling, ``s`` the shape (s > 1 gives an S-curve) and ``decay``
the share of today's effect carried to tomorrow. The half-saturation is parameterised
as ``K = kappa / (1 - decay)``; at a sustained daily spend ``x`` the adstock settles at
``x / (1 - decay)``, so the *steady-state* response is ``beta * x^s / (kappa^s + x^s)``
and depends on ``kappa`` only. This makes the quantity the allocator needs (the
steady-state curve) well identified even when ``decay`` is not.

Fitting is non-linear least squares (``scipy.optimize.least_squares``, MINPACK's
Levenberg-Marquardt in unconstrained coordinates - logistic for the bounded decay and
shape, log for the positive scale parameters - with an analytic Jacobian; the adstock
derivative is itself a geometric filter, computed with ``scipy.signal.lfilter``). It
starts from the best point of a coarse grid over (decay, shape, kappa) on which beta is
profiled out in closed form, which avoids the local optima of a cold start.
The first ``burn_in`` days are not scored because the adstock carried in from before
the window is unknown. The parameter covariance is ``sigma^2 (J^T J)^-1`` at the
optimum.

A campaign is **locked** at its current budget when its curve cannot be trusted: too
few days, spend that barely varied (the data then says nothing about the slope), no
revenue, a fit worse than a constant, or a marginal return at today's spend that the
data cannot pin down (its 90% interval wider than the campaign's average ROAS). R^2 is
*not* the criterion: a saturated campaign's revenue hardly follows its spend (low R^2),
yet the flat curve that says so is known precisely and is the most useful of all - it
is where budget should come from.

Allocation
----------
Maximise the sum of steady-state revenues subject to: the total budget, per-campaign
min/max, and a guardrail of ``max_daily_change`` (a fraction of the current budget,
both ways), with ``scipy.optimize.minimize`` (SLSQP). Hill curves with ``s > 1`` are not
concave, so SLSQP starts both from the projected current allocation and from a greedy
marginal-return allocation on a fine grid (which handles the convex foot of an
S-curve), and the better optimum wins. A campaign with zero current budget stays at zero
under a fractional guardrail; a launch is a decision, not a reallocation.

Uncertainty: the revenue change of each moved campaign gets a delta-method SD from its
parameter covariance; campaigns are fitted independently, so variances add. The band
is the central normal ``band_level`` interval of the total and ``probability_positive``
the normal probability of a gain.

Assumptions: revenue attributed to a campaign responds to that campaign's spend only;
the curve is stable over the history window; the steady state is reached within the
planning horizon (the recommendation is a sustained daily budget).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares, minimize
from scipy.signal import lfilter
from scipy.special import expit
from scipy.stats import norm

from omnify.brain.types import (
    AllocationResult,
    BrainInputError,
    CampaignAllocation,
    DateLike,
    FloatArray,
    Pivot,
    ResponseCurve,
    as_dates,
    as_float,
    as_labels,
    pivot,
    to_day,
)

# Parameter order everywhere: decay, beta, kappa, shape.
_Z90 = 1.6448536269514722
_LOWER = np.array([0.0, 1e-6, 1e-3, 0.5])
_UPPER = np.array([0.9, 1e3, 1e2, 3.0])


@dataclass(frozen=True)
class AllocationConfig:
    max_daily_change: float = 0.2
    """Guardrail: no campaign moves by more than this fraction of its current budget."""
    min_days: int = 42
    min_spend_cv: float = 0.05
    """Spend must have varied (coefficient of variation) for its effect to be measurable."""
    max_slope_uncertainty: float = 1.0
    """Lock a campaign when the 90% interval of its marginal ROAS at today's spend is wider
    than this multiple of its average ROAS: its curve cannot rank it against the others."""
    min_r2: float = 0.0
    """Refuse fits worse than a constant. A low R^2 alone is not a reason: a saturated campaign's
    revenue does not follow its spend, and that flat curve is exactly what the allocator needs."""
    burn_in: int = 14
    band_level: float = 0.9
    grid_steps: int = 200


# --------------------------------------------------------------------------- model


def _adstock(x: FloatArray, decay: float) -> FloatArray:
    out: FloatArray = lfilter([1.0], [1.0, -decay], x)
    return out


def _predict_and_jac(theta: FloatArray, x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Model revenue and its Jacobian in (decay, beta, kappa, shape), in overflow-safe form.

    With ``h = expit(s log(a / K))`` the Hill factor, every derivative is a multiple of
    ``beta h (1 - h)``; the decay enters through the adstock (``g = da/d decay``, itself a
    geometric filter of the lagged adstock) and through ``K = kappa / (1 - decay)``.
    """
    decay, beta, kappa, shape = (float(v) for v in theta)
    one_m = 1.0 - decay
    a = _adstock(x, decay)
    g = _adstock(np.concatenate([[0.0], a[:-1]]), decay)
    a_safe = np.maximum(a, 1e-12)
    log_ratio = np.log(a_safe) - math.log(kappa / one_m)
    h = expit(shape * log_ratio)
    common = beta * h * (1.0 - h)
    jac = np.empty((x.shape[0], 4))
    jac[:, 0] = common * shape * (g / a_safe - 1.0 / one_m)
    jac[:, 1] = h
    jac[:, 2] = -common * shape / kappa
    jac[:, 3] = common * log_ratio
    return beta * h, jac


def _hill(kappa: Any, shape: Any, x: Any) -> Any:
    """``x^s / (kappa^s + x^s)`` as a logistic in log space: no overflow for extreme parameters."""
    with np.errstate(divide="ignore"):
        log_x = np.log(np.maximum(np.asarray(x, dtype=np.float64), 0.0))
    return expit(shape * (log_x - np.log(kappa)))


def steady_state(beta: FloatArray | float, kappa: FloatArray | float, shape: FloatArray | float, x: Any) -> Any:
    """Daily revenue at a sustained daily spend ``x`` (broadcasts over arrays)."""
    return beta * _hill(kappa, shape, x)


def _slope(beta: Any, kappa: Any, shape: Any, x: Any) -> Any:
    """Marginal revenue per unit of spend at a sustained daily spend ``x > 0``."""
    h = _hill(kappa, shape, x)
    return beta * shape * h * (1.0 - h) / x


def _steady_slope(beta: float, kappa: float, shape: float, x: float) -> float:
    if x <= 0:
        return 0.0 if shape > 1 else float("inf") if shape < 1 else beta / kappa
    return float(_slope(beta, kappa, shape, x))


def _delta_sd(fn: Any, params: FloatArray, cov: FloatArray) -> float:
    """Delta-method SD of ``fn(beta, kappa, shape)`` from the parameter covariance.

    Only *local* quantities are propagated (revenue changes within the guardrail, the
    slope at today's spend), which the linearisation behind the covariance describes
    well; sampling parameters instead would wander along the weakly identified ridge of
    (beta, kappa) into absurd curves.
    """
    grad = np.empty(3)
    for j in range(3):
        h = 1e-6 * max(abs(float(params[j])), 1e-9)
        up, down = params.copy(), params.copy()
        up[j] += h
        down[j] -= h
        grad[j] = (float(fn(*up)) - float(fn(*down))) / (2.0 * h)
    var = float(grad @ cov @ grad)
    return math.sqrt(var) if var > 0 and math.isfinite(var) else (0.0 if var == 0 else float("inf"))


def curve_revenue(curve: ResponseCurve, spend: Any) -> Any:
    """Steady-state daily revenue of a fitted curve at a daily spend."""
    return steady_state(curve.beta, curve.half_saturation, curve.shape, spend)


# --------------------------------------------------------------------------- fitting


_GRID_DECAY = np.array([0.1, 0.3, 0.5, 0.7])
_GRID_SHAPE = np.array([0.8, 1.2, 1.8, 2.6])
_GRID_KAPPA = np.exp(np.linspace(np.log(0.2), np.log(20.0), 10))


def _from_free(u: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Unconstrained -> model parameters (logistic for bounded, exp for positive) and the derivative.

    Fitting in free coordinates lets MINPACK's Levenberg-Marquardt (compiled, fast) do
    the work while the parameters stay inside their bounds.
    """
    sig = 1.0 / (1.0 + np.exp(-np.clip(u[[0, 3]], -30.0, 30.0)))
    span_d = _UPPER[0] - _LOWER[0]
    span_s = _UPPER[3] - _LOWER[3]
    pos = np.exp(np.clip(u[[1, 2]], -30.0, 30.0))
    theta = np.array([_LOWER[0] + span_d * sig[0], pos[0], pos[1], _LOWER[3] + span_s * sig[1]])
    deriv = np.array([span_d * sig[0] * (1 - sig[0]), pos[0], pos[1], span_s * sig[1] * (1 - sig[1])])
    return theta, deriv


def _to_free(theta: FloatArray) -> FloatArray:
    d = np.clip((theta[0] - _LOWER[0]) / (_UPPER[0] - _LOWER[0]), 1e-4, 1 - 1e-4)
    s = np.clip((theta[3] - _LOWER[3]) / (_UPPER[3] - _LOWER[3]), 1e-4, 1 - 1e-4)
    return np.array(
        [np.log(d / (1 - d)), np.log(max(theta[1], 1e-12)), np.log(max(theta[2], 1e-12)), np.log(s / (1 - s))]
    )


def _grid_starts(xs: FloatArray, ys: FloatArray, scored: slice, n_starts: int) -> list[FloatArray]:
    """Best points of a coarse (decay, shape, kappa) grid, with beta profiled out.

    For fixed non-linear parameters the least-squares beta is ``<h, y> / <h, h>``, so the
    whole grid costs a few vectorised passes and the local optimiser starts close by.
    """
    y = ys[scored]
    yy = float(y @ y)
    found: list[tuple[float, FloatArray]] = []
    for decay in _GRID_DECAY:
        a = np.maximum(_adstock(xs, float(decay))[scored], 1e-12)
        k_ad = _GRID_KAPPA / (1.0 - decay)
        q = (a[None, None, :] / k_ad[:, None, None]) ** _GRID_SHAPE[None, :, None]
        h = q / (1.0 + q)
        hy = h @ y
        hh = np.einsum("kst,kst->ks", h, h)
        beta = np.where(hh > 0, hy / np.maximum(hh, 1e-300), 0.0)
        sse = yy - np.where(hh > 0, hy**2 / np.maximum(hh, 1e-300), 0.0)
        for k, sh in zip(*np.unravel_index(np.argsort(sse, axis=None)[:n_starts], sse.shape), strict=True):
            theta = np.array([decay, beta[k, sh], _GRID_KAPPA[k], _GRID_SHAPE[sh]])
            found.append((float(sse[k, sh]), np.clip(theta, _LOWER * 1.001 + 1e-9, _UPPER * 0.999)))
    found.sort(key=lambda t: t[0])
    return [t for _, t in found[:n_starts]]


def fit_response_curve(
    campaign_id: str, spend: Any, revenue: Any, config: AllocationConfig | None = None
) -> ResponseCurve | str:
    """Fit one campaign's curve from its daily spend and revenue; a reason string when it cannot."""
    cfg = config or AllocationConfig()
    x = as_float(np.ravel(np.asarray(spend, dtype=np.float64)), "spend", int(np.size(spend)))
    y = as_float(revenue, "revenue", x.shape[0])
    active = int((x > 0).sum())
    if active < cfg.min_days:
        return f"only {active} days with spend, need {cfg.min_days}"
    sx = float(x[x > 0].mean())
    cv = float(x[x > 0].std() / sx)
    if cv < cfg.min_spend_cv:
        return f"spend barely varied (CV {cv:.1%}), so its effect on revenue cannot be measured"
    sy = float(y.mean())
    if sy <= 0:
        return "no revenue attributed"
    xs, ys = x / sx, y / sy
    scored = slice(min(cfg.burn_in, max(x.shape[0] - cfg.min_days, 0)), None)
    y_fit = ys[scored]

    cache: dict[bytes, tuple[FloatArray, FloatArray]] = {}

    def evaluate(u: FloatArray) -> tuple[FloatArray, FloatArray]:
        key = u.tobytes()
        if key not in cache:
            cache.clear()
            theta, dtheta = _from_free(u)
            pred, j = _predict_and_jac(theta, xs)
            cache[key] = (pred[scored] - y_fit, j[scored] * dtheta)
        return cache[key]

    def resid(u: FloatArray) -> FloatArray:
        return evaluate(u)[0]

    def jac(u: FloatArray) -> FloatArray:
        return evaluate(u)[1]

    best: Any = None
    for theta0 in _grid_starts(xs, ys, scored, n_starts=1):
        try:
            res = least_squares(resid, _to_free(theta0), jac=jac, method="lm", max_nfev=200, ftol=1e-8, xtol=1e-8)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            continue
        if np.isfinite(res.cost) and (best is None or res.cost < best.cost):
            best = res
    if best is None:
        return "the response-curve fit did not converge"
    theta, _ = _from_free(best.x)
    r = best.fun
    n = r.shape[0]
    sse = float(r @ r)
    sst = float(((y_fit - y_fit.mean()) ** 2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else 0.0
    if r2 < cfg.min_r2:
        return f"spend explains too little of revenue (R^2 {r2:.2f})"
    sigma2 = sse / max(n - 4, 1)
    _, j_full = _predict_and_jac(theta, xs)
    j = j_full[scored]
    cov_n = sigma2 * np.linalg.pinv(j.T @ j)
    scale = np.array([1.0, sy, sx, 1.0])
    cov = cov_n * np.outer(scale, scale)
    natural = np.array([theta[1] * sy, theta[2] * sx, theta[3]])
    # How well do we know the return of the next unit of spend at today's level?
    recent = x[-7:][x[-7:] > 0]
    x_ref = float(recent.mean()) if recent.size else sx
    slope = float(_slope(natural[0], natural[1], natural[2], x_ref))
    half = _Z90 * _delta_sd(lambda b, k, sh: _slope(b, k, sh, x_ref), natural, cov[1:, 1:])
    lo, hi = slope - half, slope + half
    avg_roas = float(y.sum() / x.sum())
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi - lo > cfg.max_slope_uncertainty * avg_roas:
        return (
            f"the return of extra spend is too uncertain (90% interval {lo:.2f} to {hi:.2f} "
            f"per unit spent, against an average ROAS of {avg_roas:.2f})"
        )
    return ResponseCurve(
        campaign_id=campaign_id,
        beta=float(theta[1] * sy),
        half_saturation=float(theta[2] * sx),
        shape=float(theta[3]),
        decay=float(theta[0]),
        r2=round(r2, 4),
        n_obs=n,
        sigma=float(math.sqrt(sigma2) * sy),
        covariance=[[float(v) for v in row] for row in cov],
        spend_range=(float(x[x > 0].min()), float(x.max())),
        marginal_roas_band=(round(float(lo), 4), round(float(hi), 4)),
    )


def fit_response_curves(
    campaign_id: Any, date: Any, spend: Any, revenue: Any, config: AllocationConfig | None = None
) -> tuple[dict[str, ResponseCurve], dict[str, str]]:
    """Fit every campaign of a long frame; returns curves and, for the rest, why not."""
    dates = as_dates(date)
    n = dates.shape[0]
    ids = as_labels(campaign_id, "campaign_id", n)
    pv = pivot(ids, dates, {"spend": as_float(spend, "spend", n), "revenue": as_float(revenue, "revenue", n)})
    return fit_curves_from_pivot(pv, config)


def fit_curves_from_pivot(
    pv: Pivot, config: AllocationConfig | None = None
) -> tuple[dict[str, ResponseCurve], dict[str, str]]:
    """Fit every row of a campaign x day pivot with ``spend`` and ``revenue`` matrices."""
    curves: dict[str, ResponseCurve] = {}
    reasons: dict[str, str] = {}
    for i, cid in enumerate(pv.keys):
        x, y = pv.values["spend"][i], pv.values["revenue"][i]
        first = int(np.argmax(x > 0)) if (x > 0).any() else x.shape[0]
        out = fit_response_curve(cid, x[first:], y[first:], config)
        if isinstance(out, str):
            reasons[cid] = out
        else:
            curves[cid] = out
    return curves, reasons


# --------------------------------------------------------------------------- allocation


def _bounds(
    ids: list[str],
    current: FloatArray,
    locked: np.ndarray,
    min_budget: Mapping[str, float],
    max_budget: Mapping[str, float],
    g: float,
) -> tuple[FloatArray, FloatArray]:
    lo = current * (1.0 - g)
    hi = current * (1.0 + g)
    for i, cid in enumerate(ids):
        if cid in min_budget:
            lo[i] = max(lo[i], float(min_budget[cid]))
        if cid in max_budget:
            hi[i] = min(hi[i], float(max_budget[cid]))
        if hi[i] < lo[i]:
            raise BrainInputError(
                f"budget limits for {cid} leave no room: min {lo[i]:.2f} > max {hi[i]:.2f} "
                f"(guardrail {g:.0%} of current {current[i]:.2f})"
            )
    lo = np.where(locked, current, lo)
    hi = np.where(locked, current, hi)
    return lo, hi


def _greedy(
    beta: FloatArray, kappa: FloatArray, shape: FloatArray, lo: FloatArray, hi: FloatArray, total: float, steps: int
) -> FloatArray:
    x = lo.copy()
    remaining = total - float(lo.sum())
    if remaining <= 0:
        return x
    step = remaining / steps
    for _ in range(steps):
        room = hi - x
        inc = np.minimum(step, room)
        if not (inc > 1e-12).any():
            break
        gain = steady_state(beta, kappa, shape, x + inc) - steady_state(beta, kappa, shape, x)
        gain = np.where(inc > 1e-12, gain / np.maximum(inc, 1e-12), -np.inf)
        i = int(np.argmax(gain))
        x[i] += inc[i]
    return _fix_sum(x, lo, hi, total)


def _fix_sum(x: FloatArray, lo: FloatArray, hi: FloatArray, total: float) -> FloatArray:
    """Clip to bounds, then spread any gap to the total over the slack, proportionally."""
    x = np.clip(x, lo, hi)
    for _ in range(3):
        gap = total - float(x.sum())
        if abs(gap) < 1e-9 * max(total, 1.0):
            break
        slack = (hi - x) if gap > 0 else (x - lo)
        if slack.sum() <= 0:
            break
        x = np.clip(x + gap * slack / slack.sum(), lo, hi)
    return x


def allocate_budget(
    curves: Mapping[str, ResponseCurve | None],
    current: Mapping[str, float],
    total_budget: float | None = None,
    *,
    min_budget: Mapping[str, float] | None = None,
    max_budget: Mapping[str, float] | None = None,
    reasons: Mapping[str, str] | None = None,
    config: AllocationConfig | None = None,
) -> AllocationResult:
    """Recommend daily budgets for the campaigns in ``current`` (their present daily budgets)."""
    cfg = config or AllocationConfig()
    if not 0.0 <= cfg.max_daily_change <= 1.0:
        raise BrainInputError("max_daily_change must be between 0 and 1")
    ids = sorted(current)
    cur = np.array([float(current[c]) for c in ids], dtype=np.float64)
    if (~np.isfinite(cur)).any() or (cur < 0).any():
        raise BrainInputError("current budgets must be finite and non-negative")
    total = float(cur.sum()) if total_budget is None else float(total_budget)
    if not math.isfinite(total) or total < 0:
        raise BrainInputError("total_budget must be a non-negative number")
    fitted = [curves.get(c) for c in ids]
    locked = np.array([c is None for c in fitted], dtype=bool)
    why = dict(reasons or {})
    lo, hi = _bounds(ids, cur, locked, min_budget or {}, max_budget or {}, cfg.max_daily_change)
    if not (lo.sum() - 1e-6 <= total <= hi.sum() + 1e-6):
        raise BrainInputError(
            f"total budget {total:.2f} is outside what the guardrails allow ({lo.sum():.2f} to {hi.sum():.2f} per day)"
        )
    beta = np.array([c.beta if c else 0.0 for c in fitted])
    kappa = np.array([c.half_saturation if c else 1.0 for c in fitted])
    shape = np.array([c.shape if c else 1.0 for c in fitted])

    rec = _optimise(beta, kappa, shape, cur, lo, hi, total, cfg)
    rev_cur = steady_state(beta, kappa, shape, cur)
    rev_rec = steady_state(beta, kappa, shape, rec)
    delta = float((rev_rec - rev_cur)[~locked].sum())
    low, high, p_pos = _band(fitted, cur, rec, cfg)

    rows = []
    for i, cid in enumerate(ids):
        c = fitted[i]
        rows.append(
            CampaignAllocation(
                campaign_id=cid,
                current=round(float(cur[i]), 2),
                recommended=round(float(rec[i]), 2),
                lower_bound=round(float(lo[i]), 2),
                upper_bound=round(float(hi[i]), 2),
                expected_revenue_current=round(float(rev_cur[i]), 2) if c else 0.0,
                expected_revenue_recommended=round(float(rev_rec[i]), 2) if c else 0.0,
                marginal_roas=None
                if c is None
                else round(_steady_slope(c.beta, c.half_saturation, c.shape, float(rec[i])), 4),
                locked=bool(locked[i]),
                reason=why.get(cid, "no response curve") if c is None else "fitted",
            )
        )
    return AllocationResult(
        total_budget=round(total, 2),
        campaigns=rows,
        expected_revenue_change=round(delta, 2),
        band_low=round(low, 2),
        band_high=round(high, 2),
        band_level=cfg.band_level,
        probability_positive=round(p_pos, 4),
        curves=[c for c in fitted if c is not None],
        evidence={
            "guardrail": cfg.max_daily_change,
            "locked": [cid for cid, lk in zip(ids, locked.tolist(), strict=True) if lk],
            "current_expected_revenue": round(float(rev_cur[~locked].sum()), 2),
        },
    )


def _optimise(
    beta: FloatArray,
    kappa: FloatArray,
    shape: FloatArray,
    cur: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    total: float,
    cfg: AllocationConfig,
) -> FloatArray:
    free = hi - lo > 1e-9
    if not free.any():
        return lo.copy()
    scale = max(total / max(int(free.sum()), 1), 1e-9)

    def full(u: FloatArray) -> FloatArray:
        x = lo.copy()
        x[free] = u * scale
        return x

    def objective(u: FloatArray) -> tuple[float, FloatArray]:
        x = full(u)[free]
        b, k, s = beta[free], kappa[free], shape[free]
        val = -float(steady_state(b, k, s, x).sum())
        grad = -_slope(b, k, s, np.maximum(x, 1e-12)) * scale
        return val / scale, grad / scale

    fixed_sum = float(lo[~free].sum())
    target = (total - fixed_sum) / scale
    bounds = list(zip((lo[free] / scale).tolist(), (hi[free] / scale).tolist(), strict=True))
    cons = {"type": "eq", "fun": lambda u: np.array([u.sum() - target]), "jac": lambda u: np.ones((1, u.shape[0]))}
    starts = [
        _greedy(beta, kappa, shape, lo, hi, total, cfg.grid_steps),
        _fix_sum(cur.copy(), lo, hi, total),
    ]
    best_x, best_val = starts[0], -np.inf
    for x0 in starts:
        candidates = [x0]
        res = minimize(
            objective,
            x0[free] / scale,
            jac=True,
            bounds=bounds,
            constraints=[cons],
            method="SLSQP",
            options={"maxiter": 200, "ftol": 1e-12},
        )
        if np.all(np.isfinite(res.x)):
            candidates.append(_fix_sum(full(res.x), lo, hi, total))
        for cand in candidates:
            val = float(steady_state(beta, kappa, shape, cand).sum())
            if val > best_val + 1e-12:
                best_x, best_val = cand, val
    return best_x


def _band(
    fitted: list[ResponseCurve | None], cur: FloatArray, rec: FloatArray, cfg: AllocationConfig
) -> tuple[float, float, float]:
    """Normal band of the total revenue change (campaign estimates are independent fits)."""
    var = 0.0
    delta = 0.0
    for i, c in enumerate(fitted):
        if c is None or abs(rec[i] - cur[i]) < 1e-9:
            continue
        params = np.array([c.beta, c.half_saturation, c.shape])

        def change(b: float, k: float, sh: float, i: int = i) -> float:
            return float(steady_state(b, k, sh, rec[i]) - steady_state(b, k, sh, cur[i]))

        delta += change(*params)
        var += _delta_sd(change, params, np.asarray(c.covariance)[1:, 1:]) ** 2
    sd = math.sqrt(var)
    z = float(norm.ppf(0.5 + cfg.band_level / 2.0))
    p_pos = float(norm.cdf(delta / sd)) if sd > 0 else float(delta > 0)
    return delta - z * sd, delta + z * sd, p_pos


def allocation_from_history(
    campaign_id: Any,
    date: Any,
    spend: Any,
    revenue: Any,
    *,
    total_budget: float | None = None,
    current: Mapping[str, float] | None = None,
    min_budget: Mapping[str, float] | None = None,
    max_budget: Mapping[str, float] | None = None,
    as_of: DateLike | None = None,
    config: AllocationConfig | None = None,
) -> AllocationResult:
    """Fit curves and allocate from a long frame of daily campaign spend and revenue."""
    dates = as_dates(date)
    n = dates.shape[0]
    pv = pivot(
        as_labels(campaign_id, "campaign_id", n),
        dates,
        {"spend": as_float(spend, "spend", n), "revenue": as_float(revenue, "revenue", n)},
        end=None if as_of is None else to_day(as_of),
    )
    return allocation_from_pivot(
        pv, total_budget=total_budget, current=current, min_budget=min_budget, max_budget=max_budget, config=config
    )


def allocation_from_pivot(
    pv: Pivot,
    *,
    total_budget: float | None = None,
    current: Mapping[str, float] | None = None,
    min_budget: Mapping[str, float] | None = None,
    max_budget: Mapping[str, float] | None = None,
    config: AllocationConfig | None = None,
) -> AllocationResult:
    """Fit and allocate; current budgets default to each campaign's mean spend of the last 7 days."""
    cfg = config or AllocationConfig()
    curves, reasons = fit_curves_from_pivot(pv, cfg)
    if current is None:
        recent = pv.values["spend"][:, -7:] if pv.keys else np.zeros((0, 0))
        current = {cid: float(recent[i].mean()) for i, cid in enumerate(pv.keys)}
    return allocate_budget(
        dict(curves), current, total_budget, min_budget=min_budget, max_budget=max_budget, reasons=reasons, config=cfg
    )
