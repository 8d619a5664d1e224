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
The **plan** maximises the sum of steady-state revenues subject to the total budget and
per-campaign min/max only, with ``scipy.optimize.minimize`` (SLSQP). Hill curves with
``s > 1`` are not concave, so SLSQP starts both from the projected current allocation
and from a greedy marginal-return allocation on a fine grid (which handles the convex
foot of an S-curve), and the better optimum wins. A curve is not trusted far beyond the
spend it was fitted on: no campaign is planned above ``extrapolation_limit`` x its
highest observed daily spend. A campaign with no curve, or with zero current budget,
stays where it is (a launch is a decision, not a reallocation).

The **guardrail** limits each day's *step* towards the plan, not the plan: the guarded
**path** starts from today's budgets and, day after day, moves every campaign by at
most ``max_daily_change`` of its previous budget, choosing within that box the budgets
with the highest expected revenue (the same optimiser), until the plan is reached or
``max_path_steps`` days have passed. Every step reports its expected daily revenue and
the band of its change from today. The recommendation to apply today is the first step.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.optimize import least_squares
from scipy.signal import lfilter
from scipy.special import expit
from scipy.stats import norm

from omnify.brain.types import (
    AllocationResult,
    BoolArray,
    BrainInputError,
    CampaignAllocation,
    DateLike,
    FloatArray,
    IntArray,
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
    """Guardrail: no campaign moves by more than this fraction of its budget in one day (a step of the path)."""
    extrapolation_limit: float = 2.0
    """No campaign is planned above this multiple of its highest observed daily spend."""
    max_path_steps: int = 30
    path_exchanges: int = 40
    """Pairwise budget exchanges per path step (each starts from the plan clipped to the day's box)."""
    path_tolerance: float = 0.01
    """The path has reached the plan when every campaign is within this share of it."""
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
    grid_steps: int = 400
    block_days: int = 56
    """Revenue levels are free per block of this many days (drift in mix, fatigue and season)."""
    anchor_days: int = 28
    min_elasticity: float = 0.05
    max_elasticity: float = 0.95
    min_between_variance: float = 0.0025
    saturation: bool = True
    funnel: bool = True
    funnel_anchor_days: int = 56
    """fit_funnel: revenue per impression and today's spend from this many last usable days
    (56 against 28: worst of seeds 4-6 0.72 against 0.69 of the oracle; less noise in the level)."""
    market_index: bool = False
    robust_iterations: int = 2
    saturation_penalty: float = 0.0
    """fit_funnel: a saturating delivery curve must beat the power law by this x log(n) x sigma^2 in SSE.
    0 by default: the BIC's 1 and 3 both scored worse on seeds 4-6 (power laws over-extrapolated)."""
    """fit_funnel: Huber reweighting passes of the delivery fit (0: plain least squares)."""
    huber_k: float = 1.345
    """fit_funnel: control delivery for the market's daily price (other campaigns' cost per impression).
    Off by default: on seeds 4-6 it did not help (0.64-0.95 vs 0.68-0.94 of the oracle)."""
    """With impressions in the pivot, fit the curve's shape on delivery (see fit_funnel)."""
    max_extrapolation: float = 20.0
    """fit_funnel never trusts a curve beyond this multiple of the recent daily spend."""
    min_pooled_days: int = 21
    """fit_funnel: a campaign with fewer than ``min_days`` but at least this many usable days gets a
    curve whose elasticity is shrunk towards the client's other campaigns (empirical Bayes), instead
    of being locked."""
    min_pool_campaigns: int = 3
    """Campaigns fitted on their own needed before their elasticities can be pooled."""
    pool_every_campaign: bool = False
    """fit_funnel: shrink every campaign's elasticity towards the client's, not only young ones'."""
    max_extrapolation_spread: float = 0.2
    """fit_funnel trusts a curve up to the spend where the curves compatible with the data
    (90 %) disagree by more than this in log revenue (0.2: about +-10 %)."""
    """Where the fit shows the elasticity falling with spend, use a saturating curve (see fit_elasticities)."""


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


def _expo(kappa: Any, shape: Any, x: Any) -> tuple[Any, Any]:
    """``(1 - exp(-x / c))^b`` and its derivative in ``x``, for ``c = -kappa > 0`` (see :func:`steady_state`)."""
    c = np.maximum(-np.asarray(kappa, dtype=np.float64), 1e-300)
    xa = np.maximum(np.asarray(x, dtype=np.float64), 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        base = -np.expm1(-xa / c)
        val = base**shape
        der = shape * base ** (shape - 1.0) * np.exp(-xa / c) / c
    return val, der


def steady_state(beta: FloatArray | float, kappa: FloatArray | float, shape: FloatArray | float, x: Any) -> Any:
    """Daily revenue at a sustained daily spend ``x`` (broadcasts over arrays).

    ``kappa = inf`` is the constant-elasticity limit of the Hill curve: ``beta x^shape``.
    ``kappa < 0`` codes the exponential-saturation family ``beta (1 - exp(-x / c))^shape``
    with reach scale ``c = -kappa`` (whose ``c -> inf`` limit is again a power law); the
    sign is only an internal array code, :class:`ResponseCurve` stores ``c`` and its family.
    """
    k = np.asarray(kappa, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        power = beta * np.maximum(np.asarray(x, dtype=np.float64), 0.0) ** shape
        hill = beta * _hill(np.where(np.isinf(k) | (k <= 0), 1.0, k), shape, x)
        expo = beta * _expo(np.where(k < 0, k, -1.0), shape, x)[0]
    return np.where(np.isinf(k), power, np.where(k < 0, expo, hill))


def _slope(beta: Any, kappa: Any, shape: Any, x: Any) -> Any:
    """Marginal revenue per unit of spend at a sustained daily spend ``x > 0``."""
    k = np.asarray(kappa, dtype=np.float64)
    h = _hill(np.where(np.isinf(k) | (k <= 0), 1.0, k), shape, x)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        power = beta * shape * np.asarray(x, dtype=np.float64) ** (shape - 1.0)
        expo = beta * _expo(np.where(k < 0, k, -1.0), shape, x)[1]
    return np.where(np.isinf(k), power, np.where(k < 0, expo, beta * shape * h * (1.0 - h) / x))


def _steady_slope(beta: float, kappa: float, shape: float, x: float) -> float:
    if x <= 0 and kappa < 0:
        return float("inf") if shape < 1 else beta / -kappa if shape == 1 else 0.0
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
    grad = np.zeros(3)
    for j in range(3):
        if cov[j, j] <= 0 or not math.isfinite(float(params[j])):
            continue  # a fixed parameter (the power law's infinite half-saturation)
        h = 1e-6 * max(abs(float(params[j])), 1e-9)
        up, down = params.copy(), params.copy()
        up[j] += h
        down[j] -= h
        grad[j] = (float(fn(*up)) - float(fn(*down))) / (2.0 * h)
    c = np.nan_to_num(np.asarray(cov, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    var = float(grad @ c @ grad)
    return math.sqrt(var) if var > 0 and math.isfinite(var) else (0.0 if var == 0 else float("inf"))


def _kappa_code(curve: ResponseCurve) -> float:
    """The curve's ``kappa`` in the array code of :func:`steady_state` (negative: exponential family)."""
    return -curve.half_saturation if curve.family == "exponential" else curve.half_saturation


def curve_revenue(curve: ResponseCurve, spend: Any) -> Any:
    """Steady-state daily revenue of a fitted curve at a daily spend."""
    return steady_state(curve.beta, _kappa_code(curve), curve.shape, spend)


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
    ceiling: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Bounds of the plan: user min/max, the extrapolation ceiling; locked campaigns stay put."""
    lo = np.zeros_like(current)
    hi = np.maximum(ceiling, current)
    for i, cid in enumerate(ids):
        if cid in min_budget:
            lo[i] = max(lo[i], float(min_budget[cid]))
        if cid in max_budget:
            hi[i] = min(hi[i], float(max_budget[cid]))
        if hi[i] < lo[i]:
            raise BrainInputError(f"budget limits for {cid} leave no room: min {lo[i]:.2f} > max {hi[i]:.2f}")
    fixed = locked | (current <= 0)
    lo = np.where(fixed, current, lo)
    hi = np.where(fixed, current, hi)
    return lo, hi


class _Revenue:
    """``steady_state`` for fixed curves, evaluated many times by the optimisers.

    The same element-wise formulas as :func:`steady_state` (so the same numbers), with the
    per-call work that does not depend on ``x`` done once: which campaigns follow the
    power law, ``log kappa`` of the others. The exchange loops call it thousands of times
    per run; this was most of the allocation's time.
    """

    def __init__(self, beta: FloatArray, kappa: FloatArray, shape: FloatArray) -> None:
        k = np.asarray(kappa, dtype=np.float64)
        self.power = np.isinf(k)
        self.expo = k < 0
        self.hill = ~self.power & ~self.expo
        self.all_hill = bool(self.hill.all())
        self.b_p, self.s_p = beta[self.power], shape[self.power]
        self.b_h, self.s_h = beta[self.hill], shape[self.hill]
        self.b_e, self.s_e, self.c_e = beta[self.expo], shape[self.expo], -k[self.expo]
        self.log_k = np.log(k[self.hill])

    def __call__(self, x: FloatArray) -> FloatArray:
        xa = np.maximum(x, 0.0)
        with np.errstate(divide="ignore", over="ignore"):
            if self.all_hill:
                out: FloatArray = self.b_h * expit(self.s_h * (np.log(xa) - self.log_k))
                return out
            out = np.empty_like(xa)
            out[self.power] = self.b_p * xa[self.power] ** self.s_p
            out[self.hill] = self.b_h * expit(self.s_h * (np.log(xa[self.hill]) - self.log_k))
            out[self.expo] = self.b_e * (-np.expm1(-xa[self.expo] / self.c_e)) ** self.s_e
        return out


def _greedy(
    beta: FloatArray, kappa: FloatArray, shape: FloatArray, lo: FloatArray, hi: FloatArray, total: float, steps: int
) -> FloatArray:
    x = lo.copy()
    remaining = total - float(lo.sum())
    if remaining <= 0:
        return x
    step = remaining / steps
    rev = _Revenue(beta, kappa, shape)
    for _ in range(steps):
        room = hi - x
        inc = np.minimum(step, room)
        if not (inc > 1e-12).any():
            break
        gain = rev(x + inc) - rev(x)
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
    """The best plan for the campaigns in ``current`` (their present daily budgets), and the guarded path to it."""
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
    ceiling = np.array(
        [
            cur[i]
            if c is None
            else c.max_spend
            if c.max_spend is not None
            else cfg.extrapolation_limit * c.spend_range[1]
            if c.spend_range[1] > 0
            else np.inf
            for i, c in enumerate(fitted)
        ]
    )
    ceiling = np.minimum(ceiling, max(total, float(cur.max(initial=0.0))))  # no campaign above the whole budget
    lo, hi = _bounds(ids, cur, locked, min_budget or {}, max_budget or {}, ceiling)
    if not (lo.sum() - 1e-6 <= total <= hi.sum() + 1e-6):
        raise BrainInputError(
            f"total budget {total:.2f} is outside what the budget limits allow ({lo.sum():.2f} to {hi.sum():.2f} "
            "per day; curves are not extrapolated beyond "
            f"{cfg.extrapolation_limit:g}x the highest daily spend seen)"
        )
    beta = np.array([c.beta if c else 0.0 for c in fitted])
    kappa = np.array([_kappa_code(c) if c else 1.0 for c in fitted])
    shape = np.array([c.shape if c else 1.0 for c in fitted])

    plan = _optimise(beta, kappa, shape, cur, lo, hi, total, cfg)
    path = _path(beta, kappa, shape, cur, plan, lo, hi, total, cfg)
    first = path[0] if path else cur.copy()
    g = cfg.max_daily_change
    step_lo, step_hi = np.maximum(lo, cur * (1.0 - g)), np.minimum(hi, cur * (1.0 + g))
    rev_cur = steady_state(beta, kappa, shape, cur)
    rev_first = steady_state(beta, kappa, shape, first)
    rev_plan = steady_state(beta, kappa, shape, plan)
    delta = float((rev_plan - rev_cur)[~locked].sum())
    band_inputs = _BandInputs.of(fitted)
    low, high, p_pos = _band(band_inputs, cur, plan, cfg)
    steps = []
    for k, x in enumerate(path, start=1):
        s_low, s_high, s_p = _band(band_inputs, cur, x, cfg)
        steps.append(
            {
                "day": k,
                "budgets": {cid: round(float(x[i]), 2) for i, cid in enumerate(ids)},
                "expected_revenue": round(float(steady_state(beta, kappa, shape, x)[~locked].sum()), 2),
                "revenue_change": round(float((steady_state(beta, kappa, shape, x) - rev_cur)[~locked].sum()), 2),
                "band": [round(s_low, 2), round(s_high, 2)],
                "probability_positive": round(s_p, 4),
            }
        )

    rows = []
    for i, cid in enumerate(ids):
        c = fitted[i]
        rows.append(
            CampaignAllocation(
                campaign_id=cid,
                current=round(float(cur[i]), 2),
                recommended=round(float(first[i]), 2),
                lower_bound=round(float(min(step_lo[i], first[i])), 2),
                upper_bound=round(float(max(step_hi[i], first[i])), 2),
                expected_revenue_current=round(float(rev_cur[i]), 2) if c else 0.0,
                expected_revenue_recommended=round(float(rev_first[i]), 2) if c else 0.0,
                marginal_roas=None
                if c is None
                else round(_steady_slope(c.beta, _kappa_code(c), c.shape, float(plan[i])), 4),
                locked=bool(locked[i]),
                reason=why.get(cid, "no response curve") if c is None else "fitted",
                planned=round(float(plan[i]), 2),
                expected_revenue_planned=round(float(rev_plan[i]), 2) if c else 0.0,
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
            "plan_expected_revenue": round(float(rev_plan[~locked].sum()), 2),
            "first_step_revenue_change": round(float((rev_first - rev_cur)[~locked].sum()), 2),
            "steps_to_plan": len(path) if path and _reached(path[-1], plan, cfg) else None,
            "extrapolation_limit": cfg.extrapolation_limit,
        },
        path=steps,
    )


def _reached(x: FloatArray, plan: FloatArray, cfg: AllocationConfig) -> bool:
    """Every campaign within ``path_tolerance`` of its plan (of the average budget for near-zero plans)."""
    slack = cfg.path_tolerance * np.maximum(plan, float(plan.mean()) if plan.size else 0.0) + 1e-6
    return bool(np.all(np.abs(x - plan) <= slack))


def _path(
    beta: FloatArray,
    kappa: FloatArray,
    shape: FloatArray,
    cur: FloatArray,
    plan: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    total: float,
    cfg: AllocationConfig,
) -> list[FloatArray]:
    """Day-by-day budgets from today towards the plan, each day within the guardrail of the day before.

    Each day takes the best allocation inside its box (bounded by the plan's limits); the
    total moves towards the target total as fast as the boxes allow. A campaign whose
    box contains its planned budget is put exactly there, so the path ends on the plan.
    """
    g = cfg.max_daily_change
    x = cur.copy()
    out: list[FloatArray] = []
    if _reached(x, plan, cfg) or g <= 0:
        return out
    for _ in range(cfg.max_path_steps):
        b_lo = np.maximum(lo, x * (1.0 - g))
        b_hi = np.minimum(hi, x * (1.0 + g))
        b_hi = np.maximum(b_hi, b_lo)
        inside = (plan >= b_lo - 1e-9) & (plan <= b_hi + 1e-9)
        if inside.all():
            x = plan.copy()
        else:
            t = float(np.clip(total, b_lo.sum(), b_hi.sum()))
            x = _optimise(beta, kappa, shape, np.clip(plan, b_lo, b_hi), b_lo, b_hi, t, cfg, warm=True)
        if _reached(x, plan, cfg):
            prev = out[-1] if out else cur
            if np.all(plan >= np.maximum(lo, prev * (1.0 - g)) - 1e-9) and np.all(
                plan <= np.minimum(hi, prev * (1.0 + g)) + 1e-9
            ):
                x = plan.copy()  # close enough that today's box holds the plan itself
            out.append(x)
            break
        out.append(x)
    return out


def _optimise(
    beta: FloatArray,
    kappa: FloatArray,
    shape: FloatArray,
    cur: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    total: float,
    cfg: AllocationConfig,
    *,
    warm: bool = False,
) -> FloatArray:
    """Maximise the summed steady-state revenue within the box at the total.

    A greedy allocation of small increments by average return over the increment (which
    steps over the convex foot of an S-curve), then pairwise exchanges of shrinking size
    from the lowest to the highest marginal return until none pays: the Karush-Kuhn-Tucker
    point of the separable problem, in a few milliseconds.
    """
    free = hi - lo > 1e-9
    if not free.any():
        return lo.copy()
    start = _fix_sum(cur.copy(), lo, hi, total)
    if warm:  # a step of the path: start from the plan clipped to today's box, exchanges do the rest
        x = start
        delta = max(float((hi - lo).sum()), 1e-9) / 20.0
        iterations = cfg.path_exchanges
    else:
        x = _greedy(beta, kappa, shape, lo, hi, total, cfg.grid_steps)
        if float(steady_state(beta, kappa, shape, start).sum()) > float(steady_state(beta, kappa, shape, x).sum()):
            x = start
        delta = max(total, 1e-9) / cfg.grid_steps
        iterations = 200
    rev = _Revenue(beta, kappa, shape)
    for _ in range(iterations):
        if delta < 1e-6 * max(total, 1.0):
            break
        up = np.minimum(hi - x, delta)
        down = np.minimum(x - lo, delta)
        f0 = rev(x)
        f_up = rev(x + up)
        f_down = rev(x - down)
        gain = np.where(up > 1e-12, (f_up - f0) / np.maximum(up, 1e-12), -np.inf)
        loss = np.where(down > 1e-12, (f0 - f_down) / np.maximum(down, 1e-12), np.inf)
        i, j = int(np.argmax(gain)), int(np.argmin(loss))
        step = min(float(up[i]), float(down[j]))
        if i == j or step <= 1e-12 or gain[i] <= loss[j] * (1.0 + 1e-9):
            delta /= 2.0
            continue
        x[i] += step
        x[j] -= step
    return _fix_sum(x, lo, hi, total)


@dataclass(frozen=True)
class _BandInputs:
    """Each fitted campaign's (beta, kappa, shape) and their covariance, stacked once per allocation.

    The band is evaluated for the plan and for every step of the path; stacking lets each
    evaluation be a handful of array operations instead of a Python loop of delta-method
    calls per campaign (most of the allocation's run time before).
    """

    fitted: BoolArray
    params: FloatArray  # n x 3
    cov: FloatArray  # n x 3 x 3, non-finite entries zeroed
    use: BoolArray  # n x 3: the parameter varies (positive finite variance, finite value)
    step: FloatArray  # n x 3: central-difference step per parameter

    @classmethod
    def of(cls, fitted: Sequence[ResponseCurve | None]) -> _BandInputs:
        n = len(fitted)
        params = np.ones((n, 3))
        cov = np.zeros((n, 3, 3))
        for i, c in enumerate(fitted):
            if c is not None:
                params[i] = (c.beta, _kappa_code(c), c.shape)
                cov[i] = np.asarray(c.covariance, dtype=np.float64)[1:, 1:]
        diag = np.diagonal(cov, axis1=1, axis2=2)
        use = (diag > 0) & np.isfinite(params)
        cov = np.nan_to_num(cov, nan=0.0, posinf=0.0, neginf=0.0)
        with np.errstate(invalid="ignore"):
            step = 1e-6 * np.maximum(np.abs(params), 1e-9)
        return cls(np.array([c is not None for c in fitted], dtype=bool), params, cov, use, step)


def _band(inputs: _BandInputs, cur: FloatArray, rec: FloatArray, cfg: AllocationConfig) -> tuple[float, float, float]:
    """Normal band of the total revenue change (campaign estimates are independent fits).

    Per moved campaign, the delta-method SD of its revenue change from the parameter
    covariance (see :func:`_delta_sd`, of which this is the vectorised form).
    """
    moved = inputs.fitted & (np.abs(rec - cur) >= 1e-9)
    idx = np.flatnonzero(moved)
    if idx.size == 0:
        delta, var = 0.0, 0.0
    else:
        p, x1, x0 = inputs.params[idx], rec[idx], cur[idx]

        def change(q: FloatArray) -> FloatArray:
            out: FloatArray = steady_state(q[:, 0], q[:, 1], q[:, 2], x1) - steady_state(q[:, 0], q[:, 1], q[:, 2], x0)
            return out

        base = change(p)
        grad = np.zeros((idx.size, 3))
        for j in range(3):
            use = inputs.use[idx, j]
            if not use.any():
                continue
            h = np.where(use, inputs.step[idx, j], 0.0)
            up, down = p.copy(), p.copy()
            up[:, j] += h
            down[:, j] -= h
            with np.errstate(invalid="ignore", divide="ignore"):
                grad[:, j] = np.where(use, (change(up) - change(down)) / np.where(use, 2.0 * h, 1.0), 0.0)
        v = np.einsum("ni,nij,nj->n", grad, inputs.cov[idx], grad)
        ok = (v > 0) & np.isfinite(v)
        sd = np.where(ok, np.sqrt(np.where(ok, v, 0.0)), np.where(v == 0, 0.0, np.inf))
        delta, var = 0.0, 0.0
        for d_i, s_i in zip(base.tolist(), sd.tolist(), strict=True):  # the order of the former loop
            delta += d_i
            var += s_i**2
    sd_total = math.sqrt(var)
    z = float(norm.ppf(0.5 + cfg.band_level / 2.0))
    p_pos = float(norm.cdf(delta / sd_total)) if sd_total > 0 else float(delta > 0)
    return delta - z * sd_total, delta + z * sd_total, p_pos


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


def _usable_days(spend: FloatArray, use: BoolArray, cfg: AllocationConfig) -> tuple[IntArray, str | None]:
    """The days a campaign's curve is fitted on, or why it cannot be: too few of them, or a
    spend that barely varied (its effect on revenue is then not identified)."""
    days = np.flatnonzero(use)
    if days.size < cfg.min_days:
        return days, f"only {days.size} usable days with spend, need {cfg.min_days}"
    xs = spend[days]
    cv = float(xs.std() / xs.mean())
    if cv < cfg.min_spend_cv:
        return days, f"spend barely varied (CV {cv:.1%}), so its effect on revenue cannot be measured"
    return days, None


def fit_elasticities(
    pv: Pivot, config: AllocationConfig | None = None, *, holidays: Sequence[DateLike] = ()
) -> tuple[dict[str, ResponseCurve], dict[str, str]]:
    """Constant-elasticity curves per campaign, with the elasticities shrunk towards the client's.

    Per campaign, ``log revenue_t = a_block(t) + g_weekday(t) + e log spend_t + noise`` by
    least squares over its usable days (calendar days left out). The ``block_days`` levels
    absorb what drifts (creative mix, fatigue, season), so ``e`` is learnt from how revenue
    moved with spend *within* a block. One campaign's ``e`` is noisy, so it is shrunk
    towards the precision-weighted mean of all campaigns (empirical Bayes, DerSimonian-Laird
    between-campaign variance), and kept in ``[min_elasticity, max_elasticity]``: returns
    diminish. The curve is anchored at the last ``anchor_days`` usable days' mean spend and
    revenue: ``revenue(s) = R (s / S)^e``, stored as ``beta = R S^-e``, ``half_saturation =
    inf``, ``shape = e``. Its covariance carries the uncertainty of ``R`` and ``e``.

    A constant elasticity cannot saturate, so a campaign at or near its reach cap looks as
    good to scale up as a power-law one. The fit therefore has a quadratic term in
    ``u = log(spend / S)`` as well (``e`` stays the elasticity at today's spend): when that
    curvature is negative (returns falling faster than a power law) the campaign gets the
    Michaelis-Menten curve with the same level and elasticity at ``S`` (``beta = R / (1 - e)``,
    ``half_saturation = S e / (1 - e)``, ``shape = 1``), whose elasticity falls as spend
    grows. Its foot is not an S-curve, so cutting a campaign is never modelled as free.
    (Requiring the curvature to be significant, or leaving out days of incident-level
    spend, scored worse on the bench's seeds 1-3: both were tried.)
    """
    cfg = config or AllocationConfig()
    n, t_len = pv.shape
    present = pv.present
    hol = np.isin(pv.dates, as_dates(list(holidays), "holidays")) if len(holidays) else np.zeros(t_len, dtype=bool)
    wd = ((pv.dates.astype("datetime64[D]").astype(np.int64) + 3) % 7).astype(np.int64)
    # Shared day effects (two-way fixed effects): what moved every campaign's spend and
    # revenue on a day (a promotion, a holiday the calendar lacks, the weekday) is taken out
    # with the other campaigns' average deviation that day (leave-one-out).
    spend_all, rev_all = pv.values["spend"], pv.values["revenue"]
    ok_all = present & (spend_all > 0) & (rev_all > 0) & ~hol[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        lx_all = np.where(ok_all, np.log(spend_all), np.nan)
        ly_all = np.where(ok_all, np.log(rev_all), np.nan)
    dx = np.where(ok_all, lx_all - np.nanmean(lx_all, axis=1, keepdims=True), 0.0) if n else lx_all
    dy = np.where(ok_all, ly_all - np.nanmean(ly_all, axis=1, keepdims=True), 0.0) if n else ly_all
    cnt = ok_all.sum(axis=0).astype(np.float64)
    sum_dx, sum_dy = dx.sum(axis=0), dy.sum(axis=0)
    raw: dict[int, tuple[float, float, float, float, float, float, int, float, float]] = {}
    reasons: dict[str, str] = {}
    for i, cid in enumerate(pv.keys):
        x, y = pv.values["spend"][i], pv.values["revenue"][i]
        days, why = _usable_days(x, present[i] & (x > 0) & ~hol, cfg)
        if why:
            reasons[cid] = why
            continue
        xs, ys = x[days], y[days]
        if ys.sum() <= 0:
            reasons[cid] = "no revenue attributed"
            continue
        off = 0.05 * float(ys.mean())
        ly, lx = np.log(ys + off), np.log(xs)
        others = cnt[days] - ok_all[i, days]
        with np.errstate(divide="ignore", invalid="ignore"):
            day_x = np.where(others >= 3, (sum_dx[days] - dx[i, days]) / others, 0.0)
            day_y = np.where(others >= 3, (sum_dy[days] - dy[i, days]) / others, 0.0)
        lx = lx - day_x
        ly = ly - day_y
        last = days[-cfg.anchor_days :]
        anchor_s, anchor_r = float(x[last].mean()), float(y[last].mean())
        if anchor_r <= 0 or anchor_s <= 0:
            reasons[cid] = "no revenue in the recent days"
            continue
        u = lx - math.log(anchor_s)
        block = (days - days[0]) // cfg.block_days
        n_blocks = int(block.max()) + 1
        cols = [np.eye(n_blocks)[block]]
        dow = wd[days]
        cols.append(np.stack([(dow == d).astype(np.float64) for d in range(1, 7)], axis=1))
        cols.append(u[:, None])
        cols.append(0.5 * u[:, None] ** 2)
        design = np.concatenate(cols, axis=1)
        keep: BoolArray = np.asarray(design.any(axis=0), dtype=bool)
        keep[-2:] = True
        design = design[:, keep]
        coef, *_ = np.linalg.lstsq(design, ly, rcond=None)
        resid = ly - design @ coef
        dof = max(days.size - design.shape[1], 1)
        s2 = float(resid @ resid) / dof
        xtx_inv = np.linalg.pinv(design.T @ design)
        se = math.sqrt(max(s2 * float(xtx_inv[-2, -2]), 1e-12))
        se_q = math.sqrt(max(s2 * float(xtx_inv[-1, -1]), 1e-12))
        var_log_r = s2 / max(last.size, 1)
        raw[i] = (float(coef[-2]), se, anchor_s, anchor_r, var_log_r, float(xs.max()), days.size, float(coef[-1]), se_q)
    curves: dict[str, ResponseCurve] = {}
    if not raw:
        return curves, reasons
    est = np.array([v[0] for v in raw.values()])
    se2 = np.array([v[1] ** 2 for v in raw.values()])
    w = 1.0 / se2
    mu = float((w * np.clip(est, cfg.min_elasticity, cfg.max_elasticity)).sum() / w.sum())
    k = est.size
    q = float((w * (est - mu) ** 2).sum())
    tau2 = max((q - (k - 1)) / max(float(w.sum() - (w * w).sum() / w.sum()), 1e-9), cfg.min_between_variance)
    for (i, (e_hat, _se, s_a, r_a, var_lr, x_max, n_obs, q_hat, _se_q)), se_2 in zip(raw.items(), se2, strict=True):
        prec = 1.0 / se_2 + 1.0 / tau2
        e = float(np.clip((e_hat / se_2 + mu / tau2) / prec, cfg.min_elasticity, cfg.max_elasticity))
        var_e = 1.0 / prec
        if cfg.saturation and q_hat < 0:
            # Elasticity falling with spend (a reach cap): Michaelis-Menten with today's
            # elasticity e at the anchor, beta R / (1 - e) and half-saturation S e / (1 - e).
            bet = r_a / (1.0 - e)
            kap = s_a * e / (1.0 - e)
            jac = np.array([[bet, bet / (1.0 - e)], [0.0, s_a / (1.0 - e) ** 2]])
            cov = np.zeros((4, 4))
            cov[1:3, 1:3] = jac @ np.diag([var_lr, var_e]) @ jac.T
            slope = e * r_a / s_a
            half = _Z90 * math.sqrt(var_e) * r_a / s_a
            curves[pv.keys[i]] = ResponseCurve(
                campaign_id=pv.keys[i],
                beta=bet,
                half_saturation=kap,
                shape=1.0,
                decay=0.0,
                r2=0.0,
                n_obs=n_obs,
                sigma=math.sqrt(var_lr * max(n_obs, 1)),
                covariance=[[float(v) for v in row] for row in cov],
                spend_range=(0.0, x_max),
                marginal_roas_band=(round(slope - half, 4), round(slope + half, 4)),
                family="saturating",
                elasticity=round(e, 4),
                elasticity_raw=round(e_hat, 4),
                elasticity_se=round(math.sqrt(se_2), 4),
            )
            continue
        beta = r_a * s_a ** (-e)
        log_s = math.log(s_a)
        cov = np.zeros((4, 4))
        cov[1, 1] = beta * beta * (var_lr + log_s * log_s * var_e)
        cov[1, 3] = cov[3, 1] = -beta * log_s * var_e
        cov[3, 3] = var_e
        slope = e * r_a / s_a
        half = _Z90 * math.sqrt(var_e) * r_a / s_a
        curves[pv.keys[i]] = ResponseCurve(
            campaign_id=pv.keys[i],
            beta=beta,
            half_saturation=float("inf"),
            shape=e,
            decay=0.0,
            r2=0.0,
            n_obs=n_obs,
            sigma=math.sqrt(var_lr * max(n_obs, 1)),
            covariance=[[float(v) for v in row] for row in cov],
            spend_range=(0.0, x_max),
            marginal_roas_band=(round(slope - half, 4), round(slope + half, 4)),
            family="constant-elasticity",
            elasticity=round(e, 4),
            elasticity_raw=round(e_hat, 4),
            elasticity_se=round(math.sqrt(se_2), 4),
        )
    return curves, reasons


_REACH_GRID = np.exp(np.linspace(np.log(0.05), np.log(50.0), 61))
"""Reach scales ``c`` tried by the delivery fit, as multiples of the campaign's recent daily spend."""


def _delivery_features(spend: FloatArray, c_rel: FloatArray, anchor: float) -> FloatArray:
    """``log(1 - exp(-s / c))`` per reach scale (columns), plus ``log s`` (the ``c -> inf`` limit) last."""
    rel = spend[:, None] / (c_rel[None, :] * anchor)
    with np.errstate(divide="ignore"):
        expo = np.log(-np.expm1(-rel))
    out: FloatArray = np.concatenate([expo, np.log(spend / anchor)[:, None]], axis=1)
    return out


def _profile(
    z: FloatArray, lm: FloatArray, feats: FloatArray, wts: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Weighted least squares of ``lm`` on the controls ``z`` and one delivery feature, for every column of ``feats``.

    ``b`` is linear given the reach scale, so each column is one projection: returns
    ``b``, the weighted SSE (``inf`` where ``b`` is outside (0, 1]: delivery grows, and
    not faster than spend), the feature's residual sum of squares, the residuals and the
    SSE without the (0, 1] restriction (a pooled prior may pull ``b`` back inside).
    (Clipping ``b`` to 1 instead of refusing the reach scale scored worse on seeds 4-6:
    worst 0.60 against 0.69 of the oracle.)
    """
    sw = np.sqrt(wts)
    q, _ = np.linalg.qr(z * sw[:, None])
    yw, fw = lm * sw, feats * sw[:, None]
    my = yw - q @ (q.T @ yw)
    mf = fw - q @ (q.T @ fw)
    ff = np.einsum("ij,ij->j", mf, mf)
    fy = mf.T @ my
    ok = ff > 1e-12
    b_all = np.where(ok, fy / np.where(ok, ff, 1.0), 0.0)
    sse_raw = np.where(ok, float(my @ my) - fy * b_all, np.inf)
    sse = np.where((b_all > 0) & (b_all <= 1.0), sse_raw, np.inf)
    resid = (my[:, None] - mf * b_all[None, :]) / np.maximum(sw, 1e-12)[:, None]
    return b_all, sse, ff, resid, sse_raw


def fit_funnel(
    pv: Pivot, config: AllocationConfig | None = None, *, holidays: Sequence[DateLike] = ()
) -> tuple[dict[str, ResponseCurve], dict[str, str]]:
    """Response curves as revenue per impression x a delivery curve fitted on impressions.

    Why: diminishing returns in paid media come mostly from delivery - the auction price
    rises and the reachable audience saturates as a campaign pushes - and delivery
    (impressions bought per day at a daily spend) is measured with little noise, while
    daily revenue carries click, conversion and order-value noise on top. Fitting the
    curve's *shape* on impressions identifies it from the spend variation a year holds,
    where a revenue regression leaves single-campaign elasticities off by +-0.4.

    Per campaign, over its usable days (complete, with spend and impressions, calendar days
    left out): ``log impressions_t = a_block(t) + g_weekday(t) + b log(1 - exp(-spend_t / c))``,
    block levels of ``block_days`` absorbing drift in price. The family is the exponential
    saturation raised to a power ``b``; ``c -> inf`` is the power law ``spend^b``, so a
    campaign far from its reach cap is not forced to saturate. ``b`` is linear given ``c``,
    so ``c`` is profiled over a grid (:data:`_REACH_GRID`, plus ``inf``) and the least
    squares wins. Revenue per impression is the ratio of the last ``funnel_anchor_days`` usable
    days' sums, assumed not to depend on spend (the data rarely pins down that second-order
    effect), and the curve is scaled to go through the recent delivery level.

    Uncertainty, honestly carried into the plan: the reach scales whose profile SSE is
    within the 90 % chi-square(1) cut of the best are all compatible with the data; the
    curve is trusted up to the spend where those curves (each with ``b`` +- its 90 %
    interval) disagree by more than ``max_extrapolation_spread`` in log revenue, and at
    least up to the highest spend seen. The covariance of (beta, c, b) feeds the bands.

    Days: ``pv.values["delivery_days"]`` when given (known days, on which impressions are
    the campaign's spend over the cost per impression of the ads that reported; see
    ``run._with_impressions``), else the pivot's present days.
    """
    cfg = config or AllocationConfig()
    t_len = pv.shape[1]
    present = pv.values["delivery_days"] > 0 if "delivery_days" in pv.values else pv.present
    hol = np.isin(pv.dates, as_dates(list(holidays), "holidays")) if len(holidays) else np.zeros(t_len, dtype=bool)
    wd = ((pv.dates.astype("datetime64[D]").astype(np.int64) + 3) % 7).astype(np.int64)
    spend_all, rev_all, imp_all = pv.values["spend"], pv.values["revenue"], pv.values["impressions"]
    # The market's price of a day (a holiday the calendar lacks, an auction-wide swing) moves
    # every campaign's cost per impression: its index is the other campaigns' average
    # deviation of log cost per impression that day (leave-one-out), a regressor with its
    # own coefficient per campaign (campaigns react to the market with different strength).
    ok_all = present & (spend_all > 0) & (imp_all > 0) & ~hol[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        lc = np.where(ok_all, np.log(np.where(ok_all, spend_all, 1.0) / np.where(ok_all, imp_all, 1.0)), np.nan)
        dev = np.where(ok_all, lc - np.nanmean(lc, axis=1, keepdims=True), 0.0) if pv.keys else lc
    cnt = ok_all.sum(axis=0).astype(np.float64)
    sum_dev = dev.sum(axis=0)
    curves: dict[str, ResponseCurve] = {}
    reasons: dict[str, str] = {}
    chi90 = 2.705543454095404

    def fit_one(i: int, days: IntArray, prior: tuple[float, float] | None) -> ResponseCurve | str:
        """One campaign's curve on its usable ``days``; with ``prior`` (mean, variance of the
        elasticity at today's spend across the client's campaigns) the delivery exponent is
        the posterior one and the reach scale is chosen by its marginal likelihood."""
        cid = pv.keys[i]
        x, y, m = spend_all[i], rev_all[i], imp_all[i]
        xs, ms = x[days], m[days]
        last = days[-cfg.funnel_anchor_days :]
        anchor_s = float(x[last].mean())
        rpi = float(y[last].sum() / m[last].sum())
        if rpi <= 0 or anchor_s <= 0:
            return "no revenue in the recent days"
        block = (days - days[0]) // cfg.block_days
        others = cnt[days] - ok_all[i, days]
        with np.errstate(divide="ignore", invalid="ignore"):
            market_ix = np.where(others >= 3, (sum_dev[days] - dev[i, days]) / np.maximum(others, 1.0), 0.0)
        z = np.concatenate(
            [
                np.eye(int(block.max()) + 1)[block],
                np.stack([(wd[days] == d) for d in range(1, 7)], axis=1),
                market_ix[:, None] if cfg.market_index else np.zeros((days.size, 0)),
            ],
            axis=1,
        ).astype(np.float64)
        z = z[:, z.any(axis=0)]
        lm = np.log(ms)
        feats = _delivery_features(xs, _REACH_GRID, anchor_s)
        wts = np.ones(days.size)
        for _ in range(1 + cfg.robust_iterations):
            b_all, sse, ff, resid, sse_raw = _profile(z, lm, feats, wts)
            best = int(np.argmin(sse if prior is None else sse_raw))
            if not np.isfinite(sse[best] if prior is None else sse_raw[best]):
                break
            # Huber weights: a few days of unmodelled market shocks must not set the curve's shape
            r = resid[:, best]
            scale = 1.4826 * float(np.median(np.abs(r[wts > 0] - np.median(r[wts > 0])))) + 1e-12
            wts = np.minimum(1.0, cfg.huber_k * scale / np.maximum(np.abs(r), 1e-12))
        dof = max(days.size - z.shape[1] - 2, 1)
        if prior is None:
            if not np.isfinite(sse[best]):
                return "impressions do not grow with spend in this campaign's history"
            s2 = float(sse[best]) / dof
            b_use, var_b, crit = b_all, s2 / np.maximum(ff, 1e-300), sse
        else:
            # Empirical Bayes: elasticity at today's spend ~ N(mu, tau2) across the client's
            # campaigns. Reach scale j turns it into a prior on b: N(mu / g_j, tau2 / g_j^2), with
            # g_j the feature's slope in log spend at today's spend (1 for the power law).
            if not np.isfinite(sse_raw[best]):
                return "impressions do not vary in this campaign's history"
            s2 = float(sse_raw[best]) / dof
            mu, tau2 = prior
            u = 1.0 / _REACH_GRID
            g = np.concatenate([u * np.exp(-u) / -np.expm1(-u), [1.0]])
            v_data = s2 / np.maximum(ff, 1e-300)
            v_prior = tau2 / g**2
            b_use = (b_all / v_data + (mu / g) / v_prior) / (1.0 / v_data + 1.0 / v_prior)
            var_b = 1.0 / (1.0 / v_data + 1.0 / v_prior)
            w_tot = v_data + v_prior
            # -2 log marginal likelihood of reach scale j (b integrated out), in SSE units
            crit = sse_raw + s2 * ((b_all - mu / g) ** 2 / w_tot + np.log(w_tot / v_data))
            crit = np.where((b_use > 0) & (b_use <= 1.0) & np.isfinite(crit), crit, np.inf)
            best = int(np.argmin(crit))
            if not np.isfinite(crit[best]):
                return "impressions do not grow with spend in this campaign's history"
        # Occam: the reach scale is one more parameter; the power law (its limit) stays unless
        # saturation improves the fit by more than the BIC's price of that parameter.
        if best != _REACH_GRID.size and crit[-1] <= crit[best] + cfg.saturation_penalty * math.log(days.size) * s2:
            best = _REACH_GRID.size
        b = float(b_use[best])
        se_b = math.sqrt(float(var_b[best]))
        power = best == _REACH_GRID.size
        c = math.inf if power else float(_REACH_GRID[best] * anchor_s)
        # curves the data cannot reject (profile likelihood, 90 %)
        compatible = np.flatnonzero(crit <= crit[best] + chi90 * s2)
        # trusted spend: where the compatible curves still agree
        grid = anchor_s * np.exp(np.linspace(0.0, np.log(cfg.max_extrapolation), 60))
        g_feat = _delivery_features(np.concatenate([[anchor_s], grid]), _REACH_GRID, anchor_s)
        rel = g_feat[1:] - g_feat[:1]  # log delivery relative to today's spend, per reach scale
        curves_k = rel[:, compatible] * b_use[compatible][None, :]
        half = _Z90 * np.sqrt(var_b[compatible])[None, :] * np.abs(rel[:, compatible])
        spread = (curves_k + half).max(axis=1) - (curves_k - half).min(axis=1)
        within = np.flatnonzero(spread <= cfg.max_extrapolation_spread)
        trusted = float(grid[within[-1]]) if within.size else anchor_s
        trusted = max(trusted, float(xs.max()))
        # level: the curve passes through the recent delivery at the recent spend
        f_best = feats[:, best]
        level = float(np.mean((lm - b * f_best)[-last.size :]))
        f_anchor = float(_delivery_features(np.array([anchor_s]), _REACH_GRID, anchor_s)[0, best])
        imps_anchor = math.exp(level + b * f_anchor)
        r_anchor = rpi * imps_anchor
        ly_last = np.log(np.maximum(y[last], 1e-9) / m[last])
        var_lr = float(np.var(ly_last, ddof=1)) / max(last.size, 1) if last.size > 1 else 1.0
        # natural parameters: revenue(s) = beta * D(s), D = s^b (power) or (1 - exp(-s / c))^b
        d_anchor = anchor_s**b if power else (-math.expm1(-anchor_s / c)) ** b
        beta = r_anchor / d_anchor
        cov = np.zeros((4, 4))
        cov[1, 1] = beta * beta * var_lr
        cov[3, 3] = se_b * se_b
        if not power and compatible.size > 1:
            finite = compatible[compatible < _REACH_GRID.size]
            lo_c = float(_REACH_GRID[finite].min()) if finite.size else _REACH_GRID[best]
            hi_c = float(_REACH_GRID[finite].max()) if finite.size else _REACH_GRID[best]
            cov[2, 2] = (c * (math.log(hi_c) - math.log(lo_c)) / (2 * _Z90)) ** 2
        kappa_code = math.inf if power else -c
        slope = float(_slope(beta, kappa_code, b, anchor_s))
        elas = slope * anchor_s / r_anchor
        half_slope = _Z90 * se_b * r_anchor / anchor_s
        return ResponseCurve(
            campaign_id=cid,
            beta=beta,
            half_saturation=c,
            shape=b,
            decay=0.0,
            r2=round(1.0 - float(sse_raw[best]) / max(float((wts * (lm - lm.mean()) ** 2).sum()), 1e-12), 4),
            n_obs=int(days.size),
            sigma=math.sqrt(s2),
            covariance=[[float(v) for v in row] for row in cov],
            spend_range=(float(xs.min()), float(xs.max())),
            marginal_roas_band=(round(slope - half_slope, 4), round(slope + half_slope, 4)),
            family="constant-elasticity" if power else "exponential",
            elasticity=round(elas, 4),
            elasticity_raw=round(elas, 4),
            elasticity_se=round(se_b, 4),
            max_spend=trusted,
        )

    # Campaigns with min_days usable days are fitted on their own; younger ones (at least
    # min_pooled_days) borrow the client's distribution of elasticities (empirical Bayes).
    pool_cfg = replace(cfg, min_days=min(cfg.min_pooled_days, cfg.min_days))
    young: list[tuple[int, IntArray]] = []
    own: list[tuple[float, float]] = []
    for i, cid in enumerate(pv.keys):
        x, m = spend_all[i], imp_all[i]
        days, why = _usable_days(x, present[i] & (x > 0) & (m > 0) & ~hol, pool_cfg)
        if why:
            reasons[cid] = (
                why
                if days.size >= pool_cfg.min_days
                else f"only {days.size} usable days with spend, need {cfg.min_days}"
            )
            continue
        if days.size < cfg.min_days or cfg.pool_every_campaign:
            young.append((i, days))
            if days.size >= cfg.min_days:
                out = fit_one(i, days, None)
                if isinstance(out, ResponseCurve) and out.elasticity is not None and out.elasticity_se:
                    own.append((out.elasticity, out.elasticity_se * out.elasticity / max(out.shape, 1e-12)))
            continue
        out = fit_one(i, days, None)
        if isinstance(out, str):
            reasons[cid] = out
            continue
        curves[cid] = out
        if out.elasticity is not None and out.elasticity_se:
            # the elasticity's SE: b's SE times the feature's slope (elasticity / b)
            own.append((out.elasticity, out.elasticity_se * out.elasticity / max(out.shape, 1e-12)))
    prior = _elasticity_prior(own, cfg)
    for i, days in young:
        cid = pv.keys[i]
        if prior is None:
            reasons[cid] = (
                f"only {days.size} usable days with spend, need {cfg.min_days} (no other campaign to pool with)"
            )
            continue
        out = fit_one(i, days, prior)
        if isinstance(out, str):
            reasons[cid] = out
        else:
            curves[cid] = out
    return curves, reasons


def _elasticity_prior(own: Sequence[tuple[float, float]], cfg: AllocationConfig) -> tuple[float, float] | None:
    """Mean and between-campaign variance of the elasticity at today's spend (DerSimonian-Laird).

    The random-effects spread ``tau2`` is what a young campaign's own data is weighed against;
    floored at ``min_between_variance`` so that two agreeing campaigns do not fix it.
    """
    if len(own) < cfg.min_pool_campaigns:
        return None
    est = np.array([e for e, _ in own])
    se2 = np.maximum(np.array([s for _, s in own]) ** 2, 1e-8)
    w = 1.0 / se2
    mu_fe = float((w * est).sum() / w.sum())
    q = float((w * (est - mu_fe) ** 2).sum())
    tau2 = max((q - (est.size - 1)) / max(float(w.sum() - (w * w).sum() / w.sum()), 1e-9), cfg.min_between_variance)
    wr = 1.0 / (se2 + tau2)
    mu = float((wr * est).sum() / wr.sum())
    return mu, tau2


def allocation_from_pivot(
    pv: Pivot,
    *,
    total_budget: float | None = None,
    current: Mapping[str, float] | None = None,
    min_budget: Mapping[str, float] | None = None,
    max_budget: Mapping[str, float] | None = None,
    config: AllocationConfig | None = None,
    holidays: Sequence[DateLike] = (),
) -> AllocationResult:
    """Fit and allocate; current budgets default to each campaign's mean spend of the last 7 days."""
    cfg = config or AllocationConfig()
    if cfg.funnel and "impressions" in pv.values:
        curves, reasons = fit_funnel(pv, cfg, holidays=holidays)
    else:
        curves, reasons = fit_elasticities(pv, cfg, holidays=holidays)
    if current is None:
        recent = pv.values["spend"][:, -7:] if pv.keys else np.zeros((0, 0))
        current = {cid: float(recent[i].mean()) for i, cid in enumerate(pv.keys)}
    return allocate_budget(
        dict(curves), current, total_budget, min_budget=min_budget, max_budget=max_budget, reasons=reasons, config=cfg
    )
