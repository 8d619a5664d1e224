"""Every onboarding route against: no auth (401), a viewer writing (403), another organization
(404, both for its org path and for this org's object ids under its own org), invalid input
(422), and a viewer reading (200). Happy-path writes live in the feature tests.

The route list is checked against the OpenAPI schema, so a new route cannot skip the matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.integration.onboarding.onboarding_support import Team, new_client, pdf, upload


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # template relative to /api/v1, with {org_id}, {client_id}, {file_id}, {idea_id}
    write: bool
    body: Any = None  # a valid body (json), "multipart" for the upload
    invalid: dict[str, Any] | None = None  # request kwargs/overrides that must answer 422


C = "/orgs/{org_id}/clients"
CC = C + "/{client_id}"
ROUTES = [
    Route("GET", C, False, invalid={"params": {"limit": 0}}),
    Route("POST", C, True, {"company_name": "Matrix"}, invalid={"json": {"company_name": 5}}),
    Route("GET", CC, False, invalid={"client_id": "nope"}),
    Route("PATCH", CC, True, {"industry": "X"}, invalid={"json": {"website": "nope"}}),
    Route("DELETE", CC, True, invalid={"client_id": "nope"}),
    Route("POST", CC + "/restore", True, invalid={"client_id": "nope"}),
    Route("GET", CC + "/files", False, invalid={"params": {"category": "selfies"}}),
    Route("POST", CC + "/files", True, "multipart", invalid={"multipart_category": "selfies"}),
    Route("GET", CC + "/files/{file_id}", False, invalid={"file_id": "nope"}),
    Route("GET", CC + "/files/{file_id}/download", False, invalid={"params": {"variant": "raw"}}),
    Route("DELETE", CC + "/files/{file_id}", True, invalid={"file_id": "nope"}),
    Route("GET", CC + "/credentials", False, invalid={"params": {"limit": 1000}}),
    Route("GET", CC + "/credentials/{platform}", False, invalid={"platform": "myspace"}),
    Route("PUT", CC + "/credentials/{platform}", True,
          {"secrets": {"access_token": "EAAB" + "m" * 30}, "account_id": "act_1"},
          invalid={"json": {"secrets": {"access_token": "EAAB" + "m" * 30}, "account_id": "bad"}}),
    Route("DELETE", CC + "/credentials/{platform}", True, invalid={"platform": "myspace"}),
    Route("GET", CC + "/campaign-ideas", False, invalid={"params": {"status": "maybe"}}),
    Route("POST", CC + "/campaign-ideas", True, {"title": "Idea"}, invalid={"json": {"title": ""}}),
    Route("GET", CC + "/campaign-ideas/{idea_id}", False, invalid={"idea_id": "nope"}),
    Route("PATCH", CC + "/campaign-ideas/{idea_id}", True, {"title": "Renamed"},
          invalid={"json": {"budget_amount": "x"}}),
    Route("DELETE", CC + "/campaign-ideas/{idea_id}", True, invalid={"idea_id": "nope"}),
    Route("POST", CC + "/campaign-ideas/{idea_id}/status", True, {"status": "in_review"},
          invalid={"json": {"status": "done"}}),
    Route("GET", CC + "/onboarding", False, invalid={"client_id": "nope"}),
    Route("PUT", CC + "/onboarding", True, {"platforms": ["meta_ads"]}, invalid={"json": {"platforms": ["x"]}}),
]


@dataclass
class World:
    team: Team
    ids: dict[str, str]
    outsider_ids: dict[str, str]


@pytest.fixture(scope="module")
async def world(client: httpx.AsyncClient, shared: Team) -> World:
    async def ids_for(acct: Any) -> dict[str, str]:
        c = await new_client(client, acct)
        f = (await upload(client, acct, c["id"], pdf("matrix"), category="brand_guide")).json()
        base = f"/api/v1/orgs/{acct.org_id}/clients/{c['id']}"
        idea = (await client.post(f"{base}/campaign-ideas", headers=acct.headers, json={"title": "M"})).json()
        cred = await client.put(f"{base}/credentials/meta_ads", headers=acct.headers,
                                json={"secrets": {"access_token": "EAAB" + "w" * 30}, "account_id": "act_9"})
        assert cred.status_code == 201
        return {"org_id": acct.org_id, "client_id": c["id"], "file_id": f["id"], "idea_id": idea["id"],
                "platform": "meta_ads"}

    return World(shared, await ids_for(shared.owner), await ids_for(shared.outsider))


def _url(route: Route, ids: dict[str, str]) -> str:
    return "/api/v1" + route.path.format(**ids)


async def _call(client: httpx.AsyncClient, route: Route, url: str, headers: dict[str, str],
                body: Any = None, **extra: Any) -> httpx.Response:
    if body == "multipart":
        category = extra.pop("multipart_category", "brand_guide")
        return await client.request(route.method, url, headers=headers, data={"category": category},
                                    files={"file": ("m.pdf", pdf("m"), "application/pdf")}, **extra)
    if body is not None:
        extra.setdefault("json", body)
    return await client.request(route.method, url, headers=headers, **extra)


# Routes under /clients owned by later domains, each guarded by its own tests (and by the
# foundation's cross-tenant walk over every route).
OTHER_DOMAINS = ("/analytics", "/brain-runs", "/connections", "/privacy-requests",
                 # issue 17 (brain calendar) and issue 19 (rule labels, reports): own route tests
                 "/calendar", "/labels", "/exports", "/report")


def test_matrix_covers_every_onboarding_route(app: Any) -> None:
    documented = {
        (method.upper(), path.removeprefix("/api/v1"))
        for path, item in app.openapi()["paths"].items()
        if "/clients" in path and not any(seg in path for seg in OTHER_DOMAINS)
        for method in item if method in {"get", "post", "put", "patch", "delete"}
    }
    assert documented == {(r.method, r.path) for r in ROUTES}


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path.removeprefix(C) or '/'}")
async def test_route_guards(client: httpx.AsyncClient, world: World, route: Route) -> None:
    team, ids = world.team, world.ids
    url = _url(route, ids)

    anonymous = await _call(client, route, url, {}, route.body)
    assert anonymous.status_code == 401, anonymous.text

    # a member of another organization: the victim's org path, and the victim's ids under its own org
    foreign = await _call(client, route, url, team.outsider.headers, route.body)
    assert foreign.status_code == 404, foreign.text
    if "{client_id}" in route.path:
        crossed = _url(route, {**ids, "org_id": world.outsider_ids["org_id"]})
        smuggled = await _call(client, route, crossed, team.outsider.headers, route.body)
        assert smuggled.status_code == 404, (crossed, smuggled.text)
        assert ids["client_id"] not in smuggled.text.replace(crossed, "")

    viewer = await _call(client, route, url, team.viewer.headers, route.body)
    if route.write:
        assert viewer.status_code == 403, viewer.text
        assert viewer.json()["type"].endswith("insufficient-role")
    else:
        assert viewer.status_code == 200, viewer.text

    assert route.invalid is not None
    overrides = {k: v for k, v in route.invalid.items() if k in ids}
    extra = {k: v for k, v in route.invalid.items() if k not in ids}
    invalid = await _call(client, route, _url(route, {**ids, **overrides}), team.owner.headers, route.body, **extra)
    assert invalid.status_code == 422, (route, invalid.text)
    assert invalid.headers["content-type"].startswith("application/problem+json")
