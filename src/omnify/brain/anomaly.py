"""Anomalies in daily spend, conversions and order value per account and campaign.

Method
------
Three things are watched, each with the noise model that fits it:

* **Spend**, on the log scale (its noise is multiplicative). The baseline of day *t* is
  the median of the previous 7 usable days (a budget edit is absorbed within four days)
  plus the weekday's usual offset from that level over the previous ``seasonal_lags``
  weeks.
* **Conversions given spend**, as negative-binomial counts: the expected count is the
  day's spend times the entity's conversions per unit of spend over the previous
  ``rate_days`` usable days. Judging conversions against spend (not against their own
  past) separates a conversion problem (tracking, landing page, stock) from a spend
  change, and keeps count noise honest for small campaigns. The over-dispersion ``phi``
  (variance ``mu + phi mu^2``) is a method-of-moments estimate from the entity's own past,
  shrunk towards a pooled value.
* **Order value** (revenue per conversion), on the log scale with variance
  ``sigma^2 / conversions``, against the value per conversion of the previous
  ``rate_days`` usable days. CPA and ROAS follow from these three and are reported as
  evidence.

**Calendar and market.** Every client's campaigns share a market: Black Friday,
Cyber Monday, Prime Day and Christmas move all of them. For spend and conversions a
daily *market effect* is estimated as the precision-weighted mean of the campaigns'
residuals that day, shrunk towards zero by a normal prior whose SD is
``market_prior_sd`` on ordinary days and ``holiday_prior_sd`` on the client's calendar
days (``holidays``), when markets do move; it is subtracted from every entity's residual,
so a campaign is judged against the others, not against a calendar. Calendar days also
get extra variance (campaigns react to a holiday unequally) and never feed later
baselines.

**Missing days are missing.** Days without data (a sync gap, a lost row) carry no
evidence and are left out of baselines; they are never read as zero spend (see
:meth:`EntitySeries.from_pivot` for how ad rows are rolled up with gaps).

**Evidence accumulates.** For every metric and every window of 1 to ``max_window`` days
ending on a day, a generalised likelihood ratio of "the level shifted over this
window" against "no change" is computed: Gaussian for spend and order value, the
negative-binomial (quasi-Poisson) deviance for conversions. A window whose ratio reaches
``glr_threshold`` and whose change is material (``min_relative_change``, or
``min_spend_change`` for spend) flags its days that lean the same way. A single
dramatic day and a modest shift over several days are both found, without a hair
trigger. Everything about day *t* uses data up to *t*: baselines, scales and
dispersions are computed from earlier days only, so the same code replayed day by day
gives the same answers.

**Incidents, not days.** Anomalous days of one entity, over all metrics, whose gaps are
at most ``max_gap`` days, form one incident whose primary metric is the one with the
strongest evidence. An account incident that a child campaign's incident explains
(overlapping days, same metric and direction), or that a campaign launching or stopping
explains, is dropped in favour of the campaign's, which says where to act.

Severity follows the peak evidence (|z| >= 8 high, >= 6 medium, else low, where z is
the signed square root of the likelihood ratio) and is raised one step when the incident
lasts three days or more. ``money_at_stake`` prices the primary metric's deviation:
excess or missing spend, missing conversions at the baseline CPA, or the value lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from omnify.brain._stats import nanmedian_last
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

METRICS = ("spend", "conversions", "aov")


def _group_rows(codes: Any, m: int, values: FloatArray) -> FloatArray:
    """Row sums per group (``out[g] = sum of values[codes == g]``), rows added in input order.

    Exactly the sums of ``np.add.at(out, codes, values)`` (the same additions in the same
    order), several times faster for a few hundred long rows: ``np.add.at`` goes element
    by element, this adds whole rows (one vectorised addition per ad).
    """
    out = np.zeros((m, values.shape[1]))
    for row, g in zip(values, np.asarray(codes, dtype=np.int64).tolist(), strict=True):
        out[g] += row
    return out


@dataclass(frozen=True)
class AnomalyConfig:
    seasonal_lags: int = 6
    """Weeks of same-weekday history behind the spend baseline's weekday offset."""
    level_days: int = 7
    """Usable days behind the spend level (a median)."""
    rate_days: int = 28
    """Usable days behind the conversion rate per unit of spend and the value per conversion."""
    min_history: int = 21
    """Usable days an entity needs before it is judged."""
    min_rate_conversions: float = 10.0
    """Conversions the rate window must hold before conversions are judged."""
    glr_threshold: float = 16.0
    """Likelihood-ratio evidence (chi-square units, about 4 SDs) for a shift over a window."""
    max_window: int = 7
    min_relative_change: float = 0.3
    min_spend_change: float = 0.5
    """Spend is steered by the advertiser: moves smaller than a bold budget edit are not news."""
    min_count_change: float = 2.0
    """Conversions must also move by this many per day of the window."""
    max_gap: int = 1
    """Normal days allowed inside one incident."""
    market_prior_sd: float = 0.1
    holiday_prior_sd: float = 0.5
    holiday_extra_sd: float = 0.15
    """Extra log-scale SD on calendar days: campaigns react to a holiday unequally."""
    pooled_dispersion: float = 0.05
    dispersion_prior_days: float = 30.0
    min_spend_sd: float = 0.05
    min_value_sd: float = 0.1
    context_days: int = 28
    """Days of series before the incident kept as chart evidence."""
    max_excluded_run: int = 7
    """Odd days stop being left out of baselines after this many in a row (a lasting shift is learnt)."""
    lean_z: float = 1.0
    """Inside a flagged window, days whose own residual leans the same way by this much are flagged."""


@dataclass(frozen=True, eq=False)
class EntitySeries:
    """Dense daily spend/conversions/revenue of accounts or campaigns on one date grid.

    ``present`` marks the days with data; other days are unknown, not zero.
    """

    entity_id: list[str]
    level: list[str]
    parent_id: list[str | None]
    dates: DateArray
    spend: FloatArray
    conversions: FloatArray
    revenue: FloatArray
    present: BoolArray | None = None
    gaps: dict[str, list[str]] | None = None
    clicks: FloatArray | None = None
    """Clicks, when known: conversions are then judged per click (their closest exposure)."""
    complete: BoolArray | None = None
    """Days on which every live ad of the entity reported (nothing imputed)."""
    """Days with no data at all per entity that has a gap (for the evidence and warnings)."""

    def campaign_pivot(self) -> Pivot:
        """Campaign rows as a spend/revenue pivot whose usable days are the complete ones.

        A day on which some of a campaign's ads did not report has less spend *and* less
        revenue; fitting a response on such days would read the gap as elasticity 1.
        """
        rows = [i for i, lv in enumerate(self.level) if lv == "campaign"]
        ok = self.known() if self.complete is None else self.complete
        return Pivot(
            [self.entity_id[i] for i in rows],
            self.dates,
            {"spend": self.spend[rows], "revenue": self.revenue[rows]},
            {},
            ok[rows].astype(np.float64),
        )

    def known(self) -> BoolArray:
        if self.present is None:
            out: BoolArray = np.ones(self.spend.shape, dtype=bool)
            return out
        return self.present

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
        """Rows of entity-days; a day without a row is missing (not zero)."""
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
            pv.present,
        )

    @classmethod
    def from_ads(
        cls, metrics: DailyAdMetrics, levels: Sequence[str] = ("account", "campaign"), *, end: DateLike | None = None
    ) -> EntitySeries:
        """Roll ad rows up to accounts and/or campaigns (campaigns point at their account)."""
        return cls.from_pivot(metrics.ad_pivot(end), levels)

    @classmethod
    def from_pivot(
        cls, ads: Pivot, levels: Sequence[str] = ("account", "campaign"), *, impute_days: int = 2
    ) -> EntitySeries:
        """Entities from an ad pivot (attributes ``campaign_id`` and ``account_id``), gaps kept as gaps.

        * An ad row missing while the ad delivered within the previous ``impute_days``
          days is imputed from the ad's mean of its last 7 present days, so one lost row
          does not look like a campaign's spend drop. Longer absences are read as the ad
          not delivering.
        * A day on which an account has no row at all, after its first, is a sync gap:
          missing for the account and all its campaigns.
        * A campaign day more than half imputed is missing.
        """
        n, t_len = ads.shape
        present = ads.present & (ads.values["impressions"] > 0) if "impressions" in ads.values else ads.present
        present = present | (ads.present & (ads.values["spend"] > 0))
        cols = np.arange(t_len)[None, :]
        idx = np.where(present, cols, -1)
        last_seen = np.concatenate([np.full((n, 1), -1), np.maximum.accumulate(idx, axis=1)[:, :-1]], axis=1)
        impute = ~present & (last_seen >= 0) & (cols - last_seen <= impute_days)
        imputed: dict[str, FloatArray] = {}
        keys = ("spend", "conversions", "revenue") + (("clicks",) if "clicks" in ads.values else ())
        for k in keys:
            v = np.where(present, ads.values[k], 0.0)
            mean7 = _trailing_mean_present(v, present, 7)
            imputed[k] = np.where(impute, mean7, 0.0)
        account = ads.attrs.get("account_id", ["account"] * n)
        campaign = ads.attrs.get("campaign_id", ["campaign"] * n)
        acc_labels, acc_codes = _codes(account)
        acc_rows = np.zeros((len(acc_labels), t_len))
        acc_rows = _group_rows(acc_codes, len(acc_labels), present.astype(np.float64))
        acc_live = np.maximum.accumulate(acc_rows > 0, axis=1)
        acc_gap = acc_live & (acc_rows == 0)
        parts: list[EntitySeries] = []
        gaps: dict[str, list[str]] = {}
        for g, lab in enumerate(acc_labels):
            days = np.flatnonzero(acc_gap[g])
            if days.size:
                gaps[lab] = [str(ads.dates[d]) for d in days]
        for lv in levels:
            if lv == "account":
                labels, codes = acc_labels, acc_codes
                parents: list[str | None] = [None] * len(labels)
                gap = acc_gap
            elif lv == "campaign":
                labels, codes = _codes(campaign)
                first_acc: dict[int, int] = {}
                for i, c in enumerate(codes.tolist()):
                    first_acc.setdefault(c, acc_codes[i])
                parents = [acc_labels[first_acc[c]] for c in range(len(labels))]
                gap = acc_gap[np.array([first_acc[c] for c in range(len(labels))], dtype=np.int64)]
            else:
                raise BrainInputError(f"levels: unknown level {lv!r}")
            m = len(labels)
            obs = {k: _group_rows(codes, m, np.where(present, ads.values[k], 0.0)) for k in keys}
            imp = {k: _group_rows(codes, m, imputed[k]) for k in keys}
            tot_spend = obs["spend"] + imp["spend"]
            share_imp = np.divide(imp["spend"], tot_spend, out=np.zeros_like(tot_spend), where=tot_spend > 0)
            known = ~gap & (share_imp <= 0.5)
            parts.append(
                cls(
                    list(labels),
                    [lv] * m,
                    parents,
                    ads.dates,
                    np.where(known, tot_spend, 0.0),
                    np.where(known, obs["conversions"] + imp["conversions"], 0.0),
                    np.where(known, obs["revenue"] + imp["revenue"], 0.0),
                    known,
                    None,
                    np.where(known, obs["clicks"] + imp["clicks"], 0.0) if "clicks" in obs else None,
                    known & (imp["spend"] <= 0),
                )
            )
        out = cls.concat(parts)
        return cls(
            out.entity_id, out.level, out.parent_id, out.dates, out.spend, out.conversions, out.revenue, out.present,
            gaps or None, out.clicks, out.complete,
        )  # fmt: skip

    @classmethod
    def concat(cls, parts: Sequence[EntitySeries]) -> EntitySeries:
        parts = [p for p in parts if p.entity_id]
        if not parts:
            empty = np.zeros((0, 0))
            return cls([], [], [], np.array([], dtype="datetime64[D]"), empty, empty, empty, np.zeros((0, 0), bool))
        d0 = min(p.dates[0] for p in parts)
        d1 = max(p.dates[-1] for p in parts)
        grid = np.arange(d0, d1 + np.timedelta64(1, "D"), dtype="datetime64[D]")

        def place(p: EntitySeries, m: Any, fill: Any = 0.0) -> Any:
            out = np.full((m.shape[0], grid.shape[0]), fill, dtype=m.dtype)
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
            np.vstack([place(p, p.known(), False) for p in parts]),
            None,
            np.vstack([place(p, p.clicks) for p in parts]) if all(p.clicks is not None for p in parts) else None,
            np.vstack([place(p, p.complete, False) for p in parts]) if all(p.complete is not None for p in parts)
            else None,
        )


def _codes(labels: Sequence[str]) -> tuple[list[str], npt.NDArray[np.int64]]:
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(x, len(index)) for x in labels), dtype=np.int64, count=len(labels))
    return list(index), codes


def _trailing_mean_present(v: FloatArray, present: BoolArray, days: int) -> FloatArray:
    """Mean of the present values over the ``days`` days before each day (0 when none)."""
    c = np.cumsum(np.pad(v * present, ((0, 0), (1, 0))), axis=1)
    k = np.cumsum(np.pad(present.astype(np.float64), ((0, 0), (1, 0))), axis=1)
    t = np.arange(v.shape[1])
    lo = np.clip(t - days, 0, None)
    s = c[:, t] - c[:, lo]
    n = k[:, t] - k[:, lo]
    out: FloatArray = np.divide(s, n, out=np.zeros_like(s), where=n > 0)
    return out


# --------------------------------------------------------------------------- helpers


def _lagged(y: FloatArray, lags: Sequence[int]) -> FloatArray:
    n, t_len = y.shape
    stack = np.full((n, t_len, len(lags)), np.nan)
    for j, k in enumerate(lags):
        if k < t_len:
            stack[:, k:, j] = y[:, : t_len - k]
    return stack


def _last_k_usable(y: FloatArray, k: int) -> FloatArray:
    """For each day, the previous ``k`` non-NaN values (NaN-padded), as a stack on the last axis."""
    n, t_len = y.shape
    out = np.full((n, t_len, k), np.nan)
    ok = ~np.isnan(y)
    pos: npt.NDArray[np.int64] = np.cumsum(ok, axis=1)  # usable values up to and including each day
    before = pos - ok  # usable values strictly before each day
    for i in range(n):
        vals = y[i, ok[i]]
        if vals.size == 0:
            continue
        b = before[i]
        for j in range(k):
            src = b - 1 - j
            good = src >= 0
            out[i, good, j] = vals[src[good]]
    return out


def _trailing_sum(x: FloatArray, days: int) -> FloatArray:
    """Sum over the ``days`` days before each day, not including it."""
    c = np.cumsum(np.pad(x, ((0, 0), (1, 0))), axis=1)
    t = np.arange(x.shape[1])
    lo = np.clip(t - days, 0, None)
    out: FloatArray = c[:, t] - c[:, lo]
    return out


def _usable_window_sum(x: FloatArray, usable: BoolArray, k: int) -> FloatArray:
    """Sum of ``x`` over the last ``k`` usable days before each day."""
    n, t_len = x.shape
    pos: npt.NDArray[np.int64] = np.cumsum(usable, axis=1) - usable  # usable days strictly before
    cx = np.cumsum(np.pad(np.where(usable, x, 0.0), ((0, 0), (1, 0))), axis=1)
    # index (in days) of the k-th usable day back: found through the usable-day ordinal
    out = np.zeros((n, t_len))
    for i in range(n):
        u = np.flatnonzero(usable[i])
        if u.size == 0:
            continue
        p: npt.NDArray[np.int64] = pos[i]
        start_ord = np.clip(p - k, 0, None)
        start_day = np.where(start_ord < u.size, u[np.minimum(start_ord, u.size - 1)], t_len)
        t = np.arange(t_len)
        out[i] = np.where(p > 0, cx[i, t] - cx[i, np.minimum(start_day, t)], 0.0)
    return out


def _market(resid: FloatArray, weight: FloatArray, owner: FloatArray, prior: FloatArray) -> FloatArray:
    """Daily shared effect per entity: the precision-weighted mean of the *other* campaigns' residuals.

    ``owner`` (entities x campaigns-rows, 0/1) says whose residuals are an entity's own: a
    campaign's own row, an account's campaigns. Leaving them out means an entity is never
    explained away by itself; with one campaign there is no market to speak of. Residuals
    are clipped at +-1 (log units) and the mean is shrunk towards 0 by ``prior`` (a precision).
    """
    r = np.clip(np.nan_to_num(resid), -1.0, 1.0)
    ok = np.isfinite(resid) & np.isfinite(weight)
    campaign_rows: BoolArray = np.asarray(owner.any(axis=0), dtype=bool)
    w = np.where(ok & campaign_rows[:, None], weight, 0.0)
    num, den = (w * r).sum(axis=0), w.sum(axis=0)
    own_num, own_den = owner @ (w * r), owner @ w
    out: FloatArray = (num[None, :] - own_num) / (den[None, :] - own_den + prior[None, :])
    return out


@dataclass(frozen=True)
class _Metric:
    observed: FloatArray
    expected: FloatArray
    z: FloatArray  # daily signed evidence (signed root of the one-day likelihood ratio)
    flag: BoolArray
    evidence: FloatArray  # best window likelihood ratio covering each flagged day


def _windows(
    score: FloatArray, weight: FloatArray, rel: FloatArray, cfg: AnomalyConfig, kind: str, limit: float,
    count_obs: FloatArray | None = None, count_exp: FloatArray | None = None,
) -> tuple[BoolArray, FloatArray]:
    """Window GLRs ending on each day; flag the days of windows that pass, leaning the same way.

    ``kind`` "gauss": ``score`` is a standardised residual and ``weight`` its precision
    weight (a window's GLR is ``(sum w z)^2 / sum w^2`` in standardised units); "count":
    ``count_obs`` / ``count_exp`` are observed and expected counts with ``weight`` the
    quasi-Poisson scale ``1 / (1 + phi mu)``.
    """
    n, t_len = score.shape
    flag = np.zeros((n, t_len), dtype=bool)
    best = np.zeros((n, t_len))
    ok = np.isfinite(score)
    s = np.where(ok, score, 0.0)
    # Multi-day windows are for faint, sustained shifts: a day dramatic enough to stand on its
    # own is judged alone and left out of longer windows, so it cannot drag quiet neighbours in.
    dramatic = np.abs(s) >= np.sqrt(cfg.glr_threshold)
    for w in range(1, cfg.max_window + 1):
        if w > t_len:
            break
        use = ok if w == 1 else ok & ~dramatic
        if kind == "gauss":
            num = _window_sum(np.where(use, s * weight, 0.0), w)
            den = _window_sum(np.where(use, weight * weight, 0.0), w)
            with np.errstate(divide="ignore", invalid="ignore"):
                glr = np.where(den > 0, num * num / den, 0.0)
                mean_rel = _window_sum(np.where(use, rel * weight * weight, 0.0), w) / den
            sign = np.sign(num)
            big_enough = np.ones((n, t_len), dtype=bool)
        else:
            assert count_obs is not None and count_exp is not None
            x = _window_sum(np.where(use, count_obs, 0.0), w)
            mu = _window_sum(np.where(use, count_exp, 0.0), w)
            scale = _window_sum(np.where(use, weight * count_exp, 0.0), w)
            with np.errstate(divide="ignore", invalid="ignore"):
                dev = 2.0 * (np.where(x > 0, x * np.log(x / mu), 0.0) - (x - mu))
                glr = np.where(mu > 0, dev * scale / mu, 0.0)
                mean_rel = np.where(mu > 0, x / mu - 1.0, 0.0)
                big_enough = np.abs(x - mu) >= cfg.min_count_change * w
            sign = np.sign(x - mu)
        n_use = _window_sum(use.astype(np.float64), w)
        n_up = _window_sum((use & (s >= cfg.lean_z)).astype(np.float64), w)
        n_down = _window_sum((use & (s <= -cfg.lean_z)).astype(np.float64), w)
        leaning = np.where(sign > 0, n_up, n_down)
        hit = (
            (glr >= cfg.glr_threshold)
            & (np.abs(np.nan_to_num(mean_rel)) >= limit)
            & big_enough
            & (n_use >= w - (1 if w >= 4 else 0))
            & (leaning >= w - (1 if w >= 4 else 0))
            & use  # the window ends on a day it uses
        )
        if not hit.any():
            continue
        for j in range(w):
            # day t - j belongs to the window ending at t
            cand = np.zeros((n, t_len), dtype=bool)
            cand[:, : t_len - j] = hit[:, j:]
            g = np.zeros((n, t_len))
            g[:, : t_len - j] = glr[:, j:]
            sg = np.zeros((n, t_len))
            sg[:, : t_len - j] = sign[:, j:]
            lean = use & (np.sign(s) == sg) & (np.abs(s) >= cfg.lean_z)
            new = cand & (lean | (w == 1))
            flag |= new
            best = np.where(new, np.maximum(best, g), best)
    return flag, best


def _window_sum(x: FloatArray, w: int) -> FloatArray:
    """Sum over the ``w`` days ending on each day (fewer at the start of the grid)."""
    c = np.cumsum(x, axis=1)
    out: FloatArray = c.copy()
    out[:, w:] = c[:, w:] - c[:, :-w]
    return out


# --------------------------------------------------------------------------- the three metrics


def _spend(
    spend: FloatArray, usable: BoolArray, started: BoolArray, holiday: BoolArray, camp: FloatArray,
    exclude: BoolArray, cfg: AnomalyConfig,
) -> _Metric:
    typical = np.nan_to_num(nanmedian_last(np.where(usable & (spend > 0), spend, np.nan))[0], nan=0.0)
    eps = np.maximum(0.05 * typical, 0.01)[:, None]
    y = np.where(usable & started, np.log(spend + eps), np.nan)
    hist = np.where(exclude | holiday[None, :], np.nan, y)
    level, n_level = nanmedian_last(_last_k_usable(hist, cfg.level_days))
    level = np.where(n_level >= 4, level, np.nan)
    offset = hist - level
    dow, _ = nanmedian_last(_lagged(offset, [7 * k for k in range(1, cfg.seasonal_lags + 1)]))
    base = level + np.nan_to_num(dow)
    resid = y - base
    # causal scale: running mean of clipped squared residuals of usable non-excluded days
    sq = np.where(np.isfinite(resid) & ~exclude & ~holiday[None, :], np.minimum(resid**2, 1.0), 0.0)
    cnt = np.where(np.isfinite(resid) & ~exclude & ~holiday[None, :], 1.0, 0.0)
    c_sq = np.cumsum(sq, axis=1) - sq
    c_n = np.cumsum(cnt, axis=1) - cnt
    var = np.maximum(np.divide(c_sq, c_n, out=np.full_like(c_sq, np.nan), where=c_n >= 14), cfg.min_spend_sd**2)
    prior = np.where(holiday, 1.0 / cfg.holiday_prior_sd**2, 1.0 / cfg.market_prior_sd**2)
    mk = _market(resid, 1.0 / var, camp, prior)
    resid = resid - mk
    var = var + np.where(holiday, cfg.holiday_extra_sd**2, 0.0)[None, :]
    judged = np.isfinite(resid) & (c_n >= cfg.min_history)
    z = np.where(judged, resid / np.sqrt(var), np.nan)
    rel = np.exp(np.where(judged, resid, 0.0)) - 1.0
    flag, ev = _windows(z, np.ones_like(z), rel, cfg, "gauss", cfg.min_spend_change)
    expected = np.where(np.isfinite(base), np.maximum(np.exp(base + mk) - eps, 0.0), np.nan)
    return _Metric(np.where(usable, spend, np.nan), expected, np.nan_to_num(z), flag & judged, ev)


def _conversions(
    spend: FloatArray, conv: FloatArray, usable: BoolArray, started: BoolArray, holiday: BoolArray,
    camp: FloatArray, exclude: BoolArray, cfg: AnomalyConfig,
) -> _Metric:
    """``spend`` is the exposure: the day's clicks when known, else its spend."""
    hist = usable & started & ~exclude & ~holiday[None, :]
    s_w = _usable_window_sum(spend, hist, cfg.rate_days)
    c_w = _usable_window_sum(conv, hist, cfg.rate_days)
    n_w = _usable_window_sum(np.ones_like(spend), hist, cfg.rate_days)
    rate = np.divide(c_w, s_w, out=np.full_like(c_w, np.nan), where=(s_w > 0) & (c_w >= cfg.min_rate_conversions))
    mu = np.where(usable & started, spend * rate, np.nan)
    # dispersion by moments over earlier usable, non-excluded days, shrunk to the pooled value
    ok = hist & np.isfinite(mu) & (mu > 0)
    pear2 = np.where(ok, (conv - np.nan_to_num(mu)) ** 2 / np.maximum(np.nan_to_num(mu), 1e-9), 0.0)
    keep = ok & (pear2 <= 16.0 * (1.0 + cfg.pooled_dispersion * np.nan_to_num(mu)))
    num = np.where(keep, (conv - np.nan_to_num(mu)) ** 2 - np.nan_to_num(mu), 0.0)
    den = np.where(keep, np.nan_to_num(mu) ** 2, 0.0)
    c_num = np.cumsum(num, axis=1) - num
    c_den = np.cumsum(den, axis=1) - den
    c_cnt: FloatArray = np.cumsum(keep, axis=1) - keep
    phi_hat = np.clip(np.divide(c_num, c_den, out=np.zeros_like(c_num), where=c_den > 0), 0.0, 2.0)
    k0 = cfg.dispersion_prior_days
    phi = (c_cnt * phi_hat + k0 * cfg.pooled_dispersion) / (c_cnt + k0)
    # market effect on the log scale, precision mu / (1 + phi mu)
    with np.errstate(divide="ignore", invalid="ignore"):
        lr = np.log((conv + 0.5) / (mu + 0.5))
        wt = np.where(np.isfinite(mu), mu / (1.0 + phi * mu), 0.0)
    prior = np.where(holiday, 1.0 / cfg.holiday_prior_sd**2, 1.0 / cfg.market_prior_sd**2)
    mk = _market(np.where(np.isfinite(mu) & (mu >= 1.0), lr, np.nan), wt, camp, prior)
    extra = np.where(holiday, cfg.holiday_extra_sd**2, 0.0)[None, :]
    mu = mu * np.exp(mk)
    judged = np.isfinite(mu) & (n_w >= cfg.min_history)
    scale = 1.0 / (1.0 + (phi + extra) * np.nan_to_num(mu))
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = 2.0 * (np.where(conv > 0, conv * np.log(conv / mu), 0.0) - (conv - mu))
        z = np.where(judged & (mu > 0), np.sign(conv - mu) * np.sqrt(np.maximum(dev, 0.0) * scale), np.nan)
    flag, ev = _windows(
        z, scale, np.zeros_like(z), cfg, "count", cfg.min_relative_change,
        count_obs=np.where(judged, conv, np.nan), count_exp=np.where(judged, mu, np.nan),
    )
    return _Metric(np.where(usable, conv, np.nan), mu, np.nan_to_num(z), flag & judged, ev)


def _order_value(
    conv: FloatArray, rev: FloatArray, usable: BoolArray, started: BoolArray, holiday: BoolArray,
    exclude: BoolArray, cfg: AnomalyConfig,
) -> _Metric:
    has = usable & started & (conv >= 1)
    hist = has & ~exclude & ~holiday[None, :]
    r_w = _usable_window_sum(rev, hist, cfg.rate_days)
    c_w = _usable_window_sum(conv, hist, cfg.rate_days)
    n_w = _usable_window_sum(np.ones_like(conv), hist, cfg.rate_days)
    aov_base = np.divide(r_w, c_w, out=np.full_like(r_w, np.nan), where=(c_w >= cfg.min_rate_conversions) & (r_w > 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        aov = np.where(has, rev / conv, np.nan)
        resid = np.log(np.maximum(aov, 1e-9) / aov_base)
    w = np.where(has, conv, 0.0)
    sq = np.where(np.isfinite(resid) & hist, np.minimum(resid**2, 4.0) * w, 0.0)
    cnt = np.where(np.isfinite(resid) & hist, 1.0, 0.0)
    c_sq = np.cumsum(sq, axis=1) - sq
    c_n = np.cumsum(cnt, axis=1) - cnt
    s2 = np.maximum(np.divide(c_sq, c_n, out=np.full_like(c_sq, np.nan), where=c_n >= 14), cfg.min_value_sd**2)
    var = s2 / np.maximum(w, 1.0) + np.where(holiday, cfg.holiday_extra_sd**2, 0.0)[None, :]
    judged = np.isfinite(resid) & (n_w >= cfg.min_history) & has
    z = np.where(judged, resid / np.sqrt(var), np.nan)
    rel = np.exp(np.where(judged, resid, 0.0)) - 1.0
    flag, ev = _windows(z, np.ones_like(z), rel, cfg, "gauss", cfg.min_relative_change)
    with np.errstate(invalid="ignore"):
        expected = np.where(has, aov_base, np.nan)
    return _Metric(np.where(has, aov, np.nan), expected, np.nan_to_num(z), flag & judged, ev)


def _analyse(series: EntitySeries, cfg: AnomalyConfig, holiday: BoolArray) -> dict[str, _Metric]:
    spend, conv, rev = series.spend, series.conversions, series.revenue
    usable = series.known()
    live = usable & ((spend > 0) | (conv > 0) | (rev > 0))
    started = np.maximum.accumulate(live, axis=1)  # no judgement before an entity's first activity
    camp = _owners(series)
    exposure = spend
    if series.clicks is not None:
        has_clicks = (series.clicks * usable).sum(axis=1) > 0
        exposure = np.where(has_clicks[:, None], series.clicks, spend)
    exclude = np.zeros(spend.shape, dtype=bool)
    out: dict[str, _Metric] = {}
    for _ in range(2):  # second pass: anomalous days no longer feed later baselines
        out = {
            "spend": _spend(spend, usable, started, holiday, camp, exclude, cfg),
            "conversions": _conversions(exposure, conv, usable, started, holiday, camp, exclude, cfg),
            "aov": _order_value(conv, rev, usable, started, holiday, exclude, cfg),
        }
        odd = np.zeros(spend.shape, dtype=bool)
        for m in out.values():
            odd |= m.flag | (np.abs(m.z) >= 3.0)
        exclude = _short_runs(odd, cfg.max_excluded_run)
    return out


def _short_runs(mask: BoolArray, limit: int) -> BoolArray:
    """``mask`` where the run of consecutive True days, counted up to each day, is at most ``limit``.

    Odd days stay out of later baselines, but a shift that has lasted longer than
    ``limit`` days is the new normal and is learnt (causal: a day's run length counts
    only that day and the ones before it).
    """
    run = np.zeros(mask.shape, dtype=np.int64)
    for t in range(mask.shape[1]):
        prev = run[:, t - 1] if t else 0
        run[:, t] = np.where(mask[:, t], prev + 1, 0)
    out: BoolArray = mask & (run <= limit)
    return out


def _owners(series: EntitySeries) -> FloatArray:
    """entities x entities: 1 where the column is a campaign row that is the entity itself or its child."""
    n = len(series.entity_id)
    out = np.zeros((n, n))
    is_camp = [lv != "account" for lv in series.level]
    index = {(lv, e): i for i, (lv, e) in enumerate(zip(series.level, series.entity_id, strict=True))}
    for j in range(n):
        if not is_camp[j]:
            continue
        out[j, j] = 1.0
        parent = series.parent_id[j]
        if parent is not None and ("account", parent) in index:
            out[index[("account", parent)], j] = 1.0
    return out


def detect_anomalies(
    series: EntitySeries,
    config: AnomalyConfig | None = None,
    *,
    since: DateLike | None = None,
    holidays: Sequence[DateLike] | None = None,
) -> list[AnomalyIncident]:
    """Incidents of all entities, most severe first; ``since`` keeps those ending on/after it.

    ``holidays`` are the client's calendar days (public holidays and retail events): the
    market may move on them, and they never feed later baselines.
    """
    cfg = config or AnomalyConfig()
    if not series.entity_id or series.dates.shape[0] == 0:
        return []
    holiday = np.zeros(series.dates.shape[0], dtype=bool)
    if holidays:
        holiday = np.isin(series.dates, as_dates(list(holidays), "holidays"))
    metrics = _analyse(series, cfg, holiday)
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

    built = {(i, s): _incident(series, metrics, cpa_base, i, s, e, cfg, holiday) for i, s, e in incidents}
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


def _r(v: float) -> float | None:
    return round(float(v), 4) if np.isfinite(v) else None


def _incident(
    series: EntitySeries,
    metrics: dict[str, _Metric],
    cpa_base: FloatArray,
    i: int,
    s: int,
    e: int,
    cfg: AnomalyConfig,
    holiday: BoolArray,
) -> AnomalyIncident:
    dates = series.dates
    window = slice(s, e + 1)
    details: dict[str, dict[str, Any]] = {}
    for name, m in metrics.items():
        flagged = m.flag[i, window]
        if not flagged.any():
            continue
        z = m.z[i, window]
        ev = m.evidence[i, window]
        peak = int(np.argmax(np.where(flagged, ev, -1.0)))
        obs = m.observed[i, window]
        exp = m.expected[i, window]
        peak_z = float(np.sign(z[peak]) * np.sqrt(max(float(ev[peak]), 0.0)))
        details[name] = {
            "direction": "up" if z[peak] > 0 else "down",
            "peak_z": round(peak_z, 2),
            "evidence_glr": round(float(ev[peak]), 2),
            "anomalous_days": int(flagged.sum()),
            "observed": [_r(v) for v in obs],
            "expected": [_r(v) for v in exp],
            "relative_change": round(float((np.nan_to_num(obs[peak]) - exp[peak]) / max(float(exp[peak]), 1e-9)), 4)
            if np.isfinite(exp[peak])
            else None,
            "money": round(_money(name, series, metrics, cpa_base, i, window), 2),
        }
    # a spend move is the cause when present: conversions then look odd *given* that spend
    primary = (
        "spend" if "spend" in details else max(details, key=lambda k: (abs(details[k]["peak_z"]), -METRICS.index(k)))
    )
    peak_z = float(details[primary]["peak_z"])
    level = 2 if abs(peak_z) >= 8 else 1 if abs(peak_z) >= 6 else 0
    if e - s + 1 >= 3:
        level = min(level + 1, 2)
    c0 = max(0, s - cfg.context_days)
    ctx = slice(c0, min(e + 8, dates.shape[0]))
    pm = metrics[primary]
    start, end = str(dates[s]), str(dates[e])
    spend_w = series.spend[i, window].sum()
    conv_w = series.conversions[i, window].sum()
    evidence: dict[str, Any] = {
        "parent_id": series.parent_id[i],
        "days": e - s + 1,
        "method": {
            "spend": "log spend against a weekday-aware trailing median, market effect removed",
            "conversions": "negative-binomial counts given the day's clicks (or spend)",
            "aov": "log value per conversion against the trailing value per conversion",
        }[primary],
        "calendar_days": [str(dates[d]) for d in range(s, e + 1) if holiday[d]],
        "cpa": round(float(spend_w / conv_w), 4) if conv_w > 0 else None,
        "roas": round(float(series.revenue[i, window].sum() / spend_w), 4) if spend_w > 0 else None,
        "series": {
            "metric": primary,
            "dates": [str(d) for d in dates[ctx]],
            "observed": [_r(v) for v in pm.observed[i, ctx]],
            "expected": [_r(v) for v in pm.expected[i, ctx]],
        },
    }
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
        evidence=evidence,
    )


def _money(
    name: str, series: EntitySeries, metrics: dict[str, _Metric], cpa_base: FloatArray, i: int, window: slice
) -> float:
    m = metrics[name]
    flagged = m.flag[i, window]
    dev = np.where(flagged, np.nan_to_num(m.observed[i, window] - np.nan_to_num(m.expected[i, window])), 0.0)
    if name == "spend":
        return float(dev.sum())
    if name == "conversions":
        return float(dev.sum() * cpa_base[i])
    return float((dev * series.conversions[i, window]).sum())


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
    known = series.known()
    live = known & ((series.spend > 0) | (series.conversions > 0))
    has: BoolArray = np.asarray(live.any(axis=1), dtype=bool)
    first = np.where(has, np.argmax(live, axis=1), -1)
    last = np.where(has, live.shape[1] - 1 - np.argmax(live[:, ::-1], axis=1), -1)
    changes: dict[str, list[tuple[int, str]]] = {}
    for i, parent in enumerate(series.parent_id):
        if parent and has[i]:
            changes.setdefault(parent, []).extend([(int(first[i]), "launch"), (int(last[i]) + 1, "stop")])
    day_of = {str(d): k for k, d in enumerate(series.dates)}
    horizon = cfg.rate_days + 7
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
