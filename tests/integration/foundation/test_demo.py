from __future__ import annotations

import httpx

from omnify.core.db import Database
from omnify.demo import ensure_demo
from omnify.settings import Settings
from tests.factories import unique_email


async def test_demo_seed_is_idempotent_and_its_login_works(
    client: httpx.AsyncClient, settings: Settings, database: Database
) -> None:
    email = unique_email("demo")  # other tests seed the default demo user in this database
    first = await ensure_demo(settings, database, email)
    second = await ensure_demo(settings, database, email)
    assert second.password == first.password and not second.created
    resp = await client.post("/api/v1/auth/login", json={"email": first.email, "password": first.password})
    assert resp.status_code == 200, resp.text
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {resp.json()['access_token']}"})
    assert me.json()["memberships"][0]["org_name"] == "Demo Agency"
