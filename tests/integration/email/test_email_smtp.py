"""SMTP backend and the outbox sender against a real SMTP server (aiosmtpd) started here."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import ssl
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from omnify.core.db import Database
from omnify.core.secrets import keyring_cache
from omnify.notifications import service
from omnify.notifications.backends import EmailSendError, OutgoingEmail, SmtpBackend, SmtpOptions
from omnify.notifications.models import EmailOutbox
from omnify.notifications.rendering import render
from omnify.settings import Settings
from tests.factories import Account, link_token, register

from .conftest import SmtpServer

CONFIG = service.EmailConfig(sender="Omnify <no-reply@omnify.test>", backoff_base=0.01, backoff_max=0.02,
                             max_attempts=3)


def outgoing(to: str = "ann@example.com") -> OutgoingEmail:
    content = render("password_reset", {"name": "Ann", "reset_url": "https://app.omnify.test/reset?t=abc",
                                        "expires_at": "2026-03-02T10:00:00Z"})
    return OutgoingEmail(to=to, sender="Omnify <no-reply@omnify.test>", content=content,
                         message_id=f"<{uuid.uuid4()}@omnify.test>")


async def queue(database: Database, to: str, template: str = "password_reset",
                context: dict[str, Any] | None = None) -> uuid.UUID:
    async with database.sessionmaker() as s:
        msg = await service.queue_email(s, to=to, template=template, context=context or {
            "name": "Ann", "reset_url": "https://app.omnify.test/reset?t=abc", "expires_at": "2026-03-02T10:00:00Z"})
        await s.commit()
        return msg.id


async def row(database: Database, message_id: uuid.UUID) -> EmailOutbox:
    async with database.sessionmaker() as s:
        found = await s.get(EmailOutbox, message_id)
        assert found is not None
        return found


async def send(database: Database, backend: Any, message_id: uuid.UUID) -> str | None:
    async with database.sessionmaker() as s:
        return await service.send_message(s, backend, CONFIG, message_id)


async def test_smtp_delivers_a_multipart_message(smtp_server: SmtpServer) -> None:
    backend = SmtpBackend(SmtpOptions(host=smtp_server.host, port=smtp_server.port))
    message = outgoing()
    assert await backend.send(message) == message.message_id
    mail_from, rcpt, parsed = smtp_server.mailbox.messages[0]
    assert mail_from == "no-reply@omnify.test" and rcpt == ["ann@example.com"]
    assert parsed["Subject"] == "Reset your Omnify password" and parsed["Message-ID"] == message.message_id
    assert parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None and "https://app.omnify.test/reset?t=abc" in text.get_content()
    assert html is not None and 'href="https://app.omnify.test/reset?t=abc"' in html.get_content()


async def test_smtp_starttls_and_auth(smtp_tls_server: SmtpServer) -> None:
    assert smtp_tls_server.cert_pem is not None
    context = ssl.create_default_context(cadata=smtp_tls_server.cert_pem.decode())
    backend = SmtpBackend(SmtpOptions(host="127.0.0.1", port=smtp_tls_server.port, starttls=True,
                                      username="omnify", password="s3cret", ssl_context=context))
    await backend.send(outgoing())
    assert smtp_tls_server.mailbox.logins == ["omnify"] and len(smtp_tls_server.mailbox.messages) == 1

    wrong = SmtpBackend(SmtpOptions(host="127.0.0.1", port=smtp_tls_server.port, starttls=True,
                                    username="omnify", password="nope", ssl_context=context, timeout=5))
    with pytest.raises(EmailSendError) as info:
        await wrong.send(outgoing())
    assert info.value.permanent and "nope" not in str(info.value)

    untrusted = SmtpBackend(SmtpOptions(host="127.0.0.1", port=smtp_tls_server.port, starttls=True,
                                        username="omnify", password="s3cret", timeout=5))
    with pytest.raises(EmailSendError) as info:  # the self-signed certificate is not trusted
        await untrusted.send(outgoing())
    assert not info.value.permanent


async def test_smtp_error_classes(smtp_server: SmtpServer) -> None:
    backend = SmtpBackend(SmtpOptions(host=smtp_server.host, port=smtp_server.port))
    with pytest.raises(EmailSendError) as bounced:
        await backend.send(outgoing("bounce@example.com"))
    assert bounced.value.permanent
    smtp_server.mailbox.temporary_failures = 1
    with pytest.raises(EmailSendError) as later:
        await backend.send(outgoing())
    assert not later.value.permanent
    closed = SmtpBackend(SmtpOptions(host="127.0.0.1", port=1, timeout=2))
    with pytest.raises(EmailSendError) as refused:
        await closed.send(outgoing())
    assert not refused.value.permanent


async def test_outbox_retries_with_backoff_then_sends(database: Database, smtp_server: SmtpServer) -> None:
    backend = SmtpBackend(SmtpOptions(host=smtp_server.host, port=smtp_server.port))
    config = service.EmailConfig(sender="Omnify <no-reply@omnify.test>", backoff_base=0.4, backoff_max=0.4)
    smtp_server.mailbox.temporary_failures = 2
    message_id = await queue(database, "ann@example.com")

    async def attempt() -> str | None:
        async with database.sessionmaker() as s:
            return await service.send_message(s, backend, config, message_id)

    assert await attempt() == "queued"
    first = await row(database, message_id)
    assert first.attempts == 1 and first.last_error and "451" in first.last_error
    assert first.next_attempt_at is not None and first.next_attempt_at > first.updated_at
    assert await attempt() is None  # not due yet: the backoff (0.2-0.4 s) holds it

    statuses = []
    for _ in range(100):
        await asyncio.sleep(0.05)
        status = await attempt()
        if status:
            statuses.append(status)
        if status == "sent":
            break
    assert statuses == ["queued", "sent"]
    final = await row(database, message_id)
    assert final.status == "sent" and final.attempts == 3 and final.sent_at is not None
    assert final.last_error is None and final.provider_message_id == f"<{message_id}@omnify.test>"
    assert len(smtp_server.mailbox.messages) == 1
    assert smtp_server.mailbox.messages[0][2]["Message-ID"] == f"<{message_id}@omnify.test>"
    assert await attempt() is None  # sent once, never again


async def test_outbox_gives_up_on_permanent_errors_and_after_max_attempts(
    database: Database, smtp_server: SmtpServer
) -> None:
    backend = SmtpBackend(SmtpOptions(host=smtp_server.host, port=smtp_server.port))
    bounced = await queue(database, "bounce@example.com")
    assert await send(database, backend, bounced) == "failed"
    assert (await row(database, bounced)).attempts == 1

    down = SmtpBackend(SmtpOptions(host="127.0.0.1", port=1, timeout=2))
    message_id = await queue(database, "ann@example.com")

    statuses = []
    for _ in range(100):
        status = await send(database, down, message_id)
        if status:
            statuses.append(status)
        if status == "failed":
            break
        await asyncio.sleep(0.02)
    assert statuses == ["queued", "queued", "failed"]
    assert (await row(database, message_id)).attempts == CONFIG.max_attempts


async def test_invitation_email_end_to_end(
    client: httpx.AsyncClient, owner: Account, database: Database, smtp_server: SmtpServer,
    no_broker: list[Any], settings: Settings,
) -> None:
    """The foundation's invitation flow queues the e-mail; the sender delivers it over SMTP."""
    invitee = await register(client)
    resp = await client.post(f"/api/v1/orgs/{owner.org_id}/invitations", headers=owner.headers,
                             json={"email": invitee.email, "role": "member"})
    assert resp.status_code == 201
    async with database.sessionmaker() as s:
        msg = await s.scalar(select(EmailOutbox).where(EmailOutbox.dedupe_key == f"invitation:{resp.json()['id']}"))
        assert msg is not None
    from omnify.notifications import dispatch

    await dispatch.drain()
    assert ("omnify.notifications.send", {"message_id": str(msg.id)}, None) in no_broker  # nudged after commit
    stored = json.dumps(msg.context)
    assert "token" not in stored and "invitations/accept" not in stored  # the link is only sealed at rest
    backend = SmtpBackend(SmtpOptions(host=smtp_server.host, port=smtp_server.port))
    without_keys = await send(database, backend, msg.id)
    assert without_keys == "failed"  # a sender that cannot open the seal fails permanently, sends nothing blank
    async with database.sessionmaker() as s:  # back in the queue, retried by a properly configured sender
        await s.execute(update(EmailOutbox).where(EmailOutbox.id == msg.id)
                        .values(status="queued", next_attempt_at=None, attempts=0))
        await s.commit()
    config = dataclasses.replace(CONFIG, keyrings=keyring_cache(settings))
    async with database.sessionmaker() as s:
        assert await service.send_message(s, backend, config, msg.id) == "sent"
    _from, rcpt, parsed = smtp_server.mailbox.messages[-1]
    assert rcpt == [invitee.email] and "invited you to" in parsed["Subject"]
    body = parsed.get_body(("plain",))
    assert body is not None
    token = link_token(body.get_content())
    accepted = await client.post("/api/v1/invitations/accept", headers=invitee.headers, json={"token": token})
    assert accepted.status_code == 200, accepted.text  # the delivered link is the real one


async def test_send_due_sweeps_queued_messages(database: Database, smtp_server: SmtpServer) -> None:
    backend = SmtpBackend(SmtpOptions(host=smtp_server.host, port=smtp_server.port))
    ids = [await queue(database, f"sweep-{i}@example.com") for i in range(3)]
    counts = await service.send_due(database.sessionmaker, backend, CONFIG, limit=1000)
    assert counts.get("sent", 0) >= 3
    assert [(await row(database, i)).status for i in ids] == ["sent"] * 3
    delivered = {rcpt[0] for _f, rcpt, _m in smtp_server.mailbox.messages}
    assert {f"sweep-{i}@example.com" for i in range(3)} <= delivered
