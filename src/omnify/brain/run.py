"""One brain run for one client: every module over in-memory frames, and the recommendations.

:func:`run_brain` is pure: the service layer reads the client's daily ad metrics, orders
(or an RFM table) and profile from the database, calls it, stores what comes back and
emits events. A module that cannot run on the data it got (for example a budget plan
the guardrails cannot satisfy) is skipped with a warning rather than failing the run;
programming errors still raise.

Recommendations are normalised across modules: module, kind, a stable ``dedupe_key``
(the same finding on the next run has the same key, so the service updates instead of
duplicating), a title, the target, a confidence in [0, 1], an expected impact in the
account currency, an optional machine-readable ``action`` for one-click apply, and the
evidence (numbers plus a short series for a chart).

Expected impact by module: fatigue, the spend that would be wasted over the next 30
days at the current decline (recent daily spend x CTR fall x 30); anomaly, the money
at stake in the incident; allocation, the expected daily revenue change x 30 with its
band; LTV, 10% of the at-risk customers' repeat value; ideas, the rule's own estimate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import numpy as np

from omnify.brain.allocation import AllocationConfig, allocation_from_pivot
from omnify.brain.anomaly import AnomalyConfig, EntitySeries, detect_anomalies
from omnify.brain.fatigue import FatigueConfig, detect_fatigue
from omnify.brain.ideas import IdeaProvider, generate_ideas
from omnify.brain.ltv import LTVConfig, customer_ltv, rfm_from_orders
from omnify.brain.types import (
    RFM,
    AllocationResult,
    AnomalyIncident,
    BrainInputError,
    CampaignIdea,
    DailyAdMetrics,
    DateLike,
    FatigueResult,
    JsonMixin,
    LTVResult,
    Pivot,
    as_dates,
    as_float,
    as_labels,
    to_date,
    to_day,
)


@dataclass(frozen=True, eq=False)
class Orders:
    """Raw orders (Shopify): one row per order."""

    customer_id: list[str]
    date: Any
    amount: Any

    @classmethod
    def build(cls, *, customer_id: Any, date: Any, amount: Any) -> Orders:
        d = as_dates(date, "order_date")
        n = d.shape[0]
        return cls(as_labels(customer_id, "customer_id", n), d, as_float(amount, "amount", n))


@dataclass(frozen=True)
class BudgetPlan:
    """Constraints of the reallocation; ``total_budget`` None keeps today's total."""

    total_budget: float | None = None
    current: Mapping[str, float] | None = None
    min_budget: Mapping[str, float] = field(default_factory=dict)
    max_budget: Mapping[str, float] = field(default_factory=dict)
    max_daily_change: float = 0.2


@dataclass(frozen=True, eq=False)
class BrainFrames:
    client_id: str
    ads: DailyAdMetrics
    orders: Orders | None = None
    customers: RFM | None = None
    profile: Mapping[str, Any] = field(default_factory=dict)
    audiences: Sequence[Mapping[str, Any]] = ()
    budget: BudgetPlan | None = None
    as_of: DateLike | None = None
    currency: str = ""
    names: Mapping[str, str] = field(default_factory=dict)
    """Display names of ads and campaigns by id: titles and ideas name what a person recognises."""
    calendar: Sequence[DateLike] = ()
    """The client's market days (holidays, retail events; see :mod:`omnify.brain.calendar`)."""


@dataclass(frozen=True)
class BrainConfig:
    fatigue: FatigueConfig = field(default_factory=FatigueConfig)
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)
    allocation: AllocationConfig = field(default_factory=AllocationConfig)
    ltv: LTVConfig = field(default_factory=LTVConfig)
    alert_lookback_days: int = 14
    """Anomaly incidents ending earlier than this are history, not alerts."""
    summary_days: int = 30
    """Window of the performance summary the idea generator reads."""
    max_ideas: int = 5
    impact_days: int = 30


@dataclass(frozen=True)
class Recommendation(JsonMixin):
    module: str
    kind: str
    dedupe_key: str
    title: str
    target: dict[str, str]
    confidence: float
    expected_impact: float | None
    action: dict[str, Any] | None
    evidence: dict[str, Any]


@dataclass(frozen=True)
class BrainResult(JsonMixin):
    client_id: str
    as_of: str | None
    fatigue: list[FatigueResult]
    anomalies: list[AnomalyIncident]
    allocation: AllocationResult | None
    ltv: LTVResult | None
    ideas: list[CampaignIdea]
    recommendations: list[Recommendation]
    timings_ms: dict[str, float]
    warnings: list[str]


def run_brain(
    frames: BrainFrames, config: BrainConfig | None = None, *, idea_provider: IdeaProvider | None = None
) -> BrainResult:
    """Run fatigue, anomalies, allocation, LTV and ideas for one client.

    ``idea_provider`` is the only door to I/O (an LLM endpoint) and is None by default.
    """
    cfg = config or BrainConfig()
    timings: dict[str, float] = {}
    warnings: list[str] = []
    t_start = time.perf_counter()
    ads = frames.ads
    as_of = _as_of(frames, ads)

    t0 = time.perf_counter()
    ad_pv = ads.ad_pivot(as_of) if len(ads) else None
    timings["pivot"] = _ms(t0)

    t0 = time.perf_counter()
    fatigue = detect_fatigue(ads, cfg.fatigue, as_of=as_of, holidays=frames.calendar) if len(ads) else []
    timings["fatigue"] = _ms(t0)

    t0 = time.perf_counter()
    anomalies: list[AnomalyIncident] = []
    series: EntitySeries | None = None
    if ad_pv is not None:
        series = EntitySeries.from_pivot(ad_pv)
        since = None if as_of is None else as_of - np.timedelta64(cfg.alert_lookback_days - 1, "D")
        anomalies = detect_anomalies(series, cfg.anomaly, since=since, holidays=frames.calendar)
    timings["anomaly"] = _ms(t0)

    t0 = time.perf_counter()
    allocation: AllocationResult | None = None
    if ad_pv is not None and series is not None:
        plan = frames.budget or BudgetPlan()
        acfg = replace(cfg.allocation, max_daily_change=plan.max_daily_change)
        try:
            allocation = allocation_from_pivot(
                _with_impressions(series.campaign_pivot(), ad_pv, series),
                total_budget=plan.total_budget,
                current=plan.current,
                min_budget=plan.min_budget,
                max_budget=plan.max_budget,
                config=acfg,
                holidays=frames.calendar,
            )
        except BrainInputError as exc:
            warnings.append(f"allocation skipped: {exc.detail}")
    timings["allocation"] = _ms(t0)

    t0 = time.perf_counter()
    ltv: LTVResult | None = None
    rfm = frames.customers
    if rfm is None and frames.orders is not None:
        rfm = rfm_from_orders(frames.orders.customer_id, frames.orders.date, frames.orders.amount, as_of)
    if rfm is not None and len(rfm):
        ltv = customer_ltv(rfm, cfg.ltv)
        if ltv.method == "naive":
            warnings.append(f"LTV fell back to the naive method: {ltv.reason}")
        elif ltv.method != "bgnbd+gamma-gamma":
            warnings.append(f"LTV: {ltv.reason}")
    timings["ltv"] = _ms(t0)

    t0 = time.perf_counter()
    summary = performance_summary(ads, fatigue, ltv, frames, cfg, as_of)
    ideas = generate_ideas(
        frames.profile,
        summary,
        n=cfg.max_ideas,
        provider=idea_provider,
        as_of=None if as_of is None else to_date(as_of),
    )
    timings["ideas"] = _ms(t0)

    recs = (
        _fatigue_recs(fatigue, cfg)
        + _forecast_recs(fatigue, cfg)
        + _anomaly_recs(anomalies)
        + _allocation_recs(allocation, cfg, as_of)
        + _ltv_recs(ltv, as_of)
        + _idea_recs(ideas)
    )
    timings["total"] = _ms(t_start)
    return BrainResult(
        client_id=frames.client_id,
        as_of=None if as_of is None else str(as_of),
        fatigue=fatigue,
        anomalies=anomalies,
        allocation=allocation,
        ltv=ltv,
        ideas=ideas,
        recommendations=recs,
        timings_ms=timings,
        warnings=warnings,
    )


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 2)


def _as_of(frames: BrainFrames, ads: DailyAdMetrics) -> np.datetime64 | None:
    if frames.as_of is not None:
        return to_day(frames.as_of)
    if len(ads):
        return to_day(ads.date.max())
    return None


def performance_summary(
    ads: DailyAdMetrics,
    fatigue: list[FatigueResult],
    ltv: LTVResult | None,
    frames: BrainFrames,
    cfg: BrainConfig,
    as_of: np.datetime64 | None,
) -> dict[str, Any]:
    """What performs, over the last ``summary_days``: platforms, creatives, audiences, LTV."""
    out: dict[str, Any] = {"currency": frames.currency, "audiences": [dict(a) for a in frames.audiences]}
    if len(ads) and as_of is not None:
        recent = ads.ad_pivot(as_of).window(as_of - np.timedelta64(cfg.summary_days - 1, "D"), as_of)
        by_plat = recent.rollup("platform")
        out["platforms"] = [
            {"platform": p, **{k: round(float(v[i].sum()), 2) for k, v in by_plat.values.items() if k != "freq_x_imps"}}
            for i, p in enumerate(by_plat.keys)
        ]
        totals = {k: v.sum(axis=1) for k, v in recent.values.items()}
        fat = {f.ad_id: f for f in fatigue}
        creatives = []
        for i, ad in enumerate(recent.keys):
            tot = {k: float(v[i]) for k, v in totals.items()}
            if tot["impressions"] <= 0:
                continue
            f = fat.get(ad)
            creatives.append(
                {
                    "ad_id": ad,
                    "name": frames.names.get(ad) or ad,
                    "platform": recent.attrs["platform"][i],
                    "campaign_id": recent.attrs["campaign_id"][i],
                    "spend": round(tot["spend"], 2),
                    "ctr": round(tot["clicks"] / tot["impressions"], 6),
                    "cvr": round(tot["conversions"] / tot["clicks"], 6) if tot["clicks"] else 0.0,
                    "roas": round(tot["revenue"] / tot["spend"], 4) if tot["spend"] else 0.0,
                    "fatigued": bool(f and f.fatigued),
                    "wasted_spend": f.wasted_spend if f else 0.0,
                    "ctr_drop": f.ctr_drop if f else 0.0,
                }
            )
        out["creatives"] = creatives
    if ltv is not None:
        seg = {s.segment: s for s in ltv.segments}
        out["ltv"] = {
            "at_risk_customers": seg["at_risk"].customers if "at_risk" in seg else 0,
            "at_risk_value": seg["at_risk"].historical_value if "at_risk" in seg else 0.0,
            "high_value_customers": seg["high_value"].customers if "high_value" in seg else 0,
            "high_value_value": seg["high_value"].expected_value if "high_value" in seg else 0.0,
        }
    return out


# --------------------------------------------------------------------------- recommendations


def _fatigue_recs(results: list[FatigueResult], cfg: BrainConfig) -> list[Recommendation]:
    recs = []
    for f in results:
        if not f.fatigued:
            continue
        impact = float(f.evidence.get("recent_daily_spend", 0.0)) * f.ctr_drop * cfg.impact_days
        recs.append(
            Recommendation(
                module="fatigue",
                kind="pause_ad",
                dedupe_key=f"fatigue:{f.ad_id}:{f.onset_date}",
                title=f"Creative fatigue: CTR of ad {f.ad_id} is {f.ctr_drop:.0%} below its early level",
                target={"level": "ad", "id": f.ad_id, "campaign_id": f.campaign_id},
                confidence=f.score,
                expected_impact=round(impact, 2),
                action={"type": "pause_ad", "ad_id": f.ad_id},
                evidence={
                    "onset_date": f.onset_date,
                    "detected_date": f.detected_date,
                    "wasted_spend": f.wasted_spend,
                    "ctr_drop": f.ctr_drop,
                    "cvr_drop": f.cvr_drop,
                    **f.evidence,
                },
            )
        )
    return recs


def _forecast_recs(results: list[FatigueResult], cfg: BrainConfig) -> list[Recommendation]:
    """ "Fatigue expected in N days": an ad whose CTR is falling towards the threshold, raised ahead.

    One recommendation per ad (the key has no date), updated while the decline goes on and
    expired by the next run once the trend recovers or the ad crosses (then it is fatigue).
    """
    recs = []
    for f in results:
        fc = f.forecast
        if f.fatigued or not fc:
            continue
        days = max(1, round(float(fc["days_to_threshold"])))
        spend = float(f.evidence.get("recent_daily_spend", 0.0))
        recs.append(
            Recommendation(
                module="fatigue",
                kind="fatigue_forecast",
                dedupe_key=f"fatigue-forecast:{f.ad_id}",
                title=(
                    f"Fatigue expected in {days} days: CTR of ad {f.ad_id} is {float(fc['current_drop']):.0%} "
                    f"below its level and falling about {float(fc['fall_per_day']):.1%} a day"
                ),
                target={"level": "ad", "id": f.ad_id, "campaign_id": f.campaign_id},
                confidence=round(min(0.95, 1.0 - math.exp(-float(fc["slope_z"]) / 3.0)), 4),
                expected_impact=round(spend * float(fc["threshold_drop"]) * cfg.impact_days, 2),
                action=None,
                evidence={
                    "forecast": fc,
                    "state": f.state,
                    "advice": "prepare a refreshed creative now; replace the ad when the warning turns into fatigue",
                    **{k: v for k, v in f.evidence.items() if k != "forecast"},
                },
            )
        )
    return recs


def _anomaly_recs(incidents: list[AnomalyIncident]) -> list[Recommendation]:
    conf = {"high": 0.9, "medium": 0.75, "low": 0.6}
    return [
        Recommendation(
            module="anomaly",
            kind="investigate",
            dedupe_key=inc.key,
            title=(
                f"{inc.primary_metric.upper()} {'spike' if inc.direction == 'up' else 'drop'} on "
                f"{inc.level} {inc.entity_id} ({inc.start_date}"
                + (f" to {inc.end_date})" if inc.end_date != inc.start_date else ")")
            ),
            target={"level": inc.level, "id": inc.entity_id},
            confidence=conf[inc.severity],
            expected_impact=round(inc.money_at_stake, 2),
            action=None,
            evidence={
                "severity": inc.severity,
                "peak_z": inc.peak_z,
                "ongoing": inc.ongoing,
                "metrics": inc.metrics,
                **inc.evidence,
            },
        )
        for inc in incidents
    ]


def _with_impressions(campaigns: Pivot, ads: Pivot, series: EntitySeries | None = None) -> Pivot:
    """The campaign pivot with each campaign's daily impressions, for the delivery fit.

    Allocation fits the shape of the response on delivery (impressions per unit of
    spend), which is far less noisy than revenue. A campaign with many ads rarely has a
    day on which *every* ad reported (the pivot's usable days), yet its cost per
    impression is measured on the ads that did: with ``series`` given, every known day
    gets ``impressions = campaign spend (reported + imputed) x reported impressions /
    reported spend`` and ``delivery_days`` marks those days; without it only the
    complete days carry impressions.
    """
    if "impressions" not in ads.values or "campaign_id" not in ads.attrs:
        return campaigns
    if campaigns.dates.shape != ads.dates.shape or bool((campaigns.dates != ads.dates).any()):
        return campaigns
    index = {cid: k for k, cid in enumerate(campaigns.keys)}
    codes = np.array([index.get(c, -1) for c in ads.attrs["campaign_id"]], dtype=np.int64)
    keep = codes >= 0
    imps = np.zeros(campaigns.shape)
    reported = np.zeros(campaigns.shape)
    np.add.at(imps, codes[keep], np.where(ads.present, ads.values["impressions"], 0.0)[keep])
    np.add.at(reported, codes[keep], np.where(ads.present, ads.values["spend"], 0.0)[keep])
    values = {**campaigns.values, "impressions": imps}
    if series is not None:
        rows = [k for k, lv in enumerate(series.level) if lv == "campaign"]
        known = series.known()[rows]
        order = [index[series.entity_id[k]] for k in rows]
        known_c = np.zeros(campaigns.shape, dtype=bool)
        known_c[order] = known
        spend = campaigns.values["spend"]
        ok = known_c & (reported > 0) & (imps > 0) & (spend > 0)
        values["impressions"] = np.where(ok, spend * imps / np.where(ok, reported, 1.0), 0.0)
        values["delivery_days"] = ok.astype(np.float64)
    return Pivot(campaigns.keys, campaigns.dates, values, campaigns.attrs, campaigns.rows)


def _allocation_recs(
    alloc: AllocationResult | None, cfg: BrainConfig, as_of: np.datetime64 | None
) -> list[Recommendation]:
    """Today's step of the guarded path towards the plan, with the plan and the path as evidence."""
    if alloc is None:
        return []
    changes = {c.campaign_id: c.recommended for c in alloc.campaigns if abs(c.recommended - c.current) >= 0.01}
    if not changes or alloc.expected_revenue_change <= 0 or (alloc.band_low <= 0 and alloc.probability_positive < 0.8):
        return []
    day = "" if as_of is None else str(as_of)
    steps = alloc.evidence.get("steps_to_plan")
    to_go = f"day 1 of {steps}" if steps else f"the first of at least {len(alloc.path)} daily steps"
    return [
        Recommendation(
            module="allocation",
            kind="change_budgets",
            dedupe_key=f"allocation:{day}",
            title=f"Move daily budgets of {len(changes)} campaigns towards the best plan ({to_go})",
            target={"level": "client", "id": "budgets"},
            confidence=alloc.probability_positive,
            expected_impact=round(alloc.expected_revenue_change * cfg.impact_days, 2),
            action={"type": "set_budgets", "budgets": changes},
            evidence={
                "daily_revenue_change": alloc.expected_revenue_change,
                "band": [alloc.band_low, alloc.band_high],
                "band_level": alloc.band_level,
                "first_step_revenue_change": alloc.evidence.get("first_step_revenue_change"),
                "plan": {c.campaign_id: c.planned for c in alloc.campaigns},
                "path": alloc.path,
                "steps_to_plan": steps,
                "guardrail": alloc.evidence.get("guardrail"),
                "campaigns": [c.to_dict() for c in alloc.campaigns],
            },
        )
    ]


def _ltv_recs(ltv: LTVResult | None, as_of: np.datetime64 | None) -> list[Recommendation]:
    if ltv is None:
        return []
    seg = {s.segment: s for s in ltv.segments}
    risk = seg.get("at_risk")
    if risk is None or risk.customers == 0:
        return []
    ids = [c for c, s in zip(ltv.customer_id, ltv.segment, strict=True) if s == "at_risk"]
    return [
        Recommendation(
            module="ltv",
            kind="win_back",
            dedupe_key=f"ltv:at_risk:{_week_of(as_of)}",
            title=f"{risk.customers} repeat customers are likely lapsing",
            target={"level": "segment", "id": "at_risk"},
            confidence=0.6,
            expected_impact=round(0.1 * risk.historical_value, 2),
            action={"type": "export_audience", "segment": "at_risk", "customer_ids": ids[:10000]},
            evidence={"segments": [s.to_dict() for s in ltv.segments], "method": ltv.method},
        )
    ]


def _week_of(as_of: np.datetime64 | None) -> str:
    """Monday of the run's week: one win-back recommendation per week, updated in place."""
    if as_of is None:
        return "undated"
    day = to_date(as_of)
    return (day - timedelta(days=day.weekday())).isoformat()


def _idea_recs(ideas: list[CampaignIdea]) -> list[Recommendation]:
    return [
        Recommendation(
            module="ideas",
            kind="idea",
            dedupe_key=i.key,
            title=i.title,
            target={"level": "client", "id": i.platform or "all"},
            confidence=i.confidence,
            expected_impact=i.expected_impact,
            action=None,
            evidence={"rationale": i.rationale, **i.to_dict()},
        )
        for i in ideas
    ]
