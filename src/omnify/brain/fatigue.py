"""Creative fatigue: a sustained fall of an ad's CTR from the level it held, found as a change point.

Method
------
An audience that has seen a creative many times stops clicking on it: the ad's
click-through rate leaves the level it held and declines, gradually, to a lower floor.
Comparing an ad with itself removes the large differences between creatives; comparing
it with the other ads *on the same day* removes what moves all of them (weekday rhythm,
holidays, auction pressure).

1. **Market factor.** Each ad's expected clicks on day *t* are its own trailing CTR
   (the ``market_days`` before *t*) times its impressions. The day's log ratio of
   observed to expected clicks, pooled over the client's ads on one platform with
   inverse-variance weights and clipped at +-0.5, estimates what moved every ad that day;
   it is shrunk towards zero with a normal prior (SD ``market_prior_sd``, or
   ``holiday_prior_sd`` on the client's calendar days, when markets do move). It uses
   day *t* and earlier only.
2. **Series.** After the learning phase (the first ``learning_days`` active days), each
   active day gives ``y_t = log((c_t + 0.5) / (E_t + 0.5))`` with ``E_t`` the impressions
   x the market factor x the ad's rate in its first ``baseline_days`` active days. Days
   without a row are missing: they carry no evidence either way.
3. **Segmented fit.** ``y_t = a - b x_t`` with ``x_t = clip(t - tau, 0, kappa)``: flat at
   ``a`` until the onset ``tau``, then a linear decline (in log CTR) for ``kappa`` days to
   a floor; ``kappa`` = 1 is a step. Weighted least squares with a working variance
   ``s0^2 + 1 / (E_t + 0.5)`` (auction noise plus binomial noise), on the last
   ``fit_window`` days only (the level an ad held is its recent level: a slow drift over a
   year would bend the flat part), over every onset in that window (keeping
   ``min_pre_days`` active days before it) and a grid of ramp lengths, all from prefix
   sums, so one ad costs a few vector operations.
   The evidence for a decline is the generalised likelihood ratio of the best fit against
   a constant CTR, ``GLR = S_xy^2 / S_xx / phi`` when the slope is downwards, where
   ``phi`` is a quasi-likelihood dispersion: the mean squared standardised day-to-day
   difference (insensitive to slow trends and to the level shift itself). The onset is
   the posterior median over (onset, shape) with weights ``exp(GLR / 2)`` and a prior
   uniform in time (each grid onset weighted by the days it stands for); its 95 %
   interval is the set of onsets whose profile GLR lies within 3.84 of the best (a
   likelihood-ratio interval).
4. **Decision, causally.** On day *T*, using data up to *T* only, an ad is fatigued
   when: ``GLR >= glr_threshold``; the fitted fall at *T* is at least ``min_drop``; the
   last ``recent_days`` are down too (``recent_z`` SDs, and at least 3/4 of
   ``min_drop``), so a recovered ad is not reported; and the decline is at least
   ``confirm_days`` old, counted from the *latest* onset of its 95 % interval (the
   posterior median is reported as the onset, but while a decline is young its posterior
   spreads back onto slow-ramp shapes and the median with it, which let one-week dips
   pass as twelve days old) (transient dips, from auctions, holidays or a competitor's burst,
   last days to about a week and a half: pausing an ad that would have recovered costs
   its good days), and no window of the last 1 .. ``recovery_days`` days is back near the
   old level. ``detected_date`` is the first day of the current run of days on
   which this decision held, found by running it on every earlier day (exactly what a
   daily run would have flagged: every quantity is a prefix sum).
5. **States.** ``fatigued``; ``recovering`` (a decline that was significant but whose
   last days are back near the old level: a dip, not wear-out); ``declining`` (a
   significant fall, too young to call); ``healthy``; ``insufficient_data``.
6. **Forecast.** For an ad that is not yet fatigued but whose CTR is falling along a
   ramp that has not levelled off (``kappa`` covering *T*, the ramp fitting better than
   a step, at least a week old), the threshold crossing ``min_drop`` is extrapolated
   from the fitted slope: ``N = (-log(1 - min_drop) - b (T - tau)) / b`` days, with an
   interval from the slope's standard error. A forecast is raised when it is confident
   (slope ``forecast_z`` SDs from zero) and ``N`` is at most ``forecast_max_days``.
   Otherwise a local linear trend (Kalman filter, :mod:`omnify.brain.forecast`) of the
   same CTR ratio, with day-level noise kept apart from the level and its slope, may
   raise it earlier: level ``forecast_drop_z`` SDs below its reference and at least
   ``forecast_min_drop_now`` down, slope ``forecast_trend_z`` SDs from zero.

CVR (conversions per click) is reported as evidence (its change since the onset), never
as the reason: conversion rates also move with landing pages, offers and tracking, which
:mod:`omnify.brain.anomaly` watches.

Outputs: a score in [0, 1] (>= 0.5 exactly when the ad is flagged), the onset with its
interval, the detection date, and the spend wasted since the onset: the share of
post-onset spend that bought no clicks compared with the pre-onset CTR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.signal import lfilter

from omnify.brain.forecast import ForecastConfig, forecast_crossing
from omnify.brain.types import (
    BoolArray,
    DailyAdMetrics,
    DateLike,
    FatigueResult,
    FloatArray,
    IntArray,
    Pivot,
    as_dates,
    as_float,
)

_CHI2_95 = 3.841458820694124
_Z90 = 1.6448536269514722


@dataclass(frozen=True)
class FatigueConfig:
    learning_days: int = 5
    """First active days of an ad, left out: delivery and CTR are erratic while the platform learns."""
    baseline_days: int = 14
    """Active days after learning whose CTR scales the expected clicks (the fit estimates the level)."""
    min_pre_days: int = 14
    """Active days before an onset: a level needs two weeks to be known."""
    min_pre_clicks: float = 60.0
    """Expected clicks before the onset: with fewer a 20 % fall is within noise."""
    min_drop: float = 0.20
    """Smallest relative CTR fall worth acting on (the fatigue threshold)."""
    confirm_days: int = 12
    """A decline younger than this is ``declining``, not yet ``fatigued``: dips recover within it."""
    glr_threshold: float = 20.0
    """Evidence for a decline against a constant CTR (a likelihood ratio, chi-square units)."""
    recent_days: int = 7
    recent_z: float = 2.0
    recovery_days: int = 3
    """The last days that decide a dip is over."""
    recovery_z: float = 2.5
    max_onset_window: int = 365
    fit_window: int = 150
    """Days of data up to T the segmented fit uses: the level an ad held is its recent level
    (a slow drift over many months otherwise bends the flat part and drags the onset)."""
    ramps: tuple[int, ...] = (1, 3, 7, 14, 30, 60, 100000)
    """Linear-decline lengths tried (1 is a step, the last an open ramp that has not levelled off)."""
    exp_scales: tuple[float, ...] = (4.0, 8.0, 16.0, 32.0)
    """Time constants of the exponential approaches to a floor that are tried."""
    working_sd: float = 0.15
    """Working day-to-day SD of log CTR beyond binomial noise (scaled by the fitted dispersion)."""
    market_days: int = 28
    market_prior_sd: float = 0.1
    holiday_prior_sd: float = 0.5
    forecast_max_days: int = 14
    forecast_z: float = 3.0
    forecast_glr: float = 12.0
    forecast_trend_z: float = 1.0
    """Filtered CTR slope SDs from zero for a trend forecast (:mod:`omnify.brain.forecast`)."""
    forecast_drop_z: float = 2.5
    """SDs the filtered CTR level must sit below its reference for a trend forecast."""
    forecast_min_drop_now: float = 0.06
    """The CTR must already be this far below its reference level for a trend forecast."""
    detection_lookback: int = 120
    """Days walked back to find ``detected_date`` (older flags are reported as that far back)."""
    detection_date: bool = True
    """Compute ``detected_date`` by replaying the decision on earlier days (off for replays)."""
    min_baseline_conversions: float = 20.0
    series_weeks: int = 26


# --------------------------------------------------------------------------- market factor


def _trailing(x: FloatArray, days: int) -> FloatArray:
    """Sum over the ``days`` days before each day (not including it)."""
    c = np.cumsum(np.pad(x, ((0, 0), (1, 0))), axis=1)
    lo = np.clip(np.arange(x.shape[1]) - days, 0, None)
    out: FloatArray = c[:, np.arange(x.shape[1])] - c[:, lo]
    return out


def market_factor(
    succ: FloatArray,
    trials: FloatArray,
    present: BoolArray,
    groups: Sequence[str],
    holiday: BoolArray | None,
    *,
    days: int = 28,
    prior_sd: float = 0.1,
    holiday_sd: float = 0.5,
    working_sd: float = 0.15,
) -> FloatArray:
    """Per row x day log factor shared by the rows of one group (causal, shrunk to 0).

    Each row's expected successes on a day are its trailing rate times its trials; the
    factor is the precision-weighted mean of the clipped log ratios of the group's rows
    that day, shrunk by a normal prior (wider on holidays). Rows whose trailing window
    holds fewer than 20 successes do not vote.
    """
    n, t_len = succ.shape
    out = np.zeros((n, t_len))
    if n == 0 or t_len == 0:
        return out
    s_tr = _trailing(succ * present, days)
    n_tr = _trailing(trials * present, days)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(s_tr >= 20.0, s_tr / n_tr, np.nan)
        exp = trials * rate
        ok = present & np.isfinite(exp) & (exp >= 3.0)
        r = np.where(ok, np.clip(np.log((succ + 0.5) / (exp + 0.5)), -0.5, 0.5), 0.0)
        w = np.where(ok, 1.0 / (working_sd**2 + 1.0 / (exp + 0.5)), 0.0)
    prior = np.full(t_len, 1.0 / prior_sd**2)
    if holiday is not None and holiday.shape[0] == t_len:
        prior = np.where(holiday, 1.0 / holiday_sd**2, prior)
    g = np.asarray(groups, dtype=object)
    for name in sorted(set(groups)):
        rows = g == name
        num = (w[rows] * r[rows]).sum(axis=0)
        den = w[rows].sum(axis=0)
        out[rows] = (num / (den + prior))[None, :]
    return out


# --------------------------------------------------------------------------- prefix sums


@dataclass(frozen=True)
class _Prefix:
    """Prefix sums over the day axis (index k holds the sum over days < k) of one ratio series."""

    w: FloatArray
    wt: FloatArray
    wtt: FloatArray
    wy: FloatArray
    wty: FloatArray
    n: FloatArray  # valid days
    e: FloatArray  # expected successes at the reference rate
    d2: FloatArray  # clipped standardised squared day-to-day differences
    nd: FloatArray  # number of differences
    bw: FloatArray  # (L, n, t+1) backward discounted sums of w for each exponential scale
    bw2: FloatArray  # same with the squared discount
    bwy: FloatArray  # same of w * y
    first: IntArray  # first valid day (learning excluded) per row; t_len when none
    eligible_from: IntArray  # first day the reference rate is known; t_len when never
    ref_rate: FloatArray


def _cum(x: FloatArray) -> FloatArray:
    out: FloatArray = np.cumsum(np.pad(x, ((0, 0), (1, 0))), axis=1)
    return out


def _backward(x: FloatArray, r: float) -> FloatArray:
    """``B[t] = sum_{s >= t} x_s r^(s - t)``, with a zero column appended (index t_len)."""
    out: FloatArray = lfilter([1.0], [1.0, -r], x[:, ::-1], axis=1)[:, ::-1]
    return np.pad(out, ((0, 0), (0, 1)))


def _prefix(
    succ: FloatArray, trials: FloatArray, present: BoolArray, log_factor: FloatArray, cfg: FatigueConfig
) -> tuple[_Prefix, FloatArray, FloatArray, BoolArray]:
    """The ratio series ``y = clicks / expected`` (about 1 while the CTR holds) and its prefix sums.

    The ratio scale (rather than log CTR) keeps a linear fall of CTR linear and an
    exponential approach to a floor exponential, and has no small-count bias.
    """
    n, t_len = succ.shape
    active = present & (trials > 0)
    rank = np.cumsum(active, axis=1)
    after_learning = active & (rank > cfg.learning_days)
    base = after_learning & (rank <= cfg.learning_days + cfg.baseline_days)
    scaled = trials * np.exp(log_factor)
    base_succ = (succ * base).sum(axis=1)
    base_units = (scaled * base).sum(axis=1)
    ref = np.divide(base_succ + 0.5, base_units, out=np.zeros(n), where=base_units > 0)
    has_base = base.sum(axis=1) >= cfg.baseline_days
    last_base = np.where(has_base, t_len - 1 - np.argmax(base[:, ::-1], axis=1), t_len)
    expected = scaled * ref[:, None]
    valid = after_learning & (expected > 0) & has_base[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(valid, succ / expected, 0.0)
        v = cfg.working_sd**2 + 1.0 / (expected + 0.5)
        w = np.where(valid, 1.0 / v, 0.0)
    t = np.arange(t_len, dtype=np.float64)[None, :]

    # Day-to-day differences between consecutive valid days, standardised by the working
    # variance: their mean square estimates the dispersion phi without caring about trends.
    cols = np.arange(t_len)[None, :]
    idx = np.where(valid, cols, -1)
    last = np.maximum.accumulate(idx, axis=1)
    prev = np.concatenate([np.full((n, 1), -1), last[:, :-1]], axis=1)
    has_prev = valid & (prev >= 0)
    pc = np.clip(prev, 0, None)
    y_prev = np.take_along_axis(y, pc, axis=1)
    v_prev = np.take_along_axis(np.where(valid, v, 1.0), pc, axis=1)
    with np.errstate(invalid="ignore"):
        z2 = np.where(has_prev, (y - y_prev) ** 2 / (np.where(valid, v, 1.0) + v_prev), 0.0)
    d2 = np.minimum(z2, 16.0)
    first = np.where(valid.any(axis=1), np.argmax(valid, axis=1), t_len)
    rs = np.exp(-1.0 / np.asarray(cfg.exp_scales, dtype=np.float64))
    pre = _Prefix(
        w=_cum(w),
        wt=_cum(w * t),
        wtt=_cum(w * t * t),
        wy=_cum(w * y),
        wty=_cum(w * t * y),
        n=_cum(valid.astype(np.float64)),
        e=_cum(np.where(valid, expected, 0.0)),
        d2=_cum(d2),
        nd=_cum(has_prev.astype(np.float64)),
        bw=np.stack([_backward(w, float(r)) for r in rs]),
        bw2=np.stack([_backward(w, float(r * r)) for r in rs]),
        bwy=np.stack([_backward(w * y, float(r)) for r in rs]),
        first=first.astype(np.int64),
        eligible_from=last_base.astype(np.int64),
        ref_rate=ref,
    )
    return pre, y, expected, valid


# --------------------------------------------------------------------------- segmented fit


@dataclass(frozen=True)
class _Fit:
    """Best segmented fit per evaluated (row, day T) pair."""

    ok: BoolArray
    glr: FloatArray
    tau: IntArray
    tau_map: IntArray
    shape: IntArray  # index into the shape grid (ramps, then exponential scales)
    a: FloatArray  # pre-onset level of the ratio (about 1)
    drop_at_t: FloatArray
    rate_at_t: FloatArray  # fall per day at T, as a share of a
    phi: FloatArray
    onset_lo: IntArray
    onset_hi: IntArray
    recent_drop: FloatArray
    recent_z: FloatArray
    recovering: BoolArray
    pre_expected: FloatArray
    step_glr: FloatArray
    open_glr: FloatArray
    open_tau: IntArray
    open_slope: FloatArray  # fall per day as a share of the level
    open_se: FloatArray


def _offsets(window: int) -> IntArray:
    """Candidate onsets, in days before T: every day for six weeks, then every third, then weekly."""
    parts = [np.arange(2, min(window, 45) + 1), np.arange(48, min(window, 120) + 1, 3), np.arange(127, window + 1, 7)]
    out: IntArray = np.concatenate(parts).astype(np.int64)
    return out


def _spacing(offs: IntArray) -> FloatArray:
    """Days each candidate onset stands for (half the gaps to its neighbours; 1 on a daily grid)."""
    o = offs.astype(np.float64)
    if o.shape[1] < 2:
        return np.ones_like(o)
    d = np.abs(np.diff(o, axis=1))
    out: FloatArray = np.concatenate([d[:, :1], (d[:, :-1] + d[:, 1:]) / 2.0, d[:, -1:]], axis=1)
    return out


def shape_name(cfg: FatigueConfig, k: int) -> str:
    ramps = cfg.ramps
    if k < len(ramps):
        r = ramps[k]
        return "step" if r <= 1 else ("open linear decline" if r >= 10000 else f"linear decline over {r} days")
    return f"exponential decline (time constant {cfg.exp_scales[k - len(ramps)]:g} days)"


def _fit(pre: _Prefix, rows: IntArray, days: IntArray, cfg: FatigueConfig, offsets: IntArray | None = None) -> _Fit:
    """The best flat-then-decline fit for each (row, T): data of days <= T only."""
    m = rows.shape[0]
    window = min(cfg.max_onset_window, cfg.fit_window)
    offs = _offsets(window)[None, :] if offsets is None else np.atleast_2d(offsets)
    ramps = np.asarray(cfg.ramps, dtype=np.int64)
    lams = np.asarray(cfg.exp_scales, dtype=np.float64)
    n_k = ramps.shape[0]
    big_t = days[:, None, None]
    tau = big_t - offs[:, :, None]  # (m, D, 1)
    end = big_t + 1
    tau_c = np.clip(tau, 0, big_t)
    r3 = rows[:, None, None]

    def s(p: FloatArray, lo: Any, hi: Any) -> FloatArray:
        out: FloatArray = p[r3, hi] - p[r3, lo]
        return out

    # Only the last ``fit_window`` days: "the level the ad held" is its recent level, and a slow
    # drift over many months (creative ageing, seasonality) would otherwise bend the flat part.
    lo = np.clip(days + 1 - cfg.fit_window, 0, None)
    w_all = (pre.w[rows, days + 1] - pre.w[rows, lo])[:, None, None]
    wy_all = (pre.wy[rows, days + 1] - pre.wy[rows, lo])[:, None, None]
    tf = tau_c.astype(np.float64)
    # Linear ramps of length kappa, then a floor.
    bend = np.minimum(tau_c + ramps[None, None, :], end)
    w_b, wt_b, wtt_b = s(pre.w, tau_c, bend), s(pre.wt, tau_c, bend), s(pre.wtt, tau_c, bend)
    wy_b, wty_b = s(pre.wy, tau_c, bend), s(pre.wty, tau_c, bend)
    w_c, wy_c = s(pre.w, bend, end), s(pre.wy, bend, end)
    kf = ramps[None, None, :].astype(np.float64)
    sx_h = (wt_b - tf * w_b) + kf * w_c
    sxx_h = (wtt_b - 2.0 * tf * wt_b + tf * tf * w_b) + kf * kf * w_c
    sxy_h = (wty_b - tf * wy_b) + kf * wy_c
    # Exponential approach to a floor: x = 1 - exp(-(t - tau) / lambda).
    w_post = s(pre.w, tau_c, end)
    wy_post = s(pre.wy, tau_c, end)
    li = np.arange(lams.shape[0])[None, None, :]
    disc = np.exp(-(end - tau_c).astype(np.float64) / lams[None, None, :])
    s1 = pre.bw[li, r3, tau_c] - disc * pre.bw[li, r3, end]
    s2 = pre.bw2[li, r3, tau_c] - disc * disc * pre.bw2[li, r3, end]
    s1y = pre.bwy[li, r3, tau_c] - disc * pre.bwy[li, r3, end]
    sx_e = w_post - s1
    sxx_e = w_post - 2.0 * s1 + s2
    sxy_e = wy_post - s1y
    sx = np.concatenate([sx_h, sx_e], axis=2)
    sxx = np.concatenate([sxx_h, sxx_e], axis=2)
    sxy = np.concatenate([sxy_h, sxy_e], axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        cxx = sxx - sx * sx / w_all
        cxy = sxy - sx * wy_all / w_all
        beta = cxy / cxx
    lo3 = np.broadcast_to(lo[:, None, None], tau_c.shape)
    n_pre = s(pre.n, lo3, tau_c)
    e_pre = s(pre.e, lo3, tau_c)
    n_post = s(pre.n, tau_c, end)
    first = np.maximum(pre.first[rows], lo)[:, None, None]
    span = big_t - tau_c + 1
    shape_ok = np.concatenate(
        [(ramps[None, None, :] <= span) | (ramps[None, None, :] == ramps[-1]), np.ones(sx_e.shape, dtype=bool)],
        axis=2,
    )
    valid = (
        (tau >= first)
        & (offs[:, :, None] >= 2)
        & (n_pre >= cfg.min_pre_days)
        & (e_pre >= cfg.min_pre_clicks)
        & (n_post >= 2)
        & (cxx > 1e-9)
        & np.isfinite(beta)
        & shape_ok
    )
    nd = pre.nd[rows, days + 1]
    phi = np.maximum(np.divide(pre.d2[rows, days + 1], nd, out=np.ones(m), where=nd > 0), 0.25)
    with np.errstate(divide="ignore", invalid="ignore"):
        glr = np.where(valid & (beta < 0), cxy * cxy / cxx, 0.0) / phi[:, None, None]
    glr = np.where(valid, glr, -1.0)
    flat = glr.reshape(m, -1)
    best = np.argmax(flat, axis=1)
    bd, bk = np.unravel_index(best, glr.shape[1:])
    ar = np.arange(m)
    g_best = flat[ar, best]
    ok = g_best >= 0
    b_beta = np.minimum(beta[ar, bd, bk], 0.0)
    b_tau = tau_c[ar, bd, 0]
    b_a = (wy_all[:, 0, 0] - b_beta * sx[ar, bd, bk]) / w_all[:, 0, 0]
    age = (days - b_tau).astype(np.float64)
    is_h = bk < n_k
    kap = ramps[np.minimum(bk, n_k - 1)].astype(np.float64)
    lam = lams[np.clip(bk - n_k, 0, lams.shape[0] - 1)]
    x_t = np.where(is_h, np.minimum(age, kap), 1.0 - np.exp(-age / lam))
    dx_t = np.where(is_h, (age < kap).astype(np.float64), np.exp(-age / lam) / lam)
    with np.errstate(divide="ignore", invalid="ignore"):
        a_pos = np.maximum(b_a, 1e-9)
        drop_t = np.where(ok, -b_beta * x_t / a_pos, 0.0)
        rate_t = np.where(ok, -b_beta * dx_t / a_pos, 0.0)

    # Onset: posterior median over (onset, shape), weight exp(GLR / 2), with a prior that is
    # uniform in time: the onset grid thins out to every 3rd and 7th day further back, so each
    # candidate stands for the days around it (a flat prior over grid points would favour
    # recent onsets, and place old declines late).
    post = np.where(glr >= 0, np.exp(np.clip((glr - g_best[:, None, None]) / 2.0, -50, 0)), 0.0).sum(axis=2)
    post = post * _spacing(offs)
    cdf = np.cumsum(post[:, ::-1], axis=1)  # offsets descending -> onsets ascending
    med_i = np.argmax(cdf >= 0.5 * cdf[:, -1:], axis=1)
    tau_med = tau_c[ar, post.shape[1] - 1 - med_i, 0]
    prof = glr.max(axis=2)
    within = (prof >= (g_best[:, None] - _CHI2_95)) & (prof >= 0)
    taus = tau_c[:, :, 0]
    onset_lo = np.where(within, taus, np.iinfo(np.int64).max).min(axis=1)
    onset_hi = np.where(within, taus, -1).max(axis=1)
    step_glr = np.where(ok, glr[ar, bd, 0], 0.0)
    open_k = glr[:, :, n_k - 1]
    open_d = np.argmax(open_k, axis=1)
    open_glr = open_k[ar, open_d]
    open_beta = beta[ar, open_d, n_k - 1]
    open_se = np.sqrt(phi / np.maximum(cxx[ar, open_d, n_k - 1], 1e-12))
    with np.errstate(divide="ignore", invalid="ignore"):  # rows without data: NaN, zeroed where used
        open_a = np.maximum((wy_all[:, 0, 0] - open_beta * sx[ar, open_d, n_k - 1]) / w_all[:, 0, 0], 1e-9)

    # Recent window and recovery, against the pre-onset level a.
    lo_r = np.clip(days + 1 - cfg.recent_days, 0, None)
    w_r = pre.w[rows, days + 1] - pre.w[rows, lo_r]
    wy_r = pre.wy[rows, days + 1] - pre.wy[rows, lo_r]
    tau_used = np.where(ok, tau_med, b_tau)
    with np.errstate(divide="ignore", invalid="ignore"):
        ybar_r = wy_r / w_r
        w_pre = pre.w[rows, b_tau] - pre.w[rows, lo]
        recent_z = (ybar_r - b_a) / np.sqrt(phi * (1.0 / w_r + 1.0 / np.maximum(w_pre, 1e-12)))
        recent_drop = np.where(w_r > 0, 1.0 - ybar_r / a_pos, 0.0)
    # A dip is over when the last k days (k = 1 .. recovery_days) are back near the old level
    # and clearly above the fitted decline. Checking the shorter windows too matters at the
    # end of a dip: a flag raised on the first or second day back would propose pausing an
    # ad that has already recovered, before a full recovery window has filled.
    fit_t = b_a + b_beta * x_t
    recovering = np.zeros(m, dtype=bool)
    for k in range(1, cfg.recovery_days + 1):
        lo_v = np.clip(days + 1 - k, 0, None)
        w_v = pre.w[rows, days + 1] - pre.w[rows, lo_v]
        wy_v = pre.wy[rows, days + 1] - pre.wy[rows, lo_v]
        with np.errstate(divide="ignore", invalid="ignore"):
            ybar_v = wy_v / w_v
            z_up = (ybar_v - fit_t) / np.sqrt(phi / w_v)
            back = 1.0 - ybar_v / a_pos < cfg.min_drop / 2.0
        recovering |= ok & (w_v > 0) & (z_up >= cfg.recovery_z) & back
    return _Fit(
        ok=ok,
        glr=np.maximum(g_best, 0.0),
        tau=np.where(ok, tau_used, -1).astype(np.int64),
        tau_map=b_tau.astype(np.int64),
        shape=bk.astype(np.int64),
        a=np.nan_to_num(b_a, nan=1.0),
        drop_at_t=np.nan_to_num(drop_t),
        rate_at_t=np.nan_to_num(rate_t),
        phi=phi,
        onset_lo=np.where(ok, onset_lo, -1).astype(np.int64),
        onset_hi=np.where(ok, onset_hi, -1).astype(np.int64),
        recent_drop=np.nan_to_num(recent_drop),
        recent_z=np.nan_to_num(recent_z),
        recovering=np.asarray(recovering, dtype=bool),
        pre_expected=e_pre[ar, bd, 0],
        step_glr=np.maximum(step_glr, 0.0),
        open_glr=np.maximum(open_glr, 0.0),
        open_tau=tau_c[ar, open_d, 0].astype(np.int64),
        open_slope=np.nan_to_num(-np.minimum(open_beta, 0.0) / open_a),
        open_se=np.nan_to_num(open_se / open_a, nan=np.inf),
    )


def _screen(pre: _Prefix, day: int, cfg: FatigueConfig) -> IntArray:
    """Rows whose last ``2 x recent_days`` days average at least 2% below all their earlier days."""
    k = 2 * cfg.recent_days
    lo = max(day + 1 - k, 0)
    w_r = pre.w[:, day + 1] - pre.w[:, lo]
    wy_r = pre.wy[:, day + 1] - pre.wy[:, lo]
    w_b = pre.w[:, lo] - pre.w[:, 0]
    wy_b = pre.wy[:, lo] - pre.wy[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        fall = 1.0 - (wy_r / w_r) / (wy_b / w_b)
    keep = (w_r > 0) & (w_b > 0) & (np.nan_to_num(fall, nan=0.0) >= 0.02) & (day >= pre.eligible_from)
    out: IntArray = np.flatnonzero(keep).astype(np.int64)
    return out


def _expand(fit: _Fit | None, rows: IntArray, n: int) -> _Fit:
    """A fit of some rows placed into all ``n`` rows; the others get "no fit" values."""
    defaults: dict[str, Any] = {
        "ok": False, "glr": 0.0, "tau": -1, "tau_map": -1, "shape": 0, "a": 1.0, "drop_at_t": 0.0, "rate_at_t": 0.0,
        "phi": 1.0, "onset_lo": -1, "onset_hi": -1, "recent_drop": 0.0, "recent_z": 0.0, "recovering": False,
        "pre_expected": 0.0, "step_glr": 0.0, "open_glr": 0.0, "open_tau": -1, "open_slope": 0.0,
        "open_se": np.inf,
    }  # fmt: skip
    out: dict[str, Any] = {}
    for name, value in defaults.items():
        full = np.full(n, value)
        if fit is not None:
            full[rows] = getattr(fit, name)
        out[name] = full
    return _Fit(**out)


def _decide(fit: _Fit, pre: _Prefix, rows: IntArray, days: IntArray, cfg: FatigueConfig) -> BoolArray:
    eligible = days >= pre.eligible_from[rows]
    out: BoolArray = np.asarray(
        eligible
        & fit.ok
        & (fit.glr >= cfg.glr_threshold)
        & (fit.drop_at_t >= cfg.min_drop)
        & (fit.recent_drop >= 0.75 * cfg.min_drop)
        & (fit.recent_z <= -cfg.recent_z)
        & (days - fit.onset_hi >= cfg.confirm_days)
        & ~fit.recovering,
        dtype=bool,
    )
    return out


def _state(fit: _Fit, fatigued: BoolArray, eligible: BoolArray, cfg: FatigueConfig) -> list[str]:
    out = []
    for i in range(fatigued.shape[0]):
        if fatigued[i]:
            out.append("fatigued")
        elif not eligible[i]:
            out.append("insufficient_data")
        elif fit.glr[i] >= cfg.glr_threshold and fit.recovering[i]:
            out.append("recovering")
        elif fit.glr[i] >= cfg.glr_threshold and fit.drop_at_t[i] >= cfg.min_drop / 2 and fit.recent_drop[i] > 0:
            out.append("declining")
        else:
            out.append("healthy")
    return out


def _forecast(fit: _Fit, days: IntArray, fatigued: BoolArray, eligible: BoolArray, cfg: FatigueConfig) -> list[
    dict[str, Any] | None
]:
    """Days until the open ramp's extrapolation crosses ``min_drop``, when confident."""
    out: list[dict[str, Any] | None] = []
    for i in range(days.shape[0]):
        b, se = float(fit.open_slope[i]), float(fit.open_se[i])
        age = int(days[i] - fit.open_tau[i])
        if (
            fatigued[i]
            or not eligible[i]
            or fit.recovering[i]
            or b <= 0
            or not math.isfinite(se)
            or b / se < cfg.forecast_z
            or fit.open_glr[i] < cfg.forecast_glr
            or fit.open_glr[i] < fit.step_glr[i]
            or age < 7
        ):
            out.append(None)
            continue
        done = b * age
        if done >= cfg.min_drop:
            out.append(None)  # already past the threshold on the ramp: a detection matter
            continue
        n_days = (cfg.min_drop - done) / b
        b_lo, b_hi = max(b - _Z90 * se, 1e-9), b + _Z90 * se
        lo = max(cfg.min_drop / b_hi - age, 0.0)
        hi = max(cfg.min_drop / b_lo - age, 0.0)
        if n_days > cfg.forecast_max_days:
            out.append(None)
            continue
        out.append(
            {
                "metric": "ctr",
                "days_to_threshold": round(n_days, 1),
                "interval_days": [round(lo, 1), round(min(hi, 365.0), 1)],
                "threshold_drop": cfg.min_drop,
                "current_drop": round(done, 4),
                "fall_per_day": round(b, 5),
                "slope_z": round(b / se, 2),
                "decline_started_days_ago": age,
            }
        )
    return out


def _forecast_config(cfg: FatigueConfig) -> ForecastConfig:
    return ForecastConfig(
        min_drop=cfg.min_drop,
        max_days=cfg.forecast_max_days,
        slope_z=cfg.forecast_trend_z,
        drop_z=cfg.forecast_drop_z,
        min_current_drop=cfg.forecast_min_drop_now,
        working_sd=cfg.working_sd,
    )


# --------------------------------------------------------------------------- public API


def detect_fatigue(
    metrics: DailyAdMetrics,
    config: FatigueConfig | None = None,
    *,
    as_of: DateLike | None = None,
    holidays: Sequence[DateLike] | None = None,
) -> list[FatigueResult]:
    """Fatigue verdict for every ad in the frame (one result per ad, input order)."""
    cfg = config or FatigueConfig()
    if len(metrics) == 0:
        return []
    return detect_fatigue_pivot(metrics.ad_pivot(as_of), cfg, holidays=holidays)


def detect_fatigue_series(
    dates: Any,
    impressions: Any,
    clicks: Any,
    conversions: Any = None,
    spend: Any = None,
    frequency: Any = None,
    *,
    ad_id: str = "ad",
    config: FatigueConfig | None = None,
) -> FatigueResult:
    """Convenience wrapper for a single ad's daily series."""
    d = as_dates(dates)
    n = d.shape[0]
    frame = DailyAdMetrics.build(
        ad_id=[ad_id] * n,
        date=d,
        impressions=as_float(impressions, "impressions", n),
        clicks=as_float(clicks, "clicks", n),
        conversions=conversions,
        spend=spend,
        frequency=frequency,
    )
    results = detect_fatigue(frame, config)
    if results:
        return results[0]
    return FatigueResult(ad_id, "", False, 0.0, None, None, 0.0, 0.0, None, "no data", {"active_days": 0})


def _holiday_mask(dates: Any, holidays: Sequence[DateLike] | None) -> BoolArray | None:
    if not holidays:
        return None
    hd = as_dates(list(holidays), "holidays")
    out: BoolArray = np.isin(dates, hd)
    return out


def detect_fatigue_pivot(
    pv: Pivot, config: FatigueConfig | None = None, *, holidays: Sequence[DateLike] | None = None
) -> list[FatigueResult]:
    """Fatigue verdicts from an ad x day pivot, judged on its last day."""
    cfg = config or FatigueConfig()
    n, t_len = pv.shape
    if n == 0 or t_len == 0:
        return []
    imps = pv.values["impressions"]
    clicks = np.minimum(pv.values["clicks"], imps)
    conv = np.minimum(pv.values["conversions"], clicks)
    spend = pv.values["spend"]
    present = pv.present & (imps > 0)
    hol = _holiday_mask(pv.dates, holidays)
    factor = market_factor(
        clicks,
        imps,
        present,
        pv.attrs.get("platform", [""] * n),
        hol,
        days=cfg.market_days,
        prior_sd=cfg.market_prior_sd,
        holiday_sd=cfg.holiday_prior_sd,
        working_sd=cfg.working_sd,
    )
    pre, ratio, expected, valid = _prefix(clicks, imps, present, factor, cfg)
    rows = np.arange(n)
    last = np.full(n, t_len - 1, dtype=np.int64)
    # Only ads whose last two weeks sit below their earlier average need the full search; the
    # rest are holding their level (a flag needs the last 12 days inside a decline).
    cand = _screen(pre, t_len - 1, cfg)
    fit = _expand(_fit(pre, cand, last[cand], cfg) if cand.size else None, cand, n)
    fatigued = _decide(fit, pre, rows, last, cfg)
    eligible = (last >= pre.eligible_from) & (fit.ok | ~np.isin(rows, cand))
    states = _state(fit, fatigued, eligible, cfg)
    # the open-ramp extrapolation, else the local-linear-trend filter (omnify.brain.forecast)
    trend = forecast_crossing(ratio, expected, valid, fatigued | ~eligible, _forecast_config(cfg))
    ramp = _forecast(fit, last, fatigued, eligible, cfg)
    forecasts = [r if r is not None else k for r, k in zip(ramp, trend, strict=True)]
    detected = np.where(fatigued, t_len - 1, -1)
    if cfg.detection_date and fatigued.any():
        detected = _first_flag_day(pre, fit, np.flatnonzero(fatigued), t_len - 1, cfg, detected)

    # CVR (conversions per click) through the same detector: evidence, never the verdict.
    cols = np.arange(t_len)[None, :]
    cvr_rows = np.flatnonzero(conv.sum(axis=1) >= 2.0 * cfg.min_baseline_conversions)
    cvr_declined = np.zeros(n, dtype=bool)
    cvr_drop_all = np.full(n, np.nan)
    cvr_onset = np.full(n, -1)
    if cvr_rows.size:
        ccfg = replace(cfg, min_pre_clicks=cfg.min_baseline_conversions)
        cpre, *_ = _prefix(conv[cvr_rows], clicks[cvr_rows], present[cvr_rows], np.zeros((cvr_rows.size, t_len)), ccfg)
        cl = np.full(cvr_rows.size, t_len - 1, dtype=np.int64)
        sub_rows = np.arange(cvr_rows.size)
        ccand = _screen(cpre, t_len - 1, ccfg)
        cfit = _expand(_fit(cpre, ccand, cl[ccand], ccfg) if ccand.size else None, ccand, cvr_rows.size)
        cvr_declined[cvr_rows] = _decide(cfit, cpre, sub_rows, cl, ccfg)
        cvr_drop_all[cvr_rows] = np.where(cfit.ok, cfit.recent_drop, np.nan)
        cvr_onset[cvr_rows] = np.where(cfit.ok, cfit.tau, -1)
    freq = pv.values.get("freq_x_imps")

    post = present & (cols >= np.where(fatigued, fit.tau, t_len)[:, None])
    level = fit.a[:, None]
    exp_post = (expected * level * post).sum(axis=1)
    clicks_post = (clicks * post).sum(axis=1)
    spend_post = (spend * post).sum(axis=1)
    lost = np.clip(1.0 - np.divide(clicks_post, exp_post, out=np.ones(n), where=exp_post > 0), 0.0, 1.0)
    wasted = np.where(fatigued, spend_post * lost, 0.0)
    recent = present & (cols > t_len - 1 - cfg.recent_days)
    recent_spend = (spend * recent).sum(axis=1) / np.maximum(recent.sum(axis=1), 1)
    magnitude = np.clip(fit.recent_drop / 0.5, 0.0, 1.0)
    confidence = 1.0 - np.exp(-fit.glr / cfg.glr_threshold)
    raw = np.where(eligible, magnitude * confidence, 0.0)
    score = np.where(fatigued, 0.5 + 0.5 * raw, 0.5 * np.minimum(raw, 0.999))
    n_active = present.sum(axis=1)

    results: list[FatigueResult] = []
    dates = pv.dates
    campaigns = pv.attrs.get("campaign_id", [""] * n)
    for i in range(n):
        ok = bool(fit.ok[i])
        evidence: dict[str, Any] = {
            "active_days": int(n_active[i]),
            "state": states[i],
            "recent_daily_spend": round(float(recent_spend[i]), 2),
        }
        onset = onset_lo = onset_hi = None
        if ok:
            onset = str(dates[fit.tau[i]])
            onset_lo, onset_hi = str(dates[fit.onset_lo[i]]), str(dates[fit.onset_hi[i]])
            evidence.update(
                {
                    "method": "segmented fit (flat, then linear decline of log CTR to a floor)",
                    "baseline_ctr": float(pre.ref_rate[i] * fit.a[i]),
                    "recent_ctr_ratio": round(1.0 - float(fit.recent_drop[i]), 4),
                    "fitted_drop": round(float(fit.drop_at_t[i]), 4),
                    "glr": round(float(fit.glr[i]), 2),
                    "glr_threshold": cfg.glr_threshold,
                    "recent_z": round(float(fit.recent_z[i]), 2),
                    "dispersion": round(float(fit.phi[i]), 3),
                    "shape": shape_name(cfg, int(fit.shape[i])),
                    "fall_per_day_now": round(float(fit.rate_at_t[i]), 5),
                    "onset_interval": [onset_lo, onset_hi],
                    "decline_age_days": int(t_len - 1 - fit.tau[i]),
                    "confirm_days": cfg.confirm_days,
                }
            )
        cvr_drop: float | None = None
        if np.isfinite(cvr_drop_all[i]):
            cvr_drop = round(float(cvr_drop_all[i]), 4)
            evidence["cvr_declined"] = bool(cvr_declined[i])
            evidence["cvr_drop"] = cvr_drop
            if cvr_declined[i]:
                evidence["cvr_onset"] = str(dates[cvr_onset[i]])
        if freq is not None:
            evidence.update(_frequency(freq[i], imps[i], present[i], fit.tau[i] if ok else -1, cfg))
        if forecasts[i] is not None:
            fc = dict(forecasts[i] or {})
            fc["expected_date"] = str(dates[-1] + np.timedelta64(math.ceil(fc["days_to_threshold"]), "D"))
            evidence["forecast"] = fc
        if fatigued[i] or forecasts[i] is not None:
            evidence["series"] = _weekly_series(
                clicks[i], imps[i], expected[i] * fit.a[i], present[i], dates, cfg.series_weeks
            )
            reason = (
                f"CTR is {fit.recent_drop[i]:.0%} below the level it held until {onset} "
                f"(likelihood ratio {fit.glr[i]:.0f} against a steady CTR; decline {t_len - 1 - fit.tau[i]} days old)"
            )
        elif states[i] == "recovering":
            reason = "CTR dipped but is back near its level: a transient dip, not fatigue"
        elif states[i] == "declining":
            reason = f"CTR is falling since {onset}; too recent to call fatigue"
        elif states[i] == "insufficient_data":
            reason = "insufficient history or clicks to judge a fall of the threshold's size"
        else:
            reason = "CTR holds its level"
        results.append(
            FatigueResult(
                ad_id=pv.keys[i],
                campaign_id=campaigns[i],
                fatigued=bool(fatigued[i]),
                score=round(float(score[i]), 4),
                onset_date=onset if fatigued[i] else None,
                detected_date=str(dates[detected[i]]) if fatigued[i] and detected[i] >= 0 else None,
                wasted_spend=round(float(wasted[i]), 2),
                ctr_drop=round(float(fit.recent_drop[i]) if ok else 0.0, 4),
                cvr_drop=cvr_drop,
                reason=reason,
                evidence=evidence,
                state=states[i],
                onset_interval=(onset_lo, onset_hi) if fatigued[i] and onset_lo and onset_hi else None,
                forecast=evidence.get("forecast"),
            )
        )
    return results


def _first_flag_day(
    pre: _Prefix, fit: _Fit, cand: IntArray, last: int, cfg: FatigueConfig, detected: IntArray
) -> IntArray:
    """First day of each candidate's current flagged run, by re-running the decision on earlier days.

    A flagged run is contiguous in practice (a fatigued ad stays fatigued), so the search
    gallops back (1, 2, 4, ... days) to the first unflagged day and then bisects, all
    candidates in one batch per step. Each replayed day considers onsets within three
    weeks of today's estimate, which is where that day's own best fit lies.
    """
    out = detected.copy()
    if cand.size == 0:
        return out
    floor = max(last - cfg.detection_lookback, 0)
    good = np.full(cand.size, last)
    bad = np.full(cand.size, -1)
    step = np.ones(cand.size, dtype=np.int64)
    centre = fit.tau[cand]
    band = np.arange(-21, 22)
    active = np.ones(cand.size, dtype=bool)
    for _ in range(64):
        if not active.any():
            break
        galloping = bad < 0
        probe = np.where(galloping, np.maximum(last - step, floor), (good + bad) // 2)
        idx = np.flatnonzero(active)
        offs = probe[idx, None] - (centre[idx, None] + band[None, :])
        f = _fit(pre, cand[idx], probe[idx], cfg, offs)
        flag = _decide(f, pre, cand[idx], probe[idx], cfg)
        for j, k in enumerate(idx.tolist()):
            if flag[j]:
                good[k] = probe[k]
                step[k] *= 2
                if galloping[k] and probe[k] == floor:
                    active[k] = False
            else:
                bad[k] = probe[k]
            if bad[k] >= 0 and good[k] - bad[k] <= 1:
                active[k] = False
    out[cand] = good
    return out


def _frequency(
    fxi: FloatArray, imps: FloatArray, present: BoolArray, onset: int, cfg: FatigueConfig
) -> dict[str, float]:
    """Impression-weighted frequency before the onset (or over the baseline) and over the recent days."""
    t_len = imps.shape[0]
    active = np.flatnonzero(present)
    if active.size == 0:
        return {}
    early = active[: cfg.learning_days + cfg.baseline_days] if onset < 0 else active[active < onset]
    recent = active[active > t_len - 1 - cfg.recent_days]
    out: dict[str, float] = {}
    for name, idx in (("baseline_frequency", early), ("recent_frequency", recent)):
        w = imps[idx].sum()
        if w > 0:
            out[name] = round(float(fxi[idx].sum() / w), 3)
    return out


def _weekly_series(
    clicks: FloatArray, imps: FloatArray, expected: FloatArray, present: BoolArray, dates: Any, weeks: int
) -> dict[str, list[Any]]:
    """Weekly CTR against the CTR the pre-onset level predicts, for a chart."""
    t_len = clicks.shape[0]
    start = max(0, t_len - 7 * weeks)
    out: dict[str, list[Any]] = {"week_start": [], "ctr": [], "baseline_ctr": []}
    for lo in range(start, t_len, 7):
        sl = slice(lo, min(lo + 7, t_len))
        m = present[sl]
        im = float((imps[sl] * m).sum())
        if im <= 0:
            continue
        out["week_start"].append(str(dates[lo]))
        out["ctr"].append(round(float((clicks[sl] * m).sum()) / im, 6))
        out["baseline_ctr"].append(round(float((expected[sl] * m).sum()) / im, 6))
    return out
