"""Every message renders (HTML + text), queueing validates context, and the weekly digest."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from omnify.core.db import Database, bind_tenant
from omnify.notifications import digest, service
from omnify.notifications.backends import FileBackend
from omnify.notifications.models import EmailOutbox
from omnify.notifications.rendering import MESSAGES, TemplateError, render
from omnify.settings import Settings
from tests.factories import Account, add_member

HOSTILE = "<script>alert(1)</script> & Co"
CONTEXTS: dict[str, dict[str, Any]] = {
    "invitation": {"org_name": HOSTILE, "role": "admin", "inviter": "ann@example.com",
                   "accept_url": "https://app.omnify.test/invitations/accept?token=t", "expires_at": "2026-03-02T10:00:00Z",
                   "token": "t"},
    "password_reset": {"name": HOSTILE, "reset_url": "https://app.omnify.test/reset?t=1",
                       "expires_at": "2026-03-02T10:00:00+00:00"},
    "onboarding_completed": {"name": "Ann", "org_name": "Acme", "client_name": HOSTILE,
                             "client_url": "https://app.omnify.test/clients/1"},
    "credential_expiring": {"name": "Ann", "org_name": "Acme", "client_name": HOSTILE, "platform": "google_ads",
                            "expires_at": "2026-03-09T00:00:00Z", "reconnect_url": "https://app.omnify.test/c/1"},
    "sync_failing": {"name": "Ann", "org_name": "Acme", "client_name": HOSTILE, "platform": "tiktok_ads",
                     "error_message": HOSTILE, "details_url": "https://app.omnify.test/c/1"},
    "webhook_endpoint_disabled": {"name": "Ann", "org_name": HOSTILE, "endpoint_url": "https://hooks.example.com/x",
                                  "failing_since": "2026-02-25T10:00:00Z", "disabled_at": "2026-03-02T10:00:00Z",
                                  "manage_url": "https://app.omnify.test/w/1"},
    "weekly_digest": {"name": "Ann", "org_name": HOSTILE, "period_start": "2026-02-23T00:00:00+00:00",
                      "period_end": "2026-03-02T00:00:00+00:00", "dashboard_url": "https://app.omnify.test/",
                      "preferences_url": "https://app.omnify.test/settings/notifications",
                      "sections": [{"title": "Spend", "rows": [{"label": "Meta Ads", "value": "1,204.50 EUR"}],
                                    "note": HOSTILE}]},
    "rule_fired": {"rule_name": HOSTILE, "client_name": "Acme", "count": 2, "lines": [HOSTILE, "Ad 2: applied"],
                   "details_url": "https://app.omnify.test/orgs/1/rules/2/evaluations/3"},
    "client_report": {"client_name": HOSTILE, "org_name": "Acme Agency", "period_label": "week of 02 Mar 2026",
                      "since": "2026-03-02", "until": "2026-03-08", "attachments": [],
                      "unsubscribe_url": "https://app.omnify.test/api/v1/reports/unsubscribe?token=t"},
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_every_message_renders_html_and_text(name: str) -> None:
    rendered = render(name, CONTEXTS[name])
    assert rendered.subject and "\n" not in rendered.subject
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html  # escaped in HTML
    assert "<script>" in rendered.text  # plain text is not HTML: shown as typed
    links = [v for v in CONTEXTS[name].values() if isinstance(v, str) and v.startswith("https://")]
    for link in links:
        assert link in rendered.text
        assert f'href="{link}"' in rendered.html or link.replace("&", "&amp;") in rendered.html
    assert rendered.html.lstrip().startswith("<!doctype html>")


def test_missing_context_and_unknown_templates_fail_loudly() -> None:
    with pytest.raises(TemplateError, match="needs reset_url"):
        render("password_reset", {"name": "Ann", "expires_at": "x"})
    with pytest.raises(TemplateError, match="unknown e-mail template"):
        render("nope", {})
    header_injection = render("onboarding_completed", {**CONTEXTS["onboarding_completed"],
                                                       "client_name": "Acme\r\nBcc: evil@example.com"})
    assert "\r" not in header_injection.subject and "\n" not in header_injection.subject


async def test_queue_validates_and_deduplicates(database: Database) -> None:
    async with database.sessionmaker() as s:
        with pytest.raises(TemplateError):
            await service.queue_email(s, to="a@example.com", template="password_reset", context={"name": "A"})
        key = f"test:{uuid.uuid4()}"
        first = await service.queue_email(s, to="a@example.com", template="password_reset",
                                          context=CONTEXTS["password_reset"], dedupe_key=key)
        again = await service.queue_email(s, to="a@example.com", template="password_reset",
                                          context=CONTEXTS["password_reset"], dedupe_key=key)
        assert first.id == again.id
        await s.commit()


# -------------------------------------------------------------------------------- digest
@pytest.fixture
async def spend_section() -> AsyncIterator[list[uuid.UUID]]:
    """Stands in for the analytics provider: reports spend for the organizations it is told."""
    orgs: list[uuid.UUID] = []

    async def provider(session: Any, org_id: uuid.UUID, start: datetime, end: datetime) -> digest.DigestSection | None:
        if org_id not in orgs:
            return None
        assert end - start == timedelta(days=7) and start.weekday() == 0
        return digest.DigestSection("Spend last week", [digest.DigestRow("Meta Ads", "1,204.50 EUR")])

    async def broken(session: Any, org_id: uuid.UUID, start: datetime, end: datetime) -> digest.DigestSection | None:
        raise RuntimeError("analytics offline")

    digest.register_section("test-spend", provider)
    digest.register_section("test-broken", broken)
    yield orgs
    digest.unregister_section("test-spend")
    digest.unregister_section("test-broken")


async def test_weekly_digest_respects_opt_out_and_sends_once_per_week(
    client: httpx.AsyncClient, owner: Account, database: Database, owner_database: Database, settings: Settings,
    spend_section: list[uuid.UUID], tmp_path: Any,
) -> None:
    member = await add_member(client, owner, "member")
    opted_out = await add_member(client, owner, "viewer")
    resp = await client.patch("/api/v1/me", headers=opted_out.headers, json={"email_opt_out_digest": True})
    assert resp.status_code == 200
    org_id = uuid.UUID(owner.org_id)
    now = datetime(2026, 3, 4, 8, 0, tzinfo=UTC)  # a Wednesday: the digest covers 23 Feb - 2 Mar

    async with database.sessionmaker() as s:  # nothing to say for this org yet: no e-mail
        await bind_tenant(s, org_id)
        assert await digest.queue_org_digest(s, settings, org_id, now=now) == 0

    spend_section.append(org_id)
    for _ in range(2):  # the beat may fire twice: each person gets one digest per week
        async with database.sessionmaker() as s:
            await bind_tenant(s, org_id)
            assert await digest.queue_org_digest(s, settings, org_id, now=now) == 2
            await s.commit()

    async with owner_database.sessionmaker() as s:
        mails = (await s.scalars(select(EmailOutbox).where(EmailOutbox.org_id == org_id,
                                                           EmailOutbox.template == "weekly_digest"))).all()
    assert sorted(m.to_email for m in mails) == sorted([owner.email, member.email])
    assert mails[0].context["period_start"].startswith("2026-02-23")
    assert [s["title"] for s in mails[0].context["sections"]] == ["Spend last week"]

    backend = FileBackend(tmp_path / "mail")
    async with database.sessionmaker() as s:
        assert await service.send_message(s, backend, service.EmailConfig(), mails[0].id) == "sent"
    eml = next((tmp_path / "mail").iterdir()).read_text()
    assert "List-Unsubscribe: <http://127.0.0.1:8000/settings/notifications>" in eml
    assert "1,204.50 EUR" in eml


async def test_queue_all_digests_walks_organizations(
    client: httpx.AsyncClient, owner: Account, outsider: Account, database: Database, settings: Settings,
    spend_section: list[uuid.UUID],
) -> None:
    spend_section.extend([uuid.UUID(owner.org_id), uuid.UUID(outsider.org_id)])
    assert await digest.queue_all_digests(database.sessionmaker, settings) >= 2


async def test_task_wrappers_send_through_the_configured_backend(
    database: Database, settings: Settings, tmp_path: Any,
) -> None:
    """The Celery task bodies, run in-process against the test database (file backend)."""
    import asyncio

    from omnify.jobs.celery_app import celery_app
    from omnify.notifications import runtime, tasks

    assert {"omnify.notifications.send", "omnify.notifications.send_due",
            "omnify.notifications.weekly_digest"} <= set(celery_app.tasks)
    async with database.sessionmaker() as s:
        first = await service.queue_email(s, to="task-1@example.com", template="password_reset",
                                          context=CONTEXTS["password_reset"])
        second = await service.queue_email(s, to="task-2@example.com", template="password_reset",
                                           context=CONTEXTS["password_reset"])
        await s.commit()
    task_settings = settings.model_copy(update={"email_backend": "file", "data_dir": tmp_path})
    with runtime.use_settings(task_settings):
        assert await asyncio.to_thread(lambda: tasks.send.run(message_id=str(first.id))) == "sent"
        assert await asyncio.to_thread(lambda: tasks.send.run(message_id=str(first.id))) is None  # once
        counts = await asyncio.to_thread(tasks.send_due.run)
        assert counts.get("sent", 0) >= 1
        assert await asyncio.to_thread(tasks.weekly_digest.run) >= 0
    written = sorted(p.read_text() for p in (tmp_path / "mail").iterdir())
    assert any("task-1@example.com" in m for m in written) and any("task-2@example.com" in m for m in written)
    async with database.sessionmaker() as s:
        row = await s.get(EmailOutbox, second.id)
        assert row is not None and row.status == "sent"
