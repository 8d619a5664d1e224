"""What a request from a browser needs beyond the API: cookies, CSRF, content negotiation.

* **Cookies.** The session cookie and the CSRF cookie are HttpOnly and SameSite=Lax;
  in production (or with ``OMNIFY_HTTPS_ONLY``) they are Secure and carry the
  ``__Host-`` prefix, which the browser only accepts from a secure origin, for path
  ``/`` and without a Domain: a sibling subdomain cannot plant or overwrite them.
* **CSRF.** A signed double-submit token: the CSRF cookie holds a random value; a page
  embeds ``HMAC(secret, cookie value | hash of the session cookie)`` in its forms and in
  the ``X-CSRF-Token`` header of HTMX and script requests. Another site can make the
  browser send the cookies but can neither read them nor forge the HMAC, and binding to
  the session means a token from before a sign-in is refused after it (no login CSRF
  carried over). No server-side storage is needed.
* **Negotiation.** An error answers an HTML page to a browser navigating to it and
  problem+json to everybody else.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from omnify.core.errors import Forbidden
from omnify.core.security import constant_time_equals
from omnify.settings import Settings

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CSRF_HEADER: Final = "X-CSRF-Token"
CSRF_FIELD: Final = "csrf_token"
_FORM_TYPE: Final = "application/x-www-form-urlencoded"


class CsrfFailed(Forbidden):
    code, title = "csrf-failed", "Security token missing or stale"


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    session_name: str
    csrf_name: str
    secure: bool


def cookie_policy(settings: Settings) -> CookiePolicy:
    secure = settings.is_production or settings.https_only
    prefix = "__Host-" if secure else ""
    return CookiePolicy(session_name=f"{prefix}omnify_session", csrf_name=f"{prefix}omnify_csrf", secure=secure)


def set_cookie(response: Response, settings: Settings, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                        secure=cookie_policy(settings).secure)


def clear_cookie(response: Response, settings: Settings, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=cookie_policy(settings).secure)


def session_cookie(request: Request, settings: Settings) -> str | None:
    return request.cookies.get(cookie_policy(settings).session_name)


def new_csrf_secret() -> str:
    return secrets.token_urlsafe(32)


def csrf_secret(request: Request, settings: Settings) -> str | None:
    """The CSRF cookie's value: the one just issued in this request, else the browser's."""
    issued = getattr(request.state, "csrf_secret", None)
    return issued if isinstance(issued, str) else request.cookies.get(cookie_policy(settings).csrf_name)


def _signature(settings: Settings, secret: str, session: str | None) -> str:
    key = hashlib.sha256(b"omnify-csrf:" + settings.secret_key.get_secret_value().encode()).digest()
    bound = hashlib.sha256((session or "").encode()).hexdigest()
    return hmac.new(key, f"{secret}|{bound}".encode(), hashlib.sha256).hexdigest()


def csrf_token(request: Request, settings: Settings, session: str | None = None) -> str:
    """The token for this browser's pages (``session``: the session cookie value the page
    will be read with, when it was just set in this response)."""
    secret = csrf_secret(request, settings)
    if not secret:
        secret = new_csrf_secret()
        request.state.csrf_secret = secret  # the page's response sets the cookie
    return _signature(settings, secret, session if session is not None else session_cookie(request, settings))


async def require_csrf(request: Request, settings: Settings) -> None:
    """Refuse an unsafe request whose token (header, or the form field of a url-encoded
    form) does not match this browser's cookies. Multipart bodies are streamed to storage,
    so their token must come in the header."""
    if request.method in SAFE_METHODS or getattr(request.state, "csrf_checked", False):
        return
    submitted = request.headers.get(CSRF_HEADER)
    if not submitted and request.headers.get("content-type", "").split(";")[0].strip().lower() == _FORM_TYPE:
        value = (await request.form()).get(CSRF_FIELD)
        submitted = value if isinstance(value, str) else None
    secret = request.cookies.get(cookie_policy(settings).csrf_name)
    # Bytes, not str: compare_digest refuses a str with non-ASCII characters (a TypeError, a 500).
    if not submitted or not secret or not constant_time_equals(
            submitted, _signature(settings, secret, session_cookie(request, settings))):
        raise CsrfFailed("The form's security token is missing or stale; reload the page and try again.")
    request.state.csrf_checked = True


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def prefers_html(request: Request) -> bool:
    """A browser loading a page (a navigation or a fetch asking for HTML first), not an API
    client. Top-level navigations say so in ``Sec-Fetch-Dest``; older browsers list
    ``text/html`` first in ``Accept``."""
    if request.headers.get("sec-fetch-dest") == "document":
        return True
    return request.headers.get("accept", "").lstrip().lower().startswith("text/html")
