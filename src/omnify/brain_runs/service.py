"""A brain run for one client: load, think, store, record.

Stages and their transactions:

1. Under the organization's write lock, claim the client: a live run of it (its lease,
   ``updated_at`` + ``brain_run_lease_seconds``, renewed by a heartbeat) makes this one
   wait (:class:`RunBusy`, the task retries once that lease lapses); a ``running`` run past
   its lease was left by a dead worker and is closed as failed, ``abandoned: ...``. Record
   the run as ``running`` (committed, so a crash leaves a trace) and start its heartbeat.
2. Load the client's synced rows (:mod:`omnify.brain_runs.loader`) for the look-back
   window into plain arrays.
3. Run :func:`omnify.brain.run.run_brain` once per currency (pure, CPU only; in a worker
   thread so an API process's event loop is not blocked by a large client).
4. In one transaction under the organization's write lock: merge the findings into
   recommendations (de-duplicated by natural key, events emitted) and finish the run
   record with its duration, timings, inputs and outcome.

A failure at any stage marks the run ``failed`` with the error class and message and
re-raises, so a Celery task retries it (the merge is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import anyio.to_thread
import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from omnify.actions import guardrails
from omnify.brain.calendar import CalendarEvent, calendar_days
from omnify.brain.ideas import IdeaProvider
from omnify.brain.run import BrainResult, run_brain
from omnify.brain_runs import loader
from omnify.brain_runs.models import BrainCalendar, BrainRun, RunStatus, RunTrigger
from omnify.brain_runs.schemas import CalendarDayOut, CalendarEventIn, CalendarIn, CalendarOut
from omnify.brain_runs.translate import ClientData, build_frames, config_for, findings_from, summarize_inputs
from omnify.clients import service as clients
from omnify.core.db import bind_tenant, utcnow
from omnify.core.errors import Conflict, NotFound
from omnify.core.pagination import PageParams, keyset
from omnify.orgs import service as orgs
from omnify.recommendations import service as recommendations
from omnify.recommendations.service import Finding
from omnify.settings import Settings

log = structlog.get_logger(__name__)

#: Days of history a run reads: enough for fatigue baselines, response curves and a
#: year-over-year-free anomaly baseline, small enough to load in well under a second.
LOOKBACK_DAYS = 180
#: The lease when no settings are given (see ``Settings.brain_run_lease_seconds``).
DEFAULT_LEASE_SECONDS = 60.0
#: The error of a run closed because its worker died mid-run.
ABANDONED_ERROR = "abandoned: the worker running it stopped before it finished; the run was redone"


class RunBusy(Conflict):
    """Another run of this client is live (its lease is being renewed)."""

    def __init__(self, lease_remaining: float) -> None:
        super().__init__("A brain run of this client is in progress; try again when it finished.")
        #: Seconds until the live run's lease lapses if it stops renewing it.
        self.lease_remaining = lease_remaining


#: Orders for LTV need a longer memory (repeat-purchase gaps are months).
ORDERS_LOOKBACK_DAYS = 730


def idea_provider_for(settings: Settings | None) -> IdeaProvider | None:
    """The LLM idea provider when ``OMNIFY_IDEAS_LLM_BASE_URL`` is set, else ``None``
    (the deterministic generator). Imported lazily: the brain stays free of HTTP."""
    if settings is None or not settings.ideas_llm_base_url:
        return None
    from omnify.brain.llm import OpenAICompatibleIdeaProvider

    key = settings.ideas_llm_api_key.get_secret_value() if settings.ideas_llm_api_key else None
    return OpenAICompatibleIdeaProvider(settings.ideas_llm_base_url, api_key=key, model=settings.ideas_llm_model,
                                        timeout=settings.ideas_llm_timeout_seconds)


def think(data: ClientData, *, as_of: date | None, max_daily_change: float,
          idea_provider: IdeaProvider | None = None) -> tuple[list[Finding], dict[str, Any], list[str]]:
    """The CPU part: run the brain per currency and translate its recommendations."""
    findings: list[Finding] = []
    timings: dict[str, Any] = {}
    warnings: list[str] = []
    for i, currency in enumerate(data.currencies()):
        frames = build_frames(data, currency, as_of=as_of, max_daily_change=max_daily_change)
        if not len(frames.ads) and frames.orders is None:
            continue
        result: BrainResult = run_brain(frames, config_for(primary=i == 0), idea_provider=idea_provider)
        timings[currency] = result.timings_ms
        warnings += [f"{currency}: {w}" for w in result.warnings]
        findings += findings_from(result, data, currency)
    return findings, timings, warnings


async def run_for_client(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, trigger: RunTrigger = RunTrigger.MANUAL,
    *, as_of: date | None = None, settings: Settings | None = None,
) -> BrainRun:
    """Run the brain for one client and store its recommendations; returns the run record.

    ``settings`` switch on the LLM idea provider when configured (see
    :func:`idea_provider_for`); without them the run is fully offline.
    """
    client = await clients.get_live_client(session, org_id, client_id)
    lease = settings.brain_run_lease_seconds if settings is not None else DEFAULT_LEASE_SECONDS
    started = await _claim(session, org_id, client_id, lease)
    t0 = time.perf_counter()
    run = BrainRun(id=uuid.uuid4(), org_id=org_id, client_id=client_id, trigger=trigger.value,
                   status=RunStatus.RUNNING.value, started_at=started, created_at=started, updated_at=started,
                   timings={}, inputs={}, outcome={}, warnings=[])
    session.add(run)
    await session.commit()
    run_id = run.id
    heartbeat = asyncio.create_task(_heartbeat(session, org_id, run_id, lease), name=f"brain-run-lease-{run_id}")
    try:
        org = await orgs.get_org(session, org_id)
        max_change = guardrails.from_org_settings(org.settings).max_budget_change_per_day
        today = as_of or started.date()
        t_load = time.perf_counter()
        data = await loader.load_client_data(
            session, org_id, client_id, since=today - timedelta(days=LOOKBACK_DAYS - 1), until=today,
            orders_since=today - timedelta(days=ORDERS_LOOKBACK_DAYS))
        cal = await calendar_settings(session, org_id, client_id)
        if cal is not None:
            data.country = cal.country
            data.calendar_added = _events(cal.added)
            data.calendar_removed = [date.fromisoformat(d) for d in cal.removed or []]
        data.profile = {"company_name": client.company_name, "industry": client.industry,
                        "website": client.website, "description": client.description,
                        "currency": client.currency, **{k: v for k, v in (client.brand or {}).items()
                                                         if isinstance(v, str | int | float)}}
        load_ms = round((time.perf_counter() - t_load) * 1000, 2)
        await session.rollback()  # end the read transaction before the CPU-bound part
        t_brain = time.perf_counter()
        findings, brain_timings, warnings = await anyio.to_thread.run_sync(
            lambda: think(data, as_of=as_of, max_daily_change=min(max_change, 1.0),
                          idea_provider=idea_provider_for(settings)))
        brain_ms = round((time.perf_counter() - t_brain) * 1000, 2)
        if settings is not None and settings.brain_run_test_pause_seconds:  # test only: a kill lands here
            await asyncio.sleep(settings.brain_run_test_pause_seconds)
        # The store is one short transaction under the organization's write lock: a run
        # that would take this client over waits for that lock, and then sees this run
        # finished. No beat while it writes: on SQLite a beat would wait for our own lock.
        await _stop(heartbeat)
        t_store = time.perf_counter()
        await clients.serialize_org_writes(session, org_id)
        outcome = await recommendations.merge_findings(session, org_id, client_id, findings, run_id)
        run = await _get(session, org_id, run_id)
        run.status = RunStatus.SUCCEEDED.value
        run.inputs = summarize_inputs(data)
        run.outcome = {**outcome.to_dict(), "findings": len(findings)}
        run.warnings = warnings[:50]
        run.finished_at = utcnow()
        run.timings = {"load_ms": load_ms, "brain_ms": brain_ms, "brain": brain_timings,
                       "store_ms": round((time.perf_counter() - t_store) * 1000, 2)}
        run.duration_ms = round((time.perf_counter() - t0) * 1000, 2)
        await session.commit()
    except Exception as exc:
        await _stop(heartbeat)
        await session.rollback()
        failed = await _get(session, org_id, run_id)
        failed.status = RunStatus.FAILED.value
        failed.error = f"{type(exc).__name__}: {exc}"[:500]
        failed.finished_at = utcnow()
        failed.duration_ms = round((time.perf_counter() - t0) * 1000, 2)
        await session.commit()
        log.warning("brain_run.failed", client_id=str(client_id), error=type(exc).__name__)
        raise
    log.info("brain_run.succeeded", client_id=str(client_id), duration_ms=run.duration_ms, **run.outcome)
    return run


async def _claim(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, lease: float) -> datetime:
    """Under the organization's write lock, make sure no live run works on this client
    and close the runs whose worker died; returns the new run's start time (lock held).

    A run is live while its heartbeat renews ``updated_at`` within the lease. A run
    still ``running`` past its lease was left by a worker that died (SIGKILL, OOM, lost
    node): it can never finish, so it is closed as failed with an ``abandoned:`` error.
    With a live run, :class:`RunBusy` says when its lease lapses; the Celery task tries
    again then (the redelivered message of a killed worker meets its own dead run here).
    """
    await clients.serialize_org_writes(session, org_id)
    now = utcnow()
    stmt = select(BrainRun).where(BrainRun.org_id == org_id, BrainRun.client_id == client_id,
                                  BrainRun.status == RunStatus.RUNNING.value)
    running = (await session.scalars(stmt)).all()
    remaining = [lease - (now - _aware(r.updated_at)).total_seconds() for r in running]
    live = [left for left in remaining if left > 0]
    if live:
        await session.rollback()
        raise RunBusy(max(live))
    for run in running:
        run.status = RunStatus.FAILED.value
        run.error = ABANDONED_ERROR
        run.finished_at = now
        log.warning("brain_run.abandoned", client_id=str(client_id), run_id=str(run.id))
    return now


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _heartbeat(session: AsyncSession, org_id: uuid.UUID, run_id: uuid.UUID, lease: float) -> None:
    """Renew the run's lease every third of it while the run works, also during the
    CPU-bound brain (it runs in a thread; the event loop stays free). Own session and
    transaction, so it never commits the run's half-done work."""
    interval = max(lease / 3, 0.2)
    while True:
        await asyncio.sleep(interval)
        try:
            async with AsyncSession(bind=session.bind, expire_on_commit=False) as beat:
                await bind_tenant(beat, org_id)
                await beat.execute(update(BrainRun).where(BrainRun.org_id == org_id, BrainRun.id == run_id,
                                                          BrainRun.status == RunStatus.RUNNING.value)
                                   .values(updated_at=utcnow()))
                await beat.commit()
        except Exception as exc:  # a missed beat is retried; the lease has slack
            log.warning("brain_run.lease_renew_failed", run_id=str(run_id), error=type(exc).__name__)


async def _stop(heartbeat: asyncio.Task[None]) -> None:
    heartbeat.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await heartbeat


async def _get(session: AsyncSession, org_id: uuid.UUID, run_id: uuid.UUID) -> BrainRun:
    row = await session.scalar(select(BrainRun).where(BrainRun.org_id == org_id, BrainRun.id == run_id))
    if row is None:
        raise NotFound("Brain run not found.")
    return row


async def get(session: AsyncSession, org_id: uuid.UUID, run_id: uuid.UUID) -> BrainRun:
    return await _get(session, org_id, run_id)


async def list_runs(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, params: PageParams
) -> Sequence[BrainRun]:
    await clients.get_client(session, org_id, client_id)
    stmt = keyset(select(BrainRun).where(BrainRun.org_id == org_id, BrainRun.client_id == client_id),
                  BrainRun.created_at, BrainRun.id, params)  # type: ignore[arg-type]
    return (await session.scalars(stmt)).all()


def _events(rows: Any) -> list[CalendarEvent]:
    out = []
    for e in rows or []:
        try:
            out.append(CalendarEvent(date.fromisoformat(e["start"]), date.fromisoformat(e["end"]), str(e["name"]),
                                     "custom"))
        except (KeyError, TypeError, ValueError):
            continue  # written through the validated API only; never fail a run on one odd entry
    return out


async def calendar_settings(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID) -> BrainCalendar | None:
    stmt = select(BrainCalendar).where(BrainCalendar.org_id == org_id, BrainCalendar.client_id == client_id)
    row: BrainCalendar | None = await session.scalar(stmt)
    return row


async def get_calendar(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, year: int) -> CalendarOut:
    await clients.get_client(session, org_id, client_id)
    row = await calendar_settings(session, org_id, client_id)
    return _calendar_out(client_id, row, year)


async def put_calendar(
    session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, body: CalendarIn, year: int
) -> CalendarOut:
    await clients.get_live_client(session, org_id, client_id)
    row = await calendar_settings(session, org_id, client_id)
    if row is None:
        row = BrainCalendar(id=uuid.uuid4(), org_id=org_id, client_id=client_id)
        session.add(row)
    row.country = body.country
    row.added = [e.model_dump(mode="json") for e in body.added]
    row.removed = sorted({d.isoformat() for d in body.removed})
    await session.commit()
    return _calendar_out(client_id, row, year)


def _calendar_out(client_id: uuid.UUID, row: BrainCalendar | None, year: int) -> CalendarOut:
    country = row.country if row else None
    added = _events(row.added if row else [])
    removed = [date.fromisoformat(d) for d in (row.removed if row else [])]
    days = calendar_days(country, date(year, 1, 1), date(year, 12, 31), added=added, removed=removed)
    return CalendarOut(
        client_id=client_id, country=country,
        added=[CalendarEventIn(start=e.start, end=e.end, name=e.name) for e in added], removed=removed, year=year,
        days=[CalendarDayOut(date=d, name=n, kind=k) for d, n, k in days],
    )


async def due_clients(session: AsyncSession, org_id: uuid.UUID) -> list[uuid.UUID]:
    """Live clients of one organization that have synced data (the scheduled sweep's work)."""
    return await loader.clients_with_data(session, org_id)
