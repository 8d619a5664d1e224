"""Test-data factories that go through the real API (no hand-built rows)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from omnify.core.db import Database

if TYPE_CHECKING:
    from omnify.notifications.models import EmailOutbox
    from omnify.settings import Settings

STRONG_PASSWORD = "correct-horse-battery-staple-42"


def production_safe(**overrides: object) -> dict[str, object]:
    """Settings values the production validator accepts (every platform's app identity
    included, derived from the settings' own table so new platforms are covered)."""
    from omnify.settings import PLATFORM_APP_SETTINGS

    values: dict[str, object] = {
        "env": "production", "secret_key": "x" * 48, "database_url": "postgresql+asyncpg://u@db/omnify",
        "cors_origins": ["https://app.omnify.dev"], "public_base_url": "https://app.omnify.dev",
        "email_from": "Omnify <no-reply@omnify.dev>", "email_backend": "ses", "trusted_proxies": ["10.0.0.0/8"],
    }
    for fields in PLATFORM_APP_SETTINGS.values():
        values.update({f: f"{f}-value" for f in fields})
    values.update(overrides)
    return values


@dataclass
class Account:
    email: str
    password: str
    user_id: str
    org_id: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


async def register(client: httpx.AsyncClient, *, email: str | None = None, org: str | None = None) -> Account:
    email = email or unique_email()
    resp = await client.post("/api/v1/auth/register", json={
        "email": email, "password": STRONG_PASSWORD, "name": "Test Person",
        "organization_name": org or f"Org {uuid.uuid4().hex[:6]}",
    })
    assert resp.status_code == 201, resp.text
    body = resp.json()
    return Account(email=email, password=STRONG_PASSWORD, user_id=body["user"]["id"],
                   org_id=body["organization"]["org_id"], access_token=body["tokens"]["access_token"],
                   refresh_token=body["tokens"]["refresh_token"])


async def add_member(client: httpx.AsyncClient, owner: Account, role: str) -> Account:
    """Invite a new user into owner's org with ``role`` and accept through the real flow."""
    other = await register(client)
    resp = await client.post(f"/api/v1/orgs/{owner.org_id}/invitations", headers=owner.headers,
                             json={"email": other.email, "role": role})
    assert resp.status_code == 201, resp.text
    token = await invitation_token(client, resp.json()["id"])
    resp = await client.post("/api/v1/invitations/accept", headers=other.headers, json={"token": token})
    assert resp.status_code == 200, resp.text
    other.org_id = owner.org_id
    return other


async def invitation_token(client: httpx.AsyncClient, invitation_id: str) -> str:
    """The token of the invitation e-mail's link, read from the mail as it is delivered
    (the outbox row holds it only sealed)."""
    from sqlalchemy import select

    from omnify.notifications.models import EmailOutbox

    app = client._transport.app  # type: ignore[attr-defined]
    db = Database(app.state.settings, app.state.settings.resolved_migration_database_url)
    try:
        async with db.sessionmaker() as s:
            msg = await s.scalar(select(EmailOutbox).where(EmailOutbox.dedupe_key == f"invitation:{invitation_id}"))
            assert msg is not None
            return link_token(await delivered_text(app.state.settings, msg))
    finally:
        await db.dispose()


async def delivered_text(settings: Settings, message: EmailOutbox) -> str:
    """The plain-text body the recipient gets: rendered by the sender's own code path,
    sealed secrets opened with the deployment's key ring."""
    from omnify.notifications import service
    from omnify.notifications.rendering import render

    config = service.EmailConfig.from_settings(settings)
    return render(message.template, await service.render_context(message, config)).text


def link_token(body: str) -> str:
    """The ``token`` query value of the (first) link in a mail body."""
    match = re.search(r"[?&]token=([^\s&\"'<>]+)", body)
    assert match is not None, "no token link in the e-mail"
    return match.group(1)


def link_url(body: str) -> str:
    """The first link that carries a token in a mail body."""
    match = re.search(r"https?://[^\s\"'<>]+[?&]token=[^\s&\"'<>]+", body)
    assert match is not None, "no token link in the e-mail"
    return match.group(0)


