"""A scripted browser over ASGI for page tests: a cookie jar, the CSRF token of the last
page, forms posted the way a browser posts them, and the e-mails the app queued."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select

from omnify.core.db import Database
from omnify.notifications.models import EmailOutbox
from tests.factories import STRONG_PASSWORD, delivered_text, link_url, unique_email

TOKEN_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
HTML = {"accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"}


@dataclass
class WebSession:
    http: httpx.AsyncClient
    token: str = ""
    org_id: str = ""
    email: str = ""
    password: str = STRONG_PASSWORD
    history: list[str] = field(default_factory=list)

    def remember(self, resp: httpx.Response) -> httpx.Response:
        found = TOKEN_RE.search(resp.text) if resp.headers.get("content-type", "").startswith("text/html") else None
        if found:
            self.token = found.group(1)
        self.history.append(f"{resp.request.method} {resp.request.url.path} {resp.status_code}")
        return resp

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.remember(await self.http.get(url, headers={**HTML, **kwargs.pop("headers", {})}, **kwargs))

    async def post(self, url: str, data: dict[str, Any] | None = None, *, csrf: bool = True,
                   **kwargs: Any) -> httpx.Response:
        form = {"csrf_token": self.token, **(data or {})} if csrf else dict(data or {})
        return self.remember(await self.http.post(url, data=form, headers={**HTML, **kwargs.pop("headers", {})},
                                                  **kwargs))

    async def htmx(self, method: str, url: str, data: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"HX-Request": "true", "X-CSRF-Token": self.token}
        return self.remember(await self.http.request(method, url, data=data, headers=headers))

    async def follow(self, resp: httpx.Response) -> httpx.Response:
        assert resp.status_code in (302, 303), (resp.status_code, resp.text[:500])
        return await self.get(resp.headers["location"])

    async def aclose(self) -> None:
        await self.http.aclose()


def new_web(app: Any) -> WebSession:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver",
                             follow_redirects=False)
    return WebSession(http=http)


async def sign_up(web: WebSession, *, email: str | None = None, org: str | None = None) -> WebSession:
    await web.get("/signup")
    web.email = email or unique_email("web")
    resp = await web.post("/signup", {"name": "Web Person", "email": web.email, "password": web.password,
                                      "organization_name": org or f"Web Org {uuid.uuid4().hex[:6]}"})
    assert resp.status_code == 303, resp.text[:2000]
    web.org_id = urlsplit(resp.headers["location"]).path.split("/")[2]
    await web.follow(resp)
    return web


async def sign_in(web: WebSession, email: str, password: str) -> httpx.Response:
    await web.get("/login")
    return await web.post("/login", {"email": email, "password": password, "next": "/"})


async def latest_email(db: Database, to: str, template: str) -> dict[str, Any]:
    """The context of the newest queued e-mail, with ``link``: the token-bearing link of
    the mail as delivered (the outbox keeps tokens only sealed)."""
    async with db.sessionmaker() as s:
        row = await s.scalar(select(EmailOutbox).where(EmailOutbox.to_email == to, EmailOutbox.template == template)
                             .order_by(EmailOutbox.created_at.desc()))
        assert row is not None, f"no {template} e-mail to {to}"
        return {**row.context, "link": link_url(await delivered_text(db.settings, row))}


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def join_as(owner: WebSession, other: WebSession, db: Database, role: str) -> str:
    """``other`` joins ``owner``'s organization with ``role`` through the e-mailed invitation."""
    invitee = unique_email(f"web-{role}")
    resp = await owner.post(f"/orgs/{owner.org_id}/settings/invitations", {"email": invitee, "role": role})
    assert resp.status_code == 303, resp.text[:1000]
    page = await other.get(path_of((await latest_email(db, invitee, "invitation"))["link"]))
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token, page.text[:1000]
    resp = await other.post("/invitations/signup", {"token": token.group(1), "name": f"A {role}",
                                                    "password": STRONG_PASSWORD})
    assert resp.status_code == 303, resp.text[:1000]
    other.email, other.org_id = invitee, owner.org_id
    return invitee
