"""After the dance: connection test, disconnect (revoke + delete secrets), scheduled token
refresh before expiry, and what a refused refresh does (needs_reauth, owner e-mail,
connection.failed)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from omnify.audit.models import AuditLog
from omnify.connections import service as connections
from omnify.connections.models import Connection
from omnify.core.context import Actor
from omnify.core.db import bind_tenant, utcnow
from omnify.credentials import service as credentials
from omnify.credentials.keys import keyrings_for
from omnify.credentials.platforms import Platform as CredentialPlatform
from omnify.credentials.service import RevealedCredential
from omnify.events.models import DomainEvent
from omnify.integrations.meta.sandbox import SANDBOX_USER_ID
from omnify.integrations.sandbox_common import TokenInvalid
from omnify.notifications.models import EmailOutbox
from tests.integration.connections.conn_support import META_SMALL, Env, Team, connect, fast_factory, select_accounts


async def reveal(env: Env, team: Team, platform: str) -> RevealedCredential:
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, uuid.UUID(team.owner.org_id))
        return await credentials.reveal(session, keyrings_for(env.settings), uuid.UUID(team.owner.org_id),
                                        uuid.UUID(team.client_id), CredentialPlatform(platform),
                                        Actor.system("test"), purpose="test assertion")


async def expire_soon(env: Env, connection_id: str, seconds: float = 60) -> None:
    async with env.owner_db.sessionmaker() as session:
        await session.execute(update(Connection).where(Connection.id == uuid.UUID(connection_id))
                              .values(token_expires_at=utcnow() + timedelta(seconds=seconds)))
        await session.commit()


async def rows(env: Env, team: Team, model: Any) -> list[Any]:
    """This organization's rows (explicitly scoped: SQLite has no row-level security)."""
    org_id = uuid.UUID(team.owner.org_id)
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, org_id)
        return list((await session.scalars(select(model).where(model.org_id == org_id))).all())


async def test_connection_test_records_health_and_a_revoked_grant(env: Env, team: Team) -> None:
    body = await connect(env, team, "meta_ads")
    ok = await env.api.post(team.url("meta_ads", "test"), headers=team.owner.headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["ok"] is True and ok.json()["status"] == "connected"
    assert ok.json()["details"]["user_id"] == SANDBOX_USER_ID
    assert ok.json()["last_verified_at"] is not None

    # The user removes the app on Facebook's side.
    env.boxes.meta.tokens.revoke_subject(env.boxes.meta.config.app_id, SANDBOX_USER_ID)
    bad = await env.api.post(team.url("meta_ads", "test"), headers=team.owner.headers)
    assert bad.status_code == 200, bad.text
    assert bad.json()["ok"] is False and bad.json()["status"] == "needs_reauth"
    assert bad.json()["last_error"]
    shown = (await env.api.get(team.url("meta_ads"), headers=team.owner.headers)).json()
    assert shown["status"] == "needs_reauth" and shown["last_error_code"] in ("token_revoked", "token_expired")
    cred = await env.api.get(f"/api/v1/orgs/{team.owner.org_id}/clients/{team.client_id}/credentials/meta_ads",
                             headers=team.owner.headers)
    assert cred.json()["status"] == "invalid"

    failed = [e for e in await rows(env, team, DomainEvent) if e.type == "connection.failed"]
    assert len(failed) == 1 and failed[0].payload["connection_id"] == body["id"]
    assert set(failed[0].payload) >= {"connection_id", "client_id", "platform", "error_code", "message"}
    mails = [m for m in await rows(env, team, EmailOutbox) if m.template == "sync_failing"]
    assert [m.to_email for m in mails] == [team.owner.email]  # the owner, not the admin or viewer

    # Reconnecting heals it.
    again = await connect(env, team, "meta_ads")
    assert again["id"] == body["id"] and again["status"] == "connected" and again["last_error"] is None


async def test_disconnect_revokes_at_the_platform_and_deletes_the_secret(env: Env, team: Team) -> None:
    body = await connect(env, team, "google_ads")
    cred = await reveal(env, team, "google_ads")
    access, refresh = cred.secret("access_token"), cred.secret("refresh_token")
    env.boxes.google.tokens.validate(access)

    resp = await env.api.delete(team.url("google_ads"), headers=team.owner.headers)
    assert resp.status_code == 204, resp.text
    assert resp.headers["x-platform-revoked"] == "true"
    with pytest.raises(TokenInvalid):
        env.boxes.google.tokens.validate(access)
    assert env.boxes.google.tokens.lookup(refresh).revoked  # type: ignore[union-attr]
    gone = await env.api.get(f"/api/v1/orgs/{team.owner.org_id}/clients/{team.client_id}/credentials/google_ads",
                             headers=team.owner.headers)
    assert gone.status_code == 404
    shown = (await env.api.get(team.url("google_ads"), headers=team.owner.headers)).json()
    assert shown["status"] == "disconnected" and shown["disconnected_at"]
    assert (await env.api.delete(team.url("google_ads"), headers=team.owner.headers)).status_code == 404
    assert (await env.api.post(team.url("google_ads", "test"), headers=team.owner.headers)).status_code == 409
    audit = [a for a in await rows(env, team, AuditLog) if a.action == "connection.disconnected"]
    assert audit and audit[0].changes["revoked_at_platform"] is True

    again = await connect(env, team, "google_ads")
    assert again["id"] == body["id"] and again["status"] == "connected"
    assert again["selected_account_ids"] == ["3456789012"]


async def test_scheduled_refresh_renews_tokens_before_expiry(env: Env, team: Team) -> None:
    google = await connect(env, team, "google_ads")
    meta = await connect(env, team, "meta_ads")
    before_google = (await reveal(env, team, "google_ads")).secret("access_token")
    before_meta = (await reveal(env, team, "meta_ads")).secret("access_token")
    await expire_soon(env, google["id"])
    await expire_soon(env, meta["id"], seconds=3 * 86400)  # inside Meta's 7-day window

    report = await connections.refresh_expiring(env.db, env.factory)
    assert report.refreshed >= 2 and report.needs_reauth == 0, report
    after_google = await reveal(env, team, "google_ads")
    assert after_google.secret("access_token") != before_google
    env.boxes.google.tokens.validate(after_google.secret("access_token"))
    assert (await reveal(env, team, "meta_ads")).secret("access_token") != before_meta
    shown = (await env.api.get(team.url("google_ads"), headers=team.owner.headers)).json()
    assert shown["status"] == "connected"
    assert datetime.fromisoformat(shown["token_expires_at"]) > utcnow() + timedelta(minutes=50)
    actions = [a.action for a in await rows(env, team, AuditLog)]
    assert actions.count("connection.tokens_refreshed") >= 2

    # Not due any more: the next pass leaves them alone.
    again = await connections.refresh_expiring(env.db, env.factory)
    assert all(str(c) not in again.errors for c in (google["id"], meta["id"]))
    after = await reveal(env, team, "google_ads")
    assert after.secret("access_token") == after_google.secret("access_token")


async def test_refused_refresh_marks_needs_reauth_emails_owner_and_emits(env: Env, team: Team) -> None:
    body = await connect(env, team, "google_ads")
    refresh = (await reveal(env, team, "google_ads")).secret("refresh_token")
    env.boxes.google.tokens.revoke(refresh)  # the user revoked access in their Google account
    await expire_soon(env, body["id"])

    report = await connections.refresh_expiring(env.db, env.factory)
    assert report.needs_reauth >= 1
    shown = (await env.api.get(team.url("google_ads"), headers=team.owner.headers)).json()
    assert shown["status"] == "needs_reauth" and shown["last_error_code"] == "token_revoked"
    events = [e for e in await rows(env, team, DomainEvent) if e.type == "connection.failed"]
    assert [e.payload["platform"] for e in events] == ["google_ads"]
    mails = [m for m in await rows(env, team, EmailOutbox) if m.template == "sync_failing"]
    assert [m.to_email for m in mails] == [team.owner.email]
    assert "authorized again" in mails[0].context["error_message"]

    # A connection that needs re-auth is not retried, mailed or synced again.
    await connections.refresh_expiring(env.db, env.factory)
    assert len([m for m in await rows(env, team, EmailOutbox) if m.template == "sync_failing"]) == 1
    resp = await env.api.post(team.url("google_ads", "sync"), headers=team.owner.headers)
    assert resp.status_code == 409


async def test_selection_is_validated_against_reachable_accounts(env: Env, team: Team) -> None:
    await connect(env, team, "meta_ads")
    resp = await env.api.put(team.url("meta_ads", "accounts"), headers=team.owner.headers,
                             json={"account_ids": [META_SMALL, "999"]})
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "account_ids.1"
    chosen = await select_accounts(env, team, "meta_ads", [META_SMALL, META_SMALL])
    assert chosen["selected_account_ids"] == [META_SMALL]


async def test_platform_trouble_during_a_test_keeps_the_connection(env: Env, team: Team) -> None:
    await connect(env, team, "meta_ads")
    shared = env.factory
    env.use_factory(fast_factory(env.settings, threshold=100))  # keep the module's breakers closed
    env.boxes.meta.injector.configure(errors_5xx_next=10, error_status=503, match="/me")
    try:
        resp = await env.api.post(team.url("meta_ads", "test"), headers=team.owner.headers)
    finally:
        env.boxes.meta.injector.reset()
        env.use_factory(shared)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["ok"] is False and body["status"] == "connected" and body["last_error"]
    assert body["details"]["error_code"] == "platform_unavailable"
    assert not [e for e in await rows(env, team, DomainEvent) if e.type == "connection.failed"]


async def test_archived_client_is_not_synced(env: Env, team: Team) -> None:
    from omnify.sync import service as sync

    body = await connect(env, team, "google_ads")
    resp = await env.api.delete(f"/api/v1/orgs/{team.owner.org_id}/clients/{team.client_id}",
                                headers=team.owner.headers)
    assert resp.status_code == 204, resp.text
    result = await sync.run_connection(env.db, env.factory, uuid.UUID(team.owner.org_id), uuid.UUID(body["id"]))
    assert result.status == "skipped" and "archived" in (result.reason or "")


async def test_uninstall_reported_by_the_platform_disconnects(env: Env, team: Team) -> None:
    from omnify.webhooks.models import InboundSource

    body = await connect(env, team, "shopify", shop="bright-smiles.myshopify.com")
    org, conn_id = uuid.UUID(team.owner.org_id), uuid.UUID(body["id"])
    for _ in range(2):  # idempotent: Shopify may deliver app/uninstalled twice
        async with env.db.sessionmaker() as session:
            await bind_tenant(session, org)
            await connections.platform_revoked(session, org, conn_id, Actor.system("shopify webhook"),
                                               reason="The app was uninstalled from the shop.")
            await session.commit()
    shown = (await env.api.get(team.url("shopify"), headers=team.owner.headers)).json()
    assert shown["status"] == "disconnected" and shown["last_error_code"] == "platform_revoked"
    gone = await env.api.get(f"/api/v1/orgs/{team.owner.org_id}/clients/{team.client_id}/credentials/shopify",
                             headers=team.owner.headers)
    assert gone.status_code == 404
    sources = [s for s in await rows(env, team, InboundSource) if s.ref_id == body["id"]]
    assert sources and not any(s.enabled for s in sources)
    assert len([e for e in await rows(env, team, DomainEvent) if e.type == "connection.failed"]) == 1
