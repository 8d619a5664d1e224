"""Every connections/sync route against: no auth (401), a viewer writing (403), a viewer
reading (200), another organization (404 for its org path and for this org's client id
under its own org), and invalid input (422). The list is checked against OpenAPI so a new
route cannot skip the matrix; happy-path writes live in the feature tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.connections.conn_support import API, META_SMALL, Env, Team, connect, new_team, select_accounts


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # relative to /api/v1, with {org_id}, {client_id}, {platform}
    write: bool
    body: Any = None
    invalid: dict[str, Any] | None = None  # overrides that must answer 422


C = "/orgs/{org_id}/clients/{client_id}/connections"
ROUTES = [
    Route("GET", C, False, invalid={"client_id": "nope"}),
    Route("GET", C + "/{platform}/authorize", True, invalid={"platform": "myspace"}),
    Route("GET", C + "/{platform}", False, invalid={"platform": "myspace"}),
    Route("PUT", C + "/{platform}/accounts", True, {"account_ids": [META_SMALL]},
          invalid={"json": {"account_ids": []}}),
    Route("POST", C + "/{platform}/test", True, invalid={"platform": "myspace"}),
    Route("DELETE", C + "/{platform}", True, invalid={"client_id": "nope"}),
    Route("GET", C + "/{platform}/runs", False, invalid={"params": {"limit": 0}}),
    Route("POST", C + "/{platform}/sync", True, invalid={"platform": "myspace"}),
]


@dataclass
class World:
    team: Team
    outsider_client: str


@pytest.fixture(scope="module")
async def world(env: Env) -> World:
    team = await new_team(env.api)
    await connect(env, team, "meta_ads")
    await select_accounts(env, team, "meta_ads", [META_SMALL])
    other = await env.api.post(f"{API}/orgs/{team.outsider.org_id}/clients", headers=team.outsider.headers,
                               json={"company_name": "Outsider Co"})
    assert other.status_code == 201
    return World(team=team, outsider_client=other.json()["id"])


def _url(route: Route, org_id: str, client_id: str, over: dict[str, str] | None = None) -> str:
    values = {"org_id": org_id, "client_id": client_id, "platform": "meta_ads", **(over or {})}
    return API + route.path.format(**values)


async def _call(env: Env, route: Route, url: str, headers: dict[str, str] | None, **kw: Any) -> Any:
    kwargs: dict[str, Any] = {"headers": headers or {}}
    if route.body is not None:
        kwargs["json"] = route.body
    kwargs.update(kw)
    return await env.api.request(route.method, url, **kwargs)


def test_matrix_covers_every_route(env: Env) -> None:
    paths = {(m.upper(), p.removeprefix(API)) for p, item in env.app.openapi()["paths"].items()
             if "/connections" in p and "{org_id}" in p and "/chat/" not in p for m in item}
    assert paths == {(r.method, r.path) for r in ROUTES}


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_unauthenticated_is_401(env: Env, world: World, route: Route) -> None:
    t = world.team
    resp = await _call(env, route, _url(route, t.owner.org_id, t.client_id), None)
    assert resp.status_code == 401, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_viewer(env: Env, world: World, route: Route) -> None:
    t = world.team
    resp = await _call(env, route, _url(route, t.owner.org_id, t.client_id), t.viewer.headers)
    if route.write:
        assert resp.status_code == 403, resp.text
        assert resp.json()["type"].endswith("/insufficient-role")
    else:
        assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_other_organization_is_404(env: Env, world: World, route: Route) -> None:
    t = world.team
    # The victim's organization in the path.
    resp = await _call(env, route, _url(route, t.owner.org_id, t.client_id), t.outsider.headers)
    assert resp.status_code == 404, resp.text
    # The outsider's own organization, the victim's client id.
    resp = await _call(env, route, _url(route, t.outsider.org_id, t.client_id), t.outsider.headers)
    assert resp.status_code == 404, resp.text
    assert "Outsider Co" not in resp.text and META_SMALL not in resp.text


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_invalid_input_is_422(env: Env, world: World, route: Route) -> None:
    t = world.team
    assert route.invalid is not None
    over = {k: v for k, v in route.invalid.items() if k in ("org_id", "client_id", "platform")}
    kw = {k: v for k, v in route.invalid.items() if k in ("json", "params")}
    resp = await _call(env, route, _url(route, t.owner.org_id, t.client_id, over), t.admin.headers, **kw)
    assert resp.status_code == 422, resp.text
    assert resp.json()["errors"], resp.text


async def test_reads_happy_path(env: Env, world: World) -> None:
    t = world.team
    listed = await env.api.get(t.url(), headers=t.viewer.headers)
    assert listed.status_code == 200
    assert [c["platform"] for c in listed.json()] == ["meta_ads"]
    one = await env.api.get(t.url("meta_ads"), headers=t.viewer.headers)
    assert one.json()["selected_account_ids"] == [META_SMALL]
    assert (await env.api.get(t.url("google_ads"), headers=t.viewer.headers)).status_code == 404
    runs = await env.api.get(t.url("meta_ads", "runs"), headers=t.viewer.headers)
    assert runs.status_code == 200 and runs.json() == {"items": [], "next_cursor": None}


async def test_callback_validation(env: Env) -> None:
    resp = await env.api.get(f"{API}/connections/myspace/callback", params={"state": "x", "code": "y"})
    assert resp.status_code == 422
    resp = await env.api.get(f"{API}/connections/meta_ads/callback", params={"code": "y"})
    assert resp.status_code == 400 and resp.json()["type"].endswith("/invalid-state")


async def test_api_keys_cannot_start_an_authorization(env: Env, world: World) -> None:
    t = world.team
    created = await env.api.post(f"{API}/orgs/{t.owner.org_id}/api-keys", headers=t.owner.headers,
                                 json={"name": "ci", "scopes": ["write"]})
    assert created.status_code == 201, created.text
    key = {"Authorization": f"Bearer {created.json()['key']}"}
    resp = await env.api.get(t.url("meta_ads", "authorize"), headers=key)
    assert resp.status_code == 403 and resp.json()["type"].endswith("/user-required")
