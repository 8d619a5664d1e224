"""Platform data sync: backfill, then incremental runs by cursor, with idempotent upserts.

One run syncs one connection, under its lease (at most one run per connection; see
:func:`omnify.connections.service.acquire_sync_lock`), which a heartbeat renews while the run
lives, so a dead worker's lease lapses within ``sync_lock_lease_seconds`` and the redelivered
task takes over (docs/operations.md, "Sync leases"). It is a list of *steps* - per ad
account: campaigns, ad groups, ads (+ creatives), then daily metrics in date windows;
per shop: customers, then orders - each committed on its own, with its cursor, so a run
that dies half-way resumes where it stopped and progress can be shown while it runs.

Cursors and windows: the daily-metrics cursor is the last day read. The next run starts
at ``min(cursor + 1, today - lookback + 1)``: the look-back window (28 days by default) is
read again every time because platforms restate recent days (late conversions,
attribution). An account without a cursor is backfilled (``backfill_days``, 365 by
default). Entity streams are small and are read whole every run. Shopify streams use
``updated_at`` cursors with a small overlap.

Failures: a rate limit the connector would not wait out in-process (``RateLimited``)
ends the run as ``deferred`` and is raised again so the task is retried after
``Retry-After``; a refused authorization marks the connection ``needs_reauth``; anything
else (platform errors after the connector's own retries, an open circuit breaker) ends
the run as ``failed`` with a readable error, emits ``sync.failed`` and pushes the
connection's next attempt back exponentially.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from omnify import analytics
from omnify.brain_runs.models import RunTrigger
from omnify.clients import service as clients
from omnify.connections import service as connections
from omnify.connections.config import SyncConfig
from omnify.connections.connectors import ConnectorFactory
from omnify.connections.models import BackfillStatus, Connection, ConnectionStatus
from omnify.connections.service import LiveConnection
from omnify.core.context import Actor
from omnify.core.db import Database, bind_tenant, utcnow
from omnify.core.errors import AppError, Conflict, NotFound
from omnify.core.pagination import PageParams
from omnify.credentials.service import CredentialUnreadable
from omnify.events import service as events
from omnify.integrations.base import (
    AdAccount,
    AuthExpired,
    AuthRevoked,
    CircuitOpen,
    ConnectorError,
    DailyMetric,
    Level,
    PermissionDenied,
    Platform,
    RateLimited,
    TokenSet,
    TransientError,
)
from omnify.notifications import dispatch
from omnify.sync import metrics, repository
from omnify.sync.models import (
    RunMode,
    RunStatus,
    Stream,
    SyncAd,
    SyncAdAccount,
    SyncAdGroup,
    SyncCampaign,
    SyncCreative,
    SyncRun,
    SyncShopCustomer,
    SyncShopOrder,
)

log = structlog.get_logger(__name__)

SYNC_TASK = connections.SYNC_TASK
#: omnify.brain_runs.tasks.RUN_CLIENT_TASK, named here so the sync does not import Celery tasks.
BRAIN_RUN_TASK = "omnify.brain.run_client"
ACTOR = Actor.system("sync")


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


T_ACCOUNTS, T_CAMPAIGNS, T_AD_GROUPS = _table(SyncAdAccount), _table(SyncCampaign), _table(SyncAdGroup)
T_CREATIVES, T_ADS = _table(SyncCreative), _table(SyncAd)
T_CUSTOMERS, T_ORDERS = _table(SyncShopCustomer), _table(SyncShopOrder)

ENTITY_KEY = ("connection_id", "external_id")
COMPARE: dict[str, tuple[str, ...]] = {
    "ad_accounts": ("name", "currency", "timezone", "status"),
    "campaigns": ("ad_account_id", "name", "status", "objective", "daily_budget_minor", "currency",
                  "platform_updated_at"),
    "ad_groups": ("ad_account_id", "campaign_id", "name", "status", "daily_budget_minor", "currency", "targeting",
                  "platform_updated_at"),
    "creatives": ("ad_account_id", "name", "title", "body", "image_url", "video_id", "call_to_action"),
    "ads": ("ad_account_id", "campaign_id", "ad_group_id", "creative_id", "name", "status", "platform_updated_at"),
    "shop_customers": ("email", "first_name", "last_name", "orders_count", "total_spent_minor", "currency",
                       "customer_created_at", "platform_updated_at"),
    "shop_orders": ("customer_external_id", "customer_id", "name", "total_minor", "currency", "financial_status",
                    "ordered_at", "platform_updated_at", "line_items"),
}


class SyncRunNotFound(NotFound):
    code, title = "sync-run-not-found", "Sync run not found"


class LeaseLost(Exception):
    """Another run took the connection over (this one stalled past its lease)."""


@dataclass
class RunResult:
    status: str  # succeeded | failed | deferred | skipped
    run_id: uuid.UUID | None = None
    mode: str | None = None
    rows_read: int = 0
    rows_written: int = 0
    error_code: str | None = None
    error: str | None = None
    reason: str | None = None
    #: Skipped because another run holds the connection: seconds until that run's lease
    #: lapses (the task tries again then, so a dead worker's run is resumed, not lost).
    locked_for: float | None = None


@dataclass
class _Step:
    stream: str
    account: str
    run: Callable[[], Awaitable[tuple[int, int]]]  # -> (read, written)


@dataclass
class _Run:
    """Everything one run carries between steps."""

    session: AsyncSession
    db: Database
    factory: ConnectorFactory
    cfg: SyncConfig
    org_id: uuid.UUID
    connection_id: uuid.UUID
    client_id: uuid.UUID
    platform: Platform
    lock: str
    today: date
    live: LiveConnection | None = None
    run_id: uuid.UUID | None = None
    backfill: bool = False
    read: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    accounts: dict[str, AdAccount] = field(default_factory=dict)
    account_ids: dict[str, uuid.UUID] = field(default_factory=dict)
    #: per account: ad external id -> (ad id, campaign id, ad group id)
    ads: dict[str, dict[str, tuple[uuid.UUID, uuid.UUID | None, uuid.UUID | None]]] = field(default_factory=dict)
    campaigns: dict[str, dict[str, uuid.UUID]] = field(default_factory=dict)
    ad_groups: dict[str, dict[str, uuid.UUID]] = field(default_factory=dict)

    def base(self) -> dict[str, Any]:
        return {"org_id": self.org_id, "client_id": self.client_id, "connection_id": self.connection_id,
                "platform": self.platform.value}

    def count(self, stream: str, read: int, written: int) -> None:
        self.read[stream] = self.read.get(stream, 0) + read
        self.written[stream] = self.written.get(stream, 0) + written
        if read:
            metrics.ROWS.labels(platform=self.platform.value, stream=stream).inc(read)

    async def upsert(self, table: Table, rows: Sequence[dict[str, Any]], key: Sequence[str] = ENTITY_KEY) -> int:
        unique = list({tuple(r[k] for k in key): r for r in rows}.values())  # one row per key per statement
        return await repository.upsert(self.session, table, unique, key=key, compare=COMPARE[table.name],
                                       batch_size=self.cfg.batch_size)


# ------------------------------------------------------------------------------ reads
async def list_runs(session: AsyncSession, org_id: uuid.UUID, client_id: uuid.UUID, platform: Platform,
                    params: PageParams) -> Sequence[SyncRun]:
    conn = await connections.get_connection(session, org_id, client_id, platform)
    return await repository.list_runs(session, org_id, conn.id, params)


async def request_sync(session: AsyncSession, org_id: uuid.UUID, actor: Actor, client_id: uuid.UUID,
                       platform: Platform) -> Connection:
    """Ask for a run now: the task is nudged after commit, and ``next_sync_at`` makes the
    beat pick it up even if the nudge is lost."""
    await clients.get_live_client(session, org_id, client_id)
    conn = await connections.get_connection(session, org_id, client_id, platform)
    if conn.status != ConnectionStatus.CONNECTED.value:
        raise Conflict(f"The connection is {conn.status}; fix it before syncing.", code="not-connected")
    if not conn.selected_account_ids:
        raise Conflict("Pick the accounts to sync first (PUT .../accounts).", code="no-accounts-selected")
    conn.next_sync_at = utcnow()
    from omnify.audit import service as audit  # audit of a manual trigger only

    await audit.record(session, org_id, actor, "sync.requested", target_type="connection", target_id=conn.id,
                       changes={"platform": platform.value})
    dispatch.enqueue_after_commit(session, SYNC_TASK, {"org_id": str(org_id), "connection_id": str(conn.id),
                                                       "trigger": "manual"})
    await session.commit()
    return conn


# ------------------------------------------------------------------------------ run
async def run_connection(
    db: Database, factory: ConnectorFactory, org_id: uuid.UUID, connection_id: uuid.UUID, *,
    trigger: str = "schedule", today: date | None = None, config: SyncConfig | None = None,
) -> RunResult:
    """Sync one connection now (the task body). Never two at once for one connection.

    ``config`` overrides the settings' sync knobs for this run (the demo's shorter backfill).
    """
    cfg = config or SyncConfig.from_settings(factory.settings)
    async with db.sessionmaker() as session:
        await bind_tenant(session, org_id)
        try:
            conn = await connections.get_by_id(session, org_id, connection_id)
        except NotFound:
            return RunResult(status="skipped", reason="connection not found")
        if conn.status != ConnectionStatus.CONNECTED.value:
            return RunResult(status="skipped", reason=f"connection is {conn.status}")
        if not conn.selected_account_ids:
            return RunResult(status="skipped", reason="no account selected")
        client = await clients.get_client(session, org_id, conn.client_id)
        if client.archived_at is not None:
            return RunResult(status="skipped", reason="the client is archived")
        lock = connections.new_lock_token()
        if not await connections.acquire_sync_lock(session, org_id, connection_id, lock, cfg.lock_lease_seconds):
            remaining = await connections.sync_lock_remaining(session, org_id, connection_id)
            await session.rollback()
            log.info("sync.skipped_locked", connection_id=str(connection_id), lease_remaining_s=round(remaining, 3))
            return RunResult(status="skipped", reason="another sync of this connection is running",
                             locked_for=remaining)
        ctx = _Run(session=session, db=db, factory=factory, cfg=cfg, org_id=org_id, connection_id=connection_id,
                   client_id=conn.client_id, platform=Platform(conn.platform), lock=lock,
                   today=today or utcnow().date())
        # SQLite (the embedded default) has one writer at a time, and a step's transaction
        # that read before another connection committed cannot write afterwards ("database is
        # locked" at once, whatever the busy timeout): a heartbeat committing in the middle of
        # a step would fail the step. There the lease is renewed between steps only.
        heartbeat = (asyncio.create_task(_heartbeat(ctx), name=f"sync-lease-{connection_id}")
                     if db.dialect != "sqlite" else None)
        try:
            return await _run_locked(ctx, conn, trigger)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
            async with db.sessionmaker() as release:
                await bind_tenant(release, org_id)
                await connections.release_sync_lock(release, org_id, connection_id, lock)


async def _heartbeat(ctx: _Run) -> None:
    """Keep the lease alive while the run works, every third of the lease, also in the
    middle of a long step (a slow platform, a big window): the lease can then be short,
    and a worker that dies stops renewing it, so the connection is free again within one
    lease. Own session, own transaction: it never commits a step's half-written rows.
    A lapsed lease (another run took over) is noticed by the step's own renewal, which
    stops the run; a database hiccup here is logged and tried again next beat."""
    interval = max(ctx.cfg.lock_lease_seconds / 3, 0.2)
    while True:
        await asyncio.sleep(interval)
        try:
            async with ctx.db.sessionmaker() as session:
                await bind_tenant(session, ctx.org_id)
                held = await connections.renew_sync_lock(session, ctx.org_id, ctx.connection_id, ctx.lock,
                                                         ctx.cfg.lock_lease_seconds)
                await session.commit()
        except Exception as exc:  # a missed beat is retried; the lease has slack
            log.warning("sync.lease_renew_failed", connection_id=str(ctx.connection_id), error=type(exc).__name__)
            continue
        if not held:
            log.warning("sync.lease_lost", connection_id=str(ctx.connection_id))
            return


async def _run_locked(ctx: _Run, conn: Connection, trigger: str) -> RunResult:
    session = ctx.session
    now = utcnow()
    await _close_abandoned_runs(ctx, now)
    cursors = await repository.cursors(session, ctx.org_id, ctx.connection_id)
    accounts = [str(a) for a in conn.selected_account_ids]
    streams = (Stream.SHOP_CUSTOMERS, Stream.SHOP_ORDERS) if ctx.platform == Platform.SHOPIFY \
        else (Stream.DAILY_METRICS,)
    # A backfill until every account has its cursors *and* the last backfill finished: a
    # backfill that failed half-way resumes from its cursors and still reports progress.
    ctx.backfill = (any((a, s.value) not in cursors for a in accounts for s in streams)
                    or conn.backfill_status in (BackfillStatus.PENDING.value, BackfillStatus.RUNNING.value,
                                                BackfillStatus.FAILED.value))
    run = SyncRun(id=uuid.uuid4(), org_id=ctx.org_id, client_id=ctx.client_id, connection_id=ctx.connection_id,
                  platform=ctx.platform.value, mode=(RunMode.BACKFILL if ctx.backfill else RunMode.INCREMENTAL).value,
                  trigger=trigger[:16], status=RunStatus.RUNNING.value, accounts=accounts, started_at=now,
                  rows_read=0, rows_written=0, streams={})
    repository.add(session, run)
    ctx.run_id = run.id
    await session.commit()
    log.info("sync.started", connection_id=str(ctx.connection_id), platform=ctx.platform.value, mode=run.mode,
             accounts=len(accounts))
    try:
        ctx.live = await connections.open_connector(session, ctx.factory.settings, ctx.factory, conn, ACTOR,
                                                    purpose="sync", persist=_persist_in_new_session(ctx),
                                                    defer_persist=True)
        try:
            steps = await _plan(ctx, conn, accounts, cursors)
            await _begin_progress(ctx, len(steps))
            for step in steps:
                await _execute(ctx, step)
        except BaseException:
            await session.rollback()  # end the step's write before tokens are stored apart
            raise
        finally:
            try:
                await ctx.live.flush_tokens()  # a refresh in the failing step must not be lost
            finally:
                await ctx.live.aclose()
    except RateLimited as exc:
        await _finish_failed(ctx, exc, status=RunStatus.DEFERRED)
        raise
    except (ConnectorError, NotFound, CredentialUnreadable, LeaseLost) as exc:
        return await _finish_failed(ctx, exc, status=RunStatus.FAILED)
    except Exception as exc:
        await _finish_failed(ctx, exc, status=RunStatus.FAILED)
        raise
    return await _finish_ok(ctx)


def _persist_in_new_session(ctx: _Run) -> Callable[[TokenSet], Awaitable[None]]:
    """Refreshed tokens are stored in their own transaction, never mixed with a step's rows."""

    async def persist(tokens: TokenSet) -> None:
        async with ctx.db.sessionmaker() as session:
            await bind_tenant(session, ctx.org_id)
            await connections.save_tokens(session, ctx.factory.settings, ctx.factory, ctx.org_id, ctx.connection_id,
                                          tokens, ACTOR)

    return persist


async def _close_abandoned_runs(ctx: _Run, now: datetime) -> None:
    """A run still 'running' when we hold the lease was left by a worker that died."""
    stale = await repository.running_before(ctx.session, ctx.org_id, ctx.connection_id, now)
    for run in stale:
        run.status = RunStatus.FAILED.value
        run.finished_at = now
        run.error_code = "abandoned"
        run.error = "The worker running this sync stopped before it finished; the next run resumed it."
    if stale:
        await ctx.session.commit()


async def _execute(ctx: _Run, step: _Step) -> None:
    """One step in its own transaction; an expired token is refreshed once and the step redone."""
    assert ctx.live is not None
    for attempt in (1, 2):
        try:
            read, written = await step.run()
            break
        except AuthExpired:
            await ctx.session.rollback()
            if attempt == 2:
                raise
            log.info("sync.token_expired_refreshing", connection_id=str(ctx.connection_id))
            await ctx.live.refresh()
    ctx.count(step.stream, read, written)
    conn = await connections.get_by_id(ctx.session, ctx.org_id, ctx.connection_id)
    if ctx.backfill:
        connections.record_progress(conn, units=1, rows=read)
    if not await connections.renew_sync_lock(ctx.session, ctx.org_id, ctx.connection_id, ctx.lock,
                                             ctx.cfg.lock_lease_seconds):
        await ctx.session.rollback()
        raise LeaseLost("This sync stalled past its lease and another run took over; it stopped.")
    run = await repository.get_run(ctx.session, ctx.org_id, ctx.run_id) if ctx.run_id else None
    if run is not None:
        run.rows_read, run.rows_written = sum(ctx.read.values()), sum(ctx.written.values())
        run.streams = _streams(ctx)
    await ctx.session.commit()
    await ctx.live.flush_tokens()


def _streams(ctx: _Run) -> dict[str, Any]:
    return {s: {"read": ctx.read.get(s, 0), "written": ctx.written.get(s, 0)} for s in sorted(ctx.read)}


async def _begin_progress(ctx: _Run, units: int) -> None:
    conn = await connections.get_by_id(ctx.session, ctx.org_id, ctx.connection_id)
    if ctx.backfill:
        connections.record_backfill_start(conn, units=units, days=ctx.cfg.backfill_days, now=utcnow())
    await ctx.session.commit()


# ------------------------------------------------------------------------------ the plan
async def _plan(ctx: _Run, conn: Connection, accounts: list[str], cursors: dict[tuple[str, str], str]) -> list[_Step]:
    if ctx.platform == Platform.SHOPIFY:
        shop = conn.shop_domain or accounts[0]
        return [_Step(Stream.SHOP_CUSTOMERS.value, shop, lambda: _shop_customers(ctx, shop, cursors)),
                _Step(Stream.SHOP_ORDERS.value, shop, lambda: _shop_orders(ctx, shop, cursors))]
    live = ctx.live
    assert live is not None
    try:
        listed = await live.ads.list_ad_accounts()
    except AuthExpired:
        await live.refresh()
        listed = await live.ads.list_ad_accounts()
    reachable = {a.external_id: a for a in listed}
    missing = [a for a in accounts if a not in reachable]
    if missing:
        raise PermissionDenied(f"Ad account(s) {', '.join(missing)} are no longer reachable with this connection; "
                               "pick the accounts again or reconnect.")
    ctx.accounts = {a: reachable[a] for a in accounts}
    steps: list[_Step] = []
    for account in accounts:
        steps += [
            _Step(Stream.CAMPAIGNS.value, account, _bind(_campaigns, ctx, account)),
            _Step(Stream.AD_GROUPS.value, account, _bind(_ad_groups, ctx, account)),
            _Step(Stream.ADS.value, account, _bind(_ads, ctx, account)),
        ]
        for since, until in metric_windows(cursors.get((account, Stream.DAILY_METRICS.value)), ctx.today,
                                           ctx.cfg):
            steps.append(_Step(Stream.DAILY_METRICS.value, account, _bind_window(ctx, account, since, until)))
    return steps


def _bind(fn: Callable[[_Run, str], Awaitable[tuple[int, int]]], ctx: _Run,
          account: str) -> Callable[[], Awaitable[tuple[int, int]]]:
    return lambda: fn(ctx, account)


def _bind_window(ctx: _Run, account: str, since: date, until: date) -> Callable[[], Awaitable[tuple[int, int]]]:
    return lambda: _metrics(ctx, account, since, until)


def metric_windows(cursor: str | None, today: date, cfg: SyncConfig) -> list[tuple[date, date]]:
    """Date windows to read: from the backfill start or the cursor (minus the look-back) to today."""
    lookback_start = today - timedelta(days=max(cfg.lookback_days, 1) - 1)
    if cursor is None:
        since = today - timedelta(days=max(cfg.backfill_days, 1) - 1)
    else:
        since = min(date.fromisoformat(cursor) + timedelta(days=1), lookback_start)
    windows: list[tuple[date, date]] = []
    step = timedelta(days=max(cfg.metrics_chunk_days, 1))
    start = since
    while start <= today:
        end = min(start + step - timedelta(days=1), today)
        windows.append((start, end))
        start = end + timedelta(days=1)
    return windows


# ------------------------------------------------------------------------------ ad streams
async def _account_row(ctx: _Run, account: str) -> uuid.UUID:
    if account not in ctx.account_ids:
        acc = ctx.accounts[account]
        written = await ctx.upsert(T_ACCOUNTS, [{**ctx.base(), "external_id": account, "name": acc.name[:255],
                                                 "currency": acc.currency.upper()[:3], "timezone": acc.timezone[:64],
                                                 "status": str(acc.status)}])
        ctx.count("ad_accounts", 1, written)
        ctx.account_ids.update(await repository.id_map(ctx.session, T_ACCOUNTS, ctx.org_id, ctx.connection_id,
                                                       [account]))
    return ctx.account_ids[account]


async def _campaigns(ctx: _Run, account: str) -> tuple[int, int]:
    assert ctx.live is not None
    account_id = await _account_row(ctx, account)
    currency = ctx.accounts[account].currency.upper()[:3]
    rows = [{**ctx.base(), "external_id": c.external_id, "ad_account_id": account_id, "name": c.name[:255],
             "status": str(c.status), "objective": (c.objective or None) and c.objective[:64],
             "daily_budget_minor": c.daily_budget_minor, "currency": currency, "platform_updated_at": c.updated_at}
            async for c in ctx.live.ads.campaigns(account)]
    written = await ctx.upsert(T_CAMPAIGNS, rows)
    ctx.campaigns[account] = await repository.id_map(ctx.session, T_CAMPAIGNS, ctx.org_id, ctx.connection_id,
                                                     [r["external_id"] for r in rows])
    return len(rows), written


async def _ad_groups(ctx: _Run, account: str) -> tuple[int, int]:
    assert ctx.live is not None
    account_id = await _account_row(ctx, account)
    currency = ctx.accounts[account].currency.upper()[:3]
    campaigns = ctx.campaigns.get(account, {})
    rows = [{**ctx.base(), "external_id": g.external_id, "ad_account_id": account_id,
             "campaign_id": campaigns.get(g.campaign_external_id), "name": g.name[:255], "status": str(g.status),
             "daily_budget_minor": g.daily_budget_minor, "currency": currency, "targeting": g.targeting or {},
             "platform_updated_at": g.updated_at}
            async for g in ctx.live.ads.ad_groups(account)]
    written = await ctx.upsert(T_AD_GROUPS, rows)
    ctx.ad_groups[account] = await repository.id_map(ctx.session, T_AD_GROUPS, ctx.org_id, ctx.connection_id,
                                                     [r["external_id"] for r in rows])
    return len(rows), written


async def _ads(ctx: _Run, account: str) -> tuple[int, int]:
    assert ctx.live is not None
    account_id = await _account_row(ctx, account)
    ads = [a async for a in ctx.live.ads.ads(account)]
    creatives = {a.creative.external_id: a.creative for a in ads if a.creative is not None}
    creative_rows = [{**ctx.base(), "external_id": c.external_id, "ad_account_id": account_id,
                      "name": (c.name or c.external_id)[:255], "title": c.title and c.title[:255], "body": c.body,
                      "image_url": c.image_url and c.image_url[:2048], "video_id": c.video_id and c.video_id[:128],
                      "call_to_action": c.call_to_action and c.call_to_action[:64]}
                     for c in creatives.values()]
    creative_written = await ctx.upsert(T_CREATIVES, creative_rows)
    ctx.count("creatives", len(creative_rows), creative_written)
    creative_ids = await repository.id_map(ctx.session, T_CREATIVES, ctx.org_id, ctx.connection_id, list(creatives))
    campaigns, groups = ctx.campaigns.get(account, {}), ctx.ad_groups.get(account, {})
    rows = [{**ctx.base(), "external_id": a.external_id, "ad_account_id": account_id,
             "campaign_id": campaigns.get(a.campaign_external_id), "ad_group_id": groups.get(a.ad_group_external_id),
             "creative_id": creative_ids.get(a.creative.external_id) if a.creative else None, "name": a.name[:255],
             "status": str(a.status), "platform_updated_at": a.updated_at}
            for a in ads]
    written = await ctx.upsert(T_ADS, rows)
    ids = await repository.id_map(ctx.session, T_ADS, ctx.org_id, ctx.connection_id, [r["external_id"] for r in rows])
    ctx.ads[account] = {r["external_id"]: (ids[r["external_id"]], r["campaign_id"], r["ad_group_id"])
                        for r in rows if r["external_id"] in ids}
    return len(rows), written


async def _metrics(ctx: _Run, account: str, since: date, until: date) -> tuple[int, int]:
    assert ctx.live is not None
    account_id = await _account_row(ctx, account)
    ads, campaigns = ctx.ads.get(account, {}), ctx.campaigns.get(account, {})
    groups = ctx.ad_groups.get(account, {})

    async def rows() -> AsyncIterator[dict[str, Any]]:
        assert ctx.live is not None
        async for m in ctx.live.ads.daily_metrics(account, since, until):
            yield _metric_row(m, ads, campaigns, groups)

    writer = repository.MetricWriter(ctx.session, org_id=ctx.org_id, client_id=ctx.client_id,
                                     connection_id=ctx.connection_id, account_id=account_id,
                                     platform=ctx.platform.value, since=since, until=until)
    read, written = await _pipelined(rows(), ctx.cfg.batch_size, writer.write)
    # The window just read is the platform's truth: a day it no longer reports (restated to
    # zero: refunded spend, invalid clicks) must not keep its old numbers here. The same
    # transaction brings the window's rollup (analytics_daily) in line.
    written += await writer.finish()
    await repository.set_cursor(ctx.session, ctx.org_id, ctx.connection_id, account, Stream.DAILY_METRICS.value,
                                until.isoformat())
    return read, written


async def _pipelined(rows: AsyncIterator[dict[str, Any]], batch_size: int,
                     write: Callable[[list[dict[str, Any]]], Awaitable[int]]) -> tuple[int, int]:
    """Read the next page from the platform while the previous batch is being written.

    The platform is far (network round trips), the database near: overlapping the two
    hides most of the write time. One reader task fills a small queue (back-pressure: at
    most two batches wait) and ends it with ``None`` or with its exception; this coroutine
    writes, so the session stays single-user. A failure on either side stops the other and
    is raised as is (AuthExpired included, which the step runner turns into a refresh).
    """
    queue: asyncio.Queue[list[dict[str, Any]] | BaseException | None] = asyncio.Queue(maxsize=2)

    async def reader() -> None:
        batch: list[dict[str, Any]] = []
        try:
            async for row in rows:
                batch.append(row)
                if len(batch) >= batch_size:
                    await queue.put(batch)
                    batch = []
            await queue.put(batch)
            await queue.put(None)
        except Exception as exc:  # handed to the writer, which raises it
            await queue.put(exc)

    task = asyncio.create_task(reader())
    read = written = 0
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            read += len(item)
            written += await write(item)
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return read, written


def _metric_row(m: DailyMetric, ads: dict[str, tuple[uuid.UUID, uuid.UUID | None, uuid.UUID | None]],
                campaigns: dict[str, uuid.UUID], groups: dict[str, uuid.UUID]) -> dict[str, Any]:
    """One metric as :class:`~omnify.sync.repository.MetricWriter` stages it (the window's
    org, client, connection, account and platform are the writer's)."""
    ad_id = campaign_id = group_id = None
    if m.level == Level.AD and m.entity_external_id in ads:
        ad_id, campaign_id, group_id = ads[m.entity_external_id]
    elif m.level == Level.CAMPAIGN:
        campaign_id = campaigns.get(m.entity_external_id)
    elif m.level == Level.AD_GROUP:
        group_id = groups.get(m.entity_external_id)
    campaign_id = campaign_id or (campaigns.get(m.campaign_external_id) if m.campaign_external_id else None)
    group_id = group_id or (groups.get(m.ad_group_external_id) if m.ad_group_external_id else None)
    return {"level": str(m.level), "entity_external_id": m.entity_external_id, "day": m.day,
            "campaign_id": campaign_id, "ad_group_id": group_id, "ad_id": ad_id,
            "currency": m.currency.upper()[:3], "spend_minor": int(m.spend_minor), "impressions": int(m.impressions),
            "clicks": int(m.clicks), "conversions": float(m.conversions), "revenue_minor": int(m.revenue_minor),
            "reach": m.reach, "frequency": m.frequency}


# ------------------------------------------------------------------------------ shop streams
def _shop_since(ctx: _Run, cursor: str | None) -> datetime:
    if cursor is None:
        return datetime.combine(ctx.today - timedelta(days=max(ctx.cfg.backfill_days, 1) - 1), datetime.min.time(),
                                tzinfo=UTC)
    return datetime.fromisoformat(cursor) - timedelta(seconds=ctx.cfg.shop_overlap_seconds)


async def _set_shop_cursor(ctx: _Run, shop: str, stream: str, newest: datetime | None, since: datetime,
                           cursors: dict[tuple[str, str], str]) -> None:
    """Never past our own clock: a timestamp the shop puts in the future (clock skew) must
    not make the next run skip what changes between now and then."""
    if newest is None and (shop, stream) in cursors:
        return
    value = min(newest or since, utcnow())
    await repository.set_cursor(ctx.session, ctx.org_id, ctx.connection_id, shop, stream, value.isoformat())


def _later(current: datetime | None, candidate: datetime | None) -> datetime | None:
    if candidate is None:
        return current
    return candidate if current is None or candidate > current else current


async def _shop_customers(ctx: _Run, shop: str, cursors: dict[tuple[str, str], str]) -> tuple[int, int]:
    assert ctx.live is not None
    stream = Stream.SHOP_CUSTOMERS.value
    since = _shop_since(ctx, cursors.get((shop, stream)))
    read = written = 0
    newest: datetime | None = None
    batch: list[dict[str, Any]] = []
    async for c in ctx.live.shop.customers(updated_since=since):
        batch.append({**ctx.base(), "external_id": c.external_id, "email": c.email and c.email[:320],
                      "first_name": c.first_name and c.first_name[:200], "last_name": c.last_name and c.last_name[:200],
                      "orders_count": c.orders_count, "total_spent_minor": c.total_spent_minor,
                      "currency": c.currency.upper()[:3], "customer_created_at": c.created_at,
                      "platform_updated_at": c.updated_at})
        newest = _later(newest, c.updated_at or c.created_at)
        if len(batch) >= ctx.cfg.batch_size:
            read, written = read + len(batch), written + await ctx.upsert(T_CUSTOMERS, batch)
            batch = []
    read, written = read + len(batch), written + await ctx.upsert(T_CUSTOMERS, batch)
    await _set_shop_cursor(ctx, shop, stream, newest, since, cursors)
    return read, written


async def _shop_orders(ctx: _Run, shop: str, cursors: dict[tuple[str, str], str]) -> tuple[int, int]:
    assert ctx.live is not None
    stream = Stream.SHOP_ORDERS.value
    since = _shop_since(ctx, cursors.get((shop, stream)))
    read = written = 0
    newest: datetime | None = None
    pending: list[Any] = []

    async def flush() -> int:
        wanted = {o.customer_external_id for o in pending if o.customer_external_id}
        customers = await repository.id_map(ctx.session, T_CUSTOMERS, ctx.org_id, ctx.connection_id, wanted)
        rows = [{**ctx.base(), "external_id": o.external_id, "customer_external_id": o.customer_external_id,
                 "customer_id": customers.get(o.customer_external_id) if o.customer_external_id else None,
                 "name": o.name[:64], "total_minor": o.total_minor, "currency": o.currency.upper()[:3],
                 "financial_status": o.financial_status and o.financial_status[:32], "ordered_at": o.created_at,
                 "platform_updated_at": o.updated_at, "line_items": o.line_items}
                for o in pending]
        return await ctx.upsert(T_ORDERS, rows)

    async for order in ctx.live.shop.orders(updated_since=since):
        pending.append(order)
        newest = _later(newest, order.updated_at or order.created_at)
        if len(pending) >= ctx.cfg.batch_size:
            read, written = read + len(pending), written + await flush()
            pending = []
    read, written = read + len(pending), written + await flush()
    await _set_shop_cursor(ctx, shop, stream, newest, since, cursors)
    return read, written


# ------------------------------------------------------------------------------ endings
async def _finish_ok(ctx: _Run) -> RunResult:
    session, now = ctx.session, utcnow()
    run = await repository.get_run(session, ctx.org_id, ctx.run_id) if ctx.run_id else None
    assert run is not None
    run.status = RunStatus.SUCCEEDED.value
    run.finished_at = now
    run.rows_read, run.rows_written = sum(ctx.read.values()), sum(ctx.written.values())
    run.streams = _streams(ctx)
    conn = await connections.get_by_id(session, ctx.org_id, ctx.connection_id)
    connections.record_sync_success(conn, now=now, interval=ctx.cfg.interval_seconds, backfill=ctx.backfill)
    await events.emit(session, ctx.org_id, "sync.completed", {
        "sync_run_id": run.id, "connection_id": ctx.connection_id, "client_id": ctx.client_id,
        "platform": ctx.platform.value, "mode": run.mode, "started_at": run.started_at, "finished_at": now,
        "rows": {s: v["read"] for s, v in run.streams.items()}, "rows_written": run.rows_written})
    if run.rows_written:
        # The brain reads what was just written: queue its run with this commit, so it can
        # neither start before the rows are visible nor be lost if the commit fails.
        dispatch.enqueue_after_commit(session, BRAIN_RUN_TASK, {
            "org_id": str(ctx.org_id), "client_id": str(ctx.client_id), "trigger": RunTrigger.SYNC.value})
    await session.commit()
    await _rows_changed(ctx, run.rows_written)
    metrics.LAG.succeeded(ctx.platform.value, str(ctx.connection_id), now)
    log.info("sync.succeeded", connection_id=str(ctx.connection_id), platform=ctx.platform.value, mode=run.mode,
             rows_read=run.rows_read, rows_written=run.rows_written)
    return RunResult(status=run.status, run_id=run.id, mode=run.mode, rows_read=run.rows_read,
                     rows_written=run.rows_written)


async def _rows_changed(ctx: _Run, rows_written: int) -> None:
    """Cached analytics of this client are stale once a run wrote rows (an identical
    incremental run writes none, so it keeps the cache warm)."""
    if rows_written:
        await analytics.invalidate_client(ctx.org_id, ctx.client_id, ctx.factory.settings)


def failure_message(exc: BaseException, platform: Platform) -> str:
    label = connections.platform_label(platform.value)
    if isinstance(exc, CircuitOpen):
        return (f"The {label} API failed repeatedly, so calls to it are paused for a while (circuit breaker open). "
                f"The next sync retries automatically. Last error: {connections.safe_message(exc, 300)}")
    if isinstance(exc, RateLimited):
        return f"{label} asked us to slow down (rate limited) for {exc.retry_after:.0f} s; the sync resumes then."
    if isinstance(exc, TransientError):
        return f"{label} kept failing after several retries: {connections.safe_message(exc, 300)}"
    if isinstance(exc, AuthRevoked | AuthExpired | NotFound | CredentialUnreadable):
        return f"{label} refused the stored authorization; reconnect it. ({connections.safe_message(exc, 300)})"
    if isinstance(exc, ConnectorError | LeaseLost | AppError):
        return connections.safe_message(exc)
    return "The sync stopped on an internal error; it has been logged and will be retried."


async def _finish_failed(ctx: _Run, exc: BaseException, *, status: RunStatus) -> RunResult:
    session, now = ctx.session, utcnow()
    await session.rollback()
    code = connections.error_code_for(exc)
    if isinstance(exc, LeaseLost):
        code = "lease_lost"
    elif isinstance(exc, NotFound | CredentialUnreadable):
        code = "credential_missing"
    message = failure_message(exc, ctx.platform)
    log.warning("sync.failed", connection_id=str(ctx.connection_id), platform=ctx.platform.value, status=status.value,
                error_code=code, error_type=type(exc).__name__)
    metrics.ERRORS.labels(platform=ctx.platform.value).inc()
    run = await repository.get_run(session, ctx.org_id, ctx.run_id) if ctx.run_id else None
    if run is not None:
        run.status = status.value
        run.finished_at = now
        run.rows_read, run.rows_written = sum(ctx.read.values()), sum(ctx.written.values())
        run.streams = _streams(ctx)
        run.error_code, run.error = code, message[:1000]
    conn = await connections.get_by_id(session, ctx.org_id, ctx.connection_id)
    retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
    connections.record_sync_failure(conn, now=now, status=status.value, code=code, message=message,
                                    cfg_interval=ctx.cfg.interval_seconds, max_backoff=ctx.cfg.max_backoff_seconds,
                                    retry_after=retry_after)
    if status == RunStatus.FAILED:
        client = await clients.get_client(session, ctx.org_id, ctx.client_id)
        await events.emit(session, ctx.org_id, "sync.failed", {
            "sync_run_id": ctx.run_id, "connection_id": ctx.connection_id, "client_id": ctx.client_id,
            "client_name": client.company_name, "platform": ctx.platform.value, "error_code": code,
            "message": message[:500]})
    await session.commit()
    await _rows_changed(ctx, sum(ctx.written.values()))  # chunks committed before the failure count too
    refused = isinstance(exc, AuthRevoked | AuthExpired | NotFound | CredentialUnreadable)
    if refused or isinstance(exc, PermissionDenied):
        conn = await connections.get_by_id(session, ctx.org_id, ctx.connection_id)
        await connections.mark_failed(session, ctx.factory.settings, conn, ACTOR, exc, needs_reauth=refused)
    return RunResult(status=status.value, run_id=ctx.run_id, mode=run.mode if run else None,
                     rows_read=sum(ctx.read.values()), rows_written=sum(ctx.written.values()), error_code=code,
                     error=message)


# ------------------------------------------------------------------------------ beat
@dataclass
class DueReport:
    organizations: int = 0
    enqueued: int = 0
    connections: list[tuple[str, str]] = field(default_factory=list)


async def enqueue_due(db: Database, *, now: datetime | None = None,
                      enqueue: Callable[[str, dict[str, Any]], bool] | None = None) -> DueReport:
    """Nudge a run for every connection whose next sync is due; refresh the lag gauge."""
    moment = now or utcnow()
    send = enqueue or (lambda name, kwargs: dispatch.enqueue_now(name, kwargs))
    report = DueReport()
    lag: dict[str, dict[str, datetime]] = {}
    async with db.sessionmaker() as session:
        org_ids = await clients.all_org_ids(session)
    for org_id in org_ids:
        report.organizations += 1
        async with db.sessionmaker() as session:
            await bind_tenant(session, org_id)
            for conn in await connections.active_connections(session, org_id):
                if conn.selected_account_ids:
                    baseline = conn.last_synced_at or conn.connected_at or conn.created_at
                    lag.setdefault(conn.platform, {})[str(conn.id)] = baseline
            for conn in await connections.due_connections(session, org_id, moment):
                kwargs = {"org_id": str(org_id), "connection_id": str(conn.id), "trigger": "schedule"}
                if send(SYNC_TASK, kwargs):
                    report.enqueued += 1
                report.connections.append((str(org_id), str(conn.id)))
    metrics.LAG.replace(lag)
    return report


# ------------------------------------------------------------------------------ shop privacy (for the
# Shopify webhook processors: customers/data_request, customers/redact, shop/redact)
async def ingest_shop_orders(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID,
                             orders: Sequence[Any]) -> int:
    """Upsert orders pushed by Shopify webhooks (orders/create, orders/updated), the same way
    the sync writes them, so the next sync and the webhook agree row for row. ``orders``
    are :class:`omnify.integrations.base.ShopOrder`; the caller commits. Returns rows written."""
    conn = await connections.get_by_id(session, org_id, connection_id)
    wanted = {o.customer_external_id for o in orders if o.customer_external_id}
    customers = await repository.id_map(session, T_CUSTOMERS, org_id, connection_id, wanted)
    rows = [{"org_id": org_id, "client_id": conn.client_id, "connection_id": connection_id,
             "platform": conn.platform, "external_id": o.external_id, "customer_external_id": o.customer_external_id,
             "customer_id": customers.get(o.customer_external_id) if o.customer_external_id else None,
             "name": o.name[:64], "total_minor": o.total_minor, "currency": o.currency.upper()[:3],
             "financial_status": o.financial_status and o.financial_status[:32], "ordered_at": o.created_at,
             "platform_updated_at": o.updated_at, "line_items": o.line_items} for o in orders]
    unique = list({r["external_id"]: r for r in rows}.values())
    return await repository.upsert(session, T_ORDERS, unique, key=ENTITY_KEY, compare=COMPARE["shop_orders"])


async def export_shop_customer(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID,
                               customer_external_id: str) -> dict[str, Any]:
    customer, orders = await repository.shop_customer_rows(session, org_id, connection_id, customer_external_id)
    return {
        "customer": None if customer is None else {
            "id": customer.external_id, "email": customer.email, "first_name": customer.first_name,
            "last_name": customer.last_name, "orders_count": customer.orders_count,
            "total_spent_minor": customer.total_spent_minor, "currency": customer.currency,
            "created_at": customer.customer_created_at.isoformat()},
        "orders": [{"id": o.external_id, "name": o.name, "total_minor": o.total_minor, "currency": o.currency,
                    "ordered_at": o.ordered_at.isoformat(), "line_items": o.line_items} for o in orders],
    }


async def redact_shop_customer(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID,
                               customer_external_id: str) -> int:
    """Erase one customer's personal data (caller commits, with its audit entry)."""
    return await repository.delete_shop_customer(session, org_id, connection_id, customer_external_id)


async def redact_shop(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID) -> None:
    await repository.delete_shop_data(session, org_id, connection_id)

