"""Outbound webhooks: endpoints, fan-out of events, delivery attempts, retries, replay.

The life of a message::

    fan_out()            event row + one pending delivery per subscribed endpoint, in the
                         caller's transaction; a deliver task is nudged after commit
    attempt_delivery()   claim (lease) -> sign -> POST through the SSRF guard -> log the
                         attempt -> succeeded | pending (next retry) | failed (dead letter)
    replay_*()           a dead letter goes back to pending with a fresh retry cycle

Guarantees: at-least-once. A delivery is claimed with a lease before its HTTP call, so
two workers (a countdown retry and the beat sweep) cannot send it concurrently, and a
worker that dies mid-call leaves a lease that expires into another attempt: the next
claim finds the dead attempt's ``attempt_started_at`` still set, logs that attempt as lost
and counts it toward the retry limit, and the beat sweep (every 15 s) finds the delivery
due again once the lease lapses (``OMNIFY_WEBHOOK_LEASE_SECONDS``). Receivers
de-duplicate on ``webhook-id``, which is the event id and stays the same on every retry
and replay, as the Standard Webhooks spec asks.

No database connection is held during the HTTP call: a slow receiver must not pin a
pool slot for the whole timeout.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from omnify.audit import service as audit
from omnify.core.context import Actor
from omnify.core.db import bind_tenant, utcnow
from omnify.core.errors import Conflict, NotFound, UnprocessableEntity
from omnify.core.logging import get_logger
from omnify.core.pagination import PageParams
from omnify.notifications import dispatch
from omnify.notifications import service as notifications
from omnify.orgs import service as orgs
from omnify.orgs.models import Role
from omnify.settings import Settings
from omnify.webhooks import events, formats, keys, metrics, repository, signing, transport
from omnify.webhooks.config import COUNTDOWN_THRESHOLD, WebhookConfig
from omnify.webhooks.models import STANDARD, DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from omnify.webhooks.ssrf import BlockedDestination, Resolver, parse_url

log = get_logger(__name__)

DELIVER_TASK = "omnify.webhooks.deliver"
MAX_ENDPOINTS_PER_ORG = 50
BULK_REPLAY_LIMIT = 1000
_TEST_EVENT_NAMESPACE = uuid.UUID("5d0b3c62-1f0a-4c43-9a51-2b0c8e7f6a10")


# ------------------------------------------------------------------------------ helpers
def _check_url(url: str, config: WebhookConfig) -> str:
    try:
        parse_url(url, config)
    except BlockedDestination as exc:
        raise UnprocessableEntity(exc.reason, code="invalid-webhook-url",
                                  errors=[{"loc": ["body", "url"], "field": "url", "msg": exc.reason,
                                           "type": "webhook_url"}]) from None
    return url.strip()


def _secret_hint(secret: str) -> str:
    return secret[: len(signing.SECRET_PREFIX) + 4] + "…"


async def _endpoint_or_404(session: AsyncSession, org_id: uuid.UUID, endpoint_id: uuid.UUID,
                           kind: str | None = STANDARD) -> WebhookEndpoint:
    """``kind``: the webhook API manages standard endpoints only; the chat domain passes its kind."""
    endpoint = await repository.get_endpoint(session, org_id, endpoint_id, kind)
    if endpoint is None:
        raise NotFound("Webhook endpoint not found.")
    return endpoint


async def live_secrets(settings: Settings, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The current secret, plus the previous one while its overlap window lasts."""
    found = [await keys.unseal(settings, keys.ENDPOINT_SECRET, endpoint.org_id, endpoint.id, endpoint.secret_blob)]
    if (endpoint.previous_secret_blob is not None and endpoint.previous_secret_expires_at is not None
            and endpoint.previous_secret_expires_at > now):
        found.append(await keys.unseal(settings, keys.ENDPOINT_SECRET, endpoint.org_id, endpoint.id,
                                       endpoint.previous_secret_blob))
    return found


def _nudge(session: AsyncSession, delivery_id: uuid.UUID, org_id: uuid.UUID, countdown: float | None = None) -> None:
    dispatch.enqueue_after_commit(session, DELIVER_TASK, {"delivery_id": str(delivery_id), "org_id": str(org_id)},
                                  countdown)


# ---------------------------------------------------------------------------- endpoints
async def create_endpoint(
    session: AsyncSession, settings: Settings, config: WebhookConfig, org_id: uuid.UUID, actor: Actor, *,
    url: str, description: str | None, event_types: list[str], enabled: bool,
) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint; the secret is returned once and stored only encrypted."""
    url = _check_url(url, config)
    if await repository.count_endpoints(session, org_id) >= MAX_ENDPOINTS_PER_ORG:
        raise Conflict(f"An organization can have at most {MAX_ENDPOINTS_PER_ORG} webhook endpoints.",
                       code="endpoint-limit")
    endpoint_id = uuid.uuid4()
    secret = signing.generate_secret()
    now = utcnow()
    endpoint = WebhookEndpoint(
        id=endpoint_id, org_id=org_id, url=url, description=description, event_types=event_types, enabled=enabled,
        disabled_reason=None if enabled else "manual", disabled_at=None if enabled else now,
        secret_blob=await keys.seal(settings, keys.ENDPOINT_SECRET, org_id, endpoint_id, secret),
        secret_hint=_secret_hint(secret),
    )
    repository.add(session, endpoint)
    await session.flush()
    await audit.record(session, org_id, actor, "webhook_endpoint.created", target_type="webhook_endpoint",
                       target_id=endpoint_id, changes={"url": url, "event_types": event_types, "enabled": enabled})
    await session.commit()
    return endpoint, secret


async def list_endpoints(session: AsyncSession, org_id: uuid.UUID, params: PageParams) -> Sequence[WebhookEndpoint]:
    return await repository.list_endpoints(session, org_id, params)


async def get_endpoint(session: AsyncSession, org_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    return await _endpoint_or_404(session, org_id, endpoint_id)


async def update_endpoint(
    session: AsyncSession, config: WebhookConfig, org_id: uuid.UUID, actor: Actor, endpoint_id: uuid.UUID, *,
    changes: dict[str, Any],
) -> WebhookEndpoint:
    endpoint = await _endpoint_or_404(session, org_id, endpoint_id)
    diff: dict[str, Any] = {}
    now = utcnow()
    if changes.get("url") is not None and changes["url"] != endpoint.url:
        diff["url"] = {"from": endpoint.url, "to": _check_url(changes["url"], config)}
        endpoint.url = changes["url"].strip()
    if "description" in changes and changes["description"] != endpoint.description:
        diff["description"] = {"from": endpoint.description, "to": changes["description"]}
        endpoint.description = changes["description"]
    if changes.get("event_types") is not None and changes["event_types"] != endpoint.event_types:
        diff["event_types"] = {"from": endpoint.event_types, "to": changes["event_types"]}
        endpoint.event_types = changes["event_types"]
    if changes.get("enabled") is not None and changes["enabled"] != endpoint.enabled:
        diff["enabled"] = {"from": endpoint.enabled, "to": changes["enabled"]}
        endpoint.enabled = changes["enabled"]
        if endpoint.enabled:  # a fresh start: the failure clock restarts
            endpoint.disabled_reason, endpoint.disabled_at, endpoint.failing_since = None, None, None
        else:
            endpoint.disabled_reason, endpoint.disabled_at = "manual", now
            await repository.fail_pending_of_endpoint(session, org_id, endpoint.id, now, "endpoint disabled")
    if diff:
        endpoint.updated_at = now
        await audit.record(session, org_id, actor, "webhook_endpoint.updated", target_type="webhook_endpoint",
                           target_id=endpoint.id, changes=diff)
    await session.commit()
    return endpoint


async def delete_endpoint(session: AsyncSession, org_id: uuid.UUID, actor: Actor, endpoint_id: uuid.UUID) -> None:
    endpoint = await _endpoint_or_404(session, org_id, endpoint_id)
    await repository.delete(session, endpoint)
    await audit.record(session, org_id, actor, "webhook_endpoint.deleted", target_type="webhook_endpoint",
                       target_id=endpoint_id, changes={"url": endpoint.url})
    await session.commit()


async def rotate_secret(
    session: AsyncSession, settings: Settings, config: WebhookConfig, org_id: uuid.UUID, actor: Actor,
    endpoint_id: uuid.UUID,
) -> tuple[WebhookEndpoint, str]:
    """New secret now; the old one keeps signing (alongside) for ``config.secret_overlap``.

    Rotating again inside the window drops the oldest secret: only two ever sign.
    """
    endpoint = await _endpoint_or_404(session, org_id, endpoint_id)
    now = utcnow()
    secret = signing.generate_secret()
    endpoint.previous_secret_blob = endpoint.secret_blob
    endpoint.previous_secret_expires_at = now + timedelta(seconds=config.secret_overlap)
    endpoint.secret_blob = await keys.seal(settings, keys.ENDPOINT_SECRET, org_id, endpoint.id, secret)
    endpoint.secret_hint = _secret_hint(secret)
    endpoint.secret_rotated_at = now
    endpoint.updated_at = now
    await audit.record(session, org_id, actor, "webhook_endpoint.secret_rotated", target_type="webhook_endpoint",
                       target_id=endpoint.id,
                       changes={"previous_valid_until": endpoint.previous_secret_expires_at.isoformat()})
    await session.commit()
    return endpoint, secret


# ------------------------------------------------------------------------------ fan-out
def _subscribed(endpoint: WebhookEndpoint, event_type: str) -> bool:
    return not endpoint.event_types or event_type in endpoint.event_types


async def fan_out(
    session: AsyncSession, org_id: uuid.UUID, event_type: str, data: dict[str, Any], *,
    event_id: uuid.UUID | None = None, occurred_at: datetime | None = None,
    only_endpoint: WebhookEndpoint | None = None,
) -> list[uuid.UUID]:
    """Queue ``event_type`` for every enabled endpoint subscribed to it, in the caller's
    transaction. Idempotent on ``event_id``: fanning the same event out twice (a domain
    event dispatched again after a crash) creates no second delivery.

    Returns the ids of the deliveries created; the caller commits.
    """
    events.event_type(event_type)  # unknown types are a programming error
    if only_endpoint is not None:
        targets: Sequence[WebhookEndpoint] = [only_endpoint]
    else:
        # An endpoint hears what happens after it is saved: an event that occurred before it
        # existed (still in the outbox when it was added) is not its history to receive.
        when = occurred_at or utcnow()
        targets = [e for e in await repository.enabled_endpoints(session, org_id)
                   if _subscribed(e, event_type) and e.created_at <= when]
    if not targets:
        return []
    now = utcnow()
    event_id = event_id or uuid.uuid4()
    created_at = occurred_at or now
    payload = events.envelope(event_type, event_id=event_id, org_id=org_id, created_at=created_at, data=data)
    await repository.insert_event_once(session, {
        "id": event_id, "org_id": org_id, "type": event_type, "version": payload["version"], "payload": payload,
        "created_at": created_at,
    })
    created: list[uuid.UUID] = []
    for endpoint in targets:
        delivery_id = uuid.uuid4()
        inserted = await repository.insert_delivery_once(session, {
            "id": delivery_id, "org_id": org_id, "endpoint_id": endpoint.id, "event_id": event_id,
            "event_type": event_type, "status": DeliveryStatus.PENDING.value, "attempts": 0, "cycle_attempts": 0,
            "replay_count": 0, "next_attempt_at": now, "created_at": now, "updated_at": now,
        })
        if inserted:
            created.append(delivery_id)
            _nudge(session, delivery_id, org_id)
    return created


async def get_endpoint_of_kind(session: AsyncSession, org_id: uuid.UUID, endpoint_id: uuid.UUID,
                               kind: str) -> WebhookEndpoint | None:
    """A chat destination's endpoint (the chat domain manages those; the webhook API does not)."""
    return await repository.get_endpoint(session, org_id, endpoint_id, kind)


async def event_payload(session: AsyncSession, org_id: uuid.UUID, event_id: uuid.UUID) -> dict[str, Any] | None:
    """The stored envelope of one event (chat charts are drawn from it)."""
    event = await repository.get_event(session, org_id, event_id)
    return dict(event.payload) if event is not None else None


async def send_test_event(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, endpoint_id: uuid.UUID, idempotency_key: str | None,
    *, kind: str | None = STANDARD,
) -> WebhookDelivery:
    """The test button. With an ``Idempotency-Key`` a retried click sends one event."""
    endpoint = await _endpoint_or_404(session, org_id, endpoint_id, kind)
    if not endpoint.enabled:
        raise Conflict("The endpoint is disabled; enable it before sending a test event.", code="endpoint-disabled")
    event_id = uuid.uuid5(_TEST_EVENT_NAMESPACE, f"{endpoint.id}:{idempotency_key}") if idempotency_key \
        else uuid.uuid4()
    created = await fan_out(session, org_id, "webhook.test",
                            {"endpoint_id": str(endpoint.id), "message": "This is a test event from Omnify."},
                            event_id=event_id, only_endpoint=endpoint)
    delivery = await repository.get_delivery_by_event(session, org_id, endpoint.id, event_id)
    assert delivery is not None
    if created:
        await audit.record(session, org_id, actor, "webhook_endpoint.test_sent", target_type="webhook_endpoint",
                           target_id=endpoint.id, changes={"delivery_id": str(delivery.id)})
    await session.commit()
    return delivery


# ---------------------------------------------------------------------- deliveries (read)
async def list_deliveries(
    session: AsyncSession, org_id: uuid.UUID, endpoint_id: uuid.UUID, params: PageParams,
    status: str | None, event_type: str | None, *, kind: str | None = STANDARD,
) -> Sequence[WebhookDelivery]:
    await _endpoint_or_404(session, org_id, endpoint_id, kind)
    return await repository.list_deliveries(session, org_id, endpoint_id, params, status, event_type)


@dataclass(frozen=True, slots=True)
class DeliveryDetail:
    delivery: WebhookDelivery
    payload: dict[str, Any]
    attempts: Sequence[WebhookAttempt]


async def get_delivery(
    session: AsyncSession, org_id: uuid.UUID, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> DeliveryDetail:
    delivery = await repository.get_delivery(session, org_id, delivery_id, endpoint_id)
    if delivery is None:
        raise NotFound("Delivery not found.")
    event = await repository.get_event(session, org_id, delivery.event_id)
    attempts = await repository.attempts_of(session, org_id, delivery.id)
    return DeliveryDetail(delivery, dict(event.payload) if event else {}, attempts)


# ----------------------------------------------------------------------------- replays
def _restart(delivery: WebhookDelivery, now: datetime) -> None:
    delivery.status = DeliveryStatus.PENDING.value
    delivery.cycle_attempts = 0
    delivery.next_attempt_at = now
    delivery.failed_at = None
    delivery.attempt_started_at = None
    delivery.replay_count += 1
    delivery.updated_at = now


async def replay_delivery(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, endpoint_id: uuid.UUID, delivery_id: uuid.UUID,
    *, kind: str | None = STANDARD,
) -> WebhookDelivery:
    endpoint = await _endpoint_or_404(session, org_id, endpoint_id, kind)
    delivery = await repository.get_delivery(session, org_id, delivery_id, endpoint_id)
    if delivery is None:
        raise NotFound("Delivery not found.")
    if not endpoint.enabled:
        raise Conflict("The endpoint is disabled; enable it before replaying.", code="endpoint-disabled")
    if delivery.status != DeliveryStatus.FAILED.value:
        raise Conflict(f"Only dead-lettered (failed) deliveries can be replayed; this one is {delivery.status}.",
                       code="delivery-not-failed")
    _restart(delivery, utcnow())
    _nudge(session, delivery.id, org_id)
    await audit.record(session, org_id, actor, "webhook_delivery.replayed", target_type="webhook_delivery",
                       target_id=delivery.id, changes={"event_type": delivery.event_type})
    await session.commit()
    return delivery


async def replay_dead(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, endpoint_id: uuid.UUID, since: datetime | None
) -> int:
    """Replay up to :data:`BULK_REPLAY_LIMIT` dead letters of one endpoint, oldest first."""
    endpoint = await _endpoint_or_404(session, org_id, endpoint_id)
    if not endpoint.enabled:
        raise Conflict("The endpoint is disabled; enable it before replaying.", code="endpoint-disabled")
    now = utcnow()
    dead = await repository.dead_deliveries(session, org_id, endpoint_id, since, BULK_REPLAY_LIMIT)
    for delivery in dead:
        _restart(delivery, now)
        _nudge(session, delivery.id, org_id)
    if dead:
        await audit.record(session, org_id, actor, "webhook_delivery.bulk_replayed", target_type="webhook_endpoint",
                           target_id=endpoint_id, changes={"count": len(dead),
                                                           "since": since.isoformat() if since else None})
    await session.commit()
    return len(dead)


# ----------------------------------------------------------------------------- attempts
@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    delivery_id: uuid.UUID
    org_id: uuid.UUID
    status: str
    success: bool
    next_attempt_at: datetime | None
    endpoint_disabled: bool = False

    def countdown(self, now: datetime | None = None) -> float | None:
        """Seconds until the next attempt when a task should be queued for it now."""
        if self.status != DeliveryStatus.PENDING.value or self.next_attempt_at is None:
            return None
        delay = max((self.next_attempt_at - (now or utcnow())).total_seconds(), 0.0)
        return delay if delay <= COUNTDOWN_THRESHOLD else None


async def attempt_delivery(
    session: AsyncSession, settings: Settings, config: WebhookConfig, delivery_id: uuid.UUID, org_id: uuid.UUID,
    *, resolver: Resolver | None = None,
) -> AttemptOutcome | None:
    """Make one attempt if the delivery is due; ``None`` when it is not (or another worker
    holds it). ``session`` must be fresh: it is bound to ``org_id`` here."""
    await bind_tenant(session, org_id)
    now = utcnow()
    if not await repository.claim_delivery(session, org_id, delivery_id, now,
                                           now + timedelta(seconds=config.lease_seconds)):
        await session.rollback()
        return None
    # Still in the claim's transaction: no other worker can claim the row meanwhile.
    delivery = await repository.get_delivery(session, org_id, delivery_id)
    assert delivery is not None
    endpoint = await repository.get_endpoint(session, org_id, delivery.endpoint_id)
    event = await repository.get_event(session, org_id, delivery.event_id)
    if delivery.attempt_started_at is not None:
        _record_lost_attempt(session, config, delivery, endpoint, now)
    if endpoint is None or event is None or not endpoint.enabled:
        delivery.status, delivery.failed_at, delivery.next_attempt_at = DeliveryStatus.FAILED.value, now, None
        delivery.attempt_started_at = None
        delivery.last_error = "endpoint disabled"
        delivery.updated_at = now
        await session.commit()
        return AttemptOutcome(delivery.id, org_id, delivery.status, False, None)
    if delivery.status != DeliveryStatus.PENDING.value:  # the lost attempt was its last one
        await session.commit()
        return AttemptOutcome(delivery.id, org_id, delivery.status, False, None)
    delivery.attempt_started_at = now
    await session.commit()

    secrets_ = await live_secrets(settings, endpoint, now)
    if endpoint.kind == STANDARD:
        body = events.encode(event.payload)
        headers = signing.headers(secrets_, str(event.id), int(time.time()), body)
        url, fmt = endpoint.url, None
    else:  # a chat destination: the same event, rendered for its platform
        fmt = formats.get(endpoint.kind)
        prepared = await fmt.prepare(settings, endpoint, secrets_[0], dict(event.payload))
        url, body, headers = prepared.url, prepared.body, prepared.headers
    shown_url = endpoint.url  # a chat webhook's real URL is a secret: the log keeps the redacted one
    await session.commit()  # release the connection during the HTTP call

    result = await transport.post(url, body, headers, config, resolver)
    if fmt is not None:
        result = fmt.judge(result)
    return await _record_attempt(session, settings, config, org_id, delivery.id, shown_url, result)


def _record_lost_attempt(session: AsyncSession, config: WebhookConfig, delivery: WebhookDelivery,
                         endpoint: WebhookEndpoint | None, now: datetime) -> None:
    """Log and count the attempt a dead worker left behind (its lease lapsed, no result).

    The receiver may well have got that POST (the worker died waiting for the answer), so
    the retry keeps the same ``webhook-id`` and the receiver de-duplicates. Counting it
    bounds the retries of a delivery whose attempts keep dying (a worker OOM-killed by the
    same payload each time, a crash loop): it dead-letters like any other failure.
    """
    started = delivery.attempt_started_at
    assert started is not None
    error = (f"attempt lost: no result within the {config.lease_seconds:g} s lease "
             "(the worker stopped mid-attempt); the receiver may have got it")
    delivery.attempts += 1
    delivery.cycle_attempts += 1
    repository.add(session, WebhookAttempt(
        org_id=delivery.org_id, delivery_id=delivery.id, number=delivery.attempts, created_at=started,
        url=endpoint.url if endpoint is not None else "", ip=None, success=False, status_code=None,
        duration_ms=max(int((now - started).total_seconds() * 1000), 0), response_excerpt=None, error=error,
    ))
    delivery.attempt_started_at = None
    delivery.last_attempt_at = started
    delivery.last_status_code = None
    delivery.last_error = error
    delivery.updated_at = now
    metrics.DELIVERIES.labels(result=metrics.FAILURE).inc()
    if delivery.cycle_attempts >= config.max_attempts:
        delivery.status, delivery.failed_at, delivery.next_attempt_at = DeliveryStatus.FAILED.value, now, None
    log.warning("webhook.attempt_lost", delivery_id=str(delivery.id), attempt=delivery.attempts,
                started_at=started.isoformat(), lease_seconds=config.lease_seconds, outcome=delivery.status)


async def _record_attempt(
    session: AsyncSession, settings: Settings, config: WebhookConfig, org_id: uuid.UUID, delivery_id: uuid.UUID,
    url: str, result: transport.AttemptResult,
) -> AttemptOutcome:
    now = utcnow()
    delivery = await session.get(WebhookDelivery, delivery_id, populate_existing=True)
    assert delivery is not None and delivery.org_id == org_id
    endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id, populate_existing=True)
    delivery.attempts += 1
    delivery.cycle_attempts += 1
    delivery.attempt_started_at = None
    repository.add(session, WebhookAttempt(
        org_id=org_id, delivery_id=delivery.id, number=delivery.attempts, created_at=now, url=url, ip=result.ip,
        success=result.ok, status_code=result.status_code, duration_ms=result.duration_ms,
        response_excerpt=result.response_excerpt, error=result.error,
    ))
    delivery.last_attempt_at = now
    delivery.last_status_code = result.status_code
    delivery.last_error = result.error
    delivery.updated_at = now
    disabled = False
    if result.ok:
        delivery.status, delivery.succeeded_at, delivery.next_attempt_at = DeliveryStatus.SUCCEEDED.value, now, None
        if endpoint is not None:
            endpoint.failing_since, endpoint.last_success_at = None, now
        metrics.DELIVERIES.labels(result=metrics.SUCCESS).inc()
    else:
        metrics.DELIVERIES.labels(result=metrics.FAILURE).inc()
        if delivery.cycle_attempts < config.max_attempts:
            delay = config.retry_schedule[delivery.cycle_attempts]
            if result.retry_after is not None:  # the receiver said when (Slack's 429): honour it, within an hour
                delay = min(max(result.retry_after, 1.0), 3600.0)
            delivery.next_attempt_at = now + timedelta(seconds=delay)
        else:
            delivery.status, delivery.failed_at, delivery.next_attempt_at = DeliveryStatus.FAILED.value, now, None
        if endpoint is not None:
            endpoint.failing_since = endpoint.failing_since or now
            endpoint.last_failure_at = now
            if endpoint.enabled and now - endpoint.failing_since >= timedelta(seconds=config.disable_after):
                await _disable_failing(session, settings, endpoint, now)
                delivery.status, delivery.failed_at = DeliveryStatus.FAILED.value, now
                delivery.next_attempt_at = None
                disabled = True
    log.info("webhook.attempt", delivery_id=str(delivery.id), attempt=delivery.attempts, ok=result.ok,
             status_code=result.status_code, duration_ms=result.duration_ms, error=result.error,
             outcome=delivery.status)
    await session.commit()
    return AttemptOutcome(delivery.id, org_id, delivery.status, result.ok, delivery.next_attempt_at, disabled)


async def _disable_failing(session: AsyncSession, settings: Settings, endpoint: WebhookEndpoint, now: datetime) -> None:
    """Stop sending to an endpoint that failed for ``disable_after``; tell its owners."""
    failing_since = endpoint.failing_since or now
    endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = False, "failing", now
    endpoint.updated_at = now
    await session.flush()
    await repository.fail_pending_of_endpoint(session, endpoint.org_id, endpoint.id, now, "endpoint disabled")
    org = await orgs.get_org(session, endpoint.org_id)
    owners = await orgs.list_members(session, endpoint.org_id, PageParams(limit=200), Role.OWNER)
    for _membership, user in owners:
        await notifications.queue_email(
            session, to=user.email, template="webhook_endpoint_disabled", org_id=endpoint.org_id,
            dedupe_key=f"webhook-disabled:{endpoint.id}:{now.isoformat()}:{user.id}",
            context={"name": user.name, "org_name": org.name, "endpoint_url": endpoint.url,
                     "endpoint_id": str(endpoint.id), "failing_since": failing_since.isoformat(),
                     "disabled_at": now.isoformat(),
                     "manage_url": f"{settings.public_base_url}/orgs/{endpoint.org_id}/webhooks/{endpoint.id}"},
        )
    await audit.record(session, endpoint.org_id, Actor.system("webhooks"), "webhook_endpoint.disabled",
                       target_type="webhook_endpoint", target_id=endpoint.id,
                       changes={"reason": "failing", "failing_since": failing_since.isoformat()})
    log.warning("webhook.endpoint_disabled", endpoint_id=str(endpoint.id), org_id=str(endpoint.org_id))


# ------------------------------------------------------------------------------- sweeps
async def due_deliveries(
    sessionmaker: async_sessionmaker[AsyncSession], limit: int = 500
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Due deliveries across organizations; also refreshes the dead-letter gauge."""
    async with sessionmaker() as session:
        due = await repository.sweep_due_deliveries(session, utcnow(), limit)
        metrics.DEAD_LETTERS.set(await repository.sweep_count_dead(session))
        await session.rollback()
    return due


async def run_due(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, config: WebhookConfig, *,
    limit: int = 100, concurrency: int = 4, resolver: Resolver | None = None,
) -> list[AttemptOutcome]:
    """Attempt every due delivery in this process (bounded concurrency)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(delivery_id: uuid.UUID, org_id: uuid.UUID) -> AttemptOutcome | None:
        async with gate, sessionmaker() as session:
            return await attempt_delivery(session, settings, config, delivery_id, org_id, resolver=resolver)

    due = await due_deliveries(sessionmaker, limit)
    outcomes = await asyncio.gather(*(one(d, o) for d, o in due))
    return [o for o in outcomes if o is not None]


async def purge_deliveries(sessionmaker: async_sessionmaker[AsyncSession], retention_days: float = 30) -> int:
    """Drop finished deliveries (and their attempts) past retention, then orphaned events.

    Dead letters are purged too: after a month, replaying an event is more confusing
    than useful; the audit log keeps what was configured and replayed.
    """
    cutoff = utcnow() - timedelta(days=retention_days)
    async with sessionmaker() as session:
        deleted = await repository.sweep_purge(session, cutoff)
        await session.commit()
    return deleted
