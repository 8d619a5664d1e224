"""Creative fatigue: a sustained fall of an ad's CTR below its own early baseline.

Method
------
An audience that has seen a creative many times stops clicking on it. The signature is
a decline of the click-through rate (and often the conversion rate) relative to what
the *same* ad achieved early in its life, which persists while impressions keep
accumulating. Comparing an ad with itself, not with other ads, removes the large
between-creative differences in CTR.

For every ad, over a dense daily grid:

1. **Baseline.** The first ``baseline_days`` days with delivery (extended up to
   ``max_baseline_days`` until the window holds ``baseline_target_clicks``, so a small ad
   gets a usable baseline) define the expected rate ``p0`` (clicks / impressions,
   summed, so high-volume days weigh more).
2. **Day-of-week.** CTR has a weekly rhythm shared by a client's ads on one platform.
   Factors are estimated per platform, pooled over all ads, as the median log ratio of
   a day's clicks to the clicks predicted by the centred 7-day CTR (the centred window
   cancels slow trends, including fatigue itself). The expected clicks of a day are
   ``E_t = impressions_t x p0 x dow_t``.
3. **Residuals.** ``r_t = log((clicks_t + 0.5) / (E_t + 0.5))``, with variance
   ``v_t = s^2 + 1 / (E_t + 0.5)``: binomial sampling noise plus an over-dispersion
   ``s^2`` (auction and audience noise that a pure binomial ignores). ``s`` is estimated
   per ad from day-to-day differences, which are insensitive to slow trends and to the
   level shift we are looking for (details in ``_decline``).
4. **CUSUM.** A one-sided Page CUSUM of the Gaussian log-likelihood ratio of "CTR down
   by ``design_drop``" against "no change": increments ``delta / v_t x (-r_t - delta/2)``
   after the baseline window, statistic ``S_t = max(0, S_{t-1} + increment)``. The
   alarm is the first crossing of ``threshold`` in the run that is still open on the
   last day; the onset estimate is the start of that run (the classic CUSUM
   change-point estimate). A dip that recovered has closed its run and is not reported.
5. **Decision.** An ad is fatigued when the open run has alarmed, the CTR of the last
   ``recent_days`` active days is at least ``min_drop`` below baseline, and the fall is
   significant once the uncertainty of *both* the baseline and the later rate is
   counted (``z <= -min_z``, on the recent window or on the whole post-onset period: a
   slow decline of a small ad becomes significant over the longer window first). Ads
   with too little history or too few baseline clicks are never flagged: the method
   needs a baseline it can trust.

Outputs: a score in [0, 1] (>= 0.5 exactly when the ad is flagged; within each half it
grows with the size of the fall and the CUSUM evidence), the onset and detection dates,
and the spend wasted since onset: the share of post-onset spend that bought no clicks
compared with the baseline CTR, ``spend_post x (1 - clicks_post / E_post)``.

CVR (conversions per click) runs through the same detector and is reported as
evidence. A CVR-only decline is *not* labelled creative fatigue: conversion rates also
move with the landing page, offer, stock and tracking, which are not properties of the
creative; those are caught by :mod:`omnify.brain.anomaly` on conversions and CPA.

Assumptions: the early baseline is representative (a learning phase of a few days is
absorbed by summing over the window); impressions are the exposure for clicks and
clicks for conversions; weekly patterns are shared per platform within a client.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from omnify.brain._stats import centered_sum, robust_scale_last, weekday
from omnify.brain.types import (
    BoolArray,
    DailyAdMetrics,
    DateArray,
    DateLike,
    FatigueResult,
    FloatArray,
    IntArray,
    Pivot,
    as_dates,
    as_float,
)

_DEFAULT_OVERDISPERSION = 0.2


@dataclass(frozen=True)
class FatigueConfig:
    baseline_days: int = 14
    """Active days at the start of an ad's life that always form its baseline."""
    max_baseline_days: int = 28
    """A low-volume ad's baseline extends up to this many active days ..."""
    baseline_target_clicks: float = 150.0
    """... until it holds this many clicks (a CTR known to about +-8%)."""
    min_active_days: int = 28
    """Fewer active days than this: no verdict (baseline plus two weeks of evidence)."""
    min_baseline_clicks: float = 40.0
    """A baseline CTR from fewer clicks is too noisy to measure a 20% fall against."""
    min_baseline_conversions: float = 20.0
    min_drop: float = 0.20
    """Smallest relative CTR fall worth acting on."""
    design_drop: float = 0.25
    """The fall the CUSUM is tuned to detect fastest."""
    threshold: float = 8.0
    """CUSUM alarm level in log-likelihood-ratio units (in-control run length of years)."""
    recent_days: int = 14
    min_z: float = 3.0
    min_overdispersion: float = 0.03
    series_weeks: int = 26
    """Weekly points kept in the evidence series of a flagged ad."""


@dataclass(frozen=True)
class _Decline:
    """Per-ad arrays of one ratio (CTR or CVR) through the detector."""

    rate0: FloatArray
    base_successes: FloatArray
    expected: FloatArray
    valid: BoolArray
    overdispersion: FloatArray
    stat_end: FloatArray
    alarmed: BoolArray
    alarm: IntArray
    onset: IntArray
    recent_ratio: FloatArray
    post_ratio: FloatArray
    z: FloatArray


def _decline(
    succ: FloatArray,
    trials: FloatArray,
    weight: FloatArray,
    base: BoolArray,
    recent: BoolArray,
    cfg: FatigueConfig,
) -> _Decline:
    n, t_len = succ.shape
    cols = np.arange(t_len)[None, :]
    base_succ = (succ * base).sum(axis=1)
    base_units = (trials * weight * base).sum(axis=1)
    rate0 = np.divide(base_succ, base_units, out=np.zeros(n), where=base_units > 0)
    expected = trials * weight * rate0[:, None]
    valid = (trials > 0) & (expected > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(valid, np.log((succ + 0.5) / (expected + 0.5)), np.nan)

    # Over-dispersion from differences between consecutive valid days, on the ratio
    # scale q = successes / expected where the Poisson part of the variance is exactly
    # 1/E. A winsorised mean of squared differences (limit: 4 robust SDs) is used
    # instead of the MAD, which is biased upwards for the discrete counts of small ads.
    idx = np.where(valid, cols, -1)
    last = np.maximum.accumulate(idx, axis=1)
    prev = np.concatenate([np.full((n, 1), -1), last[:, :-1]], axis=1)
    has_prev = valid & (prev >= 0)
    prev_c = np.clip(prev, 0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(valid, succ / expected, np.nan)
    q_prev = np.take_along_axis(q, prev_c, axis=1)
    e_prev = np.take_along_axis(expected, prev_c, axis=1)
    diff = np.where(has_prev, q - q_prev, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        noise = np.where(has_prev, 1.0 / expected + 1.0 / e_prev, 0.0)
    sd_diff, n_diff = robust_scale_last(diff)
    lim = (4.0 * np.maximum(np.nan_to_num(sd_diff), 1e-9)) ** 2
    sq = np.where(has_prev, np.minimum(np.nan_to_num(diff) ** 2, lim[:, None]), 0.0)
    m = np.maximum(n_diff, 1)
    var_diff = sq.sum(axis=1) / m
    poisson = noise.sum(axis=1) / m
    s2 = np.where(
        n_diff >= 7,
        np.maximum((var_diff - poisson) / 2.0, cfg.min_overdispersion**2),
        _DEFAULT_OVERDISPERSION**2,
    )
    s2 = np.nan_to_num(s2, nan=_DEFAULT_OVERDISPERSION**2)

    # Page CUSUM of the log-likelihood ratio, S_t = C_t - min(0, min_{s<=t} C_s).
    delta = -math.log(1.0 - cfg.design_drop)
    var = s2[:, None] + 1.0 / (expected + 0.5)
    inc = np.where(valid & ~base, (delta / var) * (-np.nan_to_num(r) - delta / 2.0), 0.0)
    csum = np.cumsum(inc, axis=1)
    stat = csum - np.minimum.accumulate(np.minimum(csum, 0.0), axis=1)
    zero = stat <= 1e-12
    last_zero = np.where(zero.any(axis=1), t_len - 1 - np.argmax(zero[:, ::-1], axis=1), -1)
    open_run = cols > last_zero[:, None]
    alarm_mask = open_run & (stat >= cfg.threshold)
    alarmed: BoolArray = np.asarray(alarm_mask.any(axis=1), dtype=bool)
    alarm = np.where(alarmed, np.argmax(alarm_mask, axis=1), -1)
    onset = np.where(alarmed, np.argmax(open_run & valid, axis=1), -1)

    post = valid & (cols >= np.where(alarmed, onset, t_len)[:, None])
    post_ratio = _ratio(succ, expected, post)
    recent_v = recent & valid
    rec_succ = (succ * recent_v).sum(axis=1)
    rec_exp = (expected * recent_v).sum(axis=1)
    recent_ratio = np.divide(rec_succ, rec_exp, out=np.ones(n), where=rec_exp > 0)
    n_recent = recent_v.sum(axis=1)
    n_base = (base & valid).sum(axis=1)
    var_log = (
        1.0 / (rec_succ + 1.0) + s2 / np.maximum(n_recent, 1) + 1.0 / (base_succ + 1.0) + s2 / np.maximum(n_base, 1)
    )
    log_ratio = np.log((rec_succ + 0.5) / (rec_exp + 0.5))
    z_recent = np.where(rec_exp > 0, log_ratio / np.sqrt(var_log), 0.0)
    post_succ = (succ * post).sum(axis=1)
    post_exp = (expected * post).sum(axis=1)
    var_post = (
        1.0 / (post_succ + 1.0)
        + s2 / np.maximum(post.sum(axis=1), 1)
        + 1.0 / (base_succ + 1.0)
        + s2 / np.maximum(n_base, 1)
    )
    z_post = np.where(post_exp > 0, np.log((post_succ + 0.5) / (post_exp + 0.5)) / np.sqrt(var_post), 0.0)
    z = np.minimum(z_recent, z_post)
    return _Decline(
        rate0=rate0,
        base_successes=base_succ,
        expected=expected,
        valid=valid,
        overdispersion=np.sqrt(s2),
        stat_end=stat[:, -1] if t_len else np.zeros(n),
        alarmed=alarmed,
        alarm=alarm,
        onset=onset,
        recent_ratio=recent_ratio,
        post_ratio=post_ratio,
        z=z,
    )


def _ratio(succ: FloatArray, expected: FloatArray, mask: BoolArray) -> FloatArray:
    num = (succ * mask).sum(axis=1)
    den = (expected * mask).sum(axis=1)
    out: FloatArray = np.divide(num, den, out=np.ones(succ.shape[0]), where=den > 0)
    return out


def _dow_factors(clicks: FloatArray, imps: FloatArray, dates: DateArray, platform: list[str]) -> FloatArray:
    """Per-ad x per-day CTR weekday factors, pooled by platform (ones when data is thin)."""
    n, t_len = clicks.shape
    weights = np.ones((n, t_len))
    if t_len < 14 or n == 0:
        return weights
    csum = centered_sum(clicks, 7)
    isum = centered_sum(imps, 7)
    full = centered_sum((imps > 0).astype(np.float64), 7) == 7
    with np.errstate(divide="ignore", invalid="ignore"):
        exp_c = imps * (csum / isum)
        ok = full & (exp_c >= 10.0)
        lr = np.where(ok, np.log((clicks + 0.5) / (exp_c + 0.5)), np.nan)
    wd = weekday(dates)
    plat = np.asarray(platform, dtype=object)
    for name in sorted(set(platform)):
        rows = plat == name
        block = lr[rows]
        meds = np.full(7, np.nan)
        for d in range(7):
            vals = block[:, wd == d].ravel()
            vals = vals[~np.isnan(vals)]
            if vals.size >= 20:
                meds[d] = float(np.median(vals))
        if np.isnan(meds).any():
            continue
        fac = np.exp(meds - meds.mean())
        weights[rows] = fac[wd][None, :]
    return weights


def detect_fatigue(
    metrics: DailyAdMetrics,
    config: FatigueConfig | None = None,
    *,
    as_of: DateLike | None = None,
) -> list[FatigueResult]:
    """Fatigue verdict for every ad in the frame (one result per ad, input order)."""
    cfg = config or FatigueConfig()
    if len(metrics) == 0:
        return []
    pv = metrics.ad_pivot(as_of)
    return _detect(pv, cfg)


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


def _detect(pv: Pivot, cfg: FatigueConfig) -> list[FatigueResult]:
    imps = pv.values["impressions"]
    clicks = np.minimum(pv.values["clicks"], imps)
    conv = pv.values["conversions"]
    spend = pv.values["spend"]
    n, t_len = imps.shape
    active = imps > 0
    rank = np.cumsum(active, axis=1)
    rev_rank = np.cumsum(active[:, ::-1], axis=1)[:, ::-1]
    clicks_before = np.cumsum(clicks, axis=1) - clicks
    base = active & (
        (rank <= cfg.baseline_days) | ((rank <= cfg.max_baseline_days) & (clicks_before < cfg.baseline_target_clicks))
    )
    recent = active & (rev_rank <= cfg.recent_days)
    n_active = rank[:, -1] if t_len else np.zeros(n, dtype=np.int64)

    dow = _dow_factors(clicks, imps, pv.dates, pv.attrs["platform"])
    ctr = _decline(clicks, imps, dow, base, recent, cfg)
    cvr = _decline(np.minimum(conv, clicks), clicks, np.ones_like(clicks), base, recent, cfg)

    eligible = (n_active >= cfg.min_active_days) & (ctr.base_successes >= cfg.min_baseline_clicks)
    recent_drop = 1.0 - ctr.recent_ratio
    fatigued = eligible & ctr.alarmed & (recent_drop >= cfg.min_drop) & (ctr.z <= -cfg.min_z)
    cvr_ok = eligible & (cvr.base_successes >= cfg.min_baseline_conversions)
    cvr_declined = cvr_ok & cvr.alarmed & (1.0 - cvr.recent_ratio >= cfg.min_drop) & (cvr.z <= -cfg.min_z)

    magnitude = np.clip(recent_drop / 0.5, 0.0, 1.0)
    confidence = 1.0 - np.exp(-np.maximum(ctr.stat_end, 0.0) / cfg.threshold)
    raw = np.where(eligible, magnitude * confidence, 0.0)
    score = np.where(fatigued, 0.5 + 0.5 * raw, 0.5 * raw)

    cols = np.arange(t_len)[None, :]
    post = active & (cols >= np.where(fatigued, ctr.onset, t_len)[:, None])
    spend_post = (spend * post).sum(axis=1)
    clicks_post = (clicks * post).sum(axis=1)
    exp_post = (ctr.expected * post).sum(axis=1)
    lost_share = np.clip(1.0 - np.divide(clicks_post, exp_post, out=np.ones(n), where=exp_post > 0), 0, 1)
    wasted = np.where(fatigued, spend_post * lost_share, 0.0)
    recent_spend = (spend * recent).sum(axis=1) / np.maximum(recent.sum(axis=1), 1)

    freq = pv.values.get("freq_x_imps")
    results: list[FatigueResult] = []
    for i in range(n):
        onset = pv.dates[ctr.onset[i]] if fatigued[i] else None
        alarm = pv.dates[ctr.alarm[i]] if fatigued[i] else None
        evidence: dict[str, Any] = {
            "active_days": int(n_active[i]),
            "baseline_ctr": float(ctr.rate0[i]),
            "recent_ctr_ratio": float(ctr.recent_ratio[i]),
            "z": float(ctr.z[i]),
            "cusum": float(ctr.stat_end[i]),
            "overdispersion": float(ctr.overdispersion[i]),
            "baseline_clicks": float(ctr.base_successes[i]),
            "cvr_declined": bool(cvr_declined[i]),
        }
        if cvr_ok[i]:
            evidence["baseline_cvr"] = float(cvr.rate0[i])
            evidence["recent_cvr_ratio"] = float(cvr.recent_ratio[i])
        if freq is not None:
            evidence.update(_frequency_evidence(freq[i], imps[i], base[i], recent[i]))
        if fatigued[i]:
            on = int(ctr.onset[i])
            evidence["post_onset_ctr_ratio"] = float(ctr.post_ratio[i])
            evidence["impressions_before_onset"] = float(imps[i, :on].sum())
            evidence["impressions_since_onset"] = float(imps[i, on:].sum())
            evidence["recent_daily_spend"] = float(recent_spend[i])
            evidence["projected_waste_30d"] = float(recent_spend[i] * max(recent_drop[i], 0.0) * 30.0)
            evidence["series"] = _weekly_series(pv.dates, clicks[i], imps[i], ctr.expected[i], cfg.series_weeks)
        results.append(
            FatigueResult(
                ad_id=pv.keys[i],
                campaign_id=pv.attrs["campaign_id"][i],
                fatigued=bool(fatigued[i]),
                score=round(float(score[i]), 4),
                onset_date=None if onset is None else str(onset),
                detected_date=None if alarm is None else str(alarm),
                wasted_spend=round(float(wasted[i]), 2),
                ctr_drop=round(float(recent_drop[i]) if eligible[i] else 0.0, 4),
                cvr_drop=round(float(1.0 - cvr.recent_ratio[i]), 4) if cvr_ok[i] else None,
                reason=_reason(
                    bool(fatigued[i]),
                    int(n_active[i]),
                    float(ctr.base_successes[i]),
                    bool(ctr.alarmed[i]),
                    float(recent_drop[i]),
                    float(ctr.z[i]),
                    cfg,
                ),
                evidence=evidence,
            )
        )
    return results


def _reason(
    fatigued: bool, n_active: int, base_clicks: float, alarmed: bool, drop: float, z: float, cfg: FatigueConfig
) -> str:
    if n_active < cfg.min_active_days:
        return f"insufficient history: {n_active} active days, need {cfg.min_active_days}"
    if base_clicks < cfg.min_baseline_clicks:
        return f"insufficient baseline: {base_clicks:.0f} clicks, need {cfg.min_baseline_clicks:.0f}"
    if fatigued:
        return f"CTR {drop:.0%} below the ad's early baseline, sustained (z={z:.1f})"
    if not alarmed:
        return "no sustained decline"
    if drop < cfg.min_drop:
        return f"decline of {drop:.0%} is below the {cfg.min_drop:.0%} action threshold"
    return f"decline not significant (z={z:.1f})"


def _frequency_evidence(
    freq_x_imps: FloatArray, imps: FloatArray, base: BoolArray, recent: BoolArray
) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, mask in (("baseline_frequency", base), ("recent_frequency", recent)):
        den = float(imps[mask].sum())
        if den > 0:
            out[name] = float(freq_x_imps[mask].sum()) / den
    return out


def _weekly_series(
    dates: DateArray, clicks: FloatArray, imps: FloatArray, expected: FloatArray, weeks: int
) -> dict[str, list[Any]]:
    """Weekly CTR against the baseline expectation, aligned to the last day, for a chart."""
    t_len = dates.shape[0]
    n_weeks = min(weeks, t_len // 7)
    start = t_len - 7 * n_weeks
    c = clicks[start:].reshape(n_weeks, 7).sum(axis=1)
    i = imps[start:].reshape(n_weeks, 7).sum(axis=1)
    e = expected[start:].reshape(n_weeks, 7).sum(axis=1)
    keep = i > 0
    week_start = dates[start::7][:n_weeks]
    return {
        "week_start": [str(d) for d in week_start[keep]],
        "ctr": [round(float(x), 6) for x in (c[keep] / i[keep])],
        "baseline_ctr": [round(float(x), 6) for x in (e[keep] / i[keep])],
        "impressions": [float(x) for x in i[keep]],
    }
