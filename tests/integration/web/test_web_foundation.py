"""The web app's foundation: sessions, CSRF, the permission gate, problem pages, assets."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
from sqlalchemy import update

from omnify.app import create_app
from omnify.auth.models import BrowserSession
from omnify.core.db import Database, utcnow
from omnify.settings import Settings
from tests.conftest import DatabaseUrls, make_settings
from tests.factories import STRONG_PASSWORD, register
from tests.integration.web.web_support import WebSession, latest_email, new_web, path_of, sign_in, sign_up

NEW_PASSWORD = "an-entirely-different-passphrase-77"


def _cookie_header(resp: httpx.Response, name: str) -> str:
    found = [h for h in resp.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert found, resp.headers.get_list("set-cookie")
    return found[0].lower()


async def test_home_sends_strangers_to_sign_in_and_members_to_their_org(web: WebSession) -> None:
    resp = await web.get("/")
    assert resp.status_code == 303 and resp.headers["location"] == "/login"
    page = await web.get("/login")
    assert page.status_code == 200 and 'name="csrf_token"' in page.text
    csrf_cookie = _cookie_header(page, "omnify_csrf")
    assert "httponly" in csrf_cookie and "samesite=lax" in csrf_cookie and "secure" not in csrf_cookie
    await sign_up(web)
    resp = await web.get("/")
    assert resp.status_code == 303 and resp.headers["location"] == f"/orgs/{web.org_id}"


async def test_sign_up_sets_an_httponly_session_and_logout_ends_it(web: WebSession) -> None:
    await web.get("/signup")
    resp = await web.post("/signup", {"name": "Ann", "email": "ann-web@example.com", "password": STRONG_PASSWORD,
                                      "organization_name": "Ann's Agency"})
    assert resp.status_code == 303
    cookie = _cookie_header(resp, "omnify_session")
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    org_page = await web.follow(resp)
    assert org_page.status_code == 200 and "Ann&#39;s Agency" in org_page.text
    stolen = web.http.cookies.get("omnify_session")
    resp = await web.post("/logout")
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login")
    # The old cookie value is dead server-side, not only forgotten by this browser.
    web.http.cookies.set("omnify_session", stolen or "")
    resp = await web.get(path_of(str(org_page.url)))
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login?next=")


async def test_sign_up_errors_stay_on_the_form(web: WebSession) -> None:
    await web.get("/signup")
    resp = await web.post("/signup", {"name": "Bo", "email": "not-an-email", "password": "x",
                                      "organization_name": "Bo Co"})
    assert resp.status_code == 422
    assert 'aria-invalid="true"' in resp.text and "Bo Co" in resp.text
    resp = await web.post("/signup", {"name": "Bo", "email": "bo-weak@example.com", "password": "password",
                                      "organization_name": "Bo Co"})
    assert resp.status_code == 422 and "password" in resp.text.lower()


async def test_wrong_password_is_refused_on_the_page(web: WebSession, other_web: WebSession) -> None:
    await sign_up(web)
    resp = await sign_in(other_web, web.email, "wrong-password-1234")
    assert resp.status_code == 401 and "E-mail or password is wrong" in resp.text
    resp = await sign_in(other_web, web.email, web.password)
    assert resp.status_code == 303 and resp.headers["location"] == "/"


async def test_sign_in_goes_back_to_the_page_asked_for_but_never_off_site(web: WebSession,
                                                                           other_web: WebSession) -> None:
    await sign_up(web)
    resp = await other_web.get(f"/orgs/{web.org_id}/clients")
    assert resp.status_code == 303
    login = await other_web.follow(resp)
    assert f"/orgs/{web.org_id}/clients" in login.text
    resp = await other_web.post("/login", {"email": web.email, "password": web.password,
                                           "next": f"/orgs/{web.org_id}/clients"})
    assert resp.headers["location"] == f"/orgs/{web.org_id}/clients"
    await other_web.follow(resp)  # a page of the new session carries the token for log-out
    assert (await other_web.post("/logout")).status_code == 303
    await other_web.get("/login")
    resp = await other_web.post("/login", {"email": web.email, "password": web.password,
                                           "next": "//evil.example/x"})
    assert resp.headers["location"] == "/"


async def test_forms_without_a_valid_csrf_token_are_refused(web: WebSession, other_web: WebSession) -> None:
    await sign_up(web)
    resp = await web.post("/settings/profile", {"name": "Changed"}, csrf=False)
    assert resp.status_code == 403 and "security token" in resp.text.lower()
    assert resp.headers["content-type"].startswith("text/html")
    resp = await web.post("/settings/profile", {"name": "Changed", "csrf_token": "0" * 64}, csrf=False)
    assert resp.status_code == 403
    # A token minted for another browser (another session) does not pass either.
    await sign_up(other_web)
    resp = await web.post("/settings/profile", {"name": "Changed", "csrf_token": other_web.token}, csrf=False)
    assert resp.status_code == 403
    page = await web.get("/settings/profile")
    assert "Changed" not in page.text
    resp = await web.post("/settings/profile", {"name": "Changed"})
    assert resp.status_code == 303


async def test_the_api_accepts_the_session_cookie_with_csrf_on_writes(web: WebSession) -> None:
    await sign_up(web)
    me = await web.http.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["email"] == web.email
    url = f"/api/v1/orgs/{web.org_id}/clients"
    refused = await web.http.post(url, json={"company_name": "Cookie Co"})
    assert refused.status_code == 403 and refused.json()["type"].endswith("/csrf-failed")
    made = await web.http.post(url, json={"company_name": "Cookie Co"}, headers={"X-CSRF-Token": web.token})
    assert made.status_code == 201, made.text


async def test_another_orgs_page_is_a_404_page_and_the_api_still_answers_json(
        web: WebSession, other_web: WebSession, client: httpx.AsyncClient) -> None:
    await sign_up(web)
    stranger = await register(client)
    resp = await web.get(f"/orgs/{stranger.org_id}")
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("text/html") and "Page not found" in resp.text
    api = await web.http.get(f"/api/v1/orgs/{stranger.org_id}", headers={"accept": "application/json"})
    assert api.status_code == 404 and api.headers["content-type"] == "application/problem+json"
    resp = await web.get("/no/such/page")
    assert resp.status_code == 404 and "Page not found" in resp.text


async def test_password_reset_from_the_emailed_link(web: WebSession, other_web: WebSession,
                                                    owner_database: Database) -> None:
    await sign_up(web)
    await other_web.get("/forgot-password")
    resp = await other_web.post("/forgot-password", {"email": web.email})
    assert resp.status_code == 303 and "flash=reset-sent" in resp.headers["location"]
    unknown = await other_web.post("/forgot-password", {"email": "nobody-here@example.com"})
    assert unknown.headers["location"] == resp.headers["location"]  # no account enumeration
    link = (await latest_email(owner_database, web.email, "password_reset"))["link"]
    page = await other_web.get(path_of(link))
    assert page.status_code == 200 and page.headers["referrer-policy"] == "no-referrer"
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token
    weak = await other_web.post("/reset-password", {"token": token.group(1), "new_password": "short"})
    assert weak.status_code == 422
    done = await other_web.post("/reset-password", {"token": token.group(1), "new_password": NEW_PASSWORD})
    assert done.status_code == 303 and "flash=password-reset" in done.headers["location"]
    # Every session of the user ended, and the link works once.
    assert (await web.get(f"/orgs/{web.org_id}")).status_code == 303
    again = await other_web.post("/reset-password", {"token": token.group(1), "new_password": NEW_PASSWORD + "x"})
    assert again.status_code == 400 and "invalid or has expired" in again.text
    assert (await sign_in(other_web, web.email, NEW_PASSWORD)).status_code == 303


async def test_changing_the_password_keeps_this_browser_and_ends_the_others(
        web: WebSession, other_web: WebSession) -> None:
    await sign_up(web)
    assert (await sign_in(other_web, web.email, web.password)).status_code == 303
    await web.get("/settings/profile")
    wrong = await web.post("/settings/password", {"current_password": "nope-nope-nope", "new_password": NEW_PASSWORD})
    assert wrong.status_code == 422 and "current password is wrong" in wrong.text
    resp = await web.post("/settings/password", {"current_password": web.password, "new_password": NEW_PASSWORD})
    assert resp.status_code == 303
    assert (await web.get(f"/orgs/{web.org_id}")).status_code == 200
    assert (await other_web.get(f"/orgs/{web.org_id}")).status_code == 303


async def test_idle_and_expired_sessions_end(web: WebSession, owner_database: Database) -> None:
    await sign_up(web)
    assert (await web.get(f"/orgs/{web.org_id}")).status_code == 200
    async with owner_database.sessionmaker() as s:
        await s.execute(update(BrowserSession).values(last_seen_at=utcnow() - timedelta(days=30)))
        await s.commit()
    assert (await web.get(f"/orgs/{web.org_id}")).status_code == 303


async def test_invitation_link_lets_a_new_person_join_as_viewer(web: WebSession, other_web: WebSession,
                                                                owner_database: Database) -> None:
    await sign_up(web)
    team = await web.get(f"/orgs/{web.org_id}/settings/team")
    assert team.status_code == 200
    invitee = f"viewer-{web.org_id[:8]}@example.com"
    resp = await web.post(f"/orgs/{web.org_id}/settings/invitations", {"email": invitee, "role": "viewer"})
    assert resp.status_code == 303
    link = (await latest_email(owner_database, invitee, "invitation"))["link"]
    page = await other_web.get(path_of(link))
    assert page.status_code == 200 and invitee in page.text and "viewer" in page.text
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token
    resp = await other_web.post("/invitations/signup", {"token": token.group(1), "name": "Vi Ewer",
                                                        "password": STRONG_PASSWORD})
    assert resp.status_code == 303 and resp.headers["location"].startswith(f"/orgs/{web.org_id}")
    home = await other_web.follow(resp)
    assert home.status_code == 200 and "You joined the organization" in home.text
    # The same gate as the API: a viewer's write is refused by the server.
    refused = await other_web.post(f"/orgs/{web.org_id}/clients", {"company_name": "Nope Inc"})
    assert refused.status_code == 403 and "viewer" in refused.text
    reused = await other_web.get(path_of(link))
    assert "accepted" in reused.text


async def test_production_cookies_are_secure_and_host_prefixed(settings: Settings, db_urls: DatabaseUrls,
                                                               database: Database) -> None:
    prod_like = make_settings(settings.data_dir, db_urls, https_only=True)
    app = create_app(prod_like, database)
    web = new_web(app)
    try:
        page = await web.get("/login")
        cookie = _cookie_header(page, "__Host-omnify_csrf")
        assert "secure" in cookie and "httponly" in cookie and "domain" not in cookie and "path=/" in cookie
    finally:
        await web.aclose()


async def test_api_docs_and_static_files_come_from_our_origin(web: WebSession) -> None:
    resp = await web.get("/api/docs")
    assert resp.status_code == 200
    csp = resp.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "http" not in csp
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', resp.text)
    assert scripts and all(re.match(r"^/static/[\w./-]+\.[0-9a-f]{12}\.js$", s) for s in scripts), scripts
    assert "<script>" not in resp.text and "style=" not in resp.text
    bundle = await web.http.get(scripts[0])
    assert bundle.status_code == 200 and "immutable" in bundle.headers["cache-control"]
    assert (await web.http.get("/static/vendor/htmx.min.js")).headers["cache-control"].startswith("public, max-age")
    assert (await web.http.get("/static/nope.js")).status_code == 404


def test_pages_have_no_inline_script_or_style() -> None:
    from omnify.web.templating import TEMPLATES_DIR

    for template in TEMPLATES_DIR.rglob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\b(src\b|type=\"application/json\"))[^>]*>", text), template
        assert not re.search(r"\sstyle=|<style|\son[a-z]+=", text), template

