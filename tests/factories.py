"""Test-data factories that go through the real API (no hand-built rows)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx

from omnify.core.db import Database

STRONG_PASSWORD = "correct-horse-battery-staple-42"


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
    """Read the token from the queued invitation e-mail (what the invitee would click)."""
    from sqlalchemy import select

    from omnify.notifications.models import EmailOutbox

    app = client._transport.app  # type: ignore[attr-defined]
    db = Database(app.state.settings, app.state.settings.resolved_migration_database_url)
    try:
        async with db.sessionmaker() as s:
            msg = await s.scalar(select(EmailOutbox).where(EmailOutbox.dedupe_key == f"invitation:{invitation_id}"))
            assert msg is not None
            return str(msg.context["token"])
    finally:
        await db.dispose()


