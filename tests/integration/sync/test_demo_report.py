"""The demo client's branded PDF report and its weekly e-mail, with nothing faked.

`omnify up`'s demo organization is connected to the sandboxes and synced; Acme Outdoor gets
brand colours and a logo as onboarding would give them; the report is rendered, turned
into PNG pages with Debian's pdftoppm and read back with pdftotext; then a weekly schedule
sends it on the Monday after, as an e-mail with the PDF attached and an unsubscribe link.
"""

from __future__ import annotations

import email
import io
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from omnify.clients import service as clients
from omnify.clients.schemas import Brand, ClientUpdateIn
from omnify.core.context import Actor
from omnify.core.db import Base, Database, bind_tenant, utcnow
from omnify.demo import DEMO_EMAIL, ensure_demo
from omnify.demo_sync import ensure_demo_connections, sandbox_env
from omnify.files import service as files
from omnify.files.sniffing import FileCategory
from omnify.integrations.money import format_minor
from omnify.integrations.sandboxes import RunningSandboxes
from omnify.notifications import service as mail
from omnify.notifications.backends import FileBackend
from omnify.notifications.models import EmailOutbox
from omnify.reports import service as reports
from omnify.reports.models import Cadence
from omnify.rules.schedule import zone
from tests.conftest import DatabaseUrls, make_settings
from tests.integration.sync.test_sync_demo import _settings_from_env

BRAND = ["#0F766E", "#F59E0B"]
TZ = "America/New_York"


def tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing (scripts/install-test-tools.sh installs poppler-utils)")
        pytest.skip(f"{name} is missing (scripts/install-test-tools.sh installs poppler-utils)")
    return found


def logo_png() -> bytes:
    img = Image.new("RGB", (240, 120), "#FFFFFF")
    img.paste(Image.new("RGB", (200, 80), BRAND[1]), (20, 20))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_demo_client_pdf_renders_and_the_weekly_email_goes_out_on_schedule(
    running: RunningSandboxes, db_urls: DatabaseUrls, database: Database, owner_database: Database, tmp_path: Path,
    demo_dir: Path,
) -> None:
    pdftoppm, pdftotext = tool("pdftoppm"), tool("pdftotext")
    demo = _settings_from_env(make_settings(demo_dir, db_urls), sandbox_env(running))
    await ensure_demo(demo, database)
    # The same backfill as the digest test: whichever runs first sets the shared demo history.
    report = await ensure_demo_connections(demo, database, backfill_days=120)
    assert report.errors == [] and report.org_id is not None
    org_id, client_id = report.org_id, report.clients["Acme Outdoor"]
    actor = Actor(actor_type="system", actor_id=None, label=DEMO_EMAIL, request_id="report-test")
    async with database.sessionmaker() as session:  # what the onboarding's brand step stores
        await bind_tenant(session, org_id)
        await clients.update_client(session, org_id, actor, client_id,
                                    ClientUpdateIn(brand=Brand(colors=BRAND), timezone=TZ))
        await files.upload(session, demo, files.storage_for(demo), org_id, actor, client_id, FileCategory.LOGO,
                           "acme-logo.png", _chunks(logo_png()))

    until = utcnow().astimezone(zone(TZ)).date() - timedelta(days=1)
    since = until - timedelta(days=27)
    async with database.sessionmaker() as session:
        await bind_tenant(session, org_id)
        filename, pdf = await reports.render_report(session, demo, org_id, client_id, since, until)
    assert filename.startswith("acme-outdoor-report-") and pdf[:5] == b"%PDF-"
    path = tmp_path / filename
    path.write_bytes(pdf)
    subprocess.run([pdftoppm, "-png", "-r", "50", str(path), str(tmp_path / "page")], check=True, timeout=60)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert pages, "pdftoppm produced no page"
    with Image.open(pages[0]) as first:
        assert first.format == "PNG" and first.width > 300
        band = first.convert("RGB").getpixel((first.width // 3, int(first.height * 0.05)))
    assert band == pytest.approx(tuple(int(BRAND[0][i:i + 2], 16) for i in (1, 3, 5)), abs=6)  # brand colour
    text = subprocess.run([pdftotext, "-layout", str(path), "-"], check=True, capture_output=True, text=True,
                          timeout=60).stdout
    for expected in ("Acme Outdoor", "Performance report", "Key figures (USD)", "Change vs previous",
                     "Top campaigns (by ROAS)", "Bottom ads (by ROAS)", "Actions taken and their effect",
                     "Open recommendations", "Prepared by Demo Agency"):
        assert expected in text, expected
    m = Base.metadata.tables["ad_metrics_daily"]
    async with owner_database.sessionmaker() as session:  # the test's own sum of what was synced
        spend = await session.scalar(select(func.sum(m.c.spend_minor)).where(
            m.c.client_id == client_id, m.c.currency == "USD", m.c.level == "ad", m.c.day >= since,
            m.c.day <= until))
    assert spend and format_minor(int(spend), "USD") in text

    # Weekly, Mondays 08:00 New York time.
    async with database.sessionmaker() as session:
        await bind_tenant(session, org_id)
        schedule = await reports.create_schedule(
            session, org_id, actor, client_id, cadence=Cadence.WEEKLY, weekday=0, send_time=time(8, 0),
            day_of_month=1, recipients=["cmo@acme-outdoor.example", "ops@acme-outdoor.example"], enabled=True)
    local_now = utcnow().astimezone(zone(TZ))
    # The first send is the next Monday 08:00 there after now: today, when today is a Monday before 08:00
    # (CI's clock-moved pass once ran at 01:09 on a Monday in New York and the send was due that morning).
    monday = local_now.date() + timedelta(days=(7 - local_now.weekday()) % 7)
    if datetime.combine(monday, time(8, 0), tzinfo=zone(TZ)) <= local_now:
        monday += timedelta(days=7)
    before = datetime.combine(monday, time(7, 30), tzinfo=zone(TZ))
    after = datetime.combine(monday, time(9, 0), tzinfo=zone(TZ))
    async def queued() -> list[EmailOutbox]:  # this organization's report e-mails (other tests' orgs share the DB)
        async with owner_database.sessionmaker() as session:
            return list((await session.scalars(select(EmailOutbox).where(
                EmailOutbox.org_id == org_id, EmailOutbox.template == "client_report"))).all())

    await reports.send_due(database.sessionmaker, demo, now=before)
    assert await queued() == []  # not yet 08:00 there
    await reports.send_due(database.sessionmaker, demo, now=after)
    await reports.send_due(database.sessionmaker, demo, now=after + timedelta(hours=1))  # once per period
    sent = await queued()
    assert sorted(q.to_email for q in sent) == ["cmo@acme-outdoor.example", "ops@acme-outdoor.example"]
    [to_cmo] = [q for q in sent if q.to_email.startswith("cmo")]
    assert to_cmo.context["since"] == (monday - timedelta(days=7)).isoformat()

    outbox = tmp_path / "mail"
    async with database.sessionmaker() as session:
        assert await mail.send_message(session, FileBackend(outbox), mail.EmailConfig.from_settings(demo),
                                       to_cmo.id) == "sent"
    [eml] = list(outbox.iterdir())
    message = email.message_from_bytes(eml.read_bytes())
    assert message["Subject"] == f"Acme Outdoor: performance report, week of {monday - timedelta(days=7):%d %b %Y}"
    unsubscribe = "".join(str(message["List-Unsubscribe"]).split()).strip("<>")  # unfolded
    [attachment] = [p for p in message.walk() if p.get_content_disposition() == "attachment"]
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename().endswith(".pdf") and attachment.get_payload(decode=True)[:5] == b"%PDF-"

    token = unsubscribe.split("token=", 1)[1]
    async with database.sessionmaker() as session:
        assert await reports.unsubscribe(session, demo, token) == ("cmo@acme-outdoor.example", "Acme Outdoor")
    next_week = after + timedelta(days=7)
    await reports.send_due(database.sessionmaker, demo, now=next_week)
    assert [q.to_email for q in await queued() if q.id not in {m.id for m in sent}] == ["ops@acme-outdoor.example"]
    async with database.sessionmaker() as session:
        await bind_tenant(session, org_id)
        row = await reports.get_schedule(session, org_id, client_id, schedule.id)
        assert row.unsubscribed == ["cmo@acme-outdoor.example"] and row.last_period.startswith("W:")
    assert uuid.UUID(str(org_id))
