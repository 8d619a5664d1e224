"""Recommendations inbox, approval queue and actions history.

Apply, approve, reject, dismiss and undo call ``omnify.actions.service`` and
``omnify.recommendations.service`` exactly as the API routes do (same guardrails, approval
threshold, audit entries); the permission gates are the API's (``recommendations:read``,
``actions:apply``, ``actions:approve``), so a viewer's forced POST is refused by the server
even though the page never shows it a button.

Each finding about a change in a metric carries the daily series the brain read around it
(``evidence["chart"]``, stored by the brain run): the page turns it into uPlot's columns
(:func:`chart_data`) in a JSON block that ``charts.js`` draws (the CSP allows no inline script).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from omnify.actions import service as actions
from omnify.actions.models import ActionStatus
from omnify.core.deps import SettingsDep
from omnify.core.pagination import PageParams
from omnify.integrations.money import currency_exponent
from omnify.recommendations import service as recs
from omnify.recommendations.models import RecommendationStatus
from omnify.recommendations.repository import Filters
from omnify.web.deps import Applier, Approver, RecsReader, csrf_guard, org_shell
from omnify.web.forms import form_data
from omnify.web.templating import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_guard)])
BASE = "/orgs/{org_id}"
LIMIT = 100


def _uuid(raw: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None


def _epoch(day: str) -> int:
    return int(datetime.combine(date.fromisoformat(day), time(), tzinfo=UTC).timestamp())


def _pct(value: float | None) -> str:
    return "no data" if value is None else f"{value * 100:.2f} %"


def _mean(values: list[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, int | float)]
    return sum(nums) / len(nums) if nums else None


def chart_data(chart: Any, currency: str | None) -> dict[str, Any] | None:
    """uPlot's columns for one finding's stored evidence chart, or None when it has none.

    Money series go from minor units to amounts of ``currency``; days to epoch seconds.
    ``summary`` says in words what the chart shows (its text alternative)."""
    if not isinstance(chart, dict) or not chart.get("x") or not chart.get("series"):
        return None
    try:
        x = [_epoch(str(d)) for d in chart["x"]]
    except ValueError:
        return None
    scale = 10.0 ** currency_exponent(currency) if currency else 1.0
    series: list[dict[str, Any]] = []
    for s in chart["series"]:
        values = list(s.get("values") or [])
        if len(values) != len(x):
            return None
        unit = str(s.get("unit") or "count")
        if unit == "money":
            values = [None if v is None else round(float(v) / scale, 2) for v in values]
        series.append({"label": str(s.get("label") or ""), "unit": unit, "dash": bool(s.get("dash")),
                       "values": values})
    marks: list[dict[str, Any]] = [{"x": _epoch(str(m["date"])), "label": str(m.get("label") or ""),
                                    "date": str(m["date"])} for m in chart.get("marks") or [] if m.get("date")]
    band = chart.get("band")
    band_x = [_epoch(str(band[0])), _epoch(str(band[1])) + 86_400] if band and len(band) == 2 else None
    days = chart["x"]
    words = [f"{days[0]} to {days[-1]}."]
    if chart.get("metric") == "ctr" and marks:
        onset: int = marks[0]["x"]
        before = _mean([v for t, v in zip(x, series[0]["values"], strict=True) if t < onset])
        recent = _mean(series[0]["values"][-7:])
        words.append(f"The decline starts on {marks[0]['date']}: CTR {_pct(before)} on average before it, "
                     f"{_pct(recent)} over the last 7 days.")
    if band:
        words.append(f"Shaded: {band[0]} to {band[1]}.")
    return {"title": str(chart.get("title") or "Evidence"), "x": x, "series": series, "marks": marks,
            "band": band_x, "currency": currency or "", "summary": " ".join(words)}


@router.get(BASE + "/recommendations")
async def inbox(request: Request, ctx: RecsReader) -> Response:
    """Open findings (or another status) for the org or one client, newest first, with the
    numbers the brain used and the expected impact."""
    raw_status = request.query_params.get("status") or RecommendationStatus.OPEN.value
    status = raw_status if raw_status in {s.value for s in RecommendationStatus} else RecommendationStatus.OPEN.value
    client_id = _uuid(request.query_params.get("client_id"))
    rows = await recs.list_recommendations(ctx.session, ctx.org_id, PageParams(limit=LIMIT),
                                           Filters(client_id=client_id, status=status))
    pending = await actions.list_actions(ctx.session, ctx.org_id, PageParams(limit=LIMIT), client_id=client_id,
                                         status=ActionStatus.PENDING_APPROVAL.value)
    shown = list(rows)[:LIMIT]
    charts = {r.id: c for r in shown if (c := chart_data((r.evidence or {}).get("chart"), r.currency))}
    return render(request, "recommendations/inbox.html", {
        "web": await org_shell(request, ctx, "recommendations"), "recs": shown, "charts": charts,
        "pending": list(pending)[:LIMIT], "status": status, "statuses": [s.value for s in RecommendationStatus],
        "client_id": client_id})


@router.post(BASE + "/recommendations/{recommendation_id}/apply")
async def apply(recommendation_id: uuid.UUID, request: Request, ctx: Applier, settings: SettingsDep) -> Response:
    data = await form_data(request)
    outcome = await actions.apply(ctx.session, settings, ctx.org_id, actions.Caller(ctx.role, ctx.actor),
                                  recommendation_id, note=(data.get("note") or None))
    flash = "action-pending" if outcome.status_code == 202 else "action-applied"
    return RedirectResponse(f"/orgs/{ctx.org_id}/actions?flash={flash}", status_code=303)


@router.post(BASE + "/recommendations/{recommendation_id}/dismiss")
async def dismiss(recommendation_id: uuid.UUID, request: Request, ctx: Applier) -> Response:
    data = await form_data(request)
    reason = (data.get("reason") or "").strip()[:500] or "Dismissed from the inbox."
    await recs.dismiss(ctx.session, ctx.org_id, ctx.actor, recommendation_id, reason)
    return RedirectResponse(f"/orgs/{ctx.org_id}/recommendations?flash=recommendation-dismissed", status_code=303)


@router.get(BASE + "/actions")
async def history(request: Request, ctx: RecsReader) -> Response:
    rows = await actions.list_actions(ctx.session, ctx.org_id, PageParams(limit=LIMIT),
                                      client_id=_uuid(request.query_params.get("client_id")))
    return render(request, "recommendations/actions.html", {
        "web": await org_shell(request, ctx, "actions"), "actions": list(rows)[:LIMIT]})


@router.post(BASE + "/actions/{action_id}/undo")
async def undo(action_id: uuid.UUID, ctx: Applier, settings: SettingsDep) -> Response:
    await actions.undo(ctx.session, settings, ctx.org_id, actions.Caller(ctx.role, ctx.actor), action_id)
    return RedirectResponse(f"/orgs/{ctx.org_id}/actions?flash=action-undone", status_code=303)


@router.post(BASE + "/actions/{action_id}/approve")
async def approve(action_id: uuid.UUID, ctx: Approver, settings: SettingsDep) -> Response:
    await actions.approve(ctx.session, settings, ctx.org_id, actions.Caller(ctx.role, ctx.actor), action_id)
    return RedirectResponse(f"/orgs/{ctx.org_id}/actions?flash=action-applied", status_code=303)


@router.post(BASE + "/actions/{action_id}/reject")
async def reject(action_id: uuid.UUID, request: Request, ctx: Approver) -> Response:
    data = await form_data(request)
    reason = (data.get("reason") or "").strip()[:500] or "Rejected from the approval queue."
    await actions.reject(ctx.session, ctx.org_id, actions.Caller(ctx.role, ctx.actor), action_id, reason)
    return RedirectResponse(f"/orgs/{ctx.org_id}/recommendations?flash=action-rejected", status_code=303)
