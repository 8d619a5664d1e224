"""Building blocks shared by every platform sandbox (Meta, Google, TikTok, Shopify).

A sandbox is a real HTTP server speaking one platform's API shape, so the connectors,
the sync and the demo run offline exactly as they would against the platform. What is
common lives here:

* :class:`SandboxServer` - run any ASGI app on a free loopback port in a background thread
  (tests, ``omnify sandbox``); uvicorn's access log is off because request lines carry
  tokens in query strings on some platforms.
* :class:`FaultInjector` + :func:`control_routes` - fault injection set by configuration or
  at run time through ``POST /__sandbox/faults`` (429 with retry-after, 5xx bursts, latency,
  token expiry), rendered by each platform in its own error shape; ``GET
  /__sandbox/objects/{id}`` shows an entity as the sandbox holds it, without a token, so a
  test outside the process (a browser test against ``omnify up``) can see what a write did
  at the platform rather than what Omnify believes it did.
* :class:`RequestJournal` - what the server saw and when, so tests measure waits on the
  *server* side (the honest place: it proves the client really stayed away).
* :class:`TokenStore` - OAuth clients, single-use authorization codes with PKCE (S256),
  access tokens with expiry, refresh tokens, revocation.
* :func:`consent_response` - the HTML consent screen; ``sandbox_auto_approve=1`` in the
  query approves at once (tests, the demo).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import date
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import uvicorn
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

if TYPE_CHECKING:
    from omnify.integrations.versions import VersionPolicy

CONTROL_PREFIX = "/__sandbox"
AUTO_APPROVE_PARAM = "sandbox_auto_approve"


# ------------------------------------------------------------------------------ server
def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class SandboxServer:
    """One ASGI app served by uvicorn in a daemon thread.

    The listening socket is bound *before* the thread starts (port 0 = the kernel picks a
    free one), so there is no race between choosing a port and binding it, and ``url`` is
    valid as soon as :meth:`start` returns.
    """

    def __init__(
        self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, name: str = "sandbox",
        ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
    ) -> None:
        """``ssl_certfile``/``ssl_keyfile``: serve HTTPS (an SDK that insists on https, pointed
        at the sandbox through a test CA and resolver)."""
        self.app = app
        self.host = host
        self.name = name
        self.scheme = "https" if ssl_certfile else "http"
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port: int = int(self._sock.getsockname()[1])
        config = uvicorn.Config(
            app, host=host, port=self.port, log_config=None, access_log=False, lifespan="off",
            log_level="warning", timeout_graceful_shutdown=1, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> SandboxServer:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name=f"sandbox-{self.name}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox {self.name} did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._sock.close()

    def serve_forever(self) -> None:
        """Foreground mode for ``omnify sandbox``: blocks until SIGINT/SIGTERM."""
        self._server.run(sockets=[self._sock])

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()



class ServedSandbox:
    """How a platform sandbox's ASGI ``app`` is put on a loopback port.

    ``server()`` hands back an unstarted :class:`SandboxServer` for callers that manage it
    (``with sandbox.server():``); ``serve()`` starts one owned by the sandbox, whose ``url``
    is then the platform base URL until ``stop()``. Subclasses set ``app`` and name their
    server thread with ``server_name``.
    """

    server_name: ClassVar[str] = "sandbox"
    app: ASGIApp
    _server: SandboxServer | None = None

    def server(self, host: str = "127.0.0.1", port: int = 0, **tls: str) -> SandboxServer:
        return SandboxServer(self.app, host=host, port=port, name=self.server_name, **tls)

    def serve(self, host: str = "127.0.0.1", port: int = 0, **tls: str) -> SandboxServer:
        self._server = self.server(host, port, **tls).start()
        return self._server

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("sandbox is not serving; call serve() first")
        return self._server.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

# ------------------------------------------------------------------------------ faults
@dataclass(slots=True)
class FaultConfig:
    """What to inject. Counters (``*_next``) are consumed by matching API requests.

    ``match``: only requests whose path contains this substring are affected (so a test
    can fault the insights endpoint and leave OAuth alone). ``expire_tokens`` is an action,
    not a state: setting it expires every access token issued so far.
    """

    rate_limit_next: int = 0
    retry_after: float = 1.0
    errors_5xx_next: int = 0
    error_status: int = 503
    latency_ms: int = 0
    match: str | None = None
    expire_tokens: bool = False
    throttle: str = ""  # which of the platform's throttles a rate limit is (Meta: "80004", "17", "613")


@dataclass(frozen=True, slots=True)
class Fault:
    kind: Literal["rate_limit", "server_error"]
    status: int
    retry_after: float
    variant: str = ""  # FaultConfig.throttle, for platforms with several rate-limit errors


class FaultInjector:
    """Thread-safe fault state: the control endpoint and the API run in the server thread,
    tests may also configure it directly from theirs."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._config = config or FaultConfig()
        self._on_expire: list[Callable[[], object]] = []

    def on_expire_tokens(self, callback: Callable[[], object]) -> None:
        self._on_expire.append(callback)

    def configure(self, **changes: Any) -> FaultConfig:
        allowed = {f.name for f in fields(FaultConfig)}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        expire = bool(changes.pop("expire_tokens", False))
        with self._lock:
            for key, value in changes.items():
                setattr(self._config, key, value)
            snapshot = FaultConfig(**asdict(self._config))
        if expire:
            for cb in self._on_expire:
                cb()
        return snapshot

    def reset(self) -> None:
        with self._lock:
            self._config = FaultConfig()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self._config)

    def _matches(self, path: str) -> bool:
        return self._config.match is None or self._config.match in path

    def latency(self, path: str) -> float:
        with self._lock:
            return self._config.latency_ms / 1000.0 if self._matches(path) else 0.0

    def next_fault(self, path: str) -> Fault | None:
        with self._lock:
            c = self._config
            if not self._matches(path):
                return None
            if c.rate_limit_next > 0:
                c.rate_limit_next -= 1
                return Fault("rate_limit", 429, c.retry_after, c.throttle)
            if c.errors_5xx_next > 0:
                c.errors_5xx_next -= 1
                return Fault("server_error", c.error_status, 0.0)
        return None


FaultRenderer = Callable[[Fault, Request], Response]


@dataclass(frozen=True, slots=True)
class JournalEntry:
    at: float  # time.monotonic() when the request arrived
    method: str
    path: str
    status: int
    fault: str | None


class RequestJournal:
    """Recent requests (path only: the query may hold tokens). Bounded, thread-safe."""

    def __init__(self, maxlen: int = 5000) -> None:
        self._entries: deque[JournalEntry] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def add(self, entry: JournalEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, path_contains: str | None = None) -> list[JournalEntry]:
        with self._lock:
            items = list(self._entries)
        return [e for e in items if path_contains is None or path_contains in e.path]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class FaultMiddleware(BaseHTTPMiddleware):
    """Applies latency and faults to API paths (``applies(path)``), journals every request.

    Control, OAuth-screen and token paths are usually excluded by ``applies`` so a fault
    meant for data reads does not break the auth dance of the same test.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        injector: FaultInjector,
        render: FaultRenderer,
        journal: RequestJournal,
        applies: Callable[[str], bool] = lambda path: not path.startswith(CONTROL_PREFIX),
    ) -> None:
        super().__init__(app)
        self.injector = injector
        self.render = render
        self.journal = journal
        self.applies = applies

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        arrived = time.monotonic()
        path = request.url.path
        if path.startswith(CONTROL_PREFIX) or not self.applies(path):
            response = await call_next(request)
            if not path.startswith(CONTROL_PREFIX):
                self.journal.add(JournalEntry(arrived, request.method, path, response.status_code, None))
            return response
        delay = self.injector.latency(path)
        if delay > 0:
            await asyncio.sleep(delay)
        fault = self.injector.next_fault(path)
        if fault is not None:
            response = self.render(fault, request)
            self.journal.add(JournalEntry(arrived, request.method, path, response.status_code, fault.kind))
            return response
        response = await call_next(request)
        self.journal.add(JournalEntry(arrived, request.method, path, response.status_code, None))
        return response


def control_routes(
    injector: FaultInjector,
    journal: RequestJournal,
    *,
    on_reset: Callable[[], None] | None = None,
    extra_state: Callable[[], dict[str, Any]] | None = None,
    describe: Callable[[str], dict[str, Any]] | None = None,
) -> list[Route]:
    """``/__sandbox`` endpoints: faults (GET/POST), requests journal, reset, state, and with
    ``describe`` (raising ``KeyError`` for an unknown id) one entity's current state."""

    async def get_faults(request: Request) -> Response:
        return JSONResponse(injector.snapshot())

    async def set_faults(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "body must be JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        try:
            snapshot = injector.configure(**body)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(asdict(snapshot))

    async def requests(request: Request) -> Response:
        contains = request.query_params.get("path_contains")
        return JSONResponse([asdict(e) for e in journal.entries(contains)])

    async def reset(request: Request) -> Response:
        injector.reset()
        journal.clear()
        if on_reset is not None:
            on_reset()
        return JSONResponse({"reset": True})

    async def state(request: Request) -> Response:
        return JSONResponse({"faults": injector.snapshot(), **(extra_state() if extra_state else {})})

    async def get_object(request: Request) -> Response:
        assert describe is not None
        object_id = request.path_params["object_id"]
        try:
            return JSONResponse(describe(object_id))
        except KeyError:
            return JSONResponse({"error": f"no object {object_id}"}, status_code=404)

    objects = [Route(f"{CONTROL_PREFIX}/objects/{{object_id}}", get_object, methods=["GET"])] if describe else []
    return [
        *objects,
        Route(f"{CONTROL_PREFIX}/faults", get_faults, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/faults", set_faults, methods=["POST"]),
        Route(f"{CONTROL_PREFIX}/requests", requests, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/reset", reset, methods=["POST"]),
        Route(f"{CONTROL_PREFIX}/state", state, methods=["GET"]),
    ]


# ------------------------------------------------------------------------------ tokens
class OAuthError(Exception):
    """An RFC 6749 error (``invalid_grant``, ``invalid_client``...); each sandbox renders it
    in its platform's shape."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


class TokenInvalid(Exception):
    def __init__(self, reason: Literal["expired", "revoked", "invalid"]) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class OAuthClient:
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...] = ()  # empty = any loopback/https redirect accepted

    def allows_redirect(self, uri: str) -> bool:
        return not self.redirect_uris or uri in self.redirect_uris


@dataclass(slots=True)
class Grant:
    client_id: str
    subject: str
    scopes: list[str]
    redirect_uri: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TokenInfo:
    token: str
    kind: Literal["access", "refresh"]
    client_id: str
    subject: str
    scopes: list[str]
    expires_at: float | None
    issued_at: float
    revoked: bool = False
    family: str = ""  # access tokens minted from one refresh token share its family
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    expires_in: int | None
    refresh_token: str | None
    scopes: list[str]


@dataclass(slots=True)
class _Code:
    grant: Grant
    expires_at: float
    challenge: str | None
    method: str | None
    used: bool = False


def pkce_s256(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


class TokenStore:
    """In-memory OAuth state of one sandbox. Thread-safe; the clock is injectable."""

    def __init__(
        self,
        *,
        prefix: str = "sbx",
        access_ttl: int | None = 3600,
        code_ttl: int = 600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.prefix = prefix
        self.access_ttl = access_ttl
        self.code_ttl = code_ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._clients: dict[str, OAuthClient] = {}
        self._codes: dict[str, _Code] = {}
        self._tokens: dict[str, TokenInfo] = {}

    # clients
    def register_client(self, client_id: str, client_secret: str, redirect_uris: Iterable[str] = ()) -> None:
        with self._lock:
            self._clients[client_id] = OAuthClient(client_id, client_secret, tuple(redirect_uris))

    def client(self, client_id: str) -> OAuthClient | None:
        with self._lock:
            return self._clients.get(client_id)

    def authenticate_client(self, client_id: str | None, client_secret: str | None) -> OAuthClient:
        client = self.client(client_id or "")
        if client is None or not secrets.compare_digest(client.client_secret.encode(), (client_secret or "").encode()):
            raise OAuthError("invalid_client", "unknown client or wrong client secret")
        return client

    # authorization codes
    def issue_code(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        scopes: list[str],
        subject: str,
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        if code_challenge is not None and (code_challenge_method or "plain") not in ("S256", "plain"):
            raise OAuthError("invalid_request", "unsupported code_challenge_method")
        code = f"{self.prefix}-code-{secrets.token_urlsafe(24)}"
        with self._lock:
            self._codes[code] = _Code(
                Grant(client_id, subject, list(scopes), redirect_uri, dict(extra or {})),
                self.clock() + self.code_ttl,
                code_challenge,
                (code_challenge_method or "plain") if code_challenge else None,
            )
        return code

    def redeem_code(
        self, code: str, *, client_id: str, redirect_uri: str | None, code_verifier: str | None = None
    ) -> Grant:
        """Single use; a replayed code is refused (RFC 6749 4.1.2). PKCE checked when the
        authorization request carried a challenge; a verifier without a challenge is refused
        too (a client that thinks it uses PKCE but does not is a bug worth surfacing)."""
        with self._lock:
            entry = self._codes.get(code)
            if entry is None or entry.used:
                raise OAuthError("invalid_grant", "authorization code is invalid or was already used")
            entry.used = True
        if entry.expires_at < self.clock():
            raise OAuthError("invalid_grant", "authorization code expired")
        if entry.grant.client_id != client_id:
            raise OAuthError("invalid_grant", "authorization code was issued to another client")
        if redirect_uri is not None and redirect_uri != entry.grant.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
        if entry.challenge is not None:
            if not code_verifier:
                raise OAuthError("invalid_grant", "code_verifier required (PKCE)")
            computed = pkce_s256(code_verifier) if entry.method == "S256" else code_verifier
            if not secrets.compare_digest(computed.encode(), entry.challenge.encode()):
                raise OAuthError("invalid_grant", "code_verifier does not match code_challenge")
        elif code_verifier:
            raise OAuthError("invalid_grant", "code_verifier sent but no code_challenge was registered")
        return entry.grant

    # tokens
    def issue_tokens(
        self,
        *,
        client_id: str,
        subject: str,
        scopes: list[str],
        access_ttl: int | Literal["default"] | None = "default",
        with_refresh: bool = True,
        family: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> IssuedTokens:
        ttl = self.access_ttl if access_ttl == "default" else access_ttl
        now = self.clock()
        access = f"{self.prefix}-at-{secrets.token_urlsafe(32)}"
        refresh = f"{self.prefix}-rt-{secrets.token_urlsafe(32)}" if with_refresh else None
        fam = family or refresh or access
        with self._lock:
            self._tokens[access] = TokenInfo(
                access, "access", client_id, subject, list(scopes), now + ttl if ttl else None, now,
                family=fam, extra=dict(extra or {}),
            )
            if refresh:
                self._tokens[refresh] = TokenInfo(
                    refresh, "refresh", client_id, subject, list(scopes), None, now, family=fam,
                    extra=dict(extra or {}),
                )
        return IssuedTokens(access, ttl, refresh, list(scopes))

    def validate(self, token: str | None) -> TokenInfo:
        with self._lock:
            info = self._tokens.get(token or "")
        if info is None or info.kind != "access":
            raise TokenInvalid("invalid")
        if info.revoked:
            raise TokenInvalid("revoked")
        if info.expires_at is not None and info.expires_at <= self.clock():
            raise TokenInvalid("expired")
        return info

    def lookup(self, token: str) -> TokenInfo | None:
        with self._lock:
            return self._tokens.get(token)

    def refresh(self, refresh_token: str, *, client_id: str, rotate: bool = False) -> IssuedTokens:
        with self._lock:
            info = self._tokens.get(refresh_token)
        if info is None or info.kind != "refresh":
            raise OAuthError("invalid_grant", "refresh token is invalid")
        if info.revoked:
            raise OAuthError("invalid_grant", "token has been expired or revoked")
        if info.client_id != client_id:
            raise OAuthError("invalid_grant", "refresh token was issued to another client")
        issued = self.issue_tokens(
            client_id=client_id, subject=info.subject, scopes=info.scopes, with_refresh=rotate,
            family=info.family, extra=info.extra,
        )
        if rotate:
            with self._lock:
                info.revoked = True
            return issued
        return IssuedTokens(issued.access_token, issued.expires_in, refresh_token, issued.scopes)

    def revoke(self, token: str) -> bool:
        """Revoking a refresh token revokes the whole family (its access tokens too), as
        Google does; revoking an access token revokes only it."""
        with self._lock:
            info = self._tokens.get(token)
            if info is None:
                return False
            if info.kind == "refresh":
                for other in self._tokens.values():
                    if other.family == info.family:
                        other.revoked = True
            info.revoked = True
            return True

    def revoke_subject(self, client_id: str, subject: str) -> int:
        """Deauthorize an app for one user (Meta's DELETE /me/permissions)."""
        n = 0
        with self._lock:
            for info in self._tokens.values():
                if info.client_id == client_id and info.subject == subject and not info.revoked:
                    info.revoked = True
                    n += 1
        return n

    def expire_all_access(self) -> int:
        now = self.clock()
        n = 0
        with self._lock:
            for info in self._tokens.values():
                if info.kind == "access" and (info.expires_at is None or info.expires_at > now):
                    info.expires_at = now - 1
                    n += 1
        return n


# ------------------------------------------------------------------------------ consent screen
@dataclass(frozen=True, slots=True)
class ConsentRequest:
    platform_title: str  # "Meta", "Google"...
    app_name: str
    client_id: str
    redirect_uri: str
    scopes: list[str]
    state: str | None


_CONSENT_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} sandbox - authorize {app}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.5rem 1.25rem;margin-right:.5rem}}
code{{background:#eee;padding:0 .25rem}}</style>
</head><body>
<h1>{title} (sandbox)</h1>
<p><strong>{app}</strong> wants to access your {title} account.</p>
<p>Permissions requested:</p><ul>{scopes}</ul>
<p>You will be sent back to <code>{redirect}</code>.</p>
<form method="post">
<button type="submit" name="decision" value="approve" id="approve">Allow</button>
<button type="submit" name="decision" value="deny" id="deny">Cancel</button>
</form></body></html>"""


async def consent_response(
    request: Request,
    consent: ConsentRequest,
    *,
    approve: Callable[[], str | Awaitable[str]],
    deny: Callable[[], str | Awaitable[str]],
    auto_approve: bool = False,
) -> Response:
    """GET renders the screen (or approves at once with ``sandbox_auto_approve=1`` or when
    the sandbox is configured to); POST carries the decision. ``approve``/``deny`` return the
    redirect URL back to the app (code/state or error params, platform-specific)."""

    async def _url(fn: Callable[[], str | Awaitable[str]]) -> str:
        value = fn()
        return await value if not isinstance(value, str) else value

    if request.method == "POST":
        form = await request.form()
        decision = form.get("decision")
        target = await _url(approve if decision == "approve" else deny)
        return RedirectResponse(target, status_code=302)
    if auto_approve or request.query_params.get(AUTO_APPROVE_PARAM) in ("1", "true", "yes"):
        return RedirectResponse(await _url(approve), status_code=302)
    scopes = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in consent.scopes) or "<li>basic</li>"
    body = _CONSENT_HTML.format(
        title=html.escape(consent.platform_title), app=html.escape(consent.app_name),
        scopes=scopes, redirect=html.escape(consent.redirect_uri),
    )
    return HTMLResponse(body, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})


# ------------------------------------------------------------------------------ API versions
class ServedVersions:
    """Which API versions a sandbox answers: those live on the platform's table (see
    ``integrations/versions.py``) on ``today``, by default the day the table was checked, so
    the sandbox does not change behaviour with the wall clock. Everything else is answered the
    way the platform answers a switched-off (``expired``) or never-existing (``unknown``)
    version; each sandbox renders that in its own shape."""

    def __init__(self, policy: VersionPolicy, today: date | None = None) -> None:
        self.policy = policy
        self.today = today or policy.reviewed

    def status(self, version: str) -> Literal["served", "expired", "unknown"]:
        if self.policy.is_served(version, self.today):
            return "served"
        return "expired" if self.policy.is_expired(version, self.today) else "unknown"

    @property
    def latest(self) -> str:
        served = self.policy.served(self.today)
        return served[0] if served else self.policy.pinned

    @property
    def oldest(self) -> str | None:
        return self.policy.oldest_served(self.today)

    def state(self) -> dict[str, Any]:
        return {"api_versions": {"served": self.policy.served(self.today), "today": self.today.isoformat()}}
