"""Campaign ideas from the client's profile and what is working, offline and deterministic.

Method
------
A rule set turns numbers into drafts a marketer can act on; each rule looks for one
pattern in the performance summary and states the numbers that triggered it:

* ``shift_platform``: one platform returns clearly more per unit of spend than another
  that still takes a real share of the budget; move part of the budget.
* ``refresh_creative``: a fatigued creative (from :mod:`omnify.brain.fatigue`) is still
  spending; draft a replacement with a new angle, keeping the format that worked.
* ``variants_of_winner`` / ``cross_post_winner``: the best creative by ROAS with
  meaningful spend; build variants, and test it on profile platforms where it is absent.
* ``expand_audience``: the best audience by ROAS, as a lookalike/expansion elsewhere.
* ``win_back`` / ``vip_lookalike``: from the LTV segments, win back at-risk repeat
  customers and seed a lookalike from the high-value tier.
* ``seasonal``: a calendar moment within the next six weeks, tied to a product.
* ``goal``: a format that fits a stated goal (awareness, leads, retention) when the
  account has nothing aimed at it.

Expected impact is a deliberately conservative money figure over the summary period
(for example 15% of a budget moved at the ROAS difference, or 10% of at-risk value
reactivated); rules with no basis for a figure leave it empty and carry a low
confidence. Ideas are ranked by impact, then confidence, then key, and the creative
angle of a refresh is chosen by a stable hash of the ad id: the same inputs always give
the same ideas, which keeps recommendations de-duplicated across runs.

An LLM can draft ideas instead through :class:`IdeaProvider` (see
:mod:`omnify.brain.llm` for the OpenAI-compatible client). It is off by default; when a
provider fails, the deterministic ideas are returned and the failure is noted in their
evidence, so a brain run never depends on a third-party endpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date
from typing import Any, Protocol, runtime_checkable

from omnify.brain.types import CampaignIdea

ANGLES = (
    "customer testimonial",
    "problem / solution demo",
    "before and after",
    "behind the scenes",
    "limited-time offer",
    "user-generated unboxing",
    "founder story",
    "how-to in 15 seconds",
)

# (month, day, name): moments worth a campaign. Fixed-date only, so no locale tables.
CALENDAR = (
    (1, 1, "New Year"),
    (2, 14, "Valentine's Day"),
    (3, 20, "Spring"),
    (5, 10, "Mother's Day"),
    (6, 15, "Father's Day"),
    (6, 21, "Summer"),
    (8, 25, "Back to school"),
    (10, 31, "Halloween"),
    (11, 28, "Black Friday"),
    (12, 1, "Cyber week"),
    (12, 15, "Holiday gifting"),
)

GOAL_FORMATS = {
    "awareness": ("Reach campaign with a 6-second video", "broad audience in the core market"),
    "leads": ("Lead form campaign with an instant form", "people who engaged in the last 30 days"),
    "retention": ("Post-purchase cross-sell sequence", "customers from the last 90 days"),
    "app_installs": ("App install campaign with a gameplay/preview video", "lookalike of active users"),
}


class IdeaProviderError(Exception):
    """A provider could not produce ideas (network, HTTP status, unusable answer)."""


@runtime_checkable
class IdeaProvider(Protocol):
    """Anything that drafts ideas, e.g. an OpenAI-compatible chat endpoint."""

    name: str

    def generate(self, profile: Mapping[str, Any], performance: Mapping[str, Any], n: int) -> list[CampaignIdea]: ...


def _stable_index(key: str, size: int) -> int:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % size


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return 0.0
    return out if out == out else 0.0  # NaN -> 0


def _rows(perf: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    rows = perf.get(key) or []
    return [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, Sequence) else []


def _idea(
    rule: str,
    target: str,
    title: str,
    rationale: str,
    *,
    platform: str | None = None,
    audience: str | None = None,
    angle: str | None = None,
    budget: float | None = None,
    impact: float | None = None,
    confidence: float,
    evidence: dict[str, Any],
) -> CampaignIdea:
    return CampaignIdea(
        key=f"idea:{rule}:{target}",
        title=title,
        rationale=rationale,
        platform=platform,
        audience=audience,
        creative_angle=angle,
        suggested_daily_budget=None if budget is None else round(budget, 2),
        expected_impact=None if impact is None else round(impact, 2),
        confidence=round(confidence, 2),
        source="rules",
        evidence={"rule": rule, **evidence},
    )


def _product(profile: Mapping[str, Any]) -> str:
    products = profile.get("products") or []
    if isinstance(products, Sequence) and not isinstance(products, str) and products:
        return str(products[0])
    return str(profile.get("industry") or "your best seller")


def _platform_ideas(perf: Mapping[str, Any], cur: str) -> list[CampaignIdea]:
    plats = [p for p in _rows(perf, "platforms") if _num(p.get("spend")) > 0]
    if len(plats) < 2:
        return []
    total = sum(_num(p.get("spend")) for p in plats)

    def roas(p: Mapping[str, Any]) -> float:
        return _num(p.get("revenue")) / _num(p.get("spend"))

    ranked = sorted(plats, key=lambda p: (-roas(p), str(p.get("platform"))))
    best, worst = ranked[0], ranked[-1]
    share = _num(worst.get("spend")) / total
    if roas(best) < 1.2 * roas(worst) or share < 0.1:
        return []
    moved = 0.15 * _num(worst.get("spend"))
    impact = moved * (roas(best) - roas(worst))
    return [
        _idea(
            "shift_platform",
            f"{worst.get('platform')}->{best.get('platform')}",
            f"Move 15% of the {worst.get('platform')} budget to {best.get('platform')}",
            f"{best.get('platform')} returns {roas(best):.2f} per {cur} spent against "
            f"{roas(worst):.2f} on {worst.get('platform')}, which still takes {share:.0%} of spend. "
            "Move in steps and watch the marginal return: the average overstates it.",
            platform=str(best.get("platform")),
            impact=impact,
            confidence=0.6,
            evidence={"best": dict(best), "worst": dict(worst), "moved_spend": round(moved, 2)},
        )
    ]


def _creative_ideas(perf: Mapping[str, Any], profile: Mapping[str, Any]) -> list[CampaignIdea]:
    ideas: list[CampaignIdea] = []
    creatives = _rows(perf, "creatives")
    fatigued = sorted(
        (c for c in creatives if c.get("fatigued")),
        key=lambda c: (-_num(c.get("wasted_spend")), str(c.get("ad_id"))),
    )
    for c in fatigued[:3]:
        ad = str(c.get("ad_id"))
        angle = ANGLES[_stable_index(ad, len(ANGLES))]
        name = c.get("name") or ad
        ideas.append(
            _idea(
                "refresh_creative",
                ad,
                f"Refresh '{name}' with a {angle} version",
                f"CTR is {_num(c.get('ctr_drop')):.0%} below this creative's own early level and it "
                f"wasted about {_num(c.get('wasted_spend')):.0f} since the decline began. Keep its "
                f"format and offer, change the hook and first frame.",
                platform=str(c.get("platform") or "") or None,
                angle=angle,
                impact=_num(c.get("wasted_spend")),
                confidence=0.7,
                evidence={"creative": dict(c)},
            )
        )
    total = sum(_num(c.get("spend")) for c in creatives)
    healthy = [
        c
        for c in creatives
        if not c.get("fatigued") and total > 0 and _num(c.get("spend")) >= 0.05 * total and _num(c.get("roas")) > 0
    ]
    if not healthy:
        return ideas
    best = sorted(healthy, key=lambda c: (-_num(c.get("roas")), str(c.get("ad_id"))))[0]
    ad = str(best.get("ad_id"))
    name = best.get("name") or ad
    mean_roas = sum(_num(c.get("roas")) * _num(c.get("spend")) for c in creatives) / total
    if _num(best.get("roas")) > 1.2 * mean_roas:
        ideas.append(
            _idea(
                "variants_of_winner",
                ad,
                f"Build three variants of '{name}'",
                f"It returns {_num(best.get('roas')):.2f} against an account average of {mean_roas:.2f}. "
                "Variants of a proven concept (new first line, new thumbnail, new length) extend "
                "its life before fatigue sets in.",
                platform=str(best.get("platform") or "") or None,
                confidence=0.55,
                evidence={"creative": dict(best), "account_roas": round(mean_roas, 4)},
            )
        )
    running = {str(c.get("platform")) for c in creatives if c.get("ad_id") == best.get("ad_id")}
    for plat in sorted(str(p) for p in (profile.get("platforms") or []) if str(p) not in running):
        ideas.append(
            _idea(
                "cross_post_winner",
                f"{ad}@{plat}",
                f"Test '{name}' on {plat}",
                f"The best creative by ROAS ({_num(best.get('roas')):.2f}) does not run on {plat}, "
                "which the client uses. Adapt the aspect ratio and test with a small budget.",
                platform=plat,
                confidence=0.4,
                evidence={"creative": dict(best)},
            )
        )
    return ideas


def _audience_ideas(perf: Mapping[str, Any], profile: Mapping[str, Any]) -> list[CampaignIdea]:
    auds = [a for a in _rows(perf, "audiences") if _num(a.get("spend")) > 0]
    if not auds:
        return []
    best = sorted(auds, key=lambda a: (-_num(a.get("roas")), str(a.get("name"))))[0]
    others = sorted(str(p) for p in (profile.get("platforms") or []) if str(p) != str(best.get("platform")))
    where = f" on {', '.join(others)}" if others else ""
    return [
        _idea(
            "expand_audience",
            str(best.get("name")),
            f"Lookalike of '{best.get('name')}'{where}",
            f"'{best.get('name')}' has the best ROAS of the audiences ({_num(best.get('roas')):.2f}). "
            "Expand it with a 1-3% lookalike and exclude existing customers.",
            platform=others[0] if others else str(best.get("platform") or "") or None,
            audience=f"lookalike: {best.get('name')}",
            confidence=0.5,
            evidence={"audience": dict(best)},
        )
    ]


def _ltv_ideas(perf: Mapping[str, Any], cur: str) -> list[CampaignIdea]:
    seg = perf.get("ltv")
    if not isinstance(seg, Mapping):
        return []
    ideas: list[CampaignIdea] = []
    at_risk = int(_num(seg.get("at_risk_customers")))
    if at_risk > 0:
        value = _num(seg.get("at_risk_value"))
        ideas.append(
            _idea(
                "win_back",
                "at_risk",
                f"Win back {at_risk} lapsing repeat customers",
                f"They bought repeatedly ({value:.0f} {cur} in repeat orders) but their probability "
                "of still being active fell below 50%. Retarget them with a personal offer; "
                "10% reactivation is assumed in the impact.",
                audience="LTV segment: at_risk",
                impact=0.1 * value,
                confidence=0.5,
                evidence={"ltv": dict(seg)},
            )
        )
    high = int(_num(seg.get("high_value_customers")))
    if high >= 100:
        ideas.append(
            _idea(
                "vip_lookalike",
                "high_value",
                f"Lookalike audience seeded from the top {high} customers by predicted value",
                "Seeding a lookalike with predicted 12-month value, not past spend, targets people "
                "like the customers who will keep buying.",
                audience="lookalike: LTV high_value",
                confidence=0.45,
                evidence={"ltv": dict(seg)},
            )
        )
    return ideas


def _seasonal_ideas(profile: Mapping[str, Any], as_of: date) -> list[CampaignIdea]:
    for year in (as_of.year, as_of.year + 1):
        for month, day, name in CALENDAR:
            moment = date(year, month, day)
            lead = (moment - as_of).days
            if 7 <= lead <= 42:
                product = _product(profile)
                return [
                    _idea(
                        "seasonal",
                        f"{name}:{moment.isoformat()}",
                        f"{name} campaign for {product}",
                        f"{name} is {lead} days away ({moment.isoformat()}). Launch about "
                        f"{max(lead - 7, 0)} days ahead so the delivery has learned before demand peaks.",
                        angle=f"{name} gift/offer angle",
                        confidence=0.35,
                        evidence={"moment": moment.isoformat(), "lead_days": lead},
                    )
                ]
    return []


def _goal_ideas(profile: Mapping[str, Any]) -> list[CampaignIdea]:
    goals = profile.get("goals") or []
    ideas: list[CampaignIdea] = []
    for goal in sorted({str(g).lower() for g in goals} if isinstance(goals, Sequence) else set()):
        if goal in GOAL_FORMATS:
            fmt, audience = GOAL_FORMATS[goal]
            ideas.append(
                _idea(
                    "goal",
                    goal,
                    f"{fmt} for {_product(profile)}",
                    f"The profile lists '{goal}' as a goal; this format is built for it.",
                    audience=audience,
                    confidence=0.3,
                    evidence={"goal": goal},
                )
            )
    return ideas


def rule_based_ideas(
    profile: Mapping[str, Any], performance: Mapping[str, Any], *, n: int = 5, as_of: date | None = None
) -> list[CampaignIdea]:
    """The deterministic generator: same inputs, same ideas, in the same order."""
    cur = str(performance.get("currency") or profile.get("currency") or "")
    today = as_of or date(2000, 1, 1)
    ideas = (
        _platform_ideas(performance, cur)
        + _creative_ideas(performance, profile)
        + _audience_ideas(performance, profile)
        + _ltv_ideas(performance, cur)
        + (_seasonal_ideas(profile, today) if as_of is not None else [])
        + _goal_ideas(profile)
    )
    budget = _num(profile.get("daily_budget"))
    if budget > 0:
        ideas = [
            i
            if i.suggested_daily_budget is not None
            or i.evidence["rule"] not in ("cross_post_winner", "seasonal", "goal")
            else replace(i, suggested_daily_budget=round(0.05 * budget, 2))
            for i in ideas
        ]
    ideas.sort(key=lambda i: (-(i.expected_impact or 0.0), -i.confidence, i.key))
    unique: dict[str, CampaignIdea] = {}
    for idea in ideas:
        unique.setdefault(idea.key, idea)
    return list(unique.values())[: max(n, 0)]


def generate_ideas(
    profile: Mapping[str, Any],
    performance: Mapping[str, Any],
    *,
    n: int = 5,
    provider: IdeaProvider | None = None,
    as_of: date | None = None,
) -> list[CampaignIdea]:
    """Ideas from ``provider`` when one is configured, otherwise (or on failure) from the rules."""
    if provider is not None and n > 0:
        try:
            drafted = provider.generate(profile, performance, n)
        except IdeaProviderError as exc:
            fallback = rule_based_ideas(profile, performance, n=n, as_of=as_of)
            note = {"provider": provider.name, "provider_error": str(exc)[:300]}
            return [replace(i, evidence={**i.evidence, **note}) for i in fallback]
        if drafted:
            return drafted[:n]
    return rule_based_ideas(profile, performance, n=n, as_of=as_of)
