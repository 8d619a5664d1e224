"""LinkedIn Ads through Omnify's connection routes: the 3-legged dance and what is stored, the
connection test, onboarding's step, the scheduled refresh (same refresh token, its lifetime the
credential's), a member who revoked the app (needs_reauth), denial, and disconnect (revoke)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from omnify.connections import service as connections
from omnify.connections.models import Connection
from omnify.core.context import Actor
from omnify.core.db import bind_tenant, utcnow
from omnify.credentials import service as credentials
from omnify.credentials.keys import keyrings_for
from omnify.credentials.platforms import Platform as CredentialPlatform
from omnify.credentials.service import RevealedCredential
from omnify.integrations.sandbox_common import TokenInvalid
from tests.integration.connections.conn_support import LINKEDIN_SMALL, Env, Team, connect, consent

API = "/api/v1"
LI = "linkedin_ads"


async def reveal(env: Env, team: Team) -> RevealedCredential:
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, uuid.UUID(team.owner.org_id))
        return await credentials.reveal(session, keyrings_for(env.settings), uuid.UUID(team.owner.org_id),
                                        uuid.UUID(team.client_id), CredentialPlatform(LI), Actor.system("test"),
                                        purpose="test assertion")


async def expire_in(env: Env, connection_id: str, seconds: float) -> None:
    async with env.owner_db.sessionmaker() as session:
        await session.execute(update(Connection).where(Connection.id == uuid.UUID(connection_id))
                              .values(token_expires_at=utcnow() + timedelta(seconds=seconds)))
        await session.commit()


async def test_connect_test_onboard_refresh_and_disconnect(env: Env, team: Team) -> None:
    onboarding = f"{API}/orgs/{team.owner.org_id}/clients/{team.client_id}/onboarding"
    chosen = await env.api.put(onboarding, headers=team.owner.headers, json={"platforms": [LI]})
    assert chosen.status_code == 200, chosen.text
    step = {s["key"]: s for s in chosen.json()["steps"]}[f"connect_{LI}"]
    assert step["title"] == "Connect LinkedIn Ads" and step["done"] is False

    body = await connect(env, team, LI)
    assert sorted(a["id"] for a in body["accounts"]) == sorted(env.boxes.linkedin.world.accounts)
    assert body["status"] == "connected" and body["selected_account_ids"] == []
    assert all(a["timezone"] == "UTC" for a in body["accounts"])
    cred = await reveal(env, team)
    access, refresh = cred.secret("access_token"), cred.secret("refresh_token")
    assert sorted(cred.scopes) == ["r_ads", "r_ads_reporting", "rw_ads"]
    assert cred.expires_at is not None and cred.expires_at > utcnow() + timedelta(days=364)  # the refresh token's
    shown = (await env.api.get(team.url(LI), headers=team.owner.headers)).json()
    assert datetime.fromisoformat(shown["token_expires_at"]) > utcnow() + timedelta(days=59)  # the access token's

    tested = await env.api.post(team.url(LI, "test"), headers=team.owner.headers)
    assert tested.status_code == 200 and tested.json()["ok"] is True, tested.text
    assert tested.json()["details"]["user_id"] == "sbxMember01"
    done = await env.api.get(onboarding, headers=team.owner.headers)
    assert {s["key"]: s for s in done.json()["steps"]}[f"connect_{LI}"]["done"] is True

    # LinkedIn tokens are refreshed a week before they expire; the refresh token stays the same.
    await expire_in(env, body["id"], 3 * 86400)
    report = await connections.refresh_expiring(env.db, env.factory)
    assert report.refreshed >= 1 and report.needs_reauth == 0, report
    after = await reveal(env, team)
    assert after.secret("access_token") != access and after.secret("refresh_token") == refresh
    env.boxes.linkedin.store.validate(after.secret("access_token"))

    # Disconnect revokes the member's grant at LinkedIn and forgets the secret.
    resp = await env.api.delete(team.url(LI), headers=team.owner.headers)
    assert resp.status_code == 204 and resp.headers["x-platform-revoked"] == "true"
    with pytest.raises(TokenInvalid):
        env.boxes.linkedin.store.validate(after.secret("access_token"))
    gone = await env.api.get(f"{API}/orgs/{team.owner.org_id}/clients/{team.client_id}/credentials/{LI}",
                             headers=team.owner.headers)
    assert gone.status_code == 404


async def test_a_member_who_revoked_the_app_needs_to_authorize_again(env: Env, team: Team) -> None:
    body = await connect(env, team, LI)
    env.boxes.linkedin.store.revoke((await reveal(env, team)).secret("refresh_token"))
    await expire_in(env, body["id"], 3600)
    report = await connections.refresh_expiring(env.db, env.factory)
    assert report.needs_reauth >= 1
    shown = (await env.api.get(team.url(LI), headers=team.owner.headers)).json()
    assert shown["status"] == "needs_reauth" and shown["last_error_code"] == "token_revoked"


async def test_denied_consent_connects_nothing(env: Env, team: Team) -> None:
    denied = await consent(env, team, LI, approve=False)
    assert denied.params["error"] == "user_cancelled_authorize"
    resp = await env.api.get(denied.callback_path)
    assert resp.status_code == 400 and resp.json()["type"].endswith("authorization-denied")
    assert (await env.api.get(team.url(LI), headers=team.owner.headers)).status_code == 404
    assert LINKEDIN_SMALL in env.boxes.linkedin.world.accounts
