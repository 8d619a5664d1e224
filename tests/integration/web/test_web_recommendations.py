"""Recommendations inbox and actions history pages: the API's permission gates on every write."""

from __future__ import annotations

import uuid

import httpx

from omnify.core.db import Database
from tests.factories import register
from tests.integration.web.test_web_audit import _join_as_viewer
from tests.integration.web.web_support import WebSession, sign_up


async def test_empty_inbox_and_history_say_what_to_do(web: WebSession) -> None:
    await sign_up(web)
    inbox = await web.get(f"/orgs/{web.org_id}/recommendations")
    assert inbox.status_code == 200 and "Connect a platform" in inbox.text
    history = await web.get(f"/orgs/{web.org_id}/actions")
    assert history.status_code == 200 and "Apply a recommendation" in history.text
    odd = await web.get(f"/orgs/{web.org_id}/recommendations", params={"status": "bogus", "client_id": "x"})
    assert odd.status_code == 200


async def test_unknown_objects_are_404_and_writes_need_csrf(web: WebSession) -> None:
    await sign_up(web)
    await web.get(f"/orgs/{web.org_id}/recommendations")
    missing = uuid.uuid4()
    for path in (f"/recommendations/{missing}/apply", f"/recommendations/{missing}/dismiss",
                 f"/actions/{missing}/undo", f"/actions/{missing}/approve"):
        resp = await web.post(f"/orgs/{web.org_id}{path}")
        assert resp.status_code == 404 and "Page not found" in resp.text, (path, resp.status_code)
        forged = await web.post(f"/orgs/{web.org_id}{path}", csrf=False)
        assert forged.status_code == 403, (path, forged.status_code)


async def test_viewers_cannot_write_and_other_orgs_are_404(web: WebSession, other_web: WebSession,
                                                          owner_database: Database,
                                                          client: httpx.AsyncClient) -> None:
    await sign_up(web)
    await _join_as_viewer(web, other_web, owner_database)
    page = await other_web.get(f"/orgs/{web.org_id}/recommendations")
    assert page.status_code == 200 and "/apply" not in page.text
    rid = uuid.uuid4()
    for path in (f"/recommendations/{rid}/apply", f"/recommendations/{rid}/dismiss", f"/actions/{rid}/undo",
                 f"/actions/{rid}/approve", f"/actions/{rid}/reject"):
        refused = await other_web.post(f"/orgs/{web.org_id}{path}")
        assert refused.status_code == 403, (path, refused.status_code)
    stranger = await register(client)
    for path in ("/recommendations", "/actions"):
        resp = await web.get(f"/orgs/{stranger.org_id}{path}")
        assert resp.status_code == 404 and "Page not found" in resp.text
