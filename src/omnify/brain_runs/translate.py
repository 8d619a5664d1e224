"""From a client's normalized rows to brain frames, and from brain results to stored findings.

Pure (no I/O), so the mapping rules are unit-tested on their own:

* The brain is run **once per currency**: its allocation and impact figures add money
  across campaigns, which is only meaningful within one currency. Ideas are drafted
  once, from the currency with the most spend.
* Money goes in as integer minor units and comes back as minor units: evidence numbers
  are minor units of the finding's ``currency``; expected impact is rounded to an int.
* Ads and campaigns are keyed by **our** ids (UUIDs of the synced rows), so a finding
  refers to rows we own; the one-click ``action`` is then enriched with what the
  platform needs (platform, ad account, the entity's external id, current budget), so
  applying never has to re-read the synced tables.
* Stored dedupe keys are ``<currency>|<brain key>``: the same finding in two currencies
  is two findings.
* A finding about a change in a metric carries the daily series around that change as
  ``evidence["chart"]`` (:func:`evidence_chart`): the days the brain read, stored with the
  finding, so the inbox draws what the decision was made on without querying again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from omnify.brain.calendar import CalendarEvent, client_calendar
from omnify.brain.run import BrainConfig, BrainFrames, BrainResult, BudgetPlan, Orders
from omnify.brain.run import Recommendation as BrainRecommendation
from omnify.brain.types import DailyAdMetrics
from omnify.recommendations.service import Finding


@dataclass(frozen=True, slots=True)
class AdInfo:
    key: str  # our id
    external_id: str
    name: str | None
    platform: str
    account_external_id: str
    campaign_key: str
    status: str | None = None
    account_name: str | None = None


@dataclass(frozen=True, slots=True)
class CampaignInfo:
    key: str
    external_id: str
    name: str | None
    platform: str
    account_external_id: str
    daily_budget_minor: int | None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class AdDay:
    ad_key: str
    day: date
    currency: str
    spend_minor: int
    impressions: int
    clicks: int
    conversions: float
    revenue_minor: int
    frequency: float | None = None


@dataclass(frozen=True, slots=True)
class OrderRow:
    customer_key: str
    day: date
    total_minor: int
    currency: str


@dataclass(slots=True)
class ClientData:
    client_id: str
    ads: dict[str, AdInfo] = field(default_factory=dict)
    campaigns: dict[str, CampaignInfo] = field(default_factory=dict)
    days: list[AdDay] = field(default_factory=list)
    orders: list[OrderRow] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)
    country: str | None = None
    """ISO country whose holidays and retail events are the client's market days."""
    calendar_added: list[CalendarEvent] = field(default_factory=list)
    calendar_removed: list[date] = field(default_factory=list)

    def currencies(self) -> list[str]:
        """Currencies with data, the one with the most ad spend first."""
        spend: dict[str, int] = {}
        for d in self.days:
            spend[d.currency.upper()] = spend.get(d.currency.upper(), 0) + d.spend_minor
        for o in self.orders:
            spend.setdefault(o.currency.upper(), 0)
        return sorted(spend, key=lambda c: (-spend[c], c))


def build_frames(
    data: ClientData, currency: str, *, as_of: date | None, max_daily_change: float,
) -> BrainFrames:
    days = [d for d in data.days if d.currency.upper() == currency and d.ad_key in data.ads]
    ads = data.ads
    has_freq = bool(days) and all(d.frequency is not None for d in days)
    frame = DailyAdMetrics.build(
        ad_id=[d.ad_key for d in days],
        date=[d.day for d in days],
        impressions=[d.impressions for d in days],
        clicks=[min(d.clicks, d.impressions) for d in days],
        conversions=[max(d.conversions, 0.0) for d in days],
        spend=[d.spend_minor for d in days],
        revenue=[d.revenue_minor for d in days],
        campaign_id=[ads[d.ad_key].campaign_key for d in days],
        account_id=[ads[d.ad_key].account_external_id for d in days],
        platform=[ads[d.ad_key].platform for d in days],
        frequency=[d.frequency or 0.0 for d in days] if has_freq else None,
    )
    in_frame = {ads[d.ad_key].campaign_key for d in days}
    budgets = {k: float(c.daily_budget_minor) for k, c in data.campaigns.items()
               if k in in_frame and c.daily_budget_minor and (c.status or "active") == "active"}
    orders = [o for o in data.orders if o.currency.upper() == currency]
    calendar: list[date] = []
    if days:
        first, last = min(d.day for d in days), max(d.day for d in days)
        calendar = client_calendar(data.country, first, last, added=data.calendar_added,
                                   removed=data.calendar_removed)
    return BrainFrames(
        client_id=data.client_id,
        ads=frame,
        orders=Orders.build(customer_id=[o.customer_key for o in orders], date=[o.day for o in orders],
                            amount=[o.total_minor for o in orders]) if orders else None,
        profile=data.profile,
        budget=BudgetPlan(current=budgets or None, max_daily_change=max_daily_change),
        as_of=as_of,
        currency=currency,
        calendar=calendar,
        names={**{k: a.name for k, a in ads.items() if a.name},
               **{k: c.name for k, c in data.campaigns.items() if c.name}},
    )


def config_for(primary: bool) -> BrainConfig:
    return BrainConfig() if primary else BrainConfig(max_ideas=0)


def _impact(value: float | None) -> int | None:
    return None if value is None else round(value)


def _pause_action(rec: BrainRecommendation, data: ClientData) -> dict[str, Any] | None:
    ad = data.ads.get(str((rec.action or {}).get("ad_id", "")))
    if ad is None:
        return None
    spend = rec.evidence.get("recent_daily_spend")
    return {"type": "pause_ad", "platform": ad.platform, "account_id": ad.account_external_id,
            "entity_id": ad.external_id, "name": ad.name, "ad_id": ad.key,
            "daily_spend_minor": round(float(spend)) if isinstance(spend, int | float) else None}


def _budget_action(rec: BrainRecommendation, data: ClientData, currency: str) -> dict[str, Any] | None:
    budgets = []
    for key, value in ((rec.action or {}).get("budgets") or {}).items():
        camp = data.campaigns.get(str(key))
        if camp is None or not camp.daily_budget_minor:
            return None  # cannot apply a plan with a campaign we cannot address
        budgets.append({"platform": camp.platform, "account_id": camp.account_external_id, "level": "campaign",
                        "entity_id": camp.external_id, "name": camp.name, "campaign_id": camp.key,
                        "current_minor": camp.daily_budget_minor, "recommended_minor": round(float(value))})
    return {"type": "set_budgets", "currency": currency, "budgets": budgets} if budgets else None


def _target(rec: BrainRecommendation, data: ClientData) -> tuple[dict[str, Any], str | None]:
    target = {k: str(v) for k, v in rec.target.items()}
    level, key = target.get("level"), target.get("id", "")
    ad = data.ads.get(key) if level == "ad" else None
    camp = data.campaigns.get(key) if level == "campaign" else None
    entity: AdInfo | CampaignInfo | None = ad or camp
    if entity is not None:
        target.update(name=entity.name or "", platform=entity.platform, external_id=entity.external_id,
                      account_id=entity.account_external_id)
        return target, entity.platform
    if level == "client" and key in {a.platform for a in data.ads.values()}:
        return target, key
    return target, None


def _title(rec: BrainRecommendation, data: ClientData) -> str:
    """Brain titles name our ids; show the ad's or campaign's name instead."""
    title = rec.title
    key = str(rec.target.get("id", ""))
    entity = data.ads.get(key) or data.campaigns.get(key)
    if entity is not None and entity.name:
        title = title.replace(key, f"'{entity.name}'")
    elif rec.target.get("level") == "account" and key:
        # Account-level findings carry the platform's account id; people know the account by name.
        name = next((a.account_name for a in data.ads.values()
                     if a.account_external_id == key and a.account_name), None)
        if name:
            title = title.replace(key, f"'{name}' ({key})")
    return title[:300]


#: Days of a fatigued ad's CTR shown before its onset (the level it held) in the evidence chart.
CHART_DAYS_BEFORE = 42
#: Days around an anomaly when the brain's own context window is not in its evidence.
CHART_ANOMALY_DAYS = 28


def _iso(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _daily(data: ClientData, currency: str, keep: set[str]) -> dict[date, list[float]]:
    """Per day: [spend, impressions, clicks, conversions] summed over the ads in ``keep``."""
    out: dict[date, list[float]] = {}
    for d in data.days:
        if d.ad_key in keep and d.currency.upper() == currency:
            row = out.setdefault(d.day, [0.0, 0.0, 0.0, 0.0])
            row[0] += d.spend_minor
            row[1] += d.impressions
            row[2] += d.clicks
            row[3] += d.conversions
    return out


def _fatigue_chart(rec: BrainRecommendation, data: ClientData, currency: str) -> dict[str, Any] | None:
    """Daily CTR of the ad from some weeks before the onset to the last day read, with the
    level it held before (the brain's baseline), the onset and its 95 % interval."""
    ad = str(rec.target.get("id", ""))
    days = _daily(data, currency, {ad})
    if not days:
        return None
    ev = rec.evidence
    interval = [_iso(v) for v in (ev.get("onset_interval") or [])][:2]
    onset = _iso(ev.get("onset_date")) or (interval[0] if interval else None)
    last = max(days)
    first = max(min(days), (onset or last) - timedelta(days=CHART_DAYS_BEFORE))
    x = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    ctr = [round(days[d][2] / days[d][1], 6) if d in days and days[d][1] > 0 else None for d in x]
    series: list[dict[str, Any]] = [{"label": "CTR", "unit": "percent", "values": ctr}]
    baseline = ev.get("baseline_ctr")
    if isinstance(baseline, int | float) and baseline > 0:
        series.append({"label": "Level before the decline", "unit": "percent", "dash": True,
                       "values": [round(float(baseline), 6)] * len(x)})
    marks = [{"date": onset.isoformat(), "label": "decline starts"}] if onset else []
    detected = _iso(ev.get("detected_date"))
    if detected and first <= detected <= last:
        marks.append({"date": detected.isoformat(), "label": "flagged"})
    band = [v.isoformat() for v in interval if v is not None] if len(interval) == 2 and all(interval) else None
    return {"metric": "ctr", "title": "Daily click-through rate of the ad", "x": [d.isoformat() for d in x],
            "series": series, "marks": marks, "band": band}


def _anomaly_chart(rec: BrainRecommendation, data: ClientData, currency: str) -> dict[str, Any] | None:
    """Daily spend and conversions of the campaign or account around the incident, with
    what the brain expected of the metric that moved and the anomalous days shaded."""
    level, key = rec.target.get("level"), str(rec.target.get("id", ""))
    if level == "campaign":
        keep = {k for k, a in data.ads.items() if a.campaign_key == key}
    elif level == "account":
        keep = {k for k, a in data.ads.items() if a.account_external_id == key}
    else:
        return None
    days = _daily(data, currency, keep)
    start = _iso(rec.dedupe_key.rsplit(":", 1)[-1])  # anomaly:<level>:<entity>:<first day>
    if not days or start is None:
        return None
    length = rec.evidence.get("days")
    end = start + timedelta(days=int(length) - 1) if isinstance(length, int) and length > 0 else start
    raw = rec.evidence.get("series")
    context: dict[str, Any] = raw if isinstance(raw, dict) else {}
    ctx_days = [d for d in (_iso(v) for v in context.get("dates") or []) if d]
    first = min(ctx_days) if ctx_days else max(min(days), start - timedelta(days=CHART_ANOMALY_DAYS))
    last = max(ctx_days) if ctx_days else min(max(days), end + timedelta(days=7))
    x = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    series: list[dict[str, Any]] = [
        {"label": "Spend", "unit": "money", "values": [days[d][0] if d in days else 0 for d in x]},
        {"label": "Conversions", "unit": "count", "values": [round(days[d][3], 2) if d in days else 0 for d in x]},
    ]
    metric = str(context.get("metric") or "")
    expected = context.get("expected") or []
    if metric in ("spend", "conversions") and ctx_days and len(expected) == len(ctx_days):
        by_day = dict(zip(ctx_days, expected, strict=True))
        series.append({"label": f"Expected {metric}", "unit": "money" if metric == "spend" else "count",
                       "dash": True, "values": [by_day.get(d) for d in x]})
    return {"metric": metric or "spend", "title": f"Daily spend and conversions of the {level}",
            "x": [d.isoformat() for d in x], "series": series, "marks": [],
            "band": [start.isoformat(), end.isoformat()]}


def evidence_chart(rec: BrainRecommendation, data: ClientData, currency: str) -> dict[str, Any] | None:
    """The daily series of the metric around the change a finding is about, or None.

    Fatigue (and its forecast): the ad's daily CTR; an anomaly: its entity's daily spend and
    conversions. Other modules (budgets, LTV, ideas) are about no single change in a metric.
    Money stays in minor units of ``currency``, as in the rest of the evidence.
    """
    if rec.module == "fatigue" and rec.target.get("level") == "ad":
        return _fatigue_chart(rec, data, currency)
    if rec.module == "anomaly":
        return _anomaly_chart(rec, data, currency)
    return None


def findings_from(result: BrainResult, data: ClientData, currency: str) -> list[Finding]:
    out: list[Finding] = []
    for rec in result.recommendations:
        action: dict[str, Any] | None = None
        if rec.action is not None:
            if rec.action.get("type") == "pause_ad":
                action = _pause_action(rec, data)
            elif rec.action.get("type") == "set_budgets":
                action = _budget_action(rec, data, currency)
            # Other action types (e.g. export_audience) have no platform write yet: advice only.
        target, platform = _target(rec, data)
        if action is not None and platform is None:
            platform = str(action.get("platform")) if action.get("platform") else None
        evidence = rec.evidence
        chart = evidence_chart(rec, data, currency)
        if chart is not None:
            evidence = {**evidence, "chart": chart}
        out.append(Finding(
            module=rec.module, kind=rec.kind, dedupe_key=f"{currency}|{rec.dedupe_key}"[:255],
            title=_title(rec, data), target=target, platform=platform,
            confidence=float(min(max(rec.confidence, 0.0), 1.0)), impact_minor=_impact(rec.expected_impact),
            currency=currency, action=action, evidence=evidence,
        ))
    return out


def summarize_inputs(data: ClientData) -> dict[str, Any]:
    return {"metric_rows": len(data.days), "ads": len(data.ads), "campaigns": len(data.campaigns),
            "orders": len(data.orders), "currencies": data.currencies()}


def merge_timings(timings: dict[str, Any], currency: str, brain: dict[str, float]) -> None:
    timings.setdefault("brain_ms", {})[currency] = brain


__all__: Sequence[str] = ["AdDay", "AdInfo", "CampaignInfo", "ClientData", "OrderRow", "build_frames",
                          "config_for", "evidence_chart", "findings_from", "summarize_inputs"]
