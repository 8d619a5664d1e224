"""Inbound webhooks: verify, store raw, answer fast, process once in a task.

A platform (Shopify first) POSTs to ``/api/v1/webhooks/inbound/{provider}/{source_id}``
(or, for what it sends once per app -- Shopify's privacy topics -- to the app-wide
``/api/v1/webhooks/inbound/{provider}``, see :func:`receive_app_level`).
The receiver, in order:

1. finds the source (which organization, which secret) -- 404 if unknown or disabled;
2. verifies the sender's HMAC over the *raw* body in constant time -- 401 if wrong;
3. refuses a stale delivery where the platform sends a timestamp -- 400;
4. stores the raw body, keyed by the platform's delivery id under a unique constraint
   -- a duplicate is acknowledged (2xx, so the platform stops retrying) and not stored;
5. commits, nudges a processing task, answers 200 -- well within Shopify's 5 seconds.

Processing looks up a *processor* registered for ``(provider, topic)`` (the
integrations layer registers them; modules in :data:`PROCESSOR_MODULES` are imported
when present). The processor runs in the same transaction that marks the event
processed, so its database effects happen exactly once even if the task is delivered
twice; anything it does outside the database must itself be idempotent. Events with no
processor yet are kept as ``unhandled`` and can be re-queued once one exists.

Replay protection = staleness window + de-duplication: the unique delivery id rejects a
replay younger than the retention of inbound rows, the max-age check one older than the
window, and the retention is kept longer than the window so the two overlap.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import importlib
import importlib.util
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from omnify.core.db import bind_tenant, open_sweep, utcnow
from omnify.core.errors import BadRequest, Forbidden, NotFound, ServiceUnavailable, Unauthorized
from omnify.core.logging import get_logger
from omnify.integrations.shopify.webhooks import MANDATORY_PRIVACY_TOPICS
from omnify.notifications import dispatch
from omnify.settings import Settings
from omnify.webhooks import keys, repository
from omnify.webhooks.config import WebhookConfig
from omnify.webhooks.models import InboundEvent, InboundSource, InboundStatus

log = get_logger(__name__)

PROCESS_TASK = "omnify.webhooks.process_inbound"
PROCESSOR_MODULES = ("omnify.integrations.shopify.inbound", "omnify.integrations.inbound")
MAX_PROCESS_ATTEMPTS = 5
PROCESS_BACKOFF_BASE = 30.0
FUTURE_TOLERANCE = timedelta(minutes=5)


class InvalidSignature(Exception):
    pass


class MalformedDelivery(Exception):
    pass


@dataclass(frozen=True, slots=True)
class VerifiedDelivery:
    delivery_id: str
    topic: str
    account: str | None
    occurred_at: datetime | None
    headers: dict[str, str]


class InboundProvider(Protocol):
    name: str
    #: Topics the platform sends to one app-wide address instead of each account's
    #: subscription (see :func:`receive_app_level`); empty if it has none.
    app_level_topics: frozenset[str]

    def app_secrets(self, config: WebhookConfig) -> Sequence[str]:
        """Secrets shared by every source of this provider (e.g. the app's client secret)."""
        ...

    def max_age(self, config: WebhookConfig) -> float | None:
        """Seconds after which a delivery is stale; None if the platform sends no time."""
        ...

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> VerifiedDelivery:
        """Check the signature first, then parse headers; raise InvalidSignature/MalformedDelivery."""
        ...


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise MalformedDelivery(f"timestamp {value[:40]!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise MalformedDelivery("timestamp has no time zone")
    return parsed


class ShopifyProvider:
    """``X-Shopify-Hmac-Sha256`` = base64 HMAC-SHA256 of the raw body with the app secret."""

    name = "shopify"
    #: Shopify's mandatory privacy (compliance) webhooks are configured once per app.
    app_level_topics = frozenset(t.value for t in MANDATORY_PRIVACY_TOPICS)
    HMAC = "X-Shopify-Hmac-Sha256"
    TOPIC = "X-Shopify-Topic"
    SHOP = "X-Shopify-Shop-Domain"
    WEBHOOK_ID = "X-Shopify-Webhook-Id"
    TRIGGERED_AT = "X-Shopify-Triggered-At"
    KEPT = (TOPIC, SHOP, WEBHOOK_ID, TRIGGERED_AT, "X-Shopify-Event-Id", "X-Shopify-API-Version")

    def app_secrets(self, config: WebhookConfig) -> Sequence[str]:
        return config.shopify_secrets

    def max_age(self, config: WebhookConfig) -> float | None:
        return config.shopify_max_age

    @staticmethod
    def signature(body: bytes, secret: str) -> str:
        return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode("ascii")

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> VerifiedDelivery:
        provided = (_header(headers, self.HMAC) or "").strip().encode("ascii", "replace")
        # Compare against every secret (no early exit): the time taken does not tell
        # which secret, if any, matched.
        matched = False
        for secret in secrets:
            matched |= hmac.compare_digest(self.signature(body, secret).encode("ascii"), provided)
        if not provided or not matched:
            raise InvalidSignature("X-Shopify-Hmac-Sha256 is missing or does not match")
        delivery_id = (_header(headers, self.WEBHOOK_ID) or "").strip()
        topic = (_header(headers, self.TOPIC) or "").strip()
        if not delivery_id or not topic:
            raise MalformedDelivery("X-Shopify-Webhook-Id and X-Shopify-Topic are required")
        if len(delivery_id) > 255 or len(topic) > 120:
            raise MalformedDelivery("X-Shopify-Webhook-Id or X-Shopify-Topic is too long")
        shop = (_header(headers, self.SHOP) or "").strip().lower() or None
        kept = {name: value[:500] for name in self.KEPT if (value := _header(headers, name)) is not None}
        return VerifiedDelivery(delivery_id=delivery_id, topic=topic, account=shop,
                                occurred_at=_parse_time(_header(headers, self.TRIGGERED_AT)), headers=kept)


PROVIDERS: dict[str, InboundProvider] = {"shopify": ShopifyProvider()}


# ---------------------------------------------------------------------------- processors
@dataclass(frozen=True, slots=True)
class InboundMessage:
    """What a processor receives: the verified delivery and where it belongs."""

    event_id: uuid.UUID
    org_id: uuid.UUID
    source_id: uuid.UUID
    provider: str
    topic: str
    delivery_id: str
    account: str | None
    ref_type: str | None
    ref_id: str | None
    occurred_at: datetime | None
    headers: dict[str, Any]
    body: bytes
    #: The worker's settings (storage, caches); ``None`` means the process defaults.
    settings: Settings | None = None

    def json(self) -> Any:
        return json.loads(self.body or b"null")


Processor = Callable[[AsyncSession, InboundMessage], Awaitable[None]]
_processors: dict[tuple[str, str], Processor] = {}
_modules_loaded = False


def register_processor(provider: str, topic: str, processor: Processor) -> None:
    """``topic="*"`` handles every topic of ``provider`` without its own processor."""
    _processors[(provider, topic)] = processor


def unregister_processor(provider: str, topic: str) -> None:
    _processors.pop((provider, topic), None)


@contextlib.contextmanager
def processor_override(provider: str, topic: str, processor: Processor) -> Iterator[None]:
    """Swap one processor for the duration of a block, then put back what was there
    (the integrations' own processor included): for tests and one-off replays."""
    processor_for(provider, topic)  # load the integrations' processors first
    previous = _processors.get((provider, topic))
    register_processor(provider, topic, processor)
    try:
        yield
    finally:
        if previous is None:
            unregister_processor(provider, topic)
        else:
            register_processor(provider, topic, previous)


def processor_for(provider: str, topic: str) -> Processor | None:
    global _modules_loaded
    if not _modules_loaded:
        for module in PROCESSOR_MODULES:
            try:
                if importlib.util.find_spec(module) is not None:
                    importlib.import_module(module)
            except ModuleNotFoundError:
                continue
        _modules_loaded = True
    return _processors.get((provider, topic)) or _processors.get((provider, "*"))


# ------------------------------------------------------------------------------ sources
async def create_source(
    session: AsyncSession, settings: Settings, org_id: uuid.UUID, *, provider: str, name: str,
    account: str | None = None, ref_type: str | None = None, ref_id: str | None = None, secret: str | None = None,
) -> InboundSource:
    """Register where a platform account delivers (called by the integrations layer when
    it connects one). The caller commits and gives the platform :func:`receiver_path`."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown inbound webhook provider {provider!r}")
    source = InboundSource(id=uuid.uuid4(), org_id=org_id, provider=provider, name=name[:200],
                           account=account.lower() if account else None, ref_type=ref_type, ref_id=ref_id,
                           enabled=True)
    if secret:
        source.secret_blob = await keys.seal(settings, keys.INBOUND_SOURCE_SECRET, org_id, source.id, secret)
    repository.add(session, source)
    await session.flush()
    return source


def receiver_path(source: InboundSource) -> str:
    return f"/api/v1/webhooks/inbound/{source.provider}/{source.id}"


async def disable_source(session: AsyncSession, org_id: uuid.UUID, source_id: uuid.UUID) -> None:
    source = await repository.get_source(session, org_id, source_id)
    if source is None:
        raise NotFound("Inbound webhook source not found.")
    source.enabled = False


# ------------------------------------------------------------------------------ receive
@dataclass(frozen=True, slots=True)
class Received:
    event_id: uuid.UUID
    duplicate: bool


async def receive(
    session: AsyncSession, settings: Settings, config: WebhookConfig, provider_name: str, source_id: uuid.UUID,
    headers: Mapping[str, str], body: bytes,
) -> Received:
    provider = PROVIDERS.get(provider_name)
    if provider is None:
        raise NotFound("Unknown webhook provider.")
    source = await repository.get_source_for_receiver(session, source_id)
    if source is None or not source.enabled or source.provider != provider_name:
        raise NotFound("Unknown webhook source.")
    if source.secret_blob is not None:
        secrets_: Sequence[str] = [await keys.unseal(settings, keys.INBOUND_SOURCE_SECRET, source.org_id, source.id,
                                                     source.secret_blob)]
    else:
        secrets_ = provider.app_secrets(config)
    delivery = _verified(provider, config, headers, body, secrets_)
    if source.account and delivery.account != source.account:
        raise Forbidden("The delivery is for another account than this receiver's.", code="account-mismatch")
    return await _store_once(session, provider_name, source.id, source.org_id, delivery, body)


def _verified(provider: InboundProvider, config: WebhookConfig, headers: Mapping[str, str], body: bytes,
              secrets_: Sequence[str]) -> VerifiedDelivery:
    """Signature first (401; 503 if no secret is configured), then the headers (400),
    then freshness (400)."""
    if not secrets_:
        log.error("inbound.no_secret", provider=provider.name)
        raise ServiceUnavailable("This webhook receiver is not configured yet.", code="inbound-not-configured")
    try:
        delivery = provider.verify(headers, body, secrets_)
    except InvalidSignature:
        log.warning("inbound.invalid_signature", provider=provider.name)
        raise Unauthorized("The webhook signature is missing or invalid.", code="invalid-signature") from None
    except MalformedDelivery as exc:
        raise BadRequest(str(exc), code="malformed-webhook") from None
    now = utcnow()
    max_age = provider.max_age(config)
    if delivery.occurred_at is not None:
        if max_age is not None and now - delivery.occurred_at > timedelta(seconds=max_age):
            raise BadRequest("The delivery is too old to be accepted.", code="stale-webhook")
        if delivery.occurred_at - now > FUTURE_TOLERANCE:
            raise BadRequest("The delivery timestamp is in the future.", code="stale-webhook")
    return delivery


async def _store_once(session: AsyncSession, provider_name: str, source_id: uuid.UUID, org_id: uuid.UUID,
                      delivery: VerifiedDelivery, body: bytes) -> Received:
    """Store the raw body under the source's org (unique per delivery id), commit, nudge."""
    await bind_tenant(session, org_id)
    now = utcnow()
    event_id = uuid.uuid4()
    inserted = await repository.insert_inbound_once(session, {
        "id": event_id, "org_id": org_id, "source_id": source_id, "provider": provider_name,
        "delivery_id": delivery.delivery_id, "topic": delivery.topic, "occurred_at": delivery.occurred_at,
        "received_at": now, "headers": delivery.headers, "body": body, "status": InboundStatus.RECEIVED.value,
        "attempts": 0, "next_attempt_at": now,
    })
    if not inserted:
        existing = await repository.get_inbound_by_delivery(session, org_id, source_id, delivery.delivery_id)
        existing_id = existing.id if existing is not None else event_id
        await session.rollback()
        log.info("inbound.duplicate", provider=provider_name, delivery_id=delivery.delivery_id)
        return Received(existing_id, True)
    dispatch.enqueue_after_commit(session, PROCESS_TASK, {"event_id": str(event_id), "org_id": str(org_id)})
    await session.commit()
    log.info("inbound.received", provider=provider_name, topic=delivery.topic, delivery_id=delivery.delivery_id)
    return Received(event_id, False)


async def receive_app_level(
    session: AsyncSession, config: WebhookConfig, provider_name: str, headers: Mapping[str, str], body: bytes,
) -> list[Received]:
    """The app-wide receiver (``/webhooks/inbound/{provider}``): verified with the app's
    own secrets, routed by the account header to every source of that account.

    Every organization that connected the shop gets its own copy (each processes its own
    data). Disabled sources count: ``shop/redact`` arrives 48 hours *after* an uninstall
    disabled the source, and the shop's data must still go. Sources with their own secret
    are not reached here (a custom app signs with that secret and has no app-wide URL).
    An unknown shop is acknowledged with no event: there is nothing of it to erase.
    """
    provider = PROVIDERS.get(provider_name)
    topics = provider.app_level_topics if provider is not None else frozenset()
    if provider is None or not topics:
        raise NotFound("Unknown webhook provider.")
    delivery = _verified(provider, config, headers, body, provider.app_secrets(config))
    if delivery.topic not in topics:
        raise BadRequest(f"Topic {delivery.topic!r} is not accepted at the app-wide address; "
                         f"accepted: {', '.join(sorted(topics))}.", code="topic-not-accepted")
    if not delivery.account:
        raise BadRequest("The delivery names no account (X-Shopify-Shop-Domain).", code="malformed-webhook")
    targets = await repository.sweep_sources_for_account(session, provider_name, delivery.account)
    await session.rollback()
    received = [await _store_once(session, provider_name, source_id, org_id, delivery, body)
                for source_id, org_id in targets]
    if not received:
        log.info("inbound.unknown_account", provider=provider_name, topic=delivery.topic)
    return received


# ------------------------------------------------------------------------------ process
async def process_event(session: AsyncSession, event_id: uuid.UUID, org_id: uuid.UUID,
                        settings: Settings | None = None) -> str | None:
    """Run the processor once; the new status, or ``None`` if not due / held elsewhere."""
    await bind_tenant(session, org_id)
    now = utcnow()
    if not await repository.claim_inbound(session, org_id, event_id, now, now + timedelta(minutes=5)):
        await session.rollback()
        return None
    await session.commit()
    event = await repository.get_inbound(session, org_id, event_id)
    assert event is not None
    source = await session.get(InboundSource, event.source_id)
    processor = processor_for(event.provider, event.topic)
    if processor is None:
        event.status, event.next_attempt_at = InboundStatus.UNHANDLED.value, None
        await session.commit()
        return event.status
    message = InboundMessage(
        event_id=event.id, org_id=org_id, source_id=event.source_id, provider=event.provider, topic=event.topic,
        delivery_id=event.delivery_id, account=source.account if source else None,
        ref_type=source.ref_type if source else None, ref_id=source.ref_id if source else None,
        occurred_at=event.occurred_at, headers=dict(event.headers), body=bytes(event.body), settings=settings,
    )
    try:
        await processor(session, message)
        event = await repository.get_inbound(session, org_id, event_id, for_update=True)
        assert event is not None
        event.status, event.processed_at, event.next_attempt_at = InboundStatus.PROCESSED.value, utcnow(), None
        event.attempts += 1
        event.last_error = None
        await session.commit()  # the processor's writes and "processed" commit together
        return event.status
    except Exception as exc:
        await session.rollback()
        error = f"{type(exc).__name__}: {exc}"[:500]
        log.warning("inbound.process_failed", event_id=str(event_id), topic=message.topic, error=error)
        event = await repository.get_inbound(session, org_id, event_id)
        assert event is not None
        event.attempts += 1
        event.last_error = error
        if event.attempts >= MAX_PROCESS_ATTEMPTS:
            event.status, event.next_attempt_at = InboundStatus.FAILED.value, None
        else:
            event.next_attempt_at = utcnow() + timedelta(seconds=PROCESS_BACKOFF_BASE * 2 ** (event.attempts - 1))
        await session.commit()
        return event.status


async def requeue(session: AsyncSession, org_id: uuid.UUID, *, topic: str | None = None,
                  statuses: Sequence[str] = (InboundStatus.UNHANDLED.value, InboundStatus.FAILED.value)) -> int:
    """Send unhandled (or failed) events through processing again, e.g. after a processor
    for their topic was deployed. The caller commits."""
    stmt = (update(InboundEvent)
            .where(InboundEvent.org_id == org_id, InboundEvent.status.in_(list(statuses)))
            .values(status=InboundStatus.RECEIVED.value, next_attempt_at=utcnow(), attempts=0)
            .execution_options(synchronize_session=False))
    if topic:
        stmt = stmt.where(InboundEvent.topic == topic)
    result = await session.execute(stmt)
    return int(getattr(result, "rowcount", 0))


async def process_due(sessionmaker: async_sessionmaker[AsyncSession], limit: int = 200,
                      settings: Settings | None = None) -> dict[str, int]:
    """The sweep: events whose nudge was lost, and failed processing due for a retry."""
    async with sessionmaker() as session:
        due = await repository.sweep_due_inbound(session, utcnow(), limit)
        await session.rollback()
    counts: dict[str, int] = {}
    for event_id, org_id in due:
        async with sessionmaker() as session:
            status = await process_event(session, event_id, org_id, settings)
        if status is not None:
            counts[status] = counts.get(status, 0) + 1
    return counts


async def purge_processed(sessionmaker: async_sessionmaker[AsyncSession], config: WebhookConfig,
                          retention_days: float = 7) -> int:
    """Drop processed/unhandled raw bodies past retention (kept longer than the staleness
    window, so de-duplication still covers every delivery the window accepts)."""
    keep = max(retention_days * 86400, config.shopify_max_age * 2)
    cutoff = utcnow() - timedelta(seconds=keep)
    async with sessionmaker() as session:
        await open_sweep(session, "inbound_webhook_events")
        result = await session.execute(
            delete(InboundEvent)
            .where(InboundEvent.received_at < cutoff,
                   InboundEvent.status.in_([InboundStatus.PROCESSED.value, InboundStatus.UNHANDLED.value]))
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    return int(getattr(result, "rowcount", 0))
