"""The rules API: validation (422 naming the field), permissions, tenancy, lifecycle, templates."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.factories import Account, add_member, register

API = "/api/v1"
GOOD = {"conditions": {"all": [{"metric": "spend", "window": "last_3_days", "op": ">", "value": 50},
                               {"metric": "conversions", "window": "last_3_days", "op": "==", "value": 0}]},
        "actions": [{"type": "pause"}]}


def url(acct: Account, *rest: str) -> str:
    return "/".join([f"{API}/orgs/{acct.org_id}/rules", *rest])


async def make(client: httpx.AsyncClient, acct: Account, definition: dict[str, Any] | None = None,
               **extra: Any) -> httpx.Response:
    return await client.post(url(acct), headers=acct.headers,
                             json={"name": "Stop-loss", "definition": definition or GOOD, **extra})


@pytest.mark.parametrize(("definition", "field", "fragment"), [
    ({**GOOD, "conditions": {"all": [{"metric": "spend", "window": "last_3_weeks", "op": ">", "value": 1}]}},
     "definition.conditions.all.0.window", "last_<n>_days"),
    ({**GOOD, "conditions": {"all": [{"metric": "spend", "op": ">", "value": 1},
                                     {"any": [{"metric": "spendd", "op": ">", "value": 1}]}]}},
     "definition.conditions.all.1.any.0.metric", "spend"),
    ({**GOOD, "conditions": {"all": [{"metric": "cpa", "op": ">"}]}},
     "definition.conditions.all.0.value", "required"),
    ({**GOOD, "conditions": {"all": [{"metric": "cpa", "op": "~", "value": 1}]}},
     "definition.conditions.all.0.op", ">"),
    ({**GOOD, "conditions": {"all": [{"metric": "cpa", "op": ">", "compare_to": {"metric": "cpa", "window": "x"}}]}},
     "definition.conditions.all.0.compare_to.window", "last_<n>_days"),
    ({**GOOD, "conditions": {"all": [{"metric": "ctr", "window": "lifetime", "op": "<", "value": -20,
                                      "compare_to": "previous_window"}]}},
     "definition.conditions.all.0.compare_to", "lifetime has no previous window"),
    ({**GOOD, "actions": [{"type": "change_budget"}]}, "definition.actions.0.amount", "exactly one of"),
    ({**GOOD, "actions": [{"type": "set_budget", "amount": 50}]}, "definition.level", "level: campaign"),
    ({**GOOD, "actions": [{"type": "notify"}]}, "definition.actions.0.channels", "at least one channel"),
    ({**GOOD, "actions": [{"type": "notify", "channels": ["pigeon"]}]}, "definition.actions.0.channels.0", "slack"),
    ({**GOOD, "actions": []}, "definition.actions", "at least 1"),
    ({**GOOD, "scope": {"name_pattern": "re:(("}}, "definition.scope.name_pattern", "regular expression"),
    ({**GOOD, "scope": {"platforms": ["shopify"]}}, "definition.scope.platforms", "no ads"),
    ({**GOOD, "schedule": {"every": "1h", "at": "09:00"}}, "definition.schedule.at", "daily"),
    ({**GOOD, "max_actions_per_run": 0}, "definition.max_actions_per_run", "greater than or equal to 1"),
    ({**GOOD, "extra": 1}, "definition.extra", "not permitted"),
    ({"actions": [{"type": "pause"}]}, "definition.conditions", "required"),
], ids=lambda v: v if isinstance(v, str) else None)
async def test_invalid_definitions_get_422_naming_the_field(
    client: httpx.AsyncClient, owner: Account, definition: dict[str, Any], field: str, fragment: str
) -> None:
    resp = await make(client, owner, definition)
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert body["status"] == 422 and body["type"].endswith("validation-error")
    fields = {e["field"]: e["msg"] for e in body["errors"]}
    assert field in fields, fields
    assert fragment.lower() in fields[field].lower(), fields


async def test_lifecycle_permissions_and_tenancy(client: httpx.AsyncClient, owner: Account,
                                                 outsider: Account) -> None:
    viewer = await add_member(client, owner, "viewer")
    member = await add_member(client, owner, "member")
    assert (await client.post(url(owner), json={"name": "x", "definition": GOOD})).status_code == 401
    refused = await make(client, viewer)
    assert refused.status_code == 403 and refused.json()["type"].endswith("insufficient-role")
    created = await make(client, member, dry_run=True)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["status"] == "active" and rule["dry_run"] is True and rule["version"] == 1
    assert rule["created_by"] == member.email and rule["next_run_at"] is not None
    # A client of another organization in the scope is a 422 on that field.
    other = await client.post(f"{API}/orgs/{outsider.org_id}/clients", headers=outsider.headers,
                              json={"company_name": f"Theirs {uuid.uuid4().hex[:6]}"})
    foreign = await make(client, owner, {**GOOD, "scope": {"client_ids": [other.json()["id"]]}})
    assert foreign.status_code == 422 and foreign.json()["errors"][0]["field"] == "definition.scope.client_ids.0"

    listed = (await client.get(url(owner), headers=viewer.headers)).json()
    assert [r["id"] for r in listed["items"]] == [rule["id"]]
    assert (await client.get(url(outsider, rule["id"]), headers=outsider.headers)).status_code == 404
    assert (await client.get(url(owner, rule["id"]), headers=outsider.headers)).status_code == 404
    assert (await client.get(url(outsider), headers=outsider.headers)).json()["items"] == []

    paused = await client.post(url(owner, rule["id"], "pause"), headers=member.headers)
    assert paused.status_code == 200 and paused.json()["status"] == "paused" and paused.json()["next_run_at"] is None
    resumed = await client.post(url(owner, rule["id"], "resume"), headers=member.headers)
    assert resumed.json()["status"] == "active" and resumed.json()["next_run_at"] is not None
    patched = await client.patch(url(owner, rule["id"]), headers=member.headers, json={
        "definition": {**GOOD, "cooldown_hours": 6}, "dry_run": False})
    assert patched.status_code == 200 and patched.json()["version"] == 2 and patched.json()["dry_run"] is False
    bad_patch = await client.patch(url(owner, rule["id"]), headers=member.headers,
                                   json={"definition": {**GOOD, "cooldown_hours": -1}})
    assert bad_patch.status_code == 422 and bad_patch.json()["errors"][0]["field"] == "definition.cooldown_hours"
    audit = (await client.get(f"{API}/orgs/{owner.org_id}/audit", headers=owner.headers)).json()["items"]
    assert {"rule.created", "rule.paused", "rule.resumed", "rule.updated"} <= {e["action"] for e in audit}
    assert (await client.delete(url(owner, rule["id"]), headers=viewer.headers)).status_code == 403
    assert (await client.delete(url(owner, rule["id"]), headers=member.headers)).status_code == 204
    assert (await client.get(url(owner, rule["id"]), headers=member.headers)).status_code == 404


async def test_templates_are_valid_editable_rules(client: httpx.AsyncClient) -> None:
    owner = await register(client)
    templates = (await client.get(url(owner, "templates"), headers=owner.headers)).json()
    keys = {t["key"] for t in templates}
    assert {"stop_loss", "revive_winners", "surf_scale", "sunset_fatigued", "budget_cap"} <= keys
    for t in templates:
        resp = await client.post(url(owner, "from-template"), headers=owner.headers, json={"template": t["key"]})
        assert resp.status_code == 201, resp.text
        assert resp.json()["template"] == t["key"] and resp.json()["definition"] == t["definition"]
    unknown = await client.post(url(owner, "from-template"), headers=owner.headers, json={"template": "nope"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "template"
    # A draft previews and backtests without any data: nothing matches, nothing breaks.
    preview = await client.post(url(owner, "preview"), headers=owner.headers, json={"definition": GOOD})
    assert preview.status_code == 200 and preview.json() == {"clients": [], "matched": 0, "would_act": 0}
    bt = await client.post(url(owner, "backtest"), headers=owner.headers, json={"definition": GOOD, "days": 400})
    assert bt.status_code == 422 and bt.json()["errors"][0]["field"] == "days"
