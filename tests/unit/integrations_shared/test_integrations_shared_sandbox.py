"""Sandbox building blocks: tokens/PKCE, consent screen, control endpoints."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnify.integrations.sandbox_common import (
    ConsentRequest,
    FaultInjector,
    OAuthError,
    RequestJournal,
    SandboxServer,
    TokenInvalid,
    TokenStore,
    consent_response,
    control_routes,
    pkce_s256,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def store() -> tuple[TokenStore, Clock]:
    clock = Clock()
    s = TokenStore(prefix="t", access_ttl=60, clock=clock)
    s.register_client("app", "app-secret", ["http://127.0.0.1/cb"])
    return s, clock


def test_pkce_rfc7636_vector() -> None:
    # RFC 7636 appendix B
    assert (
        pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_code_flow_with_pkce_single_use_and_mismatch() -> None:
    s, _ = store()
    verifier = secrets.token_urlsafe(48)
    code = s.issue_code(
        client_id="app",
        redirect_uri="http://127.0.0.1/cb",
        scopes=["ads"],
        subject="u1",
        code_challenge=pkce_s256(verifier),
        code_challenge_method="S256",
    )
    with pytest.raises(OAuthError, match="code_verifier does not match"):
        s.redeem_code(code, client_id="app", redirect_uri="http://127.0.0.1/cb", code_verifier="wrong")
    # a failed attempt burns the code (no brute forcing of the verifier)
    with pytest.raises(OAuthError, match="already used"):
        s.redeem_code(code, client_id="app", redirect_uri="http://127.0.0.1/cb", code_verifier=verifier)

    code = s.issue_code(
        client_id="app",
        redirect_uri="http://127.0.0.1/cb",
        scopes=["ads"],
        subject="u1",
        code_challenge=pkce_s256(verifier),
        code_challenge_method="S256",
    )
    grant = s.redeem_code(code, client_id="app", redirect_uri="http://127.0.0.1/cb", code_verifier=verifier)
    assert grant.subject == "u1" and grant.scopes == ["ads"]

    code = s.issue_code(
        client_id="app", redirect_uri="http://127.0.0.1/cb", scopes=[], subject="u1", code_challenge="x"
    )
    with pytest.raises(OAuthError, match="code_verifier required"):
        s.redeem_code(code, client_id="app", redirect_uri="http://127.0.0.1/cb")
    code = s.issue_code(client_id="app", redirect_uri="http://127.0.0.1/cb", scopes=[], subject="u1")
    with pytest.raises(OAuthError, match="redirect_uri"):
        s.redeem_code(code, client_id="app", redirect_uri="http://evil/cb")
    with pytest.raises(OAuthError):
        s.issue_code(
            client_id="app",
            redirect_uri="x",
            scopes=[],
            subject="u",
            code_challenge="c",
            code_challenge_method="S512",
        )


def test_code_expiry_and_client_auth() -> None:
    s, clock = store()
    code = s.issue_code(client_id="app", redirect_uri="http://127.0.0.1/cb", scopes=[], subject="u1")
    clock.now += 601
    with pytest.raises(OAuthError, match="expired"):
        s.redeem_code(code, client_id="app", redirect_uri="http://127.0.0.1/cb")
    with pytest.raises(OAuthError) as info:
        s.authenticate_client("app", "nope")
    assert info.value.error == "invalid_client"
    assert s.authenticate_client("app", "app-secret").client_id == "app"


def test_access_token_expiry_refresh_and_family_revocation() -> None:
    s, clock = store()
    issued = s.issue_tokens(client_id="app", subject="u1", scopes=["ads"])
    assert issued.expires_in == 60 and issued.refresh_token
    assert s.validate(issued.access_token).subject == "u1"
    clock.now += 61
    with pytest.raises(TokenInvalid) as info:
        s.validate(issued.access_token)
    assert info.value.reason == "expired"
    fresh = s.refresh(issued.refresh_token, client_id="app")
    assert fresh.refresh_token == issued.refresh_token  # not rotated by default (Google semantics)
    assert s.validate(fresh.access_token)
    with pytest.raises(OAuthError):
        s.refresh(issued.refresh_token, client_id="other")
    assert s.revoke(issued.refresh_token)
    with pytest.raises(TokenInvalid) as info:
        s.validate(fresh.access_token)
    assert info.value.reason == "revoked"
    with pytest.raises(OAuthError, match="revoked"):
        s.refresh(issued.refresh_token, client_id="app")
    with pytest.raises(TokenInvalid) as info:
        s.validate("nonsense")
    assert info.value.reason == "invalid"
    assert not s.revoke("nonsense")


def test_rotation_expire_all_and_revoke_subject() -> None:
    s, _ = store()
    a = s.issue_tokens(client_id="app", subject="u1", scopes=[])
    assert a.refresh_token
    b = s.refresh(a.refresh_token, client_id="app", rotate=True)
    assert b.refresh_token and b.refresh_token != a.refresh_token
    with pytest.raises(OAuthError):
        s.refresh(a.refresh_token, client_id="app")
    assert s.expire_all_access() >= 1
    with pytest.raises(TokenInvalid):
        s.validate(b.access_token)
    c = s.issue_tokens(client_id="app", subject="u2", scopes=[], access_ttl=None, with_refresh=False)
    assert c.expires_in is None and s.validate(c.access_token)
    assert s.revoke_subject("app", "u2") == 1
    with pytest.raises(TokenInvalid):
        s.validate(c.access_token)


@pytest.fixture(scope="module")
def consent_server() -> Iterator[tuple[SandboxServer, FaultInjector, RequestJournal, list[str]]]:
    injector = FaultInjector()
    journal = RequestJournal()
    resets: list[str] = []

    async def dialog(request: Request) -> Response:
        q = request.query_params
        consent = ConsentRequest(
            "Example",
            "Omnify",
            q["client_id"],
            q["redirect_uri"],
            q.get("scope", "").split(","),
            q.get("state"),
        )
        return await consent_response(
            request,
            consent,
            approve=lambda: f"{q['redirect_uri']}?code=abc&state={q.get('state')}",
            deny=lambda: f"{q['redirect_uri']}?error=access_denied&state={q.get('state')}",
        )

    app = Starlette(
        routes=[
            Route("/dialog", dialog, methods=["GET", "POST"]),
            *control_routes(
                injector, journal, on_reset=lambda: resets.append("x"), extra_state=lambda: {"accounts": 3}
            ),
        ]
    )
    with SandboxServer(app) as srv:
        yield srv, injector, journal, resets


async def test_consent_screen_render_approve_deny_and_auto(consent_server: tuple) -> None:  # type: ignore[type-arg]
    srv = consent_server[0]
    params = {
        "client_id": "app",
        "redirect_uri": "http://127.0.0.1/cb",
        "scope": "ads_read,<b>",
        "state": "s1",
    }
    async with httpx.AsyncClient(base_url=srv.url) as c:
        page = await c.get("/dialog", params=params)
        assert page.status_code == 200 and 'name="decision"' in page.text
        assert "&lt;b&gt;" in page.text and "<b>" not in page.text.split("<ul>")[1].split("</ul>")[0]
        assert page.headers["cache-control"] == "no-store"
        ok = await c.post("/dialog", params=params, data={"decision": "approve"})
        assert ok.status_code == 302 and ok.headers["location"].endswith("?code=abc&state=s1")
        no = await c.post("/dialog", params=params, data={"decision": "deny"})
        assert "error=access_denied" in no.headers["location"]
        auto = await c.get("/dialog", params={**params, "sandbox_auto_approve": "1"})
        assert auto.status_code == 302 and "code=abc" in auto.headers["location"]


async def test_control_endpoints(consent_server: tuple) -> None:  # type: ignore[type-arg]
    srv, injector, _, resets = consent_server
    expired: list[int] = []
    injector.on_expire_tokens(lambda: expired.append(1))
    async with httpx.AsyncClient(base_url=srv.url) as c:
        r = await c.post(
            "/__sandbox/faults", json={"rate_limit_next": 2, "retry_after": 3, "expire_tokens": True}
        )
        assert r.status_code == 200 and r.json()["rate_limit_next"] == 2
        assert expired == [1]
        assert (await c.get("/__sandbox/faults")).json()["retry_after"] == 3
        assert (await c.post("/__sandbox/faults", json={"nope": 1})).status_code == 400
        assert (await c.post("/__sandbox/faults", content=b"{bad")).status_code == 400
        assert (await c.post("/__sandbox/faults", json=[1])).status_code == 400
        state = (await c.get("/__sandbox/state")).json()
        assert state["accounts"] == 3 and state["faults"]["rate_limit_next"] == 2
        await c.get("/dialog", params={"client_id": "a", "redirect_uri": "http://x/cb"})
        assert (await c.post("/__sandbox/reset")).json() == {"reset": True}
        assert resets == ["x"]
        assert (await c.get("/__sandbox/faults")).json()["rate_limit_next"] == 0
        assert (await c.get("/__sandbox/requests")).json() == []


def test_fault_match_filter() -> None:
    inj = FaultInjector()
    inj.configure(errors_5xx_next=1, match="/insights")
    assert inj.next_fault("/v21.0/act_1/campaigns") is None
    fault = inj.next_fault("/v21.0/act_1/insights")
    assert fault is not None and fault.kind == "server_error" and fault.status == 503
    assert inj.next_fault("/v21.0/act_1/insights") is None
    with pytest.raises(ValueError):
        inj.configure(bogus=True)


async def test_objects_endpoint_shows_what_a_write_did() -> None:
    """``GET /__sandbox/objects/{id}``: an entity as the sandbox holds it now, status changes
    included; an unknown id is a 404."""
    from omnify.integrations.meta.sandbox import MetaSandbox, MetaSandboxConfig

    box = MetaSandbox(MetaSandboxConfig(days=30))
    acc = next(iter(box.world.accounts.values()))
    ad = next(a for a in acc.ads.values() if a.status == "active")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=box.app), base_url="http://sandbox") as c:
        seen = (await c.get(f"/__sandbox/objects/{ad.id}")).json()
        assert seen["status"] == "active" and seen["level"] == "ad" and seen["account_id"] == acc.id
        box.world.set_status(ad.id, "paused")
        assert (await c.get(f"/__sandbox/objects/{ad.id}")).json()["status"] == "paused"
        missing = await c.get("/__sandbox/objects/no-such-ad")
        assert missing.status_code == 404 and "no-such-ad" in missing.json()["error"]
