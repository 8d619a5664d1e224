"""The notification preferences page: the one e-mail preference the API has (the weekly
digest opt-out, ``PATCH /api/v1/me``), saved through the same service."""

from __future__ import annotations

from tests.integration.web.web_support import WebSession, sign_up

SWITCH = 'name="weekly_digest" checked'


async def test_the_weekly_digest_can_be_turned_off_and_on(web: WebSession) -> None:
    await sign_up(web)
    page = await web.get("/settings/notifications")
    assert page.status_code == 200 and SWITCH in page.text  # on by default
    off = await web.post("/settings/notifications", {})  # an unticked switch is not sent
    assert off.status_code == 303 and off.headers["location"].endswith("flash=preferences-saved")
    saved = await web.follow(off)
    assert "Notification preferences saved." in saved.text and SWITCH not in saved.text
    me = await web.http.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["email_opt_out_digest"] is True
    on = await web.post("/settings/notifications", {"weekly_digest": "on"})
    assert on.status_code == 303 and SWITCH in (await web.follow(on)).text
    assert (await web.http.get("/api/v1/me")).json()["email_opt_out_digest"] is False


async def test_preferences_need_a_session_and_the_csrf_token(web: WebSession, other_web: WebSession) -> None:
    resp = await other_web.get("/settings/notifications")
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login?next=")
    await sign_up(web)
    await web.get("/settings/notifications")
    refused = await web.post("/settings/notifications", {}, csrf=False)
    assert refused.status_code == 403 and "security token" in refused.text.lower()
    assert SWITCH in (await web.get("/settings/notifications")).text  # unchanged
