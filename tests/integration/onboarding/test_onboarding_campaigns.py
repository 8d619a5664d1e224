"""Campaign ideas: fields, attachments of the client's own files, and the status workflow."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.integration.onboarding.onboarding_support import Team, clients_url, new_client, pdf, upload

IDEA = {
    "title": "Spring launch",
    "description": "Push the new boots.\nTwo creatives.",
    "objective": "sales",
    "target_audience": "Hikers, 25-45, UK",
    "platforms": ["meta_ads", "tiktok_ads", "meta_ads"],
    "budget_amount": "2500.50",
    "budget_currency": "gbp",
    "start_date": "2027-03-01",
    "end_date": "2027-04-15",
}


def _url(team: Team, client_id: str, *rest: str) -> str:
    return clients_url(team.owner, client_id, "campaign-ideas", *rest)


async def test_create_with_attachments_and_edit(client: httpx.AsyncClient, team: Team) -> None:
    c = await new_client(client, team.owner)
    other = await new_client(client, team.owner)
    mine = (await upload(client, team.owner, c["id"], pdf("brief"), category="campaign_idea")).json()
    theirs = (await upload(client, team.owner, other["id"], pdf("other"), category="campaign_idea")).json()
    h = team.owner.headers

    wrong = await client.post(_url(team, c["id"]), headers=h, json={**IDEA, "attached_file_ids": [theirs["id"]]})
    assert wrong.status_code == 422 and theirs["id"] in wrong.text
    ghost = await client.post(_url(team, c["id"]), headers=h, json={**IDEA, "attached_file_ids": [str(uuid.uuid4())]})
    assert ghost.status_code == 422

    resp = await client.post(_url(team, c["id"]), headers=h, json={**IDEA, "attached_file_ids": [mine["id"]]})
    assert resp.status_code == 201, resp.text
    idea = resp.json()
    assert idea["status"] == "draft" and idea["allowed_transitions"] == ["in_review", "archived"]
    assert idea["platforms"] == ["meta_ads", "tiktok_ads"] and idea["budget_amount"] == "2500.50"
    assert idea["budget_currency"] == "GBP" and idea["attached_file_ids"] == [mine["id"]]

    patched = await client.patch(_url(team, c["id"], idea["id"]), headers=h,
                                 json={"title": "Spring launch v2", "attached_file_ids": [], "budget_amount": "99.99"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["title"] == "Spring launch v2" and patched.json()["attached_file_ids"] == []
    assert patched.json()["budget_amount"] == "99.99"
    cleared = await client.patch(_url(team, c["id"], idea["id"]), headers=h, json={"budget_currency": None})
    assert cleared.status_code == 422  # an amount without a currency

    # a deleted file leaves the ideas it was attached to
    await client.patch(_url(team, c["id"], idea["id"]), headers=h, json={"attached_file_ids": [mine["id"]]})
    await client.delete(clients_url(team.owner, c["id"], "files", mine["id"]), headers=h)
    got = (await client.get(_url(team, c["id"], idea["id"]), headers=team.viewer.headers)).json()
    assert got["attached_file_ids"] == []

    listed = (await client.get(_url(team, c["id"]), headers=h, params={"status": "draft"})).json()["items"]
    assert [i["id"] for i in listed] == [idea["id"]]
    none = (await client.get(_url(team, c["id"]), headers=h, params={"status": "approved"})).json()["items"]
    assert none == []


@pytest.mark.parametrize(("body", "field"), [
    ({"title": ""}, "title"),
    ({"title": "x", "budget_amount": "10.00"}, ""),
    ({"title": "x", "budget_amount": "10.001", "budget_currency": "EUR"}, "budget_amount"),
    ({"title": "x", "budget_amount": "-1", "budget_currency": "EUR"}, "budget_amount"),
    ({"title": "x", "start_date": "2027-05-01", "end_date": "2027-04-01"}, ""),
    ({"title": "x", "objective": "world_domination"}, "objective"),
    ({"title": "x", "platforms": ["myspace"]}, "platforms"),
    ({"title": "x", "attached_file_ids": ["not-a-uuid"]}, "attached_file_ids"),
    ({"title": "x", "status": "approved"}, "status"),
])
async def test_validation_failures(client: httpx.AsyncClient, shared: Team, shared_client_id: str,
                                   body: dict[str, object], field: str) -> None:
    resp = await client.post(_url(shared, shared_client_id), headers=shared.owner.headers, json=body)
    assert resp.status_code == 422, resp.text
    assert any(e["field"].startswith(field) for e in resp.json()["errors"]), resp.json()


async def test_status_workflow_and_409s(client: httpx.AsyncClient, team: Team) -> None:
    c = await new_client(client, team.owner)
    h = team.owner.headers
    idea = (await client.post(_url(team, c["id"]), headers=h, json={"title": "Workflow"})).json()
    status_url = _url(team, c["id"], idea["id"], "status")

    async def move(to: str) -> httpx.Response:
        return await client.post(status_url, headers=h, json={"status": to})

    skip = await move("approved")
    assert skip.status_code == 409 and skip.json()["type"].endswith("invalid-status-transition")
    assert skip.json()["allowed"] == ["in_review", "archived"] and skip.json()["current"] == "draft"
    assert (await move("in_review")).json()["status"] == "in_review"
    assert (await move("draft")).status_code == 200  # changes requested
    assert (await move("in_review")).status_code == 200
    approved = await move("approved")
    assert approved.status_code == 200 and approved.json()["allowed_transitions"] == ["launched", "archived"]

    frozen = await client.patch(_url(team, c["id"], idea["id"]), headers=h, json={"title": "Sneaky edit"})
    assert frozen.status_code == 409 and frozen.json()["type"].endswith("idea-frozen")
    assert (await client.delete(_url(team, c["id"], idea["id"]), headers=h)).status_code == 409
    assert (await move("draft")).status_code == 409
    assert (await move("launched")).status_code == 200
    assert (await move("archived")).json()["allowed_transitions"] == []
    final = await move("draft")
    assert final.status_code == 409 and "final" in final.json()["detail"]
    assert (await client.post(status_url, headers=h, json={"status": "paused"})).status_code == 422

    draft = (await client.post(_url(team, c["id"]), headers=h, json={"title": "Throwaway"})).json()
    assert (await client.delete(_url(team, c["id"], draft["id"]), headers=h)).status_code == 204
    assert (await client.get(_url(team, c["id"], draft["id"]), headers=h)).status_code == 404
    # another client's idea id under this client is not found
    other = await new_client(client, team.owner)
    assert (await client.get(_url(team, other["id"], idea["id"]), headers=h)).status_code == 404
