"""SES against a real moto_server process, Resend against a server speaking its API, file/console."""

from __future__ import annotations

import io
import uuid
from email import message_from_string, policy
from email.message import EmailMessage
from pathlib import Path

import boto3
import pytest

from omnify.core.db import Database
from omnify.notifications import service
from omnify.notifications.backends import (
    ConsoleBackend,
    EmailSendError,
    FileBackend,
    OutgoingEmail,
    ResendBackend,
    SesBackend,
    backend_from_settings,
)
from omnify.notifications.rendering import render
from omnify.settings import Settings

from .conftest import Moto, ResendApi

SENDER = "Omnify <no-reply@omnify-ses.test>"


def outgoing(to: str = "ann@example.com", sender: str = SENDER) -> OutgoingEmail:
    content = render("sync_failing", {"name": "Ann", "org_name": "Acme & Co", "client_name": "Shop <1>",
                                      "platform": "shopify", "error_message": "429 Too Many Requests",
                                      "details_url": "https://app.omnify.test/c/1"})
    return OutgoingEmail(to=to, sender=sender, content=content, message_id=f"<{uuid.uuid4()}@omnify-ses.test>",
                         reply_to="support@omnify-ses.test")


@pytest.fixture
def ses(moto_server: Moto, monkeypatch: pytest.MonkeyPatch) -> SesBackend:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    boto3.client("ses", region_name="eu-west-1", endpoint_url=moto_server.url) \
        .verify_domain_identity(Domain="omnify-ses.test")
    return SesBackend(region="eu-west-1", endpoint_url=moto_server.url)


async def test_ses_sends_the_raw_multipart_message(ses: SesBackend, moto_server: Moto) -> None:
    message = outgoing()
    provider_id = await ses.send(message)
    assert provider_id
    sent = [m for m in moto_server.raw_messages() if m["id"] == provider_id]
    assert len(sent) == 1 and "ann@example.com" in sent[0]["destinations"]
    parsed = message_from_string(sent[0]["raw_data"], policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == "Shopify sync failing for Shop <1>"
    assert parsed["Reply-To"] == "support@omnify-ses.test" and parsed["Message-ID"] == message.message_id
    html = parsed.get_body(("html",))
    assert html is not None and "Shop &lt;1&gt;" in html.get_content()  # escaped in HTML only
    text = parsed.get_body(("plain",))
    assert text is not None and "Shop <1>" in text.get_content()


async def test_ses_refuses_an_unverified_sender_permanently(ses: SesBackend) -> None:
    with pytest.raises(EmailSendError) as info:
        await ses.send(outgoing(sender="Someone <x@not-verified.test>"))
    assert info.value.permanent and "MessageRejected" in str(info.value)


async def test_ses_unreachable_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    backend = SesBackend(region="eu-west-1", endpoint_url="http://127.0.0.1:1")
    with pytest.raises(EmailSendError) as info:
        await backend.send(outgoing())
    assert not info.value.permanent


async def test_outbox_through_ses_records_the_provider_id(database: Database, ses: SesBackend,
                                                          moto_server: Moto) -> None:
    async with database.sessionmaker() as s:
        msg = await service.queue_email(s, to="bob@example.com", template="password_reset", context={
            "name": "Bob", "reset_url": "https://app.omnify.test/r", "expires_at": "2026-03-02T10:00:00Z"})
        await s.commit()
    config = service.EmailConfig(sender=SENDER)
    async with database.sessionmaker() as s:
        assert await service.send_message(s, ses, config, msg.id) == "sent"
    async with database.sessionmaker() as s:
        row = await s.get(service.EmailOutbox, msg.id)
        assert row is not None and row.provider_message_id
    assert any(m["id"] == row.provider_message_id for m in moto_server.raw_messages())


async def test_resend_api(resend_api: ResendApi) -> None:
    backend = ResendBackend("re_test_key", base_url=resend_api.url)
    message = outgoing()
    assert await backend.send(message) == "re_1"
    headers, body = resend_api.requests[0]
    assert headers["authorization"] == "Bearer re_test_key"
    assert headers["idempotency-key"] == message.message_id.strip("<>")
    assert body["from"] == SENDER and body["to"] == ["ann@example.com"]
    assert body["subject"] == message.content.subject and body["reply_to"] == "support@omnify-ses.test"
    assert "Shop &lt;1&gt;" in body["html"] and "Shop <1>" in body["text"]

    resend_api.statuses = [422, 429, 500]
    outcomes = []
    for _ in range(3):
        with pytest.raises(EmailSendError) as info:
            await backend.send(outgoing())
        outcomes.append(info.value.permanent)
        assert "re_test_key" not in str(info.value)
    assert outcomes == [True, False, False]
    with pytest.raises(EmailSendError) as down:
        await ResendBackend("k", base_url="http://127.0.0.1:1").send(outgoing())
    assert not down.value.permanent


async def test_file_and_console_backends(tmp_path: Path) -> None:
    file_backend = FileBackend(tmp_path / "mail")
    name = await file_backend.send(outgoing())
    assert name is not None
    saved = message_from_string((tmp_path / "mail" / name).read_text(), policy=policy.default)
    assert saved["To"] == "ann@example.com" and saved.is_multipart()

    stream = io.StringIO()
    await ConsoleBackend(stream).send(outgoing())
    printed = stream.getvalue()
    assert "Subject: Shopify sync failing for Shop <1>" in printed and "https://app.omnify.test/c/1" in printed


def test_backend_from_settings(settings: Settings) -> None:
    assert isinstance(backend_from_settings(settings), ConsoleBackend)  # the development default
    assert isinstance(backend_from_settings(settings.model_copy(update={"email_backend": "file"})), FileBackend)
    smtp = backend_from_settings(settings.model_copy(update={"email_backend": "smtp", "smtp_port": 2525}))
    assert getattr(smtp, "options").port == 2525
    with pytest.raises(ValueError, match="RESEND_API_KEY"):
        backend_from_settings(settings.model_copy(update={"email_backend": "resend"}))
