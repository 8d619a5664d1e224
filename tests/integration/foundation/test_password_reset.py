from __future__ import annotations

import json

import httpx
from sqlalchemy import select

from omnify.core.db import Database
from omnify.notifications.models import EmailOutbox
from omnify.settings import Settings
from tests.factories import delivered_text, link_token, link_url, register, unique_email


async def _reset_mail(owner_database: Database, email: str) -> list[EmailOutbox]:
    async with owner_database.sessionmaker() as s:
        rows = await s.scalars(select(EmailOutbox).where(EmailOutbox.to_email == email,
                                                         EmailOutbox.template == "password_reset"))
        return list(rows.all())


async def test_password_reset_flow(client: httpx.AsyncClient, owner_database: Database, settings: Settings) -> None:
    acct = await register(client)
    unknown = await client.post("/api/v1/auth/password-reset/request", json={"email": unique_email()})
    known = await client.post("/api/v1/auth/password-reset/request", json={"email": acct.email})
    assert unknown.status_code == known.status_code == 202  # no account enumeration
    bad = await client.post("/api/v1/auth/password-reset/request", json={"email": "nope"})
    assert bad.status_code == 422

    mails = await _reset_mail(owner_database, acct.email)
    assert len(mails) == 1
    stored = json.dumps(mails[0].context)
    body = await delivered_text(settings, mails[0])
    token = link_token(body)
    assert link_url(body).startswith(f"{settings.public_base_url}/reset-password?token=")
    assert token not in stored and "token=" not in stored  # no bearer secret at rest in the outbox

    weak = await client.post("/api/v1/auth/password-reset", json={"token": token, "new_password": "password"})
    assert weak.status_code == 422
    ok = await client.post("/api/v1/auth/password-reset",
                           json={"token": token, "new_password": "brand-new-strong-secret-9"})
    assert ok.status_code == 204
    reused = await client.post("/api/v1/auth/password-reset",
                               json={"token": token, "new_password": "another-strong-secret-10"})
    assert reused.status_code == 400 and reused.json()["type"].endswith("invalid-reset-token")
    forged = await client.post("/api/v1/auth/password-reset",
                               json={"token": token[:-3] + "abc", "new_password": "another-strong-secret-10"})
    assert forged.status_code == 400

    assert (await client.get("/api/v1/me", headers=acct.headers)).status_code == 401  # sessions ended
    old = await client.post("/api/v1/auth/login", json={"email": acct.email, "password": acct.password})
    new = await client.post("/api/v1/auth/login", json={"email": acct.email, "password": "brand-new-strong-secret-9"})
    assert old.status_code == 401 and new.status_code == 200
