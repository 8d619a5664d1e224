"""Tenant-isolation and role sweeps over every route the app serves, with real ids.

The victim organization gets one of every kind of object the API can create (through the
API and the real OAuth dance against the platform sandboxes; recommendations and privacy
requests through the services that create them in production). Then every route with an
``{org_id}`` or ``{..._id}`` path parameter, discovered from ``app.openapi()`` so a route
added later is swept too, is called with the attacker's JWT and API key and the victim's
real ids: each answer must be a 404 problem+json, and a dump of every victim row (every
table with an ``org_id`` column, read through the owner handle, which bypasses RLS) must
be the same before and after. The role sweep calls every write route as a viewer and every
admin route as a member of the victim organization: each must be a 403.
"""

from __future__ import annotations

import inspect
import itertools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import Table, select

from omnify.auth.permissions import ROLE_PERMISSIONS, Permission
from omnify.connections.models import Connection
from omnify.core.db import Base, Database, bind_tenant
from omnify.orgs.models import Role
from omnify.privacy import service as privacy
from omnify.privacy.models import PrivacyTopic
from omnify.recommendations import service as rec_service
from tests.factories import Account, add_member, register
from tests.integration.connections.conn_support import (  # noqa: F401
    API,
    META_SMALL,
    SHOP,
    Env,
    Team,
    boxes,
    enqueued,
    env,
    new_team,
)
from tests.integration.sync.sync_support import connected, run
from tests.integration.web.web_support import new_web, sign_in

METHODS = ("get", "post", "put", "patch", "delete")
WRITES = ("post", "put", "patch", "delete")
#: Routes with an id in the path that are not tenant routes, and why they are not swept
#: (each has its own tests). A new route must be swept or listed here, with a reason.
NOT_TENANT_ROUTES = {
    "/api/v1/admin/jobs/failures/{failure_id}": "platform-administrator route (no organization in the path)",
    "/api/v1/admin/jobs/failures/{failure_id}/replay": "platform-administrator route",
    "/api/v1/admin/jobs/failures/{failure_id}/resolve": "platform-administrator route",
    "/api/v1/chat/charts/{event_id}.png": "no caller identity: a signed, expiring link",
    "/api/v1/connections/{platform}/callback": "no caller identity: the OAuth state is the credential",
    "/api/v1/webhooks/inbound/{provider}": "no caller identity: the platform's HMAC signature",
    "/api/v1/webhooks/inbound/{provider}/{source_id}": "no caller identity: the platform's HMAC signature",
}
#: Valid bodies for writes (keyed by method, path template and, where it matters, the
#: platform), so a call gets past body validation to the object look-up: the caller's
#: own organization then admits the caller, and only the object's scope can refuse.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("patch", "/members/{user_id}"): {"role": "viewer"},
    ("put", "/credentials/{platform}:meta_ads"): {"secrets": {"access_token": "t" * 20}, "account_id": "act_1"},
    ("put", "/credentials/{platform}:shopify"): {"secrets": {"access_token": "shpat_" + "0" * 32},
                                                "account_id": "acme-store.myshopify.com"},
    ("post", "/campaign-ideas"): {"title": "Stolen idea"},
    ("post", "/campaign-ideas/{idea_id}/status"): {"status": "approved"},
    ("patch", "/campaign-ideas/{idea_id}"): {"title": "Renamed by an attacker"},
    ("put", "/onboarding"): {"platforms": ["meta_ads"]},
    ("put", "/connections/{platform}/accounts:meta_ads"): {"account_ids": [META_SMALL]},
    ("put", "/connections/{platform}/accounts:shopify"): {"account_ids": [SHOP]},
    ("post", "/recommendations/{recommendation_id}/dismiss"): {"reason": "attacker"},
    ("post", "/actions/{action_id}/reject"): {"reason": "attacker"},
    ("put", "/labels/{level}/{entity_id}"): {"labels": ["attacker"]},
    ("post", "/chat/connections/{connection_id}/channels"): {"channel_id": "C0123"},
    ("post", "/report-schedules"): {"cadence": "weekly", "recipients": ["thief@example.com"]},
    ("patch", "/report-schedules/{schedule_id}"): {"recipients": ["thief@example.com"]},
    ("patch", "/clients/{client_id}"): {"company_name": "Renamed by an attacker"},
    ("patch", "/rules/{rule_id}"): {"name": "Renamed by an attacker"},
    ("patch", "/webhook-endpoints/{endpoint_id}"): {"description": "attacker"},
}


def body_for(method: str, template: str, path: str) -> dict[str, Any]:
    for (m, suffix), body in BODIES.items():
        base, _, platform = suffix.partition(":")
        if m == method and template.endswith(base) and (not platform or path.split("/")[-1 if base.endswith(
                "{platform}") else -2] == platform):
            return body
    return {}


def payload(op: Operation, path: str) -> dict[str, Any]:
    """The request body: a file upload is multipart, everything else JSON."""
    if op.method == "post" and op.path.endswith("/files"):
        return {"data": {"category": "other"}, "files": {"file": ("stolen.txt", b"attacker\n", "text/plain")}}
    return {"json": body_for(op.method, op.path, path)}


@dataclass
class Victim:
    team: Team
    member: Account
    ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def org(self) -> str:
        return f"{API}/orgs/{self.team.owner.org_id}"

    def values(self, path: str, param: str) -> list[str]:
        """The victim's real values for one path parameter of ``path``."""
        if param == "delivery_id":
            return self.ids["chat_delivery_id" if "/chat/" in path else "webhook_delivery_id"]
        if param == "connection_id":
            return self.ids["chat_connection_id"]
        assert param in self.ids, f"no victim object for {{{param}}} in {path}: create one in build_victim"
        return self.ids[param]


async def _ok(resp: httpx.Response, *codes: int) -> dict[str, Any]:
    assert resp.status_code in (codes or (200, 201)), (resp.request.method, resp.request.url, resp.status_code,
                                                      resp.text)
    body: Any = resp.json() if resp.content else {}
    return body if isinstance(body, dict) else {"items": body}


async def _first_row(owner_db: Database, table_name: str, org_id: str) -> Any:
    table = Base.metadata.tables[table_name]
    async with owner_db.sessionmaker() as session:
        row = (await session.execute(select(table).where(table.c.org_id == uuid.UUID(org_id)).limit(1))).first()
    assert row is not None, table_name
    return row


async def build_victim(env: Env) -> Victim:  # noqa: F811
    """One organization with one of every kind of object (ids as the routes name them)."""
    api = env.api
    team = await new_team(api)
    owner = team.owner
    victim = Victim(team=team, member=await add_member(api, owner, "member"))
    org, client = victim.org, f"{victim.org}/clients/{team.client_id}"
    h = owner.headers
    ids = victim.ids
    ids["org_id"] = [owner.org_id]
    ids["client_id"] = [team.client_id]
    ids["user_id"] = [owner.user_id, team.viewer.user_id]

    # connections (the sandbox OAuth dance), a real sync, a Shopify shop
    meta_conn = await connected(env, team, "meta_ads", META_SMALL)
    result = await run(env, team, meta_conn)
    assert result.status == "succeeded" and result.rows_written > 0, result
    await connected(env, team, "shopify", shop=SHOP)
    ids["platform"] = ["meta_ads", "shopify"]

    # a stored credential, a file, an idea, onboarding and calendar answers
    await _ok(await api.put(f"{client}/credentials/google_ads", headers=h,
                            json={"account_id": "123-456-7890", "secrets": {"developer_token": "dev-token-123", "refresh_token": "r" * 20}}),
              200, 201)
    upload = await api.post(f"{client}/files", headers=h, data={"category": "other"},
                            files={"file": ("note.txt", b"victim brand notes\n", "text/plain")})
    ids["file_id"] = [(await _ok(upload, 201))["id"]]
    idea = await api.post(f"{client}/campaign-ideas", headers=h,
                          json={"title": "Spring promo", "description": "Victim's plan"})
    ids["idea_id"] = [(await _ok(idea, 201))["id"]]

    # recommendations (as a brain run stores them) and an action (applying one)
    ad = await _first_row(env.owner_db, "ads", owner.org_id)
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, uuid.UUID(owner.org_id))
        for n in range(2):
            await rec_service.merge_findings(session, uuid.UUID(owner.org_id), uuid.UUID(team.client_id), [
                rec_service.Finding(
                    module="fatigue", kind="pause_ad", dedupe_key=f"USD|fatigue:{ad.id}:{n}",
                    title=f"Creative fatigue on {ad.name}", target={"level": "ad", "id": str(ad.id), "name": ad.name,
                                                                    "platform": "meta_ads",
                                                                    "external_id": ad.external_id},
                    platform="meta_ads", confidence=0.8, impact_minor=12_345, currency="USD",
                    action={"type": "pause_ad", "platform": "meta_ads", "account_id": META_SMALL,
                            "entity_id": ad.external_id, "name": ad.name, "daily_spend_minor": 2_000},
                    evidence={"ctr_drop": 0.4})], None, expire_missing=False)
        await session.commit()
    recs = (await _ok(await api.get(f"{org}/recommendations", headers=h)))["items"]
    ids["recommendation_id"] = [r["id"] for r in recs]
    applied = await _ok(await api.post(f"{org}/recommendations/{recs[0]['id']}/apply", headers=h, json={}),
                        200, 201, 202)
    actions = (await _ok(await api.get(f"{org}/actions", headers=h)))["items"]
    assert actions, applied
    ids["action_id"] = [a["id"] for a in actions]

    # rules and their evaluations, labels on a synced campaign
    rule = await _ok(await api.post(f"{org}/rules", headers=h, json={
        "name": "Big spenders", "definition": {
            "scope": {"client_ids": [team.client_id]},
            "conditions": {"all": [{"metric": "impressions", "window": "last_7_days", "op": ">", "value": 0}]},
            "actions": [{"type": "notify", "channels": ["email"]}], "max_actions_per_run": 3}}), 201)
    ids["rule_id"] = [rule["id"]]
    await _ok(await api.post(f"{org}/rules/{rule['id']}/run", headers=h), 200, 201, 202)
    evaluations = (await _ok(await api.get(f"{org}/rules/{rule['id']}/evaluations", headers=h)))["items"]
    ids["evaluation_id"] = [e["id"] for e in evaluations[:1]]
    campaign = await _first_row(env.owner_db, "campaigns", owner.org_id)
    ids["level"], ids["entity_id"] = ["campaign"], [str(campaign.id)]
    await _ok(await api.put(f"{client}/labels/campaign/{campaign.id}", headers=h, json={"labels": ["victim"]}))

    # webhooks: an endpoint and a delivery; chat: a connection, its channel, a route, a delivery
    endpoint = await _ok(await api.post(f"{org}/webhook-endpoints", headers=h,
                                        json={"url": "https://hooks.example.com/victim"}), 201)
    ids["endpoint_id"] = [endpoint["id"]]
    await _ok(await api.post(f"{org}/webhook-endpoints/{endpoint['id']}/test", headers=h), 200, 201, 202)
    deliveries = (await _ok(await api.get(f"{org}/webhook-endpoints/{endpoint['id']}/deliveries", headers=h)))
    ids["webhook_delivery_id"] = [d["id"] for d in deliveries["items"][:1]]
    channel = await _ok(await api.post(f"{org}/chat/connections", headers=h, json={
        "kind": "slack_webhook", "name": "#victim", "url": "https://hooks.slack.com/services/T0/B0/victim"}), 201)
    ids["channel_id"] = [channel["id"]]
    chat_conns = (await _ok(await api.get(f"{org}/chat/connections", headers=h)))["items"]
    ids["chat_connection_id"] = [c["id"] for c in chat_conns]
    route = await _ok(await api.post(f"{org}/chat/routes", headers=h, json={
        "channel_id": channel["id"], "event_kind": "rule_fired", "client_id": team.client_id}), 201)
    ids["route_id"] = [route["id"]]
    chat_delivery = await _ok(await api.post(f"{org}/chat/channels/{channel['id']}/test", headers=h), 202)
    ids["chat_delivery_id"] = [chat_delivery["id"]]

    # members' things: an API key, a pending invitation; reports: a schedule, an export table
    key = await _ok(await api.post(f"{org}/api-keys", headers=h, json={"name": "victim key", "scopes": ["read"]}),
                    201)
    ids["key_id"] = [key["id"]]
    invitation = await _ok(await api.post(f"{org}/invitations", headers=h,
                                          json={"email": f"invitee-{uuid.uuid4().hex[:8]}@example.com",
                                                "role": "member"}), 201)
    ids["invitation_id"] = [invitation["id"]]
    schedule = await _ok(await api.post(f"{client}/report-schedules", headers=h,
                                        json={"cadence": "weekly", "recipients": ["boss@example.com"]}), 201)
    ids["schedule_id"] = [schedule["id"]]
    tables = (await _ok(await api.get(f"{client}/exports", headers=h)))["items"]
    ids["table"] = [tables[0]["table"]]
    await _ok(await api.post(f"{client}/brain-runs", headers=h), 200, 201, 202)

    # a Shopify privacy request, as the compliance webhook's handler records it
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, uuid.UUID(owner.org_id))
        shop_conn = await session.scalar(select(Connection).where(
            Connection.org_id == uuid.UUID(owner.org_id), Connection.platform == "shopify"))
        assert shop_conn is not None
        request = await privacy.handle(session, env.settings, shop_conn, PrivacyTopic.CUSTOMERS_DATA_REQUEST,
                                       {"shop_domain": SHOP, "customer": {"id": 424242},
                                        "data_request": {"id": 9001}})
        assert request is not None
        ids["request_id"] = [str(request.id)]
        await session.commit()
    empty = sorted(k for k, v in ids.items() if not v)
    assert not empty, f"no victim object for {empty}"
    return victim


async def dump(owner_db: Database, org_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of one organization, in every table that has an ``org_id`` column."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with owner_db.sessionmaker() as session:
        for name, table in sorted(Base.metadata.tables.items()):
            assert isinstance(table, Table)
            if "org_id" not in table.c:
                continue
            rows = (await session.execute(select(table).where(table.c.org_id == uuid.UUID(org_id)))).all()
            out[name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def changed_tables(before: dict[str, list[tuple[Any, ...]]], after: dict[str, list[tuple[Any, ...]]]) -> list[str]:
    return [name for name in before if before[name] != after[name]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    params: tuple[str, ...]
    permission: Permission | None


def _permission_of(route: Any) -> Permission | None:
    """The permission a route's ``require(...)`` dependency checks (read from its closure)."""
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        call = dep.call
        if getattr(call, "__qualname__", "").startswith("require.<locals>"):
            found = inspect.getclosurevars(call).nonlocals.get("permission")
            if isinstance(found, Permission):
                return found
        stack.extend(dep.dependencies)
    return None


def operations(app: Any) -> list[Operation]:
    """Every operation with a path parameter, from the OpenAPI schema (so new routes count)."""
    routes = {(m.lower(), r.path): r.original_route for r in iter_route_contexts(app.routes) for m in r.methods or ()}
    ops: list[Operation] = []
    for path, item in app.openapi()["paths"].items():
        if "{" not in path:
            continue
        for method in METHODS:
            if method not in item:
                continue
            if path in NOT_TENANT_ROUTES:
                continue
            params = tuple(p["name"] for p in item[method].get("parameters", []) if p["in"] == "path")
            ops.append(Operation(method, path, params, _permission_of(routes[(method, path)])))
    return ops


def fillings(victim: Victim, op: Operation) -> Iterable[str]:
    """``op.path`` with every combination of the victim's values for its parameters."""
    choices = [victim.values(op.path, p) for p in op.params]
    for combo in itertools.product(*choices):
        path = op.path
        for name, value in zip(op.params, combo, strict=True):
            path = path.replace("{" + name + "}", value)
        yield path


def is_problem(resp: httpx.Response, status: int) -> bool:
    return (resp.status_code == status and resp.headers.get("content-type", "").startswith("application/problem+json")
            and resp.json().get("status") == status)


@pytest.fixture(scope="module")
async def victim(env: Env) -> Victim:  # noqa: F811
    return await build_victim(env)


def foreign_ids_in_own_org(victim: Victim, op: Operation, own_org: str) -> Iterable[str]:
    """``op.path`` in the caller's own organization with the victim's object ids (the
    classic IDOR: the membership check passes, only the object's own scope can refuse)."""
    if op.params == ("org_id",):
        return
    for path in fillings(victim, op):
        yield path.replace(victim.team.owner.org_id, own_org, 1)


def unknown_ids(op: Operation, path: str) -> str:
    """``path`` with every uuid but the first (the caller's own organization) replaced by a
    fresh one."""
    parts = path.split("/")
    seen_org = False
    for i, part in enumerate(parts):
        try:
            uuid.UUID(part)
        except ValueError:
            continue
        if seen_org:
            parts[i] = str(uuid.uuid4())
        seen_org = True
    return "/".join(parts)


async def test_other_organizations_objects_answer_404_and_stay_unchanged(env: Env, victim: Victim) -> None:  # noqa: F811
    attacker = await register(env.api, org="Attacker Org")
    key = await _ok(await env.api.post(f"{API}/orgs/{attacker.org_id}/api-keys", headers=attacker.headers,
                                       json={"name": "attacker", "scopes": ["read", "write"]}), 201)
    credentials = {"jwt": attacker.headers, "api_key": {"Authorization": f"Bearer {key['key']}"}}
    ops = operations(env.app)
    assert all(p in NOT_TENANT_ROUTES or "{org_id}" in p for p in env.app.openapi()["paths"] if "{" in p)
    victim_name = (await _ok(await env.api.get(victim.org, headers=victim.team.owner.headers)))["name"]
    before = await dump(env.owner_db, victim.team.owner.org_id)

    calls, tried, violations, same_as_unknown = 0, set[tuple[str, str]](), list[str](), 0
    for op in ops:
        for in_victim_org, paths in ((True, list(fillings(victim, op))),
                                     (False, list(foreign_ids_in_own_org(victim, op, attacker.org_id)))):
            for path in paths:
                tried.add((op.method, path))
                for kind, headers in credentials.items():
                    resp = await env.api.request(op.method.upper(), path, headers=headers, **payload(op, path))
                    calls += 1
                    if victim_name not in resp.text and is_problem(resp, 404):
                        continue
                    if not in_victim_org and 400 <= resp.status_code < 500 and victim_name not in resp.text:
                        # In its own organization the caller may be refused before any look-up
                        # (the key's scope, a user-only route): then unknown ids must get the
                        # very same answer, or the answer would tell that the object exists.
                        control = await env.api.request(op.method.upper(), unknown_ids(op, path), headers=headers,
                                                        **payload(op, path))
                        calls += 1
                        if (control.status_code, control.json().get("type")) == (
                                resp.status_code, resp.json().get("type")):
                            same_as_unknown += 1
                            continue
                    where = "victim org" if in_victim_org else "own org, victim ids"
                    violations.append(f"{kind} {op.method.upper()} {op.path} ({where}) -> {resp.status_code} "
                                      f"{resp.text[:160]}")
    after = await dump(env.owner_db, victim.team.owner.org_id)
    ids = {v for values in victim.ids.values() for v in values}
    summary = (f"tenant sweep: {len(ops)} operations x the victim's real ids = {len(tried)} requests "
               f"({len(ids)} distinct victim ids and values; in the victim's org and, for object ids, in the "
               f"attacker's own org), {calls} calls with JWT and API key, {len(violations)} violations "
               f"({same_as_unknown} refusals before any look-up, identical for unknown ids), "
               f"{len(before)} victim tables ({sum(map(len, before.values()))} rows) unchanged: "
               f"{not changed_tables(before, after)}")
    print(summary)
    assert not violations, summary + "\n" + "\n".join(violations)
    assert not changed_tables(before, after), summary + f" changed: {changed_tables(before, after)}"
    assert len(ops) >= 100 and sum(map(len, before.values())) > 0, summary


async def test_viewers_cannot_write_and_members_cannot_administer(env: Env, victim: Victim) -> None:  # noqa: F811
    """Every write route as a viewer and as a ``read`` API key, every admin route (a permission
    the member role lacks, per auth/permissions.py) as a member and as a ``write`` API key:
    403 problem+json, and nothing changes. The few
    POSTs a viewer may call are dry runs (rule preview and backtest, needing only a read
    permission); they are called too and must answer below 500 and change nothing."""
    ops = [op for op in operations(env.app) if "{org_id}" in op.path]
    unguarded = [f"{op.method} {op.path}" for op in ops if op.permission is None]
    assert not unguarded, f"tenant routes without require(Permission...): {unguarded}"
    viewer_may, member_may = ROLE_PERMISSIONS[Role.VIEWER], ROLE_PERMISSIONS[Role.MEMBER]
    # {user_id} is the owner: the caller's own id would be "leave the organization".
    roles = Victim(team=victim.team, member=victim.member, ids={**victim.ids, "user_id": [victim.team.owner.user_id]})
    # The victim's own API keys: `read` maps to the viewer's permissions, `write` to the member's.
    keys: dict[str, dict[str, str]] = {}
    for scope in ("read", "write"):
        created = await _ok(await env.api.post(f"{victim.org}/api-keys", headers=victim.team.owner.headers,
                                               json={"name": f"{scope} key", "scopes": [scope]}), 201)
        keys[scope] = {"Authorization": f"Bearer {created['key']}"}
        await _ok(await env.api.get(victim.org, headers=keys[scope]))  # its first use is recorded now, not below
    before = await dump(env.owner_db, victim.team.owner.org_id)
    writes = [op for op in ops if op.method in WRITES]
    viewer_ops = [op for op in writes if op.permission not in viewer_may]
    dry_runs = [op for op in writes if op.permission in viewer_may]
    member_ops = [op for op in ops if op.permission not in member_may]
    calls, violations = 0, list[str]()
    plan = (("viewer", victim.team.viewer.headers, viewer_ops, 403), ("member", victim.member.headers, member_ops, 403),
            ("read key", keys["read"], viewer_ops, 403), ("write key", keys["write"], member_ops, 403),
            ("viewer", victim.team.viewer.headers, dry_runs, None), ("read key", keys["read"], dry_runs, None))
    for who, headers, chosen, expected in plan:
        for op in chosen:
            for path in fillings(roles, op):
                resp = await env.api.request(op.method.upper(), path, headers=headers, json={})
                calls += 1
                if (expected is not None and not is_problem(resp, expected)) or resp.status_code >= 500:
                    violations.append(f"{who} {op.method.upper()} {op.path} -> {resp.status_code} {resp.text[:160]}")
    after = await dump(env.owner_db, victim.team.owner.org_id)
    summary = (f"role sweep: {len(viewer_ops)} write operations as viewer and as a read-scoped API key, "
               f"{len(member_ops)} admin operations as member and as a write-scoped API key, {len(dry_runs)} "
               f"read-only POSTs as both readers, {calls} calls, {len(violations)} violations")
    print(summary)
    assert not violations, summary + "\n" + "\n".join(violations)
    assert not changed_tables(before, after), summary + f" changed: {changed_tables(before, after)}"
    assert viewer_ops and member_ops and all(op.path.startswith(f"{API}/orgs/{{org_id}}/rules") for op in dry_runs), \
        summary


#: Real values of the web pages' non-id path parameters.
WEB_VALUES = {"page": ["company"], "verb": ["pause", "delete"], "what": ["webhook", "route"]}


def web_operations(app: Any) -> list[Operation]:
    """Every page and form action of the web app under ``/orgs/{org_id}`` (not in the API's
    OpenAPI document: discovered from the app's routes)."""
    ops: list[Operation] = []
    for route in iter_route_contexts(app.routes):
        path = route.path or ""
        if not path.startswith("/orgs/{org_id}"):
            continue
        params = tuple(part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}"))
        ops.extend(Operation(m.lower(), path, params, None) for m in sorted(route.methods or ()))
    return ops


async def test_other_organizations_pages_answer_404_to_a_browser_session(env: Env, victim: Victim) -> None:  # noqa: F811
    """The web app (cookie session + CSRF) behind the same gate: every page and form of the
    victim's organization is the 404 page for a signed-in stranger, and nothing changes."""
    attacker = await register(env.api, org="Attacker Web Org")
    web = new_web(env.app)
    try:
        signed_in = await sign_in(web, attacker.email, attacker.password)
        assert signed_in.status_code == 303, signed_in.text[:500]
        await web.get(f"/orgs/{attacker.org_id}")  # a page of its own: a valid CSRF token for the forms
        assert web.token
        pages = Victim(team=victim.team, member=victim.member, ids={**victim.ids, **WEB_VALUES})
        victim_name = (await _ok(await env.api.get(victim.org, headers=victim.team.owner.headers)))["name"]
        before = await dump(env.owner_db, victim.team.owner.org_id)
        ops = web_operations(env.app)
        calls, violations = 0, list[str]()
        for op in ops:
            for path in fillings(pages, op):
                resp = await (web.get(path) if op.method == "get" else web.post(path, {}))
                calls += 1
                if (resp.status_code != 404 or not resp.headers.get("content-type", "").startswith("text/html")
                        or victim_name in resp.text):
                    violations.append(f"web {op.method.upper()} {op.path} -> {resp.status_code} {resp.text[:160]}")
        after = await dump(env.owner_db, victim.team.owner.org_id)
    finally:
        await web.aclose()
    summary = (f"web sweep: {len(ops)} pages and forms, {calls} calls with a browser session, "
               f"{len(violations)} violations")
    print(summary)
    assert not violations, summary + "\n" + "\n".join(violations)
    assert not changed_tables(before, after), summary + f" changed: {changed_tables(before, after)}"
    assert len(ops) >= 40, summary
