"""Client reports: streamed CSV exports, the branded PDF, and scheduled report e-mails.

* **CSV**: every analytics table of one client (the synced entities and daily rows, the
  daily rollups, the shop's orders and customers), streamed from a server-side cursor in
  batches, so an export of any size uses constant memory and starts at once. Money stays
  in integer minor units with a decimal column beside it.
* **PDF**: the numbers come from the analytics service (the same cached rollups the
  dashboard reads: KPIs with their change against the previous period, per campaign and
  per ad), the actions and recommendations services; :mod:`omnify.reports.pdf` lays them
  out with the client's logo and brand colours from onboarding.
* **Schedules**: weekly or monthly, at a local time in the client's time zone; the beat
  renders the PDF once per schedule and period, stores it, and queues one e-mail per
  recipient with it attached and an unsubscribe link (also as ``List-Unsubscribe``).
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, and_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from omnify.actions import service as actions
from omnify.analytics import service as analytics
from omnify.analytics import synced
from omnify.analytics.kpis import Dimension, Granularity
from omnify.audit import service as audit
from omnify.clients import service as clients
from omnify.clients.models import ClientProfile
from omnify.core.charts import line_chart_png
from omnify.core.context import Actor
from omnify.core.db import Base, Database, bind_tenant, utcnow
from omnify.core.errors import BadRequest, NotFound, UnprocessableEntity
from omnify.core.logging import get_logger
from omnify.core.pagination import PageParams
from omnify.core.security import InvalidToken, create_link_token, read_link_token
from omnify.core.storage import storage_from_settings
from omnify.files import service as files
from omnify.files.sniffing import FileCategory
from omnify.integrations.money import MoneyError, currency_exponent, format_minor
from omnify.notifications.service import queue_email
from omnify.orgs import service as orgs
from omnify.recommendations import service as recommendations
from omnify.recommendations.repository import Filters
from omnify.reports import repository
from omnify.reports.models import Cadence, ReportSchedule
from omnify.reports.pdf import EntityLine, KpiLine, ReportData, render_pdf
from omnify.rules.schedule import zone
from omnify.settings import Settings

log = get_logger(__name__)

#: Exportable tables and the column that dates their rows (for since/until).
EXPORT_TABLES: dict[str, str | None] = {
    "ad_accounts": None, "campaigns": None, "ad_groups": None, "creatives": None, "ads": None,
    "ad_metrics_daily": "day", "analytics_daily": "day", "shop_orders": "ordered_at", "shop_customers": None,
}
#: Internal columns left out of exports.
HIDDEN_COLUMNS = frozenset({"org_id"})
EXPORT_BATCH = 2000
UNSUBSCRIBE = "report-unsubscribe"
MAX_RECIPIENTS = 20


# ------------------------------------------------------------------------------ CSV
def _table(name: str) -> Table:
    if name not in EXPORT_TABLES:
        raise NotFound(f"No exportable table {name!r}; one of {', '.join(sorted(EXPORT_TABLES))}.")
    table = Base.metadata.tables.get(name)
    if table is None:
        raise NotFound(f"The table {name!r} is not part of this build.")
    return table


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), default=str)
    if isinstance(value, bytes):
        return ""
    return value


def _decimal(amount: Any, currency: Any) -> str:
    try:
        return str(Decimal(int(amount)).scaleb(-currency_exponent(str(currency))))
    except (MoneyError, TypeError, ValueError):
        return ""


async def export_header(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, name: str) -> list[str]:
    """Checks the client and table before streaming starts (a 404 cannot come mid-stream)."""
    await clients.get_client(session, org_id, client_id)
    table = _table(name)
    cols = [c.name for c in table.c if c.name not in HIDDEN_COLUMNS]
    money = [c for c in cols if c.endswith("_minor")] if "currency" in cols else []
    return cols + [f"{c.removesuffix('_minor')}_decimal" for c in money]


async def stream_csv(db: Database, org_id: uuid.UUID, client_id: uuid.UUID, name: str, since: date | None,
                     until: date | None) -> AsyncIterator[bytes]:
    """The table's rows for one client as CSV, in batches from a server-side cursor."""
    table = _table(name)
    cols = [c for c in table.c if c.name not in HIDDEN_COLUMNS]
    names = [c.name for c in cols]
    money = [c for c in names if c.endswith("_minor")] if "currency" in names else []
    conds = [table.c.org_id == org_id, table.c.client_id == client_id]
    dated = EXPORT_TABLES[name]
    if dated is not None:
        column = table.c[dated]
        if since is not None:
            conds.append(column >= (since if dated == "day" else datetime.combine(since, time.min, tzinfo=UTC)))
        if until is not None:
            conds.append(column <= (until if dated == "day" else datetime.combine(until, time.max, tzinfo=UTC)))
    order = [table.c[dated]] if dated else []
    order += list(table.primary_key.columns)
    stmt = select(*cols).where(and_(*conds)).order_by(*order).execution_options(yield_per=EXPORT_BATCH)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(names + [f"{c.removesuffix('_minor')}_decimal" for c in money])
    yield buf.getvalue().encode("utf-8")
    async with db.sessionmaker() as session:
        await bind_tenant(session, org_id)
        result = await session.stream(stmt)
        async for partition in result.partitions(EXPORT_BATCH):
            buf.seek(0)
            buf.truncate()
            for row in partition:
                mapping = row._mapping
                writer.writerow([_cell(mapping[n]) for n in names]
                                + [_decimal(mapping[c], mapping["currency"]) for c in money])
            yield buf.getvalue().encode("utf-8")
        await session.rollback()


async def record_export(session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID, name: str,
                        since: date | None, until: date | None) -> None:
    await audit.record(session, org_id, actor, "report.exported", target_type="client", target_id=client_id,
                       changes={"table": name, "since": since.isoformat() if since else None,
                                "until": until.isoformat() if until else None})
    await session.commit()


# ------------------------------------------------------------------------------ PDF data
#: (KPI key, label, whether a rise is good: True, False, or None for neither).
KPI_ROWS: tuple[tuple[str, str, bool | None], ...] = (
    ("spend_minor", "Spend", None), ("revenue_minor", "Revenue", True), ("roas", "ROAS", True),
    ("conversions", "Conversions", True), ("cpa_minor", "Cost per conversion", False), ("clicks", "Clicks", True),
    ("ctr", "Click-through rate", True), ("impressions", "Impressions", True))


def _fmt(key: str, value: Any, currency: str) -> str:
    if value is None:
        return "n/a"
    if key.endswith("_minor"):
        try:
            return format_minor(round(float(value)), currency)
        except MoneyError:
            return f"{value} {currency}"
    if key == "ctr":
        return f"{float(value) * 100:.2f}%"
    if key == "roas":
        return f"{float(value):.2f}"
    if key == "conversions":
        return f"{float(value):,.1f}"
    return f"{int(value):,}"


def _entity_lines(report: dict[str, Any], currency: str) -> tuple[list[EntityLine], list[EntityLine]]:
    rows = []
    for block in report.get("currencies") or []:
        if block["currency"] != currency:
            continue
        rows = [r for r in block.get("rows") or [] if (r.get("spend_minor") or 0) > 0]
    ranked = sorted(rows, key=lambda r: (-(r.get("roas") or 0.0), r.get("label") or ""))

    def line(r: dict[str, Any]) -> EntityLine:
        return EntityLine(name=str(r.get("label") or r.get("key")), platform=str(r.get("platform") or ""),
                          spend=_fmt("spend_minor", r.get("spend_minor"), currency),
                          roas=_fmt("roas", r.get("roas"), currency),
                          conversions=_fmt("conversions", r.get("conversions"), currency))

    top = [line(r) for r in ranked[:5]]
    bottom = [line(r) for r in list(reversed(ranked))[:5] if r not in ranked[:5]]
    return top, bottom


async def _logo(session: AsyncSession, settings: Settings, org_id: uuid.UUID, client_id: uuid.UUID) -> bytes | None:
    logos = await files.list_files(session, org_id, client_id, PageParams(limit=5), FileCategory.LOGO)
    for row in logos:
        if not str(getattr(row, "content_type", "")).startswith(("image/png", "image/jpeg")):
            continue
        try:
            stream = await files.storage_for(settings).get_stream(row.storage_key)
            return b"".join([chunk async for chunk in stream])
        except Exception:  # a missing logo object must not cost the client its report
            log.warning("reports.logo_unreadable", client_id=str(client_id))
    return None


async def _action_lines(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, since: date, until: date,
                        daily: dict[str, dict[str, dict[str, float]]]) -> list[list[str]]:
    """Applied actions of the period with the entity's spend/ROAS a week before vs after."""
    rows = await actions.list_actions(session, org_id, PageParams(limit=200), client_id=client_id)
    out = []
    for action in rows:
        when = action.applied_at
        if when is None or not since <= when.date() <= until or action.status not in ("applied", "undone"):
            continue
        effects = []
        for change in action.changes or []:
            series = daily.get(str(change.get("entity_id")))
            if not series:
                continue
            before = [series[d] for d in series if when.date() - timedelta(days=7) <= date.fromisoformat(d)
                      < when.date()]
            after = [series[d] for d in series if when.date() < date.fromisoformat(d)
                     <= when.date() + timedelta(days=7)]
            sb, sa = sum(x["spend"] for x in before), sum(x["spend"] for x in after)
            rb, ra = sum(x["revenue"] for x in before), sum(x["revenue"] for x in after)
            effects.append(f"spend/day {sb / max(len(before), 1):,.2f} → {sa / max(len(after), 1):,.2f}; "
                           f"ROAS {rb / sb if sb else 0:.2f} → {ra / sa if sa else 0:.2f}")
        out.append([when.date().isoformat(), action.summary, action.requested_by_label or action.requested_by_type,
                    "; ".join(effects) or ("undone" if action.status == "undone" else "no data yet")])
    return out


async def build_report(session: AsyncSession, settings: Settings, org_id: uuid.UUID, client: ClientProfile,
                       since: date, until: date) -> ReportData:
    org = await orgs.get_org(session, org_id)
    q = analytics.Query(since=since, until=until, granularity=Granularity.DAY, group_by=Dimension.NONE,
                        compare=True, top=10)
    totals, _ = await analytics.report(session, settings, org_id, client.id, q)
    by_campaign, _ = await analytics.report(session, settings, org_id, client.id, analytics.Query(
        since=since, until=until, granularity=Granularity.TOTAL, group_by=Dimension.CAMPAIGN, compare=False, top=500))
    by_ad, _ = await analytics.report(session, settings, org_id, client.id, analytics.Query(
        since=since, until=until, granularity=Granularity.TOTAL, group_by=Dimension.AD, compare=False, top=2000))
    data = ReportData(org_name=org.name, client_name=client.company_name, since=since, until=until,
                      brand_colors=list((client.brand or {}).get("colors") or []),
                      generated_at=utcnow().strftime("%Y-%m-%d %H:%M UTC"))
    main_currency = None
    for block in totals.get("currencies") or []:
        cur = block["currency"]
        main_currency = main_currency or cur
        change = block.get("change") or {}
        kpis = [KpiLine(label, _fmt(key, block["totals"].get(key), cur), change.get(key), better)
                for key, label, better in KPI_ROWS]
        days = block.get("rows") or []
        chart = None
        if days:
            exp = 10.0 ** -currency_exponent(cur) if len(cur) == 3 else 0.01
            chart = line_chart_png([d["period"] for d in days], {
                "Spend": [float(d.get("spend_minor") or 0) * exp for d in days],
                "Revenue": [float(d.get("revenue_minor") or 0) * exp for d in days]},
                title="Daily spend and revenue", ylabel=cur,
                color=(data.brand_colors[0] if data.brand_colors else "#1F3A8A"))
        data.currency_blocks.append({"currency": cur, "kpis": kpis, "chart_png": chart})
    if main_currency:
        data.top_campaigns, data.bottom_campaigns = _entity_lines(by_campaign, main_currency)
        data.top_ads, data.bottom_ads = _entity_lines(by_ad, main_currency)
    # Per-entity daily series for the actions' effect (keyed by the platform's id, as actions are).
    ads, camps = await synced.entities(session, org_id, client.id)
    external = {str(r["id"]): str(r["external_id"]) for r in [*ads, *camps]}
    daily: dict[str, dict[str, dict[str, float]]] = {}
    for dim in (Dimension.AD, Dimension.CAMPAIGN):
        rep, _ = await analytics.report(session, settings, org_id, client.id, analytics.Query(
            since=since - timedelta(days=7), until=until, granularity=Granularity.DAY, group_by=dim,
            compare=False, top=5000))
        for block in rep.get("currencies") or []:
            unit = 10.0 ** -currency_exponent(block["currency"]) if len(block["currency"]) == 3 else 0.01
            for r in block.get("rows") or []:
                ext = external.get(str(r.get("key")))
                if ext:
                    daily.setdefault(ext, {})[r["period"]] = {"spend": float(r.get("spend_minor") or 0) * unit,
                                                              "revenue": float(r.get("revenue_minor") or 0) * unit}
    data.actions = await _action_lines(session, org_id, client.id, since, until, daily)
    open_recs = await recommendations.list_recommendations(
        session, org_id, PageParams(limit=20), Filters(client_id=client.id, status="open"))
    data.recommendations = [
        [r.title, r.module.replace("_", " "), f"{r.confidence:.0%}",
         _fmt("impact_minor", r.impact_minor, r.currency or main_currency or "USD") if r.impact_minor else "n/a"]
        for r in open_recs[:20]]
    data.logo = await _logo(session, settings, org_id, client.id)
    return data


async def render_report(session: AsyncSession, settings: Settings, org_id: uuid.UUID, client_id: uuid.UUID,
                        since: date, until: date) -> tuple[str, bytes]:
    """(file name, PDF bytes) of one client's report over ``since..until``."""
    if since > until:
        raise UnprocessableEntity("The period is empty.", errors=[{"loc": ["query", "since"], "field": "since",
                                                                   "msg": "must not be after until"}])
    if (until - since).days > analytics.MAX_RANGE_DAYS:
        raise UnprocessableEntity("The period is too long.", errors=[{"loc": ["query", "until"], "field": "until",
                                                                      "msg": "at most two years"}])
    client = await clients.get_client(session, org_id, client_id)
    data = await build_report(session, settings, org_id, client, since, until)
    slug = "".join(ch if ch.isalnum() else "-" for ch in client.company_name.lower()).strip("-") or "client"
    return f"{slug}-report-{since.isoformat()}-{until.isoformat()}.pdf", render_pdf(data)


# ------------------------------------------------------------------------------ schedules
def _clean_recipients(recipients: Sequence[str]) -> list[str]:
    return sorted({r.strip().lower() for r in recipients if r.strip()})


async def list_schedules(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> Sequence[ReportSchedule]:
    await clients.get_client(session, org_id, client_id)
    return await repository.schedules_of_client(session, org_id, client_id)


async def get_schedule(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID,
                       schedule_id: uuid.UUID) -> ReportSchedule:
    row = await repository.schedule(session, org_id, schedule_id)
    if row is None or row.client_id != client_id:
        raise NotFound("Report schedule not found.")
    return row


async def create_schedule(session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID, *,
                          cadence: Cadence, weekday: int, day_of_month: int, send_time: time,
                          recipients: list[str], enabled: bool) -> ReportSchedule:
    await clients.get_live_client(session, org_id, client_id)
    row = ReportSchedule(id=uuid.uuid4(), org_id=org_id, client_id=client_id, cadence=cadence.value, weekday=weekday,
                         day_of_month=day_of_month, send_time=send_time, recipients=_clean_recipients(recipients),
                         unsubscribed=[], enabled=enabled, created_by_label=actor.label)
    repository.add(session, row)
    await session.flush()
    await audit.record(session, org_id, actor, "report_schedule.created", target_type="report_schedule",
                       target_id=row.id, changes={"client_id": str(client_id), "cadence": cadence.value,
                                                  "recipients": row.recipients})
    await session.commit()
    return row


async def update_schedule(session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID,
                          schedule_id: uuid.UUID, changes: dict[str, Any]) -> ReportSchedule:
    row = await get_schedule(session, org_id, client_id, schedule_id)
    diff: dict[str, Any] = {}
    for key in ("cadence", "weekday", "day_of_month", "send_time", "enabled"):
        if changes.get(key) is not None and changes[key] != getattr(row, key):
            diff[key] = {"from": str(getattr(row, key)), "to": str(changes[key])}
            setattr(row, key, changes[key].value if isinstance(changes[key], Cadence) else changes[key])
    if changes.get("recipients") is not None:
        new = _clean_recipients(changes["recipients"])
        if new != row.recipients:
            added = set(new) - set(row.recipients or [])  # re-adding someone on purpose resubscribes them
            diff["recipients"] = {"from": row.recipients, "to": new}
            row.recipients = new
            row.unsubscribed = [e for e in row.unsubscribed or [] if e not in added]
    if diff:
        await audit.record(session, org_id, actor, "report_schedule.updated", target_type="report_schedule",
                           target_id=row.id, changes=diff)
    await session.commit()
    return row


async def delete_schedule(session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID,
                          schedule_id: uuid.UUID) -> None:
    row = await get_schedule(session, org_id, client_id, schedule_id)
    await repository.delete(session, row)
    await audit.record(session, org_id, actor, "report_schedule.deleted", target_type="report_schedule",
                       target_id=schedule_id, changes={"client_id": str(client_id)})
    await session.commit()


def due_period(row: ReportSchedule, tz: str | None, now: datetime) -> tuple[str, date, date, datetime]:
    """(period key, first day, last day, when it was due) of the latest period due at ``now``."""
    z = zone(tz)
    local = now.astimezone(z)
    if row.cadence == Cadence.WEEKLY.value:
        send_day = local.date() - timedelta(days=(local.weekday() - row.weekday) % 7)
        due = datetime.combine(send_day, row.send_time, tzinfo=z)
        if due > local:
            send_day -= timedelta(days=7)
            due = datetime.combine(send_day, row.send_time, tzinfo=z)
        first = send_day - timedelta(days=7)
        return f"W:{first.isoformat()}", first, send_day - timedelta(days=1), due.astimezone(UTC)
    day = min(max(row.day_of_month, 1), 28)
    send_day = local.date().replace(day=day)
    due = datetime.combine(send_day, row.send_time, tzinfo=z)
    if due > local:
        prev = (send_day.replace(day=1) - timedelta(days=1)).replace(day=day)
        send_day, due = prev, datetime.combine(prev, row.send_time, tzinfo=z)
    last = send_day.replace(day=1) - timedelta(days=1)
    first = last.replace(day=1)
    return f"M:{first:%Y-%m}", first, last, due.astimezone(UTC)


def unsubscribe_url(settings: Settings, row: ReportSchedule, email: str) -> str:
    token = create_link_token(settings, UNSUBSCRIBE, {"org": str(row.org_id), "schedule": str(row.id),
                                                      "email": email}, 366 * 24 * 3600)
    return f"{settings.public_base_url}/api/v1/reports/unsubscribe?token={token}"


async def send_schedule(session: AsyncSession, settings: Settings, row: ReportSchedule, client: ClientProfile,
                        period: tuple[str, date, date, datetime]) -> int:
    """Render, store and queue this period's report for every subscribed recipient; commits."""
    key, first, last, _due = period
    filename, pdf = await render_report(session, settings, row.org_id, client.id, first, last)
    storage_key = f"reports/{row.org_id}/{client.id}/{row.id}/{key.replace(':', '-')}.pdf"

    async def one_chunk() -> AsyncIterator[bytes]:
        yield pdf

    await storage_from_settings(settings).put_stream(storage_key, one_chunk(), content_type="application/pdf")
    org = await orgs.get_org(session, row.org_id)
    label = (f"week of {first:%d %b %Y}" if row.cadence == Cadence.WEEKLY.value else f"{first:%B %Y}")
    queued = 0
    for email in row.recipients:
        if email in (row.unsubscribed or []):
            continue
        await queue_email(session, to=email, template="client_report", org_id=row.org_id,
                          dedupe_key=f"report:{row.id}:{key}:{email}"[:200],
                          context={"client_name": client.company_name, "org_name": org.name, "period_label": label,
                                   "since": first.isoformat(), "until": last.isoformat(),
                                   "unsubscribe_url": unsubscribe_url(settings, row, email),
                                   "attachments": [{"key": storage_key, "filename": filename,
                                                    "content_type": "application/pdf"}]})
        queued += 1
    row.last_period, row.last_sent_at = key, utcnow()
    await audit.record(session, row.org_id, Actor.system("reports"), "report.sent", target_type="report_schedule",
                       target_id=row.id, changes={"period": key, "recipients": queued})
    await session.commit()
    return queued


async def send_due(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *,
                   now: datetime | None = None) -> int:
    """The beat job: every enabled schedule whose current period is due and not yet sent."""
    now = now or utcnow()
    async with sessionmaker() as session:
        org_ids = await audit.org_ids(session)
    total = 0
    for org_id in org_ids:
        async with sessionmaker() as session:
            await bind_tenant(session, org_id)
            for row in await repository.enabled_schedules(session, org_id):
                schedule_id = row.id  # read now: a rollback below expires the row
                try:
                    client = await clients.get_live_client(session, org_id, row.client_id)
                    period = due_period(row, client.timezone, now)
                    if period[0] == row.last_period or period[3] < row.created_at:
                        continue  # sent already, or due before the schedule existed
                    total += await send_schedule(session, settings, row, client, period)
                except (NotFound, clients.ClientArchived):
                    continue  # an archived client gets no reports until it is restored
                except Exception as exc:  # one schedule's failure must not stop the others
                    await session.rollback()
                    log.error("reports.send_failed", schedule_id=str(schedule_id),
                              error=f"{type(exc).__name__}: {exc}"[:300])
    return total


async def unsubscribe(session: AsyncSession, settings: Settings, token: str) -> tuple[str, str]:
    """(e-mail, client name) after removing the address from the schedule; idempotent."""
    try:
        claims = read_link_token(settings, UNSUBSCRIBE, token)
        org_id, schedule_id, email = uuid.UUID(claims["org"]), uuid.UUID(claims["schedule"]), claims["email"]
    except (InvalidToken, KeyError, ValueError):
        raise BadRequest("This unsubscribe link is invalid or has expired.", code="invalid-link") from None
    await bind_tenant(session, org_id)
    row = await repository.schedule(session, org_id, schedule_id)
    if row is None:
        return email, "this client"
    client = await clients.get_client(session, org_id, row.client_id)
    if email not in (row.unsubscribed or []):
        row.unsubscribed = sorted({*(row.unsubscribed or []), email})
        await audit.record(session, org_id, Actor.system("reports"), "report_schedule.unsubscribed",
                           target_type="report_schedule", target_id=row.id, changes={"email": email})
        await session.commit()
    return email, client.company_name
