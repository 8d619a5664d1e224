"""HTTP middleware: request ids, access log, security headers, CORS, gzip, body limits.

Everything here is *pure ASGI* rather than ``BaseHTTPMiddleware``: the latter runs the
endpoint in a separate task (contextvars bound inside do not flow back out), buffers
exceptions oddly and wraps streaming responses. Pure ASGI middleware only wraps
``receive``/``send``, so streaming uploads and downloads pass through untouched.

Order, outermost first (``install_metrics`` adds its timing layer outside all of these,
and :func:`install_proxy_headers` the proxy-header layer outside everything)::

    RequestContext   request id, log context, access log, RateLimit-* headers
    SecurityHeaders  CSP, HSTS (https only), nosniff, frame and referrer policies
    CORS             allow-list from settings (preflights still get ids and headers)
    GZip             responses of 1 KiB and more, when the client accepts gzip
    BodySizeLimit    413 problem+json, by Content-Length or while streaming
    RejectNul        422 for a NUL character in the path, query or a JSON/form body

Contract with the auth layer: once it knows who is calling, it sets
``request.state.org_id``/``user_id`` or binds them with
:func:`omnify.core.logging.bind_log_context` (:func:`set_request_identity` does both),
so the access log and every later log line carry them.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from typing import Any, Final
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnify.core.errors import PayloadTooLarge, problem
from omnify.core.logging import bind_log_context, clear_log_context, get_log_context, get_logger
from omnify.core.ratelimit import rate_limit_status
from omnify.settings import Settings

access_log = get_logger("omnify.access")

REQUEST_ID_HEADER: Final = "X-Request-ID"
_REQUEST_ID_RE: Final = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_TRACEPARENT_RE: Final = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
UNMATCHED_ROUTE: Final = "<unmatched>"

#: Probes and scrapes are logged at debug level so they do not drown real traffic.
QUIET_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})

GZIP_MINIMUM_SIZE: Final = 1024

#: For server-rendered Jinja2 + HTMX pages served from our own origin, the API docs
#: included (Swagger UI is served from our static files): scripts and styles only from
#: self, no inline script or style, no eval (htmx runs with ``allowEval: false`` and
#: ``includeIndicatorStyles: false``), no third-party origin. ``frame-ancestors 'none'``
#: forbids framing.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HSTS_VALUE: Final = "max-age=31536000; includeSubDomains"

CORS_ALLOW_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
CORS_ALLOW_HEADERS: Final = (
    "Authorization",
    "Content-Type",
    "Accept",
    "X-Request-ID",
    "Idempotency-Key",
    "If-Match",
    "If-None-Match",
    "HX-Request",
    "HX-Current-URL",
    "HX-Target",
    "HX-Trigger",
)
CORS_EXPOSE_HEADERS: Final = (
    "X-Request-ID",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
    "Retry-After",
    "ETag",
    "Link",
    "Location",
)

_UPLOAD_PATH_RE: Final = re.compile(r"(^|/)files(/|$)")


# ----------------------------------------------------------------------------- helpers
def valid_request_id(value: str | None) -> bool:
    """A client-supplied id is echoed into logs and headers, so only a safe alphabet passes."""
    return bool(value) and _REQUEST_ID_RE.match(value or "") is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/v1/orgs/{org_id}``), never the raw path.

    Raw paths would put ids (and tokens in invitation links) into metric labels and logs.
    """
    # Recent FastAPI keeps included routers nested: ``scope["route"]`` is then the
    # sub-router's APIRoute whose path lacks the include prefix (``/orgs/{org_id}``
    # instead of ``/api/v1/orgs/{org_id}``). The full template is on the effective route
    # context FastAPI records for the selected route; older FastAPI flattened routes, and
    # plain Starlette routes carry the full path themselves.
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, dict):
        effective = fastapi_scope.get("effective_route_context")
        full = getattr(effective, "path_format", None)
        if isinstance(full, str) and full:
            return full
    route = scope.get("route")
    if not isinstance(route, BaseRoute):
        route = _plain_route_for(scope)
    if route is None:
        return UNMATCHED_ROUTE
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


def _plain_route_for(scope: Scope) -> BaseRoute | None:
    # FastAPI's router records ``scope["route"]`` only for APIRoutes; plain Starlette
    # routes and mounts (the OpenAPI document, docs, static files, web views added with
    # add_route) leave just ``scope["endpoint"]``. Top-level routes are few (included
    # routers count as one), so a scan is cheap.
    endpoint = scope.get("endpoint")
    app = scope.get("app")
    if endpoint is None or app is None:
        return None
    for candidate in getattr(app, "routes", ()):
        target = candidate.app if isinstance(candidate, Mount) else getattr(candidate, "endpoint", None)
        if target is endpoint and isinstance(candidate, BaseRoute):
            return candidate
    return None


def set_request_identity(request: Request, *, org_id: object = None, user_id: object = None) -> None:
    """Record who is calling, for the access log (``request.state``) and all later log lines."""
    values = {k: str(v) for k, v in (("org_id", org_id), ("user_id", user_id)) if v is not None}
    for key, value in values.items():
        setattr(request.state, key, value)
    if values:
        bind_log_context(**values)


def _state(scope: Scope) -> dict[str, Any]:
    state = scope.setdefault("state", {})
    assert isinstance(state, dict)
    return state


# ------------------------------------------------------------------- request context/log
class RequestContextMiddleware:
    """Request id in and out, log context, one access-log line, ``RateLimit-*`` headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        headers = Headers(scope=scope)
        incoming = headers.get(REQUEST_ID_HEADER)
        request_id = incoming if incoming and valid_request_id(incoming) else new_request_id()
        state = _state(scope)
        state["request_id"] = request_id

        # A fresh context per request; not cleared on the way out so the unhandled-error
        # handler (which runs outside this middleware) still logs with the request id.
        clear_log_context()
        context: dict[str, Any] = {"request_id": request_id}
        traceparent = _TRACEPARENT_RE.match(headers.get("traceparent", ""))
        if traceparent and traceparent.group(1) != "0" * 32:
            context["trace_id"] = traceparent.group(1)
        bind_log_context(**context)

        status_code = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                response_headers = MutableHeaders(scope=message)
                response_headers[REQUEST_ID_HEADER] = request_id
                limit = rate_limit_status(scope)
                if limit is not None:
                    for name, value in limit.headers().items():
                        response_headers.setdefault(name, value)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._log(scope, status_code, started)

    @staticmethod
    def _log(scope: Scope, status_code: int, started: float) -> None:
        state = _state(scope)
        bound = get_log_context()
        fields = {
            "method": scope["method"],
            "route": route_template(scope),
            "status": status_code,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "org_id": state.get("org_id") or bound.get("org_id"),
            "user_id": state.get("user_id") or bound.get("user_id"),
        }
        if scope["path"] in QUIET_PATHS and status_code < 400:
            access_log.debug("http_request", **fields)
        elif status_code >= 500:
            access_log.error("http_request", **fields)
        else:
            access_log.info("http_request", **fields)


# --------------------------------------------------------------------- security headers
class SecurityHeadersMiddleware:
    """Adds browser hardening headers unless the endpoint set its own value."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        https_only: bool = False,
        csp: str = CONTENT_SECURITY_POLICY,
        csp_overrides: dict[str, str] | None = None,
    ) -> None:
        self.app = app
        self.https_only = https_only
        self.csp = csp
        self.csp_overrides = csp_overrides or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = self.csp_overrides.get(scope["path"], self.csp)
        # Behind a TLS-terminating proxy the scheme is only "https" when uvicorn runs
        # with --proxy-headers; OMNIFY_HTTPS_ONLY covers the other deployments.
        hsts = self.https_only or scope.get("scheme") == "https"

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", csp)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
                if hsts:
                    headers.setdefault("Strict-Transport-Security", HSTS_VALUE)
            await send(message)

        await self.app(scope, receive, send_wrapper)


# ------------------------------------------------------------------------- body limits
class RequestBodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` when a streamed body passes the limit.

    It is an HTTPException so FastAPI's body parsing re-raises it untouched (it turns
    other exceptions into a 400) and, if some other layer catches and renders it
    without :class:`BodySizeLimitMiddleware`, the result is still a 413 problem.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=_too_large_detail(limit))


def _too_large_detail(limit: int) -> str:
    return f"The request body exceeds the limit of {limit} bytes."


class BodySizeLimitMiddleware:
    """Refuses request bodies over the limit with 413 ``application/problem+json``.

    * ``Content-Length`` over the limit: answered at once, the body is never read.
    * Chunked / streamed bodies: bytes are counted as the app reads them; on overflow
      ``receive`` raises :class:`RequestBodyTooLarge`, and whatever the app then answers
      (or raises) is replaced by the 413 - unless it had already started its response.

    Multipart uploads to a path with a ``files`` segment get ``upload_limit`` instead.

    No ``Connection: close`` on the 413: closing a socket with unread request bytes
    makes the kernel send a TCP reset, and the client never sees the answer. The server
    (uvicorn) discards the rest of the body of a finished request itself.
    """

    def __init__(self, app: ASGIApp, *, max_body: int, upload_limit: int) -> None:
        self.app = app
        self.max_body = max_body
        self.upload_limit = upload_limit

    def limit_for(self, scope: Scope) -> int:
        content_type = Headers(scope=scope).get("content-type", "")
        if content_type.lower().startswith("multipart/form-data") and _UPLOAD_PATH_RE.search(scope["path"]):
            return self.upload_limit
        return self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await self._reject(scope, receive, send, limit)
            return

        received = 0
        exceeded = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise RequestBodyTooLarge(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded and not response_started:
                # Whatever the app answers to the overflow (its own error page, a 400 from
                # FastAPI's body parser) is dropped: the client gets our 413 below.
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded or response_started:
                raise
        if exceeded and not response_started:
            await self._reject(scope, receive, send, limit)

    @staticmethod
    async def _reject(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        request = Request(scope, receive)
        response = problem(
            request,
            PayloadTooLarge.status,
            PayloadTooLarge.title,
            _too_large_detail(limit),
            PayloadTooLarge.code,
            limit_bytes=limit,
        )
        await response(scope, receive, send)


# ------------------------------------------------------------------------ NUL characters
#: A JSON ``\\u0000`` escape that is not itself escaped (an even run of backslashes before it).
_JSON_NUL_ESCAPE: Final = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_NUL_MESSAGE: Final = "NUL characters (U+0000) are not allowed in text."
_NUL_BODY_TYPES: Final = ("application/json", "application/x-www-form-urlencoded")


def _nul_error(loc: tuple[str | int, ...]) -> dict[str, Any]:
    return {"loc": loc, "msg": _NUL_MESSAGE, "type": "string_nul_character", "input": None}


def _nul_in_query(query: str, where: str) -> list[dict[str, Any]]:
    pairs = parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="replace")
    return [_nul_error((where, name.replace("\x00", "")))
            for name, value in pairs if "\x00" in name or "\x00" in value]


def _nul_in_json(value: Any, loc: tuple[str | int, ...]) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [_nul_error(loc)] if "\x00" in value else []
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += [_nul_error((*loc, key.replace("\x00", "")))] if "\x00" in key else []
            found += _nul_in_json(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _nul_in_json(item, (*loc, index))
    return found


def nul_errors(path: str, query: bytes, content_type: str, body: bytes) -> list[dict[str, Any]]:
    """Where a request carries U+0000, as validation errors (empty when it carries none)."""
    errors = [_nul_error(("path",))] if "\x00" in path else []
    if b"%00" in query or b"\x00" in query:
        errors += _nul_in_query(query.decode("latin-1"), "query")
    if content_type == "application/x-www-form-urlencoded" and (b"%00" in body or b"\x00" in body):
        errors += _nul_in_query(body.decode("latin-1"), "body")
    elif body and (b"\x00" in body or _JSON_NUL_ESCAPE.search(body)):
        with contextlib.suppress(ValueError):  # not JSON after all: the endpoint's parser answers 400
            errors += _nul_in_json(json.loads(body), ("body",))
    return errors


class RejectNulMiddleware:
    """Answers 422 when the path, the query or a JSON/form body holds a NUL character.

    PostgreSQL cannot store U+0000 in ``text`` or ``jsonb`` (SQLite can), so a NUL that
    reaches a query or an INSERT is a database error, i.e. a 500 on one database and a
    200 on the other. One gate for every route, field and filter, present and future,
    instead of a validator per field. The answer is the app's own validation-error
    handler (problem+json, or the HTML problem page for a browser). Multipart bodies pass
    untouched (file bytes may hold NULs; their text fields are validated by the endpoint).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        content_type = Headers(scope=scope).get("content-type", "").split(";")[0].strip().lower()
        buffered = content_type in _NUL_BODY_TYPES or content_type.endswith("+json")
        body = b""
        if buffered:
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    break
                body += message.get("body", b"")
                more = message.get("more_body", False)
        errors = nul_errors(scope["path"], scope.get("query_string", b""),
                            "application/json" if content_type.endswith("+json") else content_type, body)
        if errors:
            request = Request(scope, receive)
            handler = scope["app"].exception_handlers[RequestValidationError]
            response = await handler(request, RequestValidationError(errors))
            await response(scope, receive, send)
            return
        if not buffered:
            await self.app(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# --------------------------------------------------------------------------- install
def install_middleware(app: FastAPI, settings: Settings) -> None:
    """Add the HTTP middleware stack (see module docstring for the order and why)."""
    origins = list(settings.cors_origins)
    csp_overrides: dict[str, str] = {}

    # add_middleware inserts at the front: add innermost first.
    app.add_middleware(RejectNulMiddleware)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_body=settings.max_request_body_bytes,
        upload_limit=max(settings.max_upload_bytes, settings.max_request_body_bytes),
    )
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MINIMUM_SIZE, compresslevel=6)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        # Credentials with a wildcard origin would let any site act as the user.
        allow_credentials="*" not in origins,
        allow_methods=CORS_ALLOW_METHODS,
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        max_age=600,
    )
    app.add_middleware(SecurityHeadersMiddleware, https_only=settings.https_only, csp_overrides=csp_overrides)
    app.add_middleware(RequestContextMiddleware)


def install_proxy_headers(app: FastAPI, settings: Settings) -> None:
    """Believe ``X-Forwarded-For``/``-Proto`` from exactly ``OMNIFY_TRUSTED_PROXIES``.

    uvicorn's own ProxyHeadersMiddleware, applied by the app so every server that runs it
    (``omnify serve``, which hands uvicorn the same list as ``forwarded_allow_ips``,
    gunicorn, in-process tests) agrees on who the client is. The client becomes the
    right-most address in the header that is not a trusted proxy: anything left of it
    was written by the client. Call last: it must be the outermost layer, so logs,
    metrics and rate limits all see the real client.
    """
    if settings.trusted_proxies:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's keyword arguments: the same proxy trust as the app (without them uvicorn
    believes ``X-Forwarded-For`` from 127.0.0.1, so any local process could pick its address)
    and the keep-alive timeout (``OMNIFY_HTTP_KEEP_ALIVE_SECONDS``, see the setting)."""
    proxies = list(settings.trusted_proxies)
    return {"proxy_headers": bool(proxies), "forwarded_allow_ips": ",".join(proxies) or None,
            "timeout_keep_alive": settings.http_keep_alive_seconds}
