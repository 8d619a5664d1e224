"""The audit log page: the API's permission gate and filters, paging, and the JSON Lines export."""

from __future__ import annotations

import json
import re

import httpx

from omnify.core.db import Database
from tests.factories import STRONG_PASSWORD, register
from tests.integration.web.web_support import WebSession, latest_email, path_of, sign_up


async def _join_as_viewer(owner: WebSession, other: WebSession, db: Database) -> None:
    invitee = f"audit-viewer-{owner.org_id[:8]}@example.com"
    resp = await owner.post(f"/orgs/{owner.org_id}/settings/invitations", {"email": invitee, "role": "viewer"})
    assert resp.status_code == 303
    page = await other.get(path_of((await latest_email(db, invitee, "invitation"))["link"]))
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token
    resp = await other.post("/invitations/signup", {"token": token.group(1), "name": "Vi Ewer",
                                                    "password": STRONG_PASSWORD})
    assert resp.status_code == 303


async def test_owner_sees_filters_and_exports_the_trail(web: WebSession, other_web: WebSession,
                                                         owner_database: Database) -> None:
    await sign_up(web)
    await _join_as_viewer(web, other_web, owner_database)
    page = await web.get(f"/orgs/{web.org_id}/audit")
    assert page.status_code == 200, page.text[:500]
    assert "invitation." in page.text and 'aria-current="page"' in page.text
    filtered = await web.get(f"/orgs/{web.org_id}/audit", params={"action_prefix": "invitation."})
    actions = set(re.findall(r"<th scope=\"row\"><code>([^<]+)</code>", filtered.text))
    assert actions and all(a.startswith("invitation.") for a in actions), actions
    none = await web.get(f"/orgs/{web.org_id}/audit", params={"action_prefix": "no-such-action."})
    assert "No entry matches" in none.text
    export = await web.get(f"/orgs/{web.org_id}/audit/export.jsonl", params={"action_prefix": "invitation."})
    assert export.status_code == 200 and export.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in export.headers["content-disposition"]
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert {line["action"] for line in lines} == actions
    assert all(len(line["hash"]) == 64 for line in lines)
    everything = await web.get(f"/orgs/{web.org_id}/audit/export.jsonl")
    assert len(everything.text.splitlines()) > len(lines)


async def test_bad_filters_and_cursors_are_explained_not_500(web: WebSession) -> None:
    await sign_up(web)
    resp = await web.get(f"/orgs/{web.org_id}/audit",
                         params={"since": "31/01/2026", "actor_type": "robot", "cursor": "forged!!"})
    assert resp.status_code == 200
    assert "must be a date" in resp.text and "Unknown actor type" in resp.text and "no longer valid" in resp.text
    day = await web.get(f"/orgs/{web.org_id}/audit", params={"since": "2000-01-01", "until": "2000-01-02"})
    assert "No entry matches" in day.text


async def test_viewers_are_refused_and_other_orgs_are_404(web: WebSession, other_web: WebSession,
                                                         owner_database: Database, client: httpx.AsyncClient) -> None:
    await sign_up(web)
    await _join_as_viewer(web, other_web, owner_database)
    team = await other_web.get(f"/orgs/{web.org_id}/settings/team")
    assert team.status_code == 200 and f"/orgs/{web.org_id}/audit" not in team.text
    for path in ("/audit", "/audit/export.jsonl"):
        refused = await other_web.get(f"/orgs/{web.org_id}{path}")
        assert refused.status_code == 403, (path, refused.status_code)
    stranger = await register(client)
    for path in ("/audit", "/audit/export.jsonl"):
        resp = await web.get(f"/orgs/{stranger.org_id}{path}")
        assert resp.status_code == 404 and "Page not found" in resp.text
