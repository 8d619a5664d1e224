"""Fatigue forecast: when will an ad's CTR cross the fatigue threshold at its current trend?

Issue 19 asks for a "fatigue expected in N days" warning 7-14 days before an ad's CTR
has fallen by the fatigue threshold (``min_drop``, 20 %), with an interval, dropped when
the trend recovers.

Why a state-space model. The fatigue detector's open-ramp fit (a flat level, then a
straight fall) only becomes significant days before the crossing: its day-level noise is
one dispersion for the whole series and a ramp has to beat a step. Here the CTR ratio
``y`` (clicks over the clicks expected at the ad's baseline CTR, with the market and
weekday factor already divided out by the detector's ``_prefix``) follows a *local linear
trend*::

    y_t = L_t + e_t,           Var e_t = phi * (working_sd**2 + 1 / expected_t)
    L_t = L_{t-1} + B_{t-1} + u_t,   Var u_t = phi * q_level
    B_t = B_{t-1} + v_t,             Var v_t = phi * q_slope

``e_t`` is the day-level noise (binomial plus over-dispersion, scaled by the ad's
dispersion ``phi`` measured from day-to-day differences), kept apart from the slow level
``L`` and its slope ``B``. The filtered slope and its variance give the days left to the
threshold and an interval; the filter is causal (it uses days up to *T* only) and runs
once over the day axis, vectorised across ads (numpy over rows), so a year of 500 ads
costs a few milliseconds. A hand Kalman filter rather than statsmodels'
``UnobservedComponents``: that fits one series at a time by maximum likelihood, which for
500 ads on every run would cost seconds; the variances here are fixed ratios tuned on
generated seeds 4-6 and scaled per ad by ``phi``.

This module imports nothing of the app (only numpy), like the rest of ``omnify.brain``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from omnify.brain.types import BoolArray, FloatArray

_Z90 = 1.6448536269514722


@dataclass(frozen=True)
class ForecastConfig:
    """Tuning of the local-linear-trend forecast (defaults tuned on generated seeds 4, 5, 6)."""

    min_drop: float = 0.20
    """The fatigue threshold: relative CTR fall from the reference level."""
    max_days: int = 14
    """Warn only when the crossing is expected within this many days."""
    slope_z: float = 1.0
    """The filtered fall per day must be this many SDs from zero."""
    min_current_drop: float = 0.06
    """The level must already be this far below the reference: a slope alone is noise."""
    drop_z: float = 2.5
    """The current level must be this many SDs below the reference (level and reference noise)."""
    q_level: float = 1e-5
    """Level innovation variance per day (in units of the dispersion)."""
    q_slope: float = 4e-6
    """Slope innovation variance per day: small, a wear-out trend changes slowly."""
    working_sd: float = 0.15
    """Day-level SD of the CTR ratio beyond binomial noise (scaled by the dispersion)."""
    ref_gap: int = 28
    """The reference level is the mean ratio of the days more than this many days ago ..."""
    ref_days: int = 90
    """... and at most this many (a slow drift of the baseline is not fatigue)."""
    min_ref_days: int = 14


@dataclass(frozen=True)
class TrendState:
    """Filtered level, slope and their covariance on the last day, per ad."""

    level: FloatArray
    slope: FloatArray
    var_level: FloatArray
    var_slope: FloatArray
    cov: FloatArray
    phi: FloatArray
    reference: FloatArray
    var_reference: FloatArray
    ref_ok: BoolArray


def dispersion(y: FloatArray, expected: FloatArray, valid: BoolArray, working_sd: float) -> FloatArray:
    """Per-ad dispersion: mean squared standardised difference of consecutive valid days.

    Differences cancel the level and (almost) a slow trend, so a decline does not inflate it.
    """
    n, t_len = y.shape
    v = working_sd**2 + 1.0 / (expected + 0.5)
    cols = np.arange(t_len)[None, :]
    last = np.maximum.accumulate(np.where(valid, cols, -1), axis=1)
    prev = np.concatenate([np.full((n, 1), -1), last[:, :-1]], axis=1)
    has_prev = valid & (prev >= 0)
    pc = np.clip(prev, 0, None)
    y_prev = np.take_along_axis(y, pc, axis=1)
    v_prev = np.take_along_axis(np.where(valid, v, 1.0), pc, axis=1)
    z2 = np.where(has_prev, (y - y_prev) ** 2 / (np.where(valid, v, 1.0) + v_prev), 0.0)
    nd = has_prev.sum(axis=1)
    phi: FloatArray = np.where(nd > 0, np.minimum(z2, 16.0).sum(axis=1) / np.maximum(nd, 1), 1.0)
    return np.maximum(phi, 0.5)


def filter_trend(y: FloatArray, expected: FloatArray, valid: BoolArray, cfg: ForecastConfig) -> TrendState:
    """Kalman filter of the local linear trend over the day axis, all ads at once."""
    n, t_len = y.shape
    phi = dispersion(y, expected, valid, cfg.working_sd)
    r_all = phi[:, None] * (cfg.working_sd**2 + 1.0 / (expected + 0.5))
    ql, qs = phi * cfg.q_level, phi * cfg.q_slope
    lv = np.ones(n)
    b = np.zeros(n)
    p11 = np.full(n, 1.0)  # diffuse-ish start on the ratio scale (about 1 at the baseline)
    p12 = np.zeros(n)
    p22 = np.full(n, 1e-4)
    started = np.zeros(n, dtype=bool)
    for t in range(t_len):
        # predict
        lv = lv + b
        p11 = p11 + 2 * p12 + p22 + ql
        p12 = p12 + p22
        p22 = p22 + qs
        ok = valid[:, t]
        if not ok.any():
            continue
        first = ok & ~started
        if first.any():
            lv = np.where(first, y[:, t], lv)
            started |= ok
        r = r_all[:, t]
        s = p11 + r
        k1 = np.where(ok, p11 / s, 0.0)
        k2 = np.where(ok, p12 / s, 0.0)
        innov = np.where(ok, y[:, t] - lv, 0.0)
        lv = lv + k1 * innov
        b = b + k2 * innov
        p22 = p22 - k2 * p12
        p12 = p12 - k1 * p12
        p11 = p11 - k1 * p11
    # reference: the mean ratio of the days [T - ref_days, T - ref_gap)
    cols = np.arange(t_len)[None, :]
    window = valid & (cols >= t_len - cfg.ref_days) & (cols < t_len - cfg.ref_gap)
    w = np.where(window, 1.0 / r_all, 0.0)
    sw = w.sum(axis=1)
    ref = np.divide((w * y).sum(axis=1), sw, out=np.ones(n), where=sw > 0)
    var_ref = np.divide(1.0, sw, out=np.full(n, np.inf), where=sw > 0)
    return TrendState(lv, b, p11, p22, p12, phi, ref, var_ref, window.sum(axis=1) >= cfg.min_ref_days)


def forecast_crossing(
    y: FloatArray,
    expected: FloatArray,
    valid: BoolArray,
    skip: BoolArray,
    cfg: ForecastConfig | None = None,
) -> list[dict[str, Any] | None]:
    """Per ad: the forecast evidence dict when a confident crossing is due within ``max_days``.

    ``y``: ratio of clicks to the clicks expected at the ad's baseline CTR (market- and
    weekday-adjusted), ``expected`` those expected clicks, ``valid`` the days that count;
    ``skip``: ads not to forecast (already fatigued, or not eligible).
    """
    cfg = cfg or ForecastConfig()
    n = y.shape[0]
    if n == 0 or y.shape[1] == 0:
        return []
    st = filter_trend(y, expected, valid, cfg)
    ref = np.maximum(st.reference, 1e-6)
    drop = 1.0 - st.level / ref
    fall = -st.slope / ref
    se = np.sqrt(np.maximum(st.var_slope, 1e-18)) / ref
    with np.errstate(invalid="ignore"):
        var_drop = np.maximum(st.var_level, 0.0) + st.var_reference * (st.level / ref) ** 2
    se_drop = np.sqrt(np.where(np.isfinite(var_drop), var_drop, np.inf)) / ref
    z = fall / se
    z_drop = drop / se_drop
    out: list[dict[str, Any] | None] = []
    for i in range(n):
        b, d = float(fall[i]), float(drop[i])
        if (
            skip[i]
            or not st.ref_ok[i]
            or not valid[i, -7:].any()
            or b <= 0
            or z[i] < cfg.slope_z
            or z_drop[i] < cfg.drop_z
            or d < cfg.min_current_drop
            or d >= cfg.min_drop
        ):
            out.append(None)
            continue
        n_days = (cfg.min_drop - d) / b
        if n_days > cfg.max_days:
            out.append(None)
            continue
        b_lo, b_hi = max(b - _Z90 * float(se[i]), 1e-9), b + _Z90 * float(se[i])
        lo = max((cfg.min_drop - d) / b_hi, 0.0)
        hi = (cfg.min_drop - d) / b_lo
        out.append(
            {
                "metric": "ctr",
                "method": "local linear trend (Kalman filter) of CTR over expected, day-level noise apart",
                "days_to_threshold": round(n_days, 1),
                "interval_days": [round(lo, 1), round(min(hi, 365.0), 1) if math.isfinite(hi) else 365.0],
                "threshold_drop": cfg.min_drop,
                "current_drop": round(d, 4),
                "current_drop_se": round(float(se_drop[i]), 4),
                "fall_per_day": round(b, 5),
                "slope_z": round(float(z[i]), 2),
                "drop_z": round(float(z_drop[i]), 2),
                "dispersion": round(float(st.phi[i]), 3),
            }
        )
    return out
