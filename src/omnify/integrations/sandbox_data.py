"""Deterministic, realistic ad-account data for the sandboxes (platform-neutral).

Why synthetic data needs structure: the brain (anomaly detection, fatigue detection, budget
allocation) is demoed and tested on it, so the data carries the phenomena the brain looks
for, with their ground truth recorded here:

* weekly + yearly seasonality (weekend lift, Q4 peak, a Black-Friday bump);
* creative fatigue: CTR decays exponentially after an onset day (``Creative.fatigue_onset``);
  one strong, recent decline per account (:func:`_plant_recent_fatigue`) starts
  ``RECENT_FATIGUE_DAYS_AGO`` days before the world's last day, so a short history (the
  60 days `omnify up` syncs) already shows a wear-out the brain acts on;
* injected anomalies: spend spikes and conversion drops (``Account.anomalies``);
* a saturating (Hill) spend -> revenue response per campaign (``Campaign.hill``), so
  budget changes have diminishing returns the allocator can discover.

Everything derives from ``numpy.random.Generator`` seeded from (seed, platform, account id),
so one account's data never changes when another is added, and two runs are identical.
Metrics are a dense (ads x days) cube computed with vectorised numpy: 200 ads x 365 days
builds in milliseconds.

Each platform sandbox renders this model in its own API shape (ids, field names, units) and
mutates the entity state (status, budgets) through :class:`World` methods so writes change
what later reads return, metrics included (a paused ad stops spending from the day it was
paused; a budget change rescales that campaign's spend and re-applies its Hill curve).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

Status = Literal["active", "paused", "archived", "deleted"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
T = TypeVar("T", bound=np.generic)

OBJECTIVES = ("sales", "leads", "traffic", "awareness", "app_installs")
_CTAS = ("SHOP_NOW", "LEARN_MORE", "SIGN_UP", "GET_OFFER", "ORDER_NOW")
_ADJ = ("Bold", "Fresh", "Everyday", "Premium", "Summer", "Winter", "Classic", "Smart", "Eco", "Urban")
_NOUN = ("Sneakers", "Coffee", "Backpack", "Skincare", "Headphones", "Yoga Mat", "Watch", "Jacket",
         "Water Bottle", "Desk Lamp")
_AUDIENCE = ("Prospecting", "Retargeting", "Lookalike 1%", "Broad", "Interests", "Past Buyers")


@dataclass(frozen=True, slots=True)
class AccountSpec:
    number: int  # the numeric account id the platform renders (act_<n>, customer id, advertiser id)
    name: str
    currency: str = "USD"
    timezone: str = "America/New_York"
    campaigns: int = 5
    ad_groups_per_campaign: int = 4
    ads_per_ad_group: int = 10  # 5 x 4 x 10 = 200 ads


def default_specs() -> list[AccountSpec]:
    """Three accounts: one large (200 ads), two small, in two currencies."""
    return [
        AccountSpec(1000001, "Acme Outdoor - US", "USD", "America/New_York", 5, 4, 10),
        AccountSpec(1000002, "Acme Outdoor - EU", "EUR", "Europe/Berlin", 3, 2, 4),
        AccountSpec(1000003, "Bright Smiles Dental", "USD", "America/Chicago", 2, 2, 3),
    ]


@dataclass(slots=True)
class Creative:
    id: str
    name: str
    title: str
    body: str
    image_url: str
    call_to_action: str
    fatigue_onset: date | None  # ground truth: CTR decays from this day on
    fatigue_rate: float  # per-day exponential decay of CTR after onset


@dataclass(slots=True)
class Campaign:
    id: str
    account_id: str
    name: str
    objective: str
    status: Status
    daily_budget_minor: int
    hill: tuple[float, float, float]  # (vmax_minor_per_day, half_saturation_spend_minor, shape n)
    created: date
    updated_at: datetime


@dataclass(slots=True)
class AdGroup:
    id: str
    account_id: str
    campaign_id: str
    name: str
    status: Status
    daily_budget_minor: int | None  # None: budget lives on the campaign
    targeting: dict[str, Any]
    bid_strategy: str
    created: date
    updated_at: datetime


@dataclass(slots=True)
class Ad:
    id: str
    account_id: str
    campaign_id: str
    ad_group_id: str
    name: str
    status: Status
    creative: Creative
    created: date
    updated_at: datetime
    index: int  # row in the metrics cube


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: Literal["spend_spike", "conversion_drop"]
    campaign_id: str
    start: date
    end: date  # inclusive
    factor: float


@dataclass(slots=True)
class MetricsCube:
    """Dense per-ad daily metrics; rows follow ``Account.ads`` order, columns ``days``."""

    start: date
    days: int
    spend_minor: IntArray
    impressions: IntArray
    reach: IntArray
    clicks: IntArray
    conversions: FloatArray
    revenue_minor: IntArray

    def day_index(self, d: date) -> int:
        return (d - self.start).days

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.days - 1)


@dataclass(frozen=True, slots=True)
class MetricRows:
    """A flat slice of the cube (one row per entity-day with activity), ready to render."""

    entity_ids: list[str]
    days: list[date]
    spend_minor: IntArray
    impressions: IntArray
    reach: IntArray
    clicks: IntArray
    conversions: FloatArray
    revenue_minor: IntArray

    def __len__(self) -> int:
        return len(self.entity_ids)

    def row(self, i: int) -> dict[str, Any]:
        return {
            "entity_id": self.entity_ids[i],
            "day": self.days[i],
            "spend_minor": int(self.spend_minor[i]),
            "impressions": int(self.impressions[i]),
            "reach": int(self.reach[i]),
            "clicks": int(self.clicks[i]),
            "conversions": float(self.conversions[i]),
            "revenue_minor": int(self.revenue_minor[i]),
        }


@dataclass(slots=True)
class _Override:
    """A write's effect on metrics from ``day`` on (status pause/resume, budget factor)."""

    day: date
    kind: Literal["status", "budget"]
    entity_level: Literal["campaign", "ad_group", "ad"]
    entity_id: str
    active: bool = True
    factor: float = 1.0


@dataclass(slots=True)
class Account:
    id: str
    name: str
    currency: str
    timezone: str
    campaigns: dict[str, Campaign]
    ad_groups: dict[str, AdGroup]
    ads: dict[str, Ad]
    metrics: MetricsCube
    anomalies: list[Anomaly]
    created: date
    overrides: list[_Override] = field(default_factory=list)
    # Metric components kept to re-apply the Hill curve after a budget change.
    _share: FloatArray | None = None
    _campaign_spend: FloatArray | None = None
    _ad_campaign_idx: IntArray | None = None
    _campaign_order: list[str] = field(default_factory=list)

    # -- metric reads ------------------------------------------------------------------
    def metric_rows(
        self,
        since: date,
        until: date,
        *,
        level: Literal["campaign", "ad_group", "ad"] = "ad",
        entity_ids: Sequence[str] | None = None,
        include_zero: bool = False,
    ) -> MetricRows:
        """Rows for ``since..until`` (inclusive, clipped to the cube), ordered by day then
        entity. Rows without impressions are dropped unless ``include_zero`` (platforms
        generally omit them)."""
        cube = self.metrics
        lo = max(cube.day_index(since), 0)
        hi = min(cube.day_index(until), cube.days - 1)
        ads = list(self.ads.values())
        if hi < lo:
            return _empty_rows()
        spend, impr, reach, clicks, conv, rev = self._effective(lo, hi)
        if level == "ad":
            ids = [a.id for a in ads]
        else:
            parents = [a.campaign_id if level == "campaign" else a.ad_group_id for a in ads]
            ids = sorted(set(parents), key=lambda x: (len(x), x))
            pos = {k: i for i, k in enumerate(ids)}
            group = np.array([pos[p] for p in parents], dtype=np.int64)
            n = len(ids)
            spend, impr, reach, clicks = (_group_sum(x, group, n) for x in (spend, impr, reach, clicks))
            conv, rev = _group_sum(conv, group, n), _group_sum(rev, group, n)
        if entity_ids is not None:
            wanted = set(entity_ids)
            keep = np.array([i for i, e in enumerate(ids) if e in wanted], dtype=np.int64)
            ids = [ids[i] for i in keep]
            spend, impr, reach, clicks, rev = (x[keep] for x in (spend, impr, reach, clicks, rev))
            conv = conv[keep]
        # day-major order: transpose (entities x days) -> (days x entities)
        n_e, n_d = spend.shape
        mask = np.ones((n_d, n_e), dtype=bool) if include_zero else impr.T > 0
        d_idx, e_idx = np.nonzero(mask)
        day_list = [cube.start + timedelta(days=lo + int(d)) for d in range(n_d)]
        return MetricRows(
            entity_ids=[ids[int(e)] for e in e_idx],
            days=[day_list[int(d)] for d in d_idx],
            spend_minor=spend.T[mask].astype(np.int64),
            impressions=impr.T[mask].astype(np.int64),
            reach=reach.T[mask].astype(np.int64),
            clicks=clicks.T[mask].astype(np.int64),
            conversions=conv.T[mask].astype(np.float64),
            revenue_minor=rev.T[mask].astype(np.int64),
        )

    def _effective(
        self, lo: int, hi: int
    ) -> tuple[IntArray, IntArray, IntArray, IntArray, FloatArray, IntArray]:
        """Cube slice with writes applied (pauses zero everything, budget factors rescale
        spend/volume linearly and revenue through the campaign's Hill curve)."""
        c = self.metrics
        sl = slice(lo, hi + 1)
        spend = c.spend_minor[:, sl].astype(np.float64)
        impr = c.impressions[:, sl].astype(np.float64)
        reach = c.reach[:, sl].astype(np.float64)
        clicks = c.clicks[:, sl].astype(np.float64)
        conv = c.conversions[:, sl].copy()
        rev = c.revenue_minor[:, sl].astype(np.float64)
        if self.overrides:
            ads = list(self.ads.values())
            n = hi - lo + 1
            # One on/off mask per hierarchy level, so resuming an ad inside a paused campaign
            # does not make it spend: an ad delivers only when all three levels are active.
            masks = {lvl: np.ones_like(spend, dtype=bool) for lvl in ("campaign", "ad_group", "ad")}
            volume = np.ones_like(spend)
            value = np.ones_like(spend)
            for ov in self.overrides:
                d0 = max(c.day_index(ov.day) - lo, 0)
                if d0 >= n:
                    continue
                rows = np.array([a.index for a in ads if _ad_matches(a, ov)], dtype=np.int64)
                if rows.size == 0:
                    continue
                if ov.kind == "status":
                    masks[ov.entity_level][rows, d0:] = ov.active
                else:
                    camp = self.campaigns[ov.entity_id]
                    base = np.maximum(self._campaign_spend_for(camp.id, lo, hi)[d0:], 1.0)
                    ratio = _hill(base * ov.factor, camp.hill) / np.maximum(_hill(base, camp.hill), 1e-9)
                    volume[rows, d0:] *= ov.factor
                    value[rows, d0:] *= ratio
            on = masks["campaign"] & masks["ad_group"] & masks["ad"]
            volume *= on
            value *= on
            spend *= volume
            impr *= volume
            reach *= volume
            clicks *= volume
            conv *= value
            rev *= value
        return (
            np.rint(spend).astype(np.int64), np.rint(impr).astype(np.int64), np.rint(reach).astype(np.int64),
            np.rint(clicks).astype(np.int64), np.round(conv, 2), np.rint(rev).astype(np.int64),
        )

    def _campaign_spend_for(self, campaign_id: str, lo: int, hi: int) -> FloatArray:
        assert self._campaign_spend is not None
        ci = self._campaign_order.index(campaign_id)
        return self._campaign_spend[ci, lo : hi + 1]


def _ad_matches(ad: Ad, ov: _Override) -> bool:
    if ov.entity_level == "ad":
        return ad.id == ov.entity_id
    if ov.entity_level == "ad_group":
        return ad.ad_group_id == ov.entity_id
    return ad.campaign_id == ov.entity_id


def _group_sum(arr: npt.NDArray[T], group: IntArray, n: int) -> npt.NDArray[T]:
    out: npt.NDArray[T] = np.zeros((n, arr.shape[1]), dtype=arr.dtype)
    np.add.at(out, group, arr)
    return out


def _empty_rows() -> MetricRows:
    z = np.zeros(0, dtype=np.int64)
    return MetricRows([], [], z, z, z, z, np.zeros(0, dtype=np.float64), z)


def _hill(spend: FloatArray, params: tuple[float, float, float]) -> FloatArray:
    vmax, k, n = params
    s = np.maximum(spend, 0.0)
    result: FloatArray = vmax * s**n / (k**n + s**n)
    return result


def _rng(seed: int, *parts: object) -> np.random.Generator:
    digest = hashlib.sha256(":".join(str(p) for p in (seed, *parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


# ------------------------------------------------------------------------------ generation
def _seasonality(start: date, days: int) -> FloatArray:
    """Demand multiplier per day: weekday pattern x yearly wave x Black-Friday week."""
    ordinals = np.arange(days)
    dates = [start + timedelta(days=int(i)) for i in ordinals]
    weekday = np.array([d.weekday() for d in dates])
    weekly = np.array([0.95, 0.93, 0.96, 1.0, 1.05, 1.12, 1.08])[weekday]
    doy = np.array([d.timetuple().tm_yday for d in dates], dtype=np.float64)
    yearly = 1.0 + 0.18 * np.cos(2 * np.pi * (doy - 350) / 365.25)  # peak mid-December
    bf = np.zeros(days)
    for i, d in enumerate(dates):
        if d.month == 11 and 22 <= d.day <= 30:
            bf[i] = 0.35
    result: FloatArray = weekly * yearly * (1.0 + bf)
    return result


def generate_account(spec: AccountSpec, *, platform: str, seed: int, end: date, days: int) -> Account:
    rng = _rng(seed, platform, spec.number)
    start = end - timedelta(days=days - 1)
    acc_id = str(spec.number)
    base = spec.number * 10_000_000
    created = start - timedelta(days=int(rng.integers(30, 400)))
    stamp = datetime.combine(start, datetime.min.time(), tzinfo=UTC)

    campaigns: dict[str, Campaign] = {}
    ad_groups: dict[str, AdGroup] = {}
    ads: dict[str, Ad] = {}
    n_c = spec.campaigns
    n_g = spec.ad_groups_per_campaign
    n_a = spec.ads_per_ad_group
    ad_campaign: list[int] = []
    ad_created: list[int] = []
    for ci in range(n_c):
        cid = str(base + 1_000_000 + ci + 1)
        budget = int(rng.choice([50, 75, 100, 150, 200, 300, 500])) * 100
        vmax = budget * float(rng.uniform(2.5, 6.0))  # revenue ceiling per day, minor units
        k = budget * float(rng.uniform(0.6, 1.6))  # spend at half saturation
        hill_n = float(rng.uniform(1.1, 2.2))
        objective = OBJECTIVES[int(rng.integers(0, 2))] if ci % 3 else "sales"
        campaigns[cid] = Campaign(
            cid, acc_id, f"{_NOUN[int(rng.integers(len(_NOUN)))]} - {objective.title()} {ci + 1:02d}",
            objective, "active", budget, (vmax, k, hill_n), created, stamp,
        )
        for gi in range(n_g):
            gid = str(base + 2_000_000 + ci * n_g + gi + 1)
            audience = _AUDIENCE[(ci + gi) % len(_AUDIENCE)]
            age_min = int(rng.choice([18, 25, 35]))
            ad_groups[gid] = AdGroup(
                gid, acc_id, cid, f"{audience} {gi + 1:02d}", "active", None,
                {"geo": ["US"] if spec.currency == "USD" else ["DE", "FR", "NL"],
                 "age_min": age_min, "age_max": int(min(age_min + rng.choice([20, 30, 40]), 65)),
                 "audience": audience},
                "LOWEST_COST", created, stamp,
            )
            for ai in range(n_a):
                idx = len(ads)
                aid = str(base + 3_000_000 + idx + 1)
                crid = str(base + 4_000_000 + idx + 1)
                start_day = 0 if rng.random() < 0.7 else int(rng.integers(1, max(days // 2, 2)))
                fatigues = rng.random() < 0.45
                onset = start_day + int(rng.integers(21, 90)) if fatigues else None
                adj = _ADJ[int(rng.integers(len(_ADJ)))]
                noun = _NOUN[int(rng.integers(len(_NOUN)))]
                creative = Creative(
                    crid, f"{adj} {noun} v{ai + 1}", f"{adj} {noun}",
                    f"Discover the {adj.lower()} {noun.lower()} everyone is talking about.",
                    f"https://cdn.sandbox.omnify.local/creatives/{crid}.jpg",
                    _CTAS[int(rng.integers(len(_CTAS)))],
                    start + timedelta(days=onset) if onset is not None and onset < days else None,
                    float(rng.uniform(0.01, 0.04)) if fatigues else 0.0,
                )
                ads[aid] = Ad(
                    aid, acc_id, cid, gid, f"{creative.name} - {audience}", "active", creative,
                    start + timedelta(days=start_day), stamp, idx,
                )
                ad_campaign.append(ci)
                ad_created.append(start_day)

    A, D = len(ads), days
    season = _seasonality(start, days)
    camp_idx = np.array(ad_campaign, dtype=np.int64)
    day_grid = np.arange(D)[None, :]
    alive = day_grid >= np.array(ad_created)[:, None]

    # Campaign spend: budget x utilisation (under-delivery, weekly pattern), noisy.
    budgets = np.array([c.daily_budget_minor for c in campaigns.values()], dtype=np.float64)
    util = np.clip(rng.normal(0.9, 0.06, size=(n_c, D)) * (0.85 + 0.15 * season[None, :]), 0.3, 1.0)
    camp_spend = budgets[:, None] * util

    # Anomalies (ground truth): spend spikes and conversion drops.
    anomalies: list[Anomaly] = []
    camp_ids = list(campaigns)
    conv_factor = np.ones((n_c, D))
    for _ in range(max(1, n_c // 2)):
        ci = int(rng.integers(n_c))
        d0 = int(rng.integers(D // 3, D - 3))
        length = int(rng.integers(1, 3))
        factor = float(rng.uniform(2.5, 4.5))
        camp_spend[ci, d0 : d0 + length] *= factor
        anomalies.append(Anomaly("spend_spike", camp_ids[ci], start + timedelta(days=d0),
                                 start + timedelta(days=d0 + length - 1), round(factor, 2)))
    for _ in range(max(1, n_c // 2)):
        ci = int(rng.integers(n_c))
        d0 = int(rng.integers(D // 3, D - 6))
        length = int(rng.integers(3, 6))
        factor = float(rng.uniform(0.1, 0.35))
        conv_factor[ci, d0 : d0 + length] = factor
        anomalies.append(Anomaly("conversion_drop", camp_ids[ci], start + timedelta(days=d0),
                                 start + timedelta(days=d0 + length - 1), round(factor, 2)))

    # Split campaign spend among its live ads by a persistent weight with daily noise.
    weight = rng.gamma(2.0, 1.0, size=A)[:, None] * rng.lognormal(0, 0.15, size=(A, D)) * alive
    camp_weight = np.zeros((n_c, D))
    np.add.at(camp_weight, camp_idx, weight)
    share = np.divide(
        weight, camp_weight[camp_idx], out=np.zeros_like(weight), where=camp_weight[camp_idx] > 0
    )
    # A campaign whose ads are all not yet live spends nothing.
    camp_spend = camp_spend * (camp_weight > 0)
    spend = camp_spend[camp_idx] * share

    # Delivery: CPM per ad, CTR with fatigue decay.
    cpm = rng.lognormal(np.log(900.0), 0.35, size=A)[:, None] * (1.0 + 0.1 * (season[None, :] - 1.0))
    impressions = np.floor(spend / cpm * 1000.0)
    frequency = rng.uniform(1.1, 2.6, size=A)[:, None]
    reach = np.floor(impressions / frequency)
    base_ctr = rng.lognormal(np.log(0.012), 0.4, size=A)[:, None]
    onset_idx = np.array([
        (a.creative.fatigue_onset - start).days if a.creative.fatigue_onset else D + 1 for a in ads.values()
    ])[:, None]
    rate = np.array([a.creative.fatigue_rate for a in ads.values()])[:, None]
    since_onset = np.maximum(day_grid - onset_idx, 0)
    fatigue = np.maximum(np.exp(-rate * since_onset), 0.3)
    ctr = np.clip(base_ctr * fatigue * rng.lognormal(0, 0.1, size=(A, D)), 0, 0.5)
    clicks = rng.binomial(impressions.astype(np.int64), ctr)

    # Revenue: campaign Hill response to its spend x seasonality, split by click quality.
    hill = np.array([c.hill for c in campaigns.values()])
    camp_rev = np.vstack([_hill(camp_spend[i], tuple(hill[i])) for i in range(n_c)]) * season[None, :]
    quality = rng.lognormal(0, 0.3, size=A)[:, None]
    click_value = clicks * quality
    camp_clicks = np.zeros((n_c, D))
    np.add.at(camp_clicks, camp_idx, click_value)
    rev_share = np.divide(click_value, camp_clicks[camp_idx], out=np.zeros_like(click_value),
                          where=camp_clicks[camp_idx] > 0)
    aov = rng.uniform(3500, 12000, size=n_c)  # average order value, minor units
    expected_conv = camp_rev[camp_idx] * rev_share / aov[camp_idx][:, None] * conv_factor[camp_idx]
    conversions = rng.poisson(expected_conv).astype(np.float64)
    revenue = np.rint(conversions * aov[camp_idx][:, None] * rng.lognormal(0, 0.12, size=(A, D)))

    _plant_recent_fatigue(_rng(seed, platform, spec.number, "recent-fatigue"), ads, start, clicks, conversions,
                          revenue)
    cube = MetricsCube(
        start=start, days=D,
        spend_minor=np.rint(spend).astype(np.int64),
        impressions=impressions.astype(np.int64),
        reach=reach.astype(np.int64),
        clicks=clicks.astype(np.int64),
        conversions=conversions,
        revenue_minor=revenue.astype(np.int64),
    )
    account = Account(acc_id, spec.name, spec.currency, spec.timezone, campaigns, ad_groups, ads, cube,
                      anomalies, created)
    account._share = share
    account._campaign_spend = camp_spend
    account._ad_campaign_idx = camp_idx
    account._campaign_order = camp_ids
    return account


#: The planted recent wear-out starts this many days before the world's last day: inside the
#: 60 days `omnify up` syncs, after the 5 learning + 14 baseline days the fatigue detector
#: needs before an onset, and older than its 12-day confirmation (a decline of 35 days).
RECENT_FATIGUE_DAYS_AGO = 35
#: Days of history an ad needs before the planted onset: it is live over the whole window.
_RECENT_FATIGUE_PRE_DAYS = 25


def _plant_recent_fatigue(
    rng: np.random.Generator, ads: dict[str, Ad], start: date, clicks: IntArray, conversions: FloatArray,
    revenue: FloatArray,
) -> None:
    """Wear out one steady creative per account from ``RECENT_FATIGUE_DAYS_AGO`` days before the end.

    Why: the yearly fatigue above starts within the first months of an ad's life, so the
    last weeks of a world hold only creatives that wore out long ago (flat at their floor)
    and a short synced history shows no decline at all. This ad held its CTR until the
    onset, then loses 3.5-5 % of it a day down to the same 30 % floor: a clear, strong
    wear-out that any history of 60 days or more contains whole.

    Chosen from the data, not by position: among ads live for the whole window and not
    fatigued already, the one with the most clicks in the weeks before the onset (the
    detector needs a well-measured level). It runs on its own random stream and touches
    only that ad's clicks (re-drawn at the decayed CTR) and, in proportion, its
    conversions (binomial thinning: a conversion needs a click) and revenue, so every other
    number of the world is the same with or without it. The ground truth goes where the
    other fatigue's does: ``Creative.fatigue_onset`` and ``fatigue_rate``.
    """
    days = clicks.shape[1]
    onset = days - 1 - RECENT_FATIGUE_DAYS_AGO  # index of the day RECENT_FATIGUE_DAYS_AGO before the last
    if onset < _RECENT_FATIGUE_PRE_DAYS or not ads:
        return
    window_start = onset - _RECENT_FATIGUE_PRE_DAYS
    pre_clicks = clicks[:, window_start:onset].sum(axis=1)
    eligible = [a for a in ads.values() if a.creative.fatigue_onset is None
                and (a.created - start).days <= window_start and pre_clicks[a.index] > 0]
    if not eligible:
        return
    ad = max(eligible, key=lambda a: (int(pre_clicks[a.index]), a.id))
    i = ad.index
    rate = float(rng.uniform(0.035, 0.05))
    ad.creative.fatigue_onset = start + timedelta(days=onset)
    ad.creative.fatigue_rate = rate
    decay = np.maximum(np.exp(-rate * np.maximum(np.arange(days) - onset, 0)), 0.3)
    keep = np.where(np.arange(days) >= onset, decay, 1.0)
    old = clicks[i].copy()
    new = rng.binomial(old, keep)  # thinning the clicks drawn at the old CTR: binomial at the decayed one
    clicks[i] = new
    share = np.divide(new, old, out=np.ones(days), where=old > 0)
    conv = rng.binomial(conversions[i].astype(np.int64), np.clip(share, 0.0, 1.0)).astype(np.float64)
    value = np.divide(revenue[i], conversions[i], out=np.zeros(days), where=conversions[i] > 0)
    conversions[i] = conv
    revenue[i] = np.rint(conv * value)  # delivery (impressions, spend) is unchanged: people see it, and skip it


# ------------------------------------------------------------------------------ world (mutable state)
class EntityNotFound(KeyError):
    pass


@dataclass(slots=True)
class WorldConfig:
    platform: str
    seed: int = 42
    end: date | None = None  # last day with metrics; default: today (UTC)
    days: int = 365
    accounts: list[AccountSpec] = field(default_factory=default_specs)


class World:
    """All accounts of one sandbox plus the writes applied to them (thread-safe)."""

    def __init__(self, config: WorldConfig) -> None:
        self.config = config
        self._lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        self.reset()

    @property
    def end(self) -> date:
        return self.config.end or datetime.now(UTC).date()

    def reset(self) -> None:
        with self._lock:
            self.accounts = {
                str(s.number): generate_account(
                    s, platform=self.config.platform, seed=self.config.seed, end=self.end,
                    days=self.config.days,
                )
                for s in self.config.accounts
            }

    def account(self, account_id: str) -> Account:
        try:
            return self.accounts[account_id]
        except KeyError:
            raise EntityNotFound(account_id) from None

    def find(self, entity_id: str) -> tuple[Account, Literal["campaign", "ad_group", "ad"], Any]:
        """Locate any entity by id across accounts (platforms address entities globally)."""
        for acc in self.accounts.values():
            if entity_id in acc.campaigns:
                return acc, "campaign", acc.campaigns[entity_id]
            if entity_id in acc.ad_groups:
                return acc, "ad_group", acc.ad_groups[entity_id]
            if entity_id in acc.ads:
                return acc, "ad", acc.ads[entity_id]
        raise EntityNotFound(entity_id)

    def describe(self, entity_id: str) -> dict[str, Any]:
        """An entity as the platform holds it now (``/__sandbox/objects/{id}``): what a test
        checks after Omnify wrote to the platform."""
        with self._lock:
            acc, level, entity = self.find(entity_id)
            return {"id": entity_id, "level": level, "account_id": acc.id, "name": entity.name,
                    "status": entity.status, "updated_at": entity.updated_at.isoformat()}

    def _today(self, acc: Account) -> date:
        return min(datetime.now(UTC).date(), acc.metrics.end)

    def set_status(self, entity_id: str, status: Status) -> tuple[Status, Status]:
        """Returns (before, after). Pausing stops metrics from today (the cube's last day
        when the world ends before today) on; resuming restarts them."""
        with self._lock:
            acc, level, entity = self.find(entity_id)
            before: Status = entity.status
            entity.status = status
            entity.updated_at = datetime.now(UTC)
            acc.overrides.append(
                _Override(self._today(acc), "status", level, entity_id, active=status == "active")
            )
            return before, status

    def set_budget(self, entity_id: str, amount_minor: int) -> tuple[int | None, int]:
        """Campaign (or ad-group) daily budget in minor units; returns (before, after)."""
        if amount_minor <= 0:
            raise ValueError("budget must be positive")
        with self._lock:
            acc, level, entity = self.find(entity_id)
            if level == "ad":
                raise ValueError("ads have no budget")
            before = entity.daily_budget_minor
            entity.daily_budget_minor = amount_minor
            entity.updated_at = datetime.now(UTC)
            if level == "campaign" and before:
                acc.overrides.append(
                    _Override(self._today(acc), "budget", "campaign", entity_id, factor=amount_minor / before)
                )
            return before, amount_minor
