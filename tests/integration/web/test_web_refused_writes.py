"""Forms the server refuses answer their page with the reason (a 4xx), never a 500.

Regressions from the Wapiti scan of `omnify up` (bench/web_scan.py): a refused write rolled
the session back and the page explaining it then read the expired signed-in user (a lazy load,
MissingGreenlet, 500); a CSRF token with a non-ASCII character reached ``hmac.compare_digest``
as a str (TypeError, 500); a rule template scoped to a client id that is not a UUID (ValueError,
500).
"""

from __future__ import annotations

from tests.integration.web.web_support import WebSession, sign_up


async def test_a_refused_client_keeps_the_form_and_the_session(web: WebSession) -> None:
    await sign_up(web)
    url = f"/orgs/{web.org_id}/clients"
    assert (await web.post(url, {"company_name": "Twice Ltd"})).status_code == 303
    again = await web.post(url, {"company_name": "Twice Ltd"})
    assert again.status_code == 422, again.text[:1000]
    assert "already exists" in again.text
    # The page still knows who is signed in (the shell's organization list) and the session works on.
    assert "Twice Ltd" in again.text
    listed = await web.get(url)
    assert listed.status_code == 200 and listed.text.count("Twice Ltd") >= 1
    assert (await web.post(url, {"company_name": "Once Ltd"})).status_code == 303


async def test_a_refused_invitation_and_idea_answer_422(web: WebSession) -> None:
    await sign_up(web)
    team = f"/orgs/{web.org_id}/settings/invitations"
    refused = await web.post(team, {"email": web.email, "role": "viewer"})  # already a member
    assert refused.status_code == 422, refused.text[:1000]
    created = await web.post(f"/orgs/{web.org_id}/clients", {"company_name": "Ideas Co"})
    client_path = created.headers["location"].split("/onboarding")[0]
    # A budget without its currency: the form parses, the service refuses it (an AppError).
    idea = await web.post(f"{client_path}/onboarding/idea", {"title": "Spring push", "budget_amount": "100"})
    assert idea.status_code == 422, idea.text[:1000]
    assert "together" in idea.text


async def test_a_non_ascii_csrf_token_is_refused_not_a_crash(web: WebSession) -> None:
    await sign_up(web)
    resp = await web.post("/settings/profile", {"name": "Changed", "csrf_token": web.token + "\u00bf'\"("},
                          csrf=False)
    assert resp.status_code == 403, resp.text[:500]
    header = await web.http.post("/settings/profile", data={"name": "Changed"},
                                 headers={"X-CSRF-Token": (web.token + "\u00e9").encode("latin-1")})
    assert header.status_code == 403, header.text[:500]


async def test_a_rule_template_for_a_client_id_that_is_no_id_answers_422(web: WebSession) -> None:
    await sign_up(web)
    await web.get(f"/orgs/{web.org_id}/rules")
    resp = await web.post(f"/orgs/{web.org_id}/rules/from-template",
                          {"template": "stop_loss", "client_id": "<?xml version='1.0'?><foo/>"})
    assert resp.status_code == 422, resp.text[:500]
    assert "client" in resp.text.lower()
