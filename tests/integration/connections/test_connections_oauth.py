"""The OAuth dance through Omnify's own routes, against each platform's sandbox over HTTP:
authorize (302 with a signed state) -> consent screen -> callback (state checked, code
exchanged, tokens stored encrypted, accounts listed) -> account choice starts the backfill.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from sqlalchemy import select

from omnify.connections.models import OAuthState
from omnify.connections.oauth_state import sign_state
from omnify.connections.service import SYNC_TASK, _keyring_decrypt, _verifier_aad
from omnify.core.db import bind_tenant
from omnify.credentials.models import PlatformCredential
from omnify.events.models import DomainEvent
from omnify.integrations.shopify import oauth as shopify_oauth
from omnify.webhooks.models import InboundSource
from tests.integration.connections.conn_support import (
    API,
    META_SMALL,
    SHOP,
    Enqueued,
    Env,
    Team,
    connect,
    consent,
    select_accounts,
    tenant_session_rows,
)


def _query(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


def _problem(resp: object, status: int, code: str) -> None:
    assert getattr(resp, "status_code") == status, getattr(resp, "text")
    assert getattr(resp, "headers")["content-type"].startswith("application/problem+json")
    assert getattr(resp, "json")()["type"].endswith("/" + code), getattr(resp, "text")


async def test_meta_dance_stores_tokens_encrypted_and_lists_accounts(env: Env, team: Team,
                                                                     enqueued: Enqueued) -> None:
    grant = await consent(env, team, "meta_ads")
    location = grant.authorize.headers["location"]
    q = _query(location)
    assert location.startswith(env.boxes.url("meta") + "/v26.0/dialog/oauth")
    assert q["client_id"] == env.boxes.meta.config.app_id
    assert q["redirect_uri"] == f"{env.settings.public_base_url}{API}/connections/meta_ads/callback"
    assert "code_challenge" not in q  # Meta's web login has no PKCE
    claims = jwt.decode(q["state"], options={"verify_signature": False})
    assert (claims["sub"], claims["org"], claims["cli"], claims["plt"]) == (
        team.owner.user_id, team.owner.org_id, team.client_id, "meta_ads")
    assert claims["exp"] - claims["iat"] == 600

    resp = await env.api.get(grant.callback_path)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "connected"
    assert {a["id"] for a in body["accounts"]} == {"1000003", "1000002", "1000001"}
    assert body["selected_account_ids"] == []  # several accounts: the user picks
    assert body["backfill"]["status"] == "none"
    assert (await enqueued.named(SYNC_TASK)) == []
    assert body["token_expires_at"] is not None  # long-lived token, ~60 days

    # The token is in the credential store, encrypted; the API shows a masked hint only.
    cred = await env.api.get(f"{API}/orgs/{team.owner.org_id}/clients/{team.client_id}/credentials/meta_ads",
                             headers=team.owner.headers)
    assert cred.status_code == 200 and cred.json()["status"] == "active"
    assert cred.json()["account_id"] == "act_1000003"
    tokens = [t for t, info in env.boxes.meta.tokens._tokens.items() if info.kind == "access"]
    rows = await tenant_session_rows(env.db, team.owner.org_id, PlatformCredential)
    blob = bytes(rows[0].secret_blob)
    assert tokens and not any(t.encode() in blob for t in tokens)
    assert not any(t in cred.text or t in resp.text for t in tokens)

    chosen = await select_accounts(env, team, "meta_ads", [META_SMALL])
    assert chosen["selected_account_ids"] == [META_SMALL]
    assert chosen["backfill"]["status"] == "pending"
    assert (await enqueued.named(SYNC_TASK)) == [{"org_id": team.owner.org_id, "connection_id": body["id"],
                                          "trigger": "accounts"}]
    events = await tenant_session_rows(env.db, team.owner.org_id, DomainEvent)
    assert "connection.connected" in {e.type for e in events}


async def test_google_pkce_verifier_stays_server_side_and_binds_the_code(env: Env, team: Team,
                                                                         enqueued: Enqueued) -> None:
    first = await consent(env, team, "google_ads")
    second = await consent(env, team, "google_ads")
    q = _query(first.authorize.headers["location"])
    assert q["code_challenge_method"] == "S256" and q["access_type"] == "offline"
    assert "code_verifier" not in first.authorize.headers["location"]

    # The verifier lives encrypted in oauth_states and matches the challenge sent.
    nonce = jwt.decode(first.params["state"], options={"verify_signature": False})["jti"]
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, uuid.UUID(team.owner.org_id))
        row = (await session.scalars(select(OAuthState).where(
            OAuthState.nonce_hash == hashlib.sha256(nonce.encode()).hexdigest()))).one()
    assert row.verifier_blob is not None
    verifier = await _keyring_decrypt(env.settings, bytes(row.verifier_blob), _verifier_aad(row.org_id, row.id))
    assert verifier.encode() not in bytes(row.verifier_blob)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == q["code_challenge"]

    # Code of flow 1 with the state (hence the verifier) of flow 2: Google refuses it.
    crossed = f"{API}/connections/google_ads/callback?" + urlencode({**first.params, "state": second.params["state"]})
    _problem(await env.api.get(crossed), 400, "authorization-failed")

    # Both the state of flow 2 and the code of flow 1 are spent now; a clean flow succeeds.
    _problem(await env.api.get(second.callback_path), 400, "state-used")
    _problem(await env.api.get(first.callback_path), 400, "authorization-failed")
    third = await consent(env, team, "google_ads")
    ok = await env.api.get(third.callback_path)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["selected_account_ids"] == ["3456789012"]  # a single account is chosen at once
    assert body["backfill"]["status"] == "pending"
    assert (await enqueued.named(SYNC_TASK))[-1] == {"org_id": team.owner.org_id, "connection_id": body["id"],
                                             "trigger": "connect"}
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, uuid.UUID(team.owner.org_id))
        used = await session.get(OAuthState, row.id)
        assert used is not None and used.consumed_at is not None and used.verifier_blob is None


async def test_state_tampering_expiry_replay_and_platform_mixup_are_refused(env: Env, team: Team) -> None:
    grant = await consent(env, team, "tiktok_ads")
    state = grant.params["state"]
    base = f"{API}/connections/tiktok_ads/callback?"

    head, _payload, sig = state.split(".")
    claims = jwt.decode(state, options={"verify_signature": False})
    forged_payload = base64.urlsafe_b64encode(
        json.dumps({**claims, "cli": str(uuid.uuid4())}).encode()).rstrip(b"=").decode()
    for bad in (state[:-2] + ("AA" if not state.endswith("AA") else "BB"), f"{head}.{forged_payload}.{sig}",
                "not-a-jwt", ""):
        _problem(await env.api.get(base + urlencode({**grant.params, "state": bad})), 400, "invalid-state")

    # Correctly signed but expired (same nonce as the real flow).
    expired, _ = sign_state(env.settings, user_id=uuid.UUID(claims["sub"]), org_id=uuid.UUID(claims["org"]),
                            client_id=uuid.UUID(claims["cli"]), platform="tiktok_ads", nonce=claims["jti"],
                            ttl_seconds=-5)
    _problem(await env.api.get(base + urlencode({**grant.params, "state": expired})), 400, "invalid-state")
    # A TikTok state presented to the Meta callback.
    _problem(await env.api.get(f"{API}/connections/meta_ads/callback?" + urlencode(grant.params)), 400,
             "invalid-state")
    # A state signed with another key.
    alien = jwt.encode({**claims}, "another-secret-key-0123456789abcdef-xx", algorithm="HS256")
    _problem(await env.api.get(base + urlencode({**grant.params, "state": alien})), 400, "invalid-state")

    first = await env.api.get(grant.callback_path)
    assert first.status_code == 200, first.text
    assert first.json()["platform"] == "tiktok_ads"
    _problem(await env.api.get(grant.callback_path), 400, "state-used")


async def test_denied_consent_and_missing_code(env: Env, team: Team) -> None:
    denied = await consent(env, team, "meta_ads", approve=False)
    assert denied.params["error"] == "access_denied"
    _problem(await env.api.get(denied.callback_path), 400, "authorization-denied")
    resp = await env.api.get(team.url("meta_ads"), headers=team.owner.headers)
    assert resp.status_code == 404  # nothing was connected

    grant = await consent(env, team, "meta_ads")
    no_code = f"{API}/connections/meta_ads/callback?" + urlencode({"state": grant.params["state"]})
    _problem(await env.api.get(no_code), 400, "authorization-failed")


async def test_shopify_install_checks_shop_and_hmac(env: Env, team: Team, enqueued: Enqueued) -> None:
    for shop in (None, "evil.com", "x.myshopify.com.evil.com"):
        resp = await env.api.get(team.url("shopify", "authorize"), headers=team.owner.headers,
                                 params={"shop": shop} if shop else None)
        assert resp.status_code == 422, resp.text
    resp = await env.api.get(team.url("meta_ads", "authorize"), headers=team.owner.headers, params={"shop": SHOP})
    assert resp.status_code == 422

    grant = await consent(env, team, "shopify", shop=SHOP)
    assert _query(grant.authorize.headers["location"])["scope"] == ",".join(shopify_oauth.DEFAULT_SCOPES)
    assert shopify_oauth.verify_query_hmac(grant.params, env.boxes.shopify.api_secret)
    tampered = {**grant.params, "timestamp": str(int(grant.params["timestamp"]) + 1)}
    _problem(await env.api.get(f"{API}/connections/shopify/callback?" + urlencode(tampered)), 400,
             "invalid-signature")

    grant = await consent(env, team, "shopify", shop=SHOP)
    other_shop = shopify_oauth.sign_query({**{k: v for k, v in grant.params.items() if k != "hmac"},
                                           "shop": "bright-smiles.myshopify.com"}, env.boxes.shopify.api_secret)
    _problem(await env.api.get(f"{API}/connections/shopify/callback?" + urlencode(other_shop)), 400,
             "invalid-signature")

    body = await connect(env, team, "shopify", shop=SHOP)
    assert body["shop_domain"] == SHOP and body["selected_account_ids"] == [SHOP]
    assert (await enqueued.named(SYNC_TASK))[-1]["connection_id"] == body["id"]

    # The shop's order and uninstall webhooks now point at this connection's inbound source.
    sources = [s for s in await tenant_session_rows(env.db, team.owner.org_id, InboundSource)
               if s.ref_id == body["id"]]
    assert len(sources) == 1 and sources[0].enabled and sources[0].account == SHOP
    hooks = {(h.topic, h.address) for h in env.boxes.shopify.shops[SHOP].webhooks.values()}
    address = f"{env.settings.public_base_url}{API}/webhooks/inbound/shopify/{sources[0].id}"
    assert {("orders/create", address), ("orders/updated", address), ("app/uninstalled", address)} <= hooks
    again = await connect(env, team, "shopify", shop=SHOP)  # reconnecting does not subscribe twice
    assert again["id"] == body["id"]
    assert len([h for h in env.boxes.shopify.shops[SHOP].webhooks.values() if h.address == address]) == 3

    resp = await env.api.delete(team.url("shopify"), headers=team.owner.headers)
    assert resp.status_code == 204 and resp.headers["x-platform-revoked"] == "true"
    source = next(s for s in await tenant_session_rows(env.db, team.owner.org_id, InboundSource)
              if s.id == sources[0].id)
    assert source.enabled is False


async def test_callback_refused_when_the_user_lost_the_right_meanwhile(env: Env, team: Team) -> None:
    grant = await consent(env, team, "meta_ads", acct=team.admin)
    resp = await env.api.patch(f"{API}/orgs/{team.owner.org_id}/members/{team.admin.user_id}",
                               headers=team.owner.headers, json={"role": "viewer"})
    assert resp.status_code == 200, resp.text
    _problem(await env.api.get(grant.callback_path), 403, "insufficient-role")
