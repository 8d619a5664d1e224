"""The e-mail outbox: queue messages in business transactions, send them from workers.

Queueing writes a row in the caller's transaction (an invitation cannot exist without
its e-mail, nor an e-mail for an invitation that rolled back) and, after commit, nudges
a send task. Sending claims a row with a lease (so the nudged task and the periodic
sweep cannot both send it), renders it, hands it to the backend and records the
outcome: ``sent``, back to ``queued`` with an exponential-backoff retry time, or
``failed`` on a permanent error or after the last attempt.

The Message-ID is derived from the outbox id, so a message re-sent after a lost
acknowledgement carries the same id and receiving systems can drop the duplicate.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from omnify.core import crypto
from omnify.core.db import utcnow
from omnify.core.logging import get_logger
from omnify.notifications import dispatch, metrics
from omnify.notifications.backends import EmailBackend, EmailSendError, OutgoingEmail
from omnify.notifications.models import EmailOutbox
from omnify.notifications.rendering import TemplateError, check_context, render
from omnify.settings import Settings

if TYPE_CHECKING:
    from omnify.core.secrets import KeyRing, KeyRingCache

log = get_logger(__name__)

SEND_TASK = "omnify.notifications.send"
QUEUED, SENT, FAILED = "queued", "sent", "failed"
#: Context key of the envelope-encrypted secrets (tokens, links that carry one) of a message.
SEALED_KEY = "sealed"


def _sealed_aad(message_id: uuid.UUID) -> bytes:
    # Bound to the row: a sealed blob copied into another message does not decrypt.
    return crypto.build_aad(purpose="email_outbox", message_id=message_id)


async def queue_email(
    session: AsyncSession,
    *,
    to: str,
    template: str,
    context: dict[str, Any],
    org_id: uuid.UUID | None = None,
    dedupe_key: str | None = None,
    secrets: dict[str, str] | None = None,
    keyring: KeyRing | None = None,
) -> EmailOutbox:
    """Queue one message in the caller's transaction.

    ``secrets`` are context values that grant access (an invitation or reset token, a
    link carrying one): the outbox is read by operators, backups and the sender, and has
    no row-level security, so they are stored only envelope-encrypted with ``keyring``
    (bound to this message's id) and decrypted by the sender at render time, which keeps
    retries working. Raises :class:`TemplateError` for an unknown template or a context
    missing a value it needs. With ``dedupe_key``, queueing the same message again returns
    the first one.
    """
    check_context(template, {**context, **(secrets or {})})
    if dedupe_key is not None:
        existing = await session.scalar(select(EmailOutbox).where(EmailOutbox.dedupe_key == dedupe_key))
        if existing is not None:
            return existing
    stored = json.loads(json.dumps(context, default=str))
    message_id = uuid.uuid4()
    if secrets:
        if keyring is None:
            raise ValueError("secrets in an e-mail need a key ring to be sealed")
        if SEALED_KEY in stored or set(secrets) & set(stored):
            raise ValueError("a secret context value is also given in clear")
        stored[SEALED_KEY] = crypto.encrypt_str(json.dumps(secrets), keyring, _sealed_aad(message_id)).to_dict()
    message = EmailOutbox(
        id=message_id, org_id=org_id, to_email=to, template=template, context=stored,
        status=QUEUED, attempts=0, next_attempt_at=utcnow(), dedupe_key=dedupe_key,
    )
    session.add(message)
    await session.flush()
    dispatch.enqueue_after_commit(session, SEND_TASK, {"message_id": str(message.id)})
    return message


# -------------------------------------------------------------------------------- sender
@dataclass(frozen=True, slots=True)
class EmailConfig:
    sender: str = "Omnify <no-reply@omnify.local>"
    reply_to: str | None = None
    max_attempts: int = 8
    #: First retry after about this many seconds, doubling each time up to ``backoff_max``.
    backoff_base: float = 30.0
    backoff_max: float = 3600.0
    #: A claimed message is invisible to other senders this long (a send never takes longer).
    lease_seconds: float = 120.0
    #: Reads an attachment's bytes by storage key (``context["attachments"]``: report PDFs).
    load_attachment: Callable[[str], Awaitable[bytes]] | None = None
    #: Opens the sealed secrets of a message (invitation and reset links).
    keyrings: KeyRingCache | None = None

    @property
    def message_id_domain(self) -> str:
        address = email.utils.parseaddr(self.sender)[1]
        return address.rpartition("@")[2] or "omnify.local"

    def backoff(self, attempts: int) -> float:
        """Equal jitter: half the exponential delay fixed, half random, so retries spread
        out without ever coming back almost at once."""
        delay = float(min(self.backoff_max, self.backoff_base * (2 ** max(attempts - 1, 0))))
        return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - scheduling jitter

    @classmethod
    def from_settings(cls, settings: Settings) -> EmailConfig:
        from omnify.core.secrets import keyring_cache
        from omnify.core.storage import storage_from_settings

        storage = storage_from_settings(settings)

        async def load(key: str) -> bytes:
            return b"".join([chunk async for chunk in await storage.get_stream(key)])

        return cls(
            load_attachment=load,
            keyrings=keyring_cache(settings),
            sender=settings.email_from,
            reply_to=getattr(settings, "email_reply_to", None),
            max_attempts=int(getattr(settings, "email_max_attempts", 8)),
            backoff_base=float(getattr(settings, "email_retry_base_seconds", 30.0)),
            backoff_max=float(getattr(settings, "email_retry_max_seconds", 3600.0)),
        )


async def _claim(session: AsyncSession, message_id: uuid.UUID, now: datetime, lease_until: datetime) -> bool:
    result = await session.execute(
        update(EmailOutbox)
        .where(EmailOutbox.id == message_id, EmailOutbox.status == QUEUED,
               or_(EmailOutbox.next_attempt_at.is_(None), EmailOutbox.next_attempt_at <= now))
        .values(next_attempt_at=lease_until)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


def _headers(message: EmailOutbox) -> dict[str, str]:
    unsubscribe = message.context.get("preferences_url") if message.template == "weekly_digest" else None
    unsubscribe = message.context.get("unsubscribe_url") or unsubscribe
    return {"List-Unsubscribe": f"<{unsubscribe}>"} if unsubscribe else {}


async def _attachments(message: EmailOutbox, config: EmailConfig) -> tuple[tuple[str, str, bytes], ...]:
    wanted = message.context.get("attachments") or []
    if not wanted:
        return ()
    if config.load_attachment is None:
        raise TemplateError("this sender cannot read attachments")
    loaded = []
    for a in wanted:
        loaded.append((str(a["filename"]), str(a.get("content_type") or "application/octet-stream"),
                       await config.load_attachment(str(a["key"]))))
    return tuple(loaded)


async def render_context(message: EmailOutbox, config: EmailConfig) -> dict[str, Any]:
    """The message's context with its sealed secrets opened (only in memory, to render)."""
    context = {k: v for k, v in (message.context or {}).items() if k != SEALED_KEY}
    sealed = (message.context or {}).get(SEALED_KEY)
    if sealed is None:
        return context
    if config.keyrings is None:
        raise TemplateError("this sender cannot open sealed e-mail secrets")
    try:
        blob = crypto.EncryptedBlob.from_dict(sealed)
        ring = await config.keyrings.for_key(blob.master_key_id)
        secrets = json.loads(crypto.decrypt_str(blob, ring, _sealed_aad(message.id)))
    except crypto.DecryptionError as exc:  # a fixed message: nothing secret in it
        raise TemplateError(str(exc)) from None
    return {**context, **secrets}


async def send_message(
    session: AsyncSession, backend: EmailBackend, config: EmailConfig, message_id: uuid.UUID
) -> str | None:
    """Try to send one queued, due message; its new status, or ``None`` if not ours to send."""
    now = utcnow()
    if not await _claim(session, message_id, now, now + timedelta(seconds=config.lease_seconds)):
        await session.rollback()
        return None
    await session.commit()
    message = await session.get(EmailOutbox, message_id, populate_existing=True)
    assert message is not None
    await session.commit()  # no connection held while the provider answers

    error: str | None = None
    permanent = False
    provider_id: str | None = None
    try:
        content = render(message.template, await render_context(message, config))
        provider_id = await backend.send(OutgoingEmail(
            to=message.to_email, sender=config.sender, content=content, reply_to=config.reply_to,
            message_id=f"<{message.id}@{config.message_id_domain}>", headers=_headers(message),
            attachments=await _attachments(message, config),
        ))
    except TemplateError as exc:
        error, permanent = str(exc), True
    except EmailSendError as exc:
        error, permanent = str(exc), exc.permanent
    except Exception as exc:  # an unexpected backend failure is retried, not lost
        error = f"{type(exc).__name__}: {exc}"

    now = utcnow()
    message.attempts += 1
    if error is None:
        message.status, message.sent_at, message.next_attempt_at = SENT, now, None
        message.provider_message_id = (provider_id or "")[:255] or None
        message.last_error = None
        metrics.EMAILS.labels(result=metrics.SENT).inc()
    elif permanent or message.attempts >= config.max_attempts:
        message.status, message.next_attempt_at = FAILED, None
        message.last_error = error[:1000]
        metrics.EMAILS.labels(result=metrics.FAILED).inc()
    else:
        message.next_attempt_at = now + timedelta(seconds=config.backoff(message.attempts))
        message.last_error = error[:1000]
        metrics.EMAILS.labels(result=metrics.RETRY).inc()
    message.updated_at = now
    session.add(message)
    await session.commit()
    log.info("email.attempt", message_id=str(message.id), template=message.template, status=message.status,
             attempts=message.attempts, error=error)
    return message.status


async def due_messages(session: AsyncSession, limit: int = 200) -> list[uuid.UUID]:
    rows = await session.scalars(
        select(EmailOutbox.id)
        .where(EmailOutbox.status == QUEUED,
               or_(EmailOutbox.next_attempt_at.is_(None), EmailOutbox.next_attempt_at <= utcnow()))
        .order_by(EmailOutbox.next_attempt_at).limit(limit)
    )
    return list(rows.all())


async def send_due(
    sessionmaker: async_sessionmaker[AsyncSession], backend: EmailBackend, config: EmailConfig, *,
    limit: int = 200, concurrency: int = 4,
) -> dict[str, int]:
    """Send every due message (the periodic sweep); counts by resulting status."""
    async with sessionmaker() as session:
        ids = await due_messages(session, limit)
    gate = asyncio.Semaphore(concurrency)

    async def one(message_id: uuid.UUID) -> str | None:
        async with gate, sessionmaker() as session:
            return await send_message(session, backend, config, message_id)

    counts: dict[str, int] = {}
    for status in await asyncio.gather(*(one(i) for i in ids)):
        if status is not None:
            counts[status] = counts.get(status, 0) + 1
    return counts


#: Context keys that carry a bearer secret (a reset or invitation token, or a link with one).
LINK_SECRET_KEYS = ("token", "reset_url", "accept_url")


async def redact_expired_links(session: AsyncSession, cutoffs: dict[str, datetime], *, lookback: timedelta) -> int:
    """Remove token-bearing links from e-mails of ``template`` created before its cutoff.

    Once a reset or invitation link has expired nobody needs it, and the outbox is not
    the place to keep bearer secrets. A message still queued by then is pointless: it is
    failed as expired. Only rows younger than ``cutoff - lookback`` are scanned (the
    daily purge has seen older ones). The caller commits.
    """
    redacted = 0
    for template, cutoff in cutoffs.items():
        rows = (await session.scalars(select(EmailOutbox).where(
            EmailOutbox.template == template, EmailOutbox.created_at < cutoff,
            EmailOutbox.created_at >= cutoff - lookback))).all()
        for row in rows:
            context = dict(row.context or {})
            if not any(key in context for key in (*LINK_SECRET_KEYS, SEALED_KEY)):
                continue
            context.pop(SEALED_KEY, None)
            for key in LINK_SECRET_KEYS:
                if key in context:
                    context[key] = "[expired]"
            row.context = context
            if row.status == QUEUED:
                row.status, row.last_error, row.next_attempt_at = FAILED, "expired before it could be sent", None
            redacted += 1
    return redacted
