"""Anomalies in daily spend, conversions, CPA and ROAS per account and campaign.

Method
------
Each metric is first put on a scale where its noise is roughly constant:

* spend: ``log(spend + eps)`` (spend noise is multiplicative; ``eps`` = 5% of the
  entity's typical spend keeps paused days finite),
* conversions: Anscombe ``2 sqrt(x + 3/8)`` (Poisson counts get unit variance, so a
  campaign with 2 conversions a day is judged by count noise, not by percentages),
* CPA: ``log(spend / conversions)`` on days with at least ``min_conversions``,
* ROAS: ``log(1 + revenue / spend)`` on days with meaningful spend.

The **baseline** of day *t* is the median of the same weekday in the previous
``seasonal_lags`` weeks (a seasonal-naive median). It is day-of-week aware by
construction, it only looks back (an incident does not pull its own baseline), and a
median over six weeks ignores up to two earlier anomalies on that weekday. The
**scale** is a robust SD (1.4826 x MAD) of all residuals of the series, floored per
metric; with the variance-stabilising transforms one scale per series is adequate and
far more stable than a rolling one.

A day is anomalous for a metric when the robust z-score ``|y - baseline| / scale``
reaches ``z_threshold`` *and* the change in business units is material (at least
``min_relative_change``): statistical significance alone would alert on a big
account's 8% wobble. An entity needs ``min_history`` same-weekday observations and
``min_scale_points`` residuals before it is judged, so new, short, constant or all-zero
series never alert (a constant series has a zero residual everywhere).

**Incidents, not days.** Anomalous days of one entity, over all four metrics, whose
gaps are at most ``max_gap`` days, form one incident: a tracking outage that zeroes
conversions, doubles CPA and sinks ROAS for three days is one alert whose primary
metric is the one with the largest |z|. Across levels, an account incident that a child
campaign's incident explains (overlapping days, same metric and direction) is dropped
in favour of the campaign incident, which says where to act.

Severity follows the peak |z| (>= 8 high, >= 6 medium, else low) and is raised one step
when the incident lasts three days or more. ``money_at_stake`` prices the primary
metric's deviation: excess or missing spend, missing conversions at the baseline CPA,
CPA excess times conversions, or ROAS shortfall times spend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from omnify.brain._stats import nanmedian_last, robust_scale_last
from omnify.brain.types import (
    AnomalyIncident,
    BoolArray,
    BrainInputError,
    DailyAdMetrics,
    DateArray,
    DateLike,
    FloatArray,
    Pivot,
    as_dates,
    as_float,
    as_labels,
    pivot,
    to_day,
)

METRICS = ("spend", "conversions", "cpa", "roas", "aov")
_HISTORY_MASK_Z = 3.0
"""Days this far out are left out of later baselines even when not material enough to alert."""
_FLOORS = {"spend": 0.05, "conversions": 1.0, "cpa": 0.08, "roas": 0.04, "aov": 0.05}


@dataclass(frozen=True)
class AnomalyConfig:
    seasonal_lags: int = 6
    """Weeks of same-weekday history in the baseline median."""
    min_history: int = 3
    """Same-weekday values needed before a day is judged."""
    min_scale_points: int = 21
    z_threshold: float = 5.0
    min_relative_change: float = 0.3
    min_spend_change: float = 0.5
    """Spend is steered by the advertiser: moves smaller than a bold budget edit are not news."""
    max_gap: int = 1
    """Normal days allowed inside one incident."""
    min_conversions: float = 1.0
    """CPA, ROAS and AOV are judged on days with at least this many conversions (per day of
    the window); their residuals are weighted by volume, so low counts cannot dominate."""
    min_spend_share: float = 0.2
    """ROAS is only judged on days with spend >= this share of the entity's median."""
    scan_window: int = 3
    """Also test sums over this many days (1 disables the scan)."""
    context_days: int = 28
    """Days of series before the incident kept as chart evidence."""


@dataclass(frozen=True, eq=False)
class EntitySeries:
    """Dense daily spend/conversions/revenue of accounts or campaigns on one date grid."""

    entity_id: list[str]
    level: list[str]
    parent_id: list[str | None]
    dates: DateArray
    spend: FloatArray
    conversions: FloatArray
    revenue: FloatArray

    @classmethod
    def from_long(
        cls,
        *,
        entity_id: Sequence[str] | npt.ArrayLike,
        date: Any,
        spend: npt.ArrayLike,
        conversions: npt.ArrayLike,
        revenue: npt.ArrayLike | None = None,
        level: Sequence[str] | None = None,
        parent_id: Sequence[str | None] | None = None,
    ) -> EntitySeries:
        dates = as_dates(date)
        n = dates.shape[0]
        ids = as_labels(entity_id, "entity_id", n)
        lv = as_labels(level, "level", n, default="campaign")
        par = [None if p is None else str(p) for p in parent_id] if parent_id is not None else [None] * n
        if len(par) != n:
            raise BrainInputError(f"parent_id: has {len(par)} values, expected {n}")
        pv = pivot(
            ids,
            dates,
            {
                "spend": as_float(spend, "spend", n),
                "conversions": as_float(conversions, "conversions", n),
                "revenue": as_float(revenue, "revenue", n),
            },
            {"level": lv, "parent": [p or "" for p in par]},
        )
        return cls(
            pv.keys,
            pv.attrs.get("level", []),
            [p or None for p in pv.attrs.get("parent", [])],
            pv.dates,
            pv.values["spend"],
            pv.values["conversions"],
            pv.values["revenue"],
        )

    @classmethod
    def from_ads(
        cls, metrics: DailyAdMetrics, levels: Sequence[str] = ("account", "campaign"), *, end: DateLike | None = None
    ) -> EntitySeries:
        """Roll ad rows up to accounts and/or campaigns (campaigns point at their account)."""
        return cls.from_pivot(metrics.ad_pivot(end), levels)

    @classmethod
    def from_pivot(cls, ads: Pivot, levels: Sequence[str] = ("account", "campaign")) -> EntitySeries:
        """Entities from an ad pivot (attributes ``campaign_id`` and ``account_id``)."""
        parts: list[EntitySeries] = []
        for lv in levels:
            if lv == "account":
                pv = ads.rollup("account_id")
                parents: list[str | None] = [None] * len(pv.keys)
            elif lv == "campaign":
                pv = ads.rollup("campaign_id", keep_attrs=("account_id",))
                parents = list(pv.attrs["account_id"])
            else:
                raise BrainInputError(f"levels: unknown level {lv!r}")
            parts.append(
                cls(
                    pv.keys,
                    [lv] * len(pv.keys),
                    parents,
                    pv.dates,
                    pv.values["spend"],
                    pv.values["conversions"],
                    pv.values["revenue"],
                )
            )
        return cls.concat(parts)

    @classmethod
    def concat(cls, parts: Sequence[EntitySeries]) -> EntitySeries:
        parts = [p for p in parts if p.entity_id]
        if not parts:
            empty = np.zeros((0, 0))
            return cls([], [], [], np.array([], dtype="datetime64[D]"), empty, empty, empty)
        d0 = min(p.dates[0] for p in parts)
        d1 = max(p.dates[-1] for p in parts)
        grid = np.arange(d0, d1 + np.timedelta64(1, "D"), dtype="datetime64[D]")

        def place(p: EntitySeries, m: FloatArray) -> FloatArray:
            out = np.zeros((m.shape[0], grid.shape[0]))
            off = int((p.dates[0] - d0).astype(np.int64))
            out[:, off : off + m.shape[1]] = m
            return out

        return cls(
            [k for p in parts for k in p.entity_id],
            [k for p in parts for k in p.level],
            [k for p in parts for k in p.parent_id],
            grid,
            np.vstack([place(p, p.spend) for p in parts]),
            np.vstack([place(p, p.conversions) for p in parts]),
            np.vstack([place(p, p.revenue) for p in parts]),
        )


@dataclass(frozen=True)
class _Metric:
    observed: FloatArray
    expected: FloatArray
    z: FloatArray
    flag: BoolArray


def _lagged(y: FloatArray, lags: Sequence[int]) -> FloatArray:
    n, t_len = y.shape
    stack = np.full((n, t_len, len(lags)), np.nan)
    for j, k in enumerate(lags):
        if k < t_len:
            stack[:, k:, j] = y[:, : t_len - k]
    return stack


def _baseline(y: FloatArray, lags: int) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Level (median of the previous 7 days) plus the weekday's usual offset from that level.

    The offset of a weekday is the median, over the previous ``lags`` weeks, of how far
    that weekday sat from its own trailing 7-day median. The level follows a budget edit
    within four days; the offset carries the weekly rhythm.
    """
    level, n_level = nanmedian_last(_lagged(y, range(1, 8)))
    level = np.where(n_level >= 4, level, np.nan)
    offset = y - level
    dow, n_dow = nanmedian_last(_lagged(offset, [7 * k for k in range(1, lags + 1)]))
    return level + dow, n_dow


def _nb_forward(x: FloatArray, phi: FloatArray) -> FloatArray:
    """Variance-stabilising transform of negative-binomial counts (var = mu + phi mu^2).

    ``2/sqrt(phi) asinh(sqrt(phi (x + 3/8)))`` has unit variance for any mean: it is
    Anscombe's ``2 sqrt(x + 3/8)`` for small counts (Poisson noise dominates) and a
    scaled logarithm for large ones (multiplicative day-to-day noise dominates).
    """
    ph = np.maximum(phi, 1e-9)[:, None]
    return 2.0 / np.sqrt(ph) * np.arcsinh(np.sqrt(ph * (x + 0.375)))


def _nb_inverse(y: FloatArray, phi: FloatArray) -> FloatArray:
    ph = np.maximum(phi, 1e-9)[:, None]
    return np.maximum(np.sinh(y * np.sqrt(ph) / 2.0) ** 2 / ph - 0.375, 0.0)


def _signals(
    spend: FloatArray, conv: FloatArray, rev: FloatArray, started: BoolArray, cfg: AnomalyConfig, window: int
) -> dict[str, _Metric]:
    """Baseline, z-score and flags of every metric for daily values or ``window``-day sums."""
    with np.errstate(invalid="ignore"):
        typical = np.nan_to_num(nanmedian_last(np.where(spend > 0, spend, np.nan))[0], nan=0.0)
        typ_conv = np.nan_to_num(nanmedian_last(np.where(started, conv, np.nan))[0], nan=0.0)
    eps = np.maximum(0.05 * typical, 0.01)[:, None]
    enough_spend = (spend > 0) & (spend >= cfg.min_spend_share * typical[:, None])
    enough_conv = conv >= cfg.min_conversions * window
    tot_conv = conv.sum(axis=1)
    typ_aov = np.divide(rev.sum(axis=1), tot_conv, out=np.ones_like(tot_conv), where=tot_conv > 0)
    aov_eps = np.maximum(0.05 * typ_aov, 1e-6)[:, None]

    # Over-dispersion of conversions: Anscombe residuals have variance ~ 1 + phi * mu.
    ans = np.where(started, 2.0 * np.sqrt(conv + 0.375), np.nan)
    b0, _ = _baseline(ans, cfg.seasonal_lags)
    s0, _ = robust_scale_last(ans - b0)
    phi = np.clip(np.nan_to_num((s0**2 - 1.0) / np.maximum(typ_conv, 1.0), nan=0.0), 1e-9, 1.0)

    # Ratio metrics are noisier on low-volume days: weight residuals by the inverse of
    # their expected SD (Poisson + over-dispersion for CPA/ROAS, per-order spread for AOV).
    conv_pos = np.maximum(conv, 1.0)
    ratio_w = 1.0 / np.sqrt(1.0 / conv_pos + phi[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        raw: dict[str, tuple[FloatArray, FloatArray, FloatArray]] = {
            "spend": (spend, np.log(spend + eps), np.ones_like(spend)),
            "conversions": (conv, _nb_forward(conv, phi), np.ones_like(conv)),
            "cpa": (
                np.where(enough_conv & (spend > 0), spend / conv, np.nan),
                np.where(enough_conv & (spend > 0), np.log(spend / conv), np.nan),
                ratio_w,
            ),
            "roas": (
                np.where(enough_spend & enough_conv, rev / spend, np.nan),
                np.where(enough_spend & enough_conv, np.log(rev / spend + aov_eps / typ_aov[:, None]), np.nan),
                ratio_w,
            ),
            "aov": (
                np.where(enough_conv, rev / conv, np.nan),
                np.where(enough_conv, np.log(rev / conv + aov_eps), np.nan),
                np.sqrt(conv_pos),
            ),
        }
    out: dict[str, _Metric] = {}
    for name, (obs, y_all, weight) in raw.items():
        y = np.where(started, y_all, np.nan)
        ratio = name in ("cpa", "roas", "aov")
        floor = _FLOORS[name] * (np.nan_to_num(nanmedian_last(weight)[0], nan=1.0) if ratio else 1.0)
        limit = cfg.min_spend_change if name == "spend" else cfg.min_relative_change
        history = y
        for _ in range(2):  # second pass: anomalous days no longer feed later baselines
            base, count = _baseline(history, cfg.seasonal_lags)
            resid = (y - base) * weight
            scale, n_scale = robust_scale_last(np.where(np.isnan(history), np.nan, resid))
            scale = np.maximum(np.nan_to_num(scale, nan=0.0), floor)
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                z = resid / scale[:, None]
                if name == "spend":
                    expected = np.maximum(np.exp(base) - eps, 0.0)
                elif name == "conversions":
                    expected = _nb_inverse(base, phi)
                elif name == "cpa":
                    expected = np.exp(base)
                elif name == "roas":
                    expected = np.maximum(np.exp(base) - aov_eps / typ_aov[:, None], 0.0)
                else:
                    expected = np.maximum(np.exp(base) - aov_eps, 0.0)
                rel = (obs - expected) / np.maximum(expected, 1e-9)
                material = np.abs(rel) >= limit
                if name == "conversions":  # a count must also move by more than a couple of units
                    material &= np.abs(obs - expected) >= 2.0 * window
                flag = (
                    (count >= cfg.min_history)
                    & (n_scale >= cfg.min_scale_points)[:, None]
                    & np.isfinite(z)
                    & (np.abs(z) >= cfg.z_threshold)
                    & material
                )
            history = np.where(flag | (np.abs(np.nan_to_num(z)) >= _HISTORY_MASK_Z), np.nan, y)
        out[name] = _Metric(obs, expected, np.nan_to_num(z), flag)
    return out


def _rolling_sum(x: FloatArray, window: int) -> FloatArray:
    c = np.cumsum(x, axis=1)
    out = c.copy()
    out[:, window:] = c[:, window:] - c[:, :-window]
    return out


def _analyse(series: EntitySeries, cfg: AnomalyConfig) -> dict[str, _Metric]:
    """Daily signals, plus a scan of ``scan_window``-day sums for incidents too faint for one day.

    A window alarm marks the days inside it that lean the same way (daily |z| >= 1.5),
    so an incident's dates stay those of the days that actually moved.
    """
    spend, conv, rev = series.spend, series.conversions, series.revenue
    live = (spend > 0) | (conv > 0) | (rev > 0)
    started = np.maximum.accumulate(live, axis=1)  # no judgement before an entity's first activity
    daily = _signals(spend, conv, rev, started, cfg, 1)
    w = cfg.scan_window
    if w <= 1 or spend.shape[1] <= w:
        return daily
    started_w = np.concatenate([np.zeros_like(started[:, : w - 1]), started[:, : 1 - w]], axis=1) & started
    windowed = _signals(_rolling_sum(spend, w), _rolling_sum(conv, w), _rolling_sum(rev, w), started_w, cfg, w)
    out: dict[str, _Metric] = {}
    for name, d in daily.items():
        wz, wf = windowed[name].z, windowed[name].flag
        extra = np.zeros_like(d.flag)
        for j in range(w):
            cand = np.zeros_like(wf)
            cand[:, : wf.shape[1] - j] = wf[:, j:]
            sign = np.zeros_like(wz)
            sign[:, : wz.shape[1] - j] = np.sign(wz[:, j:])
            extra |= cand & (np.sign(d.z) == sign) & (np.abs(d.z) >= 1.5)
        out[name] = _Metric(d.observed, d.expected, d.z, d.flag | extra)
    return out


def detect_anomalies(
    series: EntitySeries,
    config: AnomalyConfig | None = None,
    *,
    since: DateLike | None = None,
) -> list[AnomalyIncident]:
    """Incidents of all entities, most severe first; ``since`` keeps those ending on/after it."""
    cfg = config or AnomalyConfig()
    if not series.entity_id or series.dates.shape[0] == 0:
        return []
    metrics = _analyse(series, cfg)
    any_flag = np.zeros(series.spend.shape, dtype=bool)
    for m in metrics.values():
        any_flag |= m.flag
    cpa_base = _median_cpa(series)
    incidents: list[tuple[int, int, int]] = []  # (entity row, start, end)
    for i in np.flatnonzero(any_flag.any(axis=1)).tolist():
        days = np.flatnonzero(any_flag[i])
        breaks = np.flatnonzero(np.diff(days) > cfg.max_gap + 1)
        starts = np.concatenate([[0], breaks + 1])
        ends = np.concatenate([breaks, [days.size - 1]])
        incidents.extend((i, int(days[s]), int(days[e])) for s, e in zip(starts, ends, strict=True))

    built = {(i, s): _incident(series, metrics, cpa_base, i, s, e, cfg) for i, s, e in incidents}
    built = _suppress_parents(series, built, cfg)
    out = list(built.values())
    if since is not None:
        cutoff = str(to_day(since))
        out = [inc for inc in out if inc.end_date >= cutoff]
    rank = {"high": 0, "medium": 1, "low": 2}
    out.sort(key=lambda inc: (rank[inc.severity], -abs(inc.peak_z), inc.entity_id, inc.start_date))
    return out


def _median_cpa(series: EntitySeries) -> FloatArray:
    tot_conv = series.conversions.sum(axis=1)
    tot_spend = series.spend.sum(axis=1)
    out: FloatArray = np.divide(tot_spend, tot_conv, out=np.zeros_like(tot_spend), where=tot_conv > 0)
    return out


def _incident(
    series: EntitySeries,
    metrics: dict[str, _Metric],
    cpa_base: FloatArray,
    i: int,
    s: int,
    e: int,
    cfg: AnomalyConfig,
) -> AnomalyIncident:
    dates = series.dates
    window = slice(s, e + 1)
    details: dict[str, dict[str, Any]] = {}
    for name, m in metrics.items():
        flagged = m.flag[i, window]
        if not flagged.any():
            continue
        z = m.z[i, window]
        peak = int(np.argmax(np.where(flagged, np.abs(z), -1.0)))
        obs = m.observed[i, window]
        exp = m.expected[i, window]
        details[name] = {
            "direction": "up" if z[peak] > 0 else "down",
            "peak_z": round(float(z[peak]), 2),
            "anomalous_days": int(flagged.sum()),
            "observed": [round(float(v), 4) for v in np.nan_to_num(obs)],
            "expected": [round(float(v), 4) for v in np.nan_to_num(exp)],
            "relative_change": round(float((obs[peak] - exp[peak]) / max(exp[peak], 1e-9)), 4),
            "money": round(_money(name, series, metrics, cpa_base, i, window), 2),
        }
    primary = max(details, key=lambda k: (abs(details[k]["peak_z"]), -METRICS.index(k)))
    peak_z = float(details[primary]["peak_z"])
    level = 2 if abs(peak_z) >= 8 else 1 if abs(peak_z) >= 6 else 0
    if e - s + 1 >= 3:
        level = min(level + 1, 2)
    c0 = max(0, s - cfg.context_days)
    ctx = slice(c0, min(e + 8, dates.shape[0]))
    pm = metrics[primary]
    start, end = str(dates[s]), str(dates[e])
    return AnomalyIncident(
        key=f"anomaly:{series.level[i]}:{series.entity_id[i]}:{start}",
        entity_id=series.entity_id[i],
        level=series.level[i],
        start_date=start,
        end_date=end,
        ongoing=e == dates.shape[0] - 1,
        primary_metric=primary,
        direction=str(details[primary]["direction"]),
        severity=("low", "medium", "high")[level],
        peak_z=peak_z,
        money_at_stake=abs(float(details[primary]["money"])),
        metrics=details,
        evidence={
            "parent_id": series.parent_id[i],
            "days": e - s + 1,
            "series": {
                "metric": primary,
                "dates": [str(d) for d in dates[ctx]],
                "observed": [None if not np.isfinite(v) else round(float(v), 4) for v in pm.observed[i, ctx]],
                "expected": [None if not np.isfinite(v) else round(float(v), 4) for v in pm.expected[i, ctx]],
            },
        },
    )


def _money(
    name: str, series: EntitySeries, metrics: dict[str, _Metric], cpa_base: FloatArray, i: int, window: slice
) -> float:
    m = metrics[name]
    flagged = m.flag[i, window]
    dev = np.where(flagged, np.nan_to_num(m.observed[i, window] - m.expected[i, window]), 0.0)
    if name == "spend":
        return float(dev.sum())
    if name == "conversions":
        return float(dev.sum() * cpa_base[i])
    if name in ("cpa", "aov"):
        return float((dev * series.conversions[i, window]).sum())
    return float((dev * series.spend[i, window]).sum())


def _suppress_parents(
    series: EntitySeries, built: dict[tuple[int, int], AnomalyIncident], cfg: AnomalyConfig
) -> dict[tuple[int, int], AnomalyIncident]:
    """Drop parent incidents that a child explains.

    Explained means: a child's incident overlaps and shows the same metric moving the
    same way, or a child started or stopped delivering within the parent's baseline
    window (a launch lifts the account's spend; it is not an anomaly of the account).
    """
    by_entity: dict[str, list[AnomalyIncident]] = {}
    for inc in built.values():
        by_entity.setdefault(inc.entity_id, []).append(inc)
    live = (series.spend > 0) | (series.conversions > 0)
    has: BoolArray = np.asarray(live.any(axis=1), dtype=bool)
    first = np.where(has, np.argmax(live, axis=1), -1)
    last = np.where(has, live.shape[1] - 1 - np.argmax(live[:, ::-1], axis=1), -1)
    changes: dict[str, list[tuple[int, str]]] = {}
    for i, parent in enumerate(series.parent_id):
        if parent and has[i]:
            changes.setdefault(parent, []).extend([(int(first[i]), "launch"), (int(last[i]) + 1, "stop")])
    day_of = {str(d): k for k, d in enumerate(series.dates)}
    horizon = 7 * (cfg.seasonal_lags + 1)
    drop: set[str] = set()
    for inc in built.values():
        parent = inc.evidence.get("parent_id")
        if not parent or parent not in by_entity:
            continue
        for p_inc in by_entity[parent]:
            overlap = inc.start_date <= p_inc.end_date and p_inc.start_date <= inc.end_date
            shared = [
                k
                for k, v in p_inc.metrics.items()
                if k in inc.metrics and inc.metrics[k]["direction"] == v["direction"]
            ]
            if overlap and shared:
                drop.add(p_inc.key)
                seen = inc.evidence.setdefault("also_visible_at", [])
                if parent not in seen:
                    seen.append(parent)
    for inc in built.values():
        s, e = day_of[inc.start_date], day_of[inc.end_date]
        for day, _what in changes.get(inc.entity_id, []):
            # a start on day 0 of the grid is the start of the data, not a launch
            if day > 0 and s - horizon <= day <= e and day < series.dates.shape[0]:
                drop.add(inc.key)
                break
    return {k: v for k, v in built.items() if v.key not in drop}
