"""A local LinkedIn Marketing API server over the shared sandbox world.

It implements, in LinkedIn's shapes, what Omnify calls, so the connector and LinkedIn's
official Python client (``linkedin-api-client``, with its base URLs pointed at ``url``) both
work unchanged:

* OAuth 2.0, 3-legged: ``/oauth/v2/authorization`` (consent screen; ``code``+``state`` back,
  or ``error=user_cancelled_authorize``; ``unauthorized_scope_error`` for a scope the app may
  not ask for), ``/oauth/v2/accessToken`` (``authorization_code`` and ``refresh_token``
  grants; the refresh token is returned unchanged and its lifetime keeps counting down),
  ``/oauth/v2/revoke`` and ``/oauth/v2/introspectToken``;
* under ``/rest``, each call checked for ``LinkedIn-Version`` (400 ``VERSION_MISSING``; 426
  ``NONEXISTENT_VERSION`` for a version not live on the table in :mod:`.version`), the bearer
  token (401 with ``EXPIRED_ACCESS_TOKEN`` / ``REVOKED_ACCESS_TOKEN`` / ``INVALID_ACCESS_TOKEN``
  / ``EMPTY_ACCESS_TOKEN``), the token's scopes and the member's account roles (403
  ``ACCESS_DENIED``), and Rest.li 2.0 query syntax (400 ``ILLEGAL_ARGUMENT``, parsed from the
  raw query string so an over-escaped or under-escaped value fails as it does at LinkedIn);
* ``adAccountUsers`` (``q=authenticatedUser``, start/count paging), ``adAccounts`` (``q=search``
  and get), ``adAccounts/{id}/adCampaignGroups|adCampaigns`` (``q=search``) and
  ``adAccounts/{id}/creatives`` (``q=criteria``), paged by ``pageSize``/``pageToken`` with
  ``metadata.nextPageToken``; campaign and creative gets;
* ``adAnalytics`` ``q=analytics`` (pivots ACCOUNT, CAMPAIGN_GROUP, CAMPAIGN, CREATIVE;
  DAILY/MONTHLY/ALL; at most 20 ``fields``; no paging, answers cut at ``max_elements``);
* ``PARTIAL_UPDATE`` of campaign ``status``/``dailyBudget``/``name`` and creative
  ``intendedStatus``/``name`` (204; 400 ``VALIDATION_FAILED`` with ``inputErrors`` for a bad
  value, e.g. a daily budget under LinkedIn's minimum), which change the world so later reads,
  metrics included, reflect them.

Throttles: a per-resource daily quota (``daily_quota``) answered as LinkedIn does (429
``TOO_MANY_REQUESTS`` "Resource level throttle APPLICATION DAY limit ..."), and the shared fault
injector (429 in the same shape, 5xx bursts, latency, token expiry) for ``/rest`` paths.

How the world maps: each world campaign is a LinkedIn campaign (daily budget, objective); the
world's single ad group per campaign supplies its targeting; each world ad is a creative;
campaign groups are synthesized per objective. Ad accounts report in UTC.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from omnify.integrations.linkedin import mapping as m
from omnify.integrations.linkedin import restli, version
from omnify.integrations.money import decimal_to_minor, format_decimal, minor_to_decimal
from omnify.integrations.sandbox_common import (
    ConsentRequest,
    Fault,
    FaultConfig,
    FaultInjector,
    FaultMiddleware,
    OAuthError,
    RequestJournal,
    ServedSandbox,
    TokenInfo,
    TokenInvalid,
    TokenStore,
    consent_response,
    control_routes,
)
from omnify.integrations.sandbox_data import Account, AccountSpec, World, WorldConfig

DEFAULT_CLIENT_ID = "78sbxlinkedin01"
DEFAULT_CLIENT_SECRET = "sandbox-linkedin-client-secret"
MEMBER = "urn:li:person:sbxMember01"
#: Scopes this app may ask for (what LinkedIn's developer portal grants a Marketing app).
APP_SCOPES = frozenset({*m.SCOPES, "r_basicprofile", "r_organization_social", "r_organization_admin"})
READ_SCOPES = frozenset({"r_ads", "rw_ads"})
REPORT_SCOPES = frozenset({"r_ads_reporting"})
WRITE_SCOPES = frozenset({"rw_ads"})
ACCESS_TTL = 60 * 86400  # LinkedIn access tokens live 60 days
REFRESH_TTL = 365 * 86400  # refresh tokens a year from the first grant
MIN_DAILY_BUDGET = {"USD": 1000, "EUR": 1000, "GBP": 1000}  # minor units; LinkedIn's 10.00 floor
PAGE_SIZE_MAX = {"creatives": 100}
_OBJECTIVE = {"sales": "WEBSITE_CONVERSIONS", "leads": "LEAD_GENERATION", "traffic": "WEBSITE_VISIT",
              "awareness": "BRAND_AWARENESS", "app_installs": "WEBSITE_VISIT"}
_STATUS_OUT = {"active": "ACTIVE", "paused": "PAUSED", "archived": "ARCHIVED", "deleted": "REMOVED"}
_STATUS_IN = {"ACTIVE": "active", "PAUSED": "paused", "ARCHIVED": "archived"}
_PIVOTS = ("ACCOUNT", "CAMPAIGN_GROUP", "CAMPAIGN", "CREATIVE")
_ACCOUNT_STATUSES = frozenset({"ACTIVE", "DRAFT", "CANCELED", "PENDING_DELETION", "REMOVED"})
_GROUP_STATUSES = frozenset({"ACTIVE", "PAUSED", "ARCHIVED", "CANCELED", "DRAFT", "PENDING_DELETION", "REMOVED"})
_CAMPAIGN_STATUSES = _GROUP_STATUSES | {"COMPLETED"}
#: Metrics the analytics finder knows (requesting any other is a 400, as at LinkedIn).
METRICS = frozenset({
    "impressions", "clicks", "landingPageClicks", "costInLocalCurrency", "costInUsd", "externalWebsiteConversions",
    "externalWebsitePostClickConversions", "externalWebsitePostViewConversions", "oneClickLeads",
    "oneClickLeadFormOpens", "conversionValueInLocalCurrency", "approximateMemberReach", "totalEngagements",
    "likes", "comments", "shares", "follows", "reactions", "otherEngagements", "videoViews", "videoStarts",
    "videoCompletions", "companyPageClicks", "leadGenerationMailContactInfoShares",
})
_VERSION_RE = re.compile(r"^(\d{6})(\.\d{2})?$")


def linkedin_specs() -> list[AccountSpec]:
    """LinkedIn accounts: no ad-group level (one world ad group per campaign), UTC reporting."""
    return [
        AccountSpec(507400001, "Acme Outdoor - B2B", "USD", "UTC", 4, 1, 6),
        AccountSpec(507400002, "Acme Outdoor - EMEA", "EUR", "UTC", 2, 1, 4),
        AccountSpec(507400003, "Bright Smiles Dental", "USD", "UTC", 2, 1, 3),
    ]


@dataclass
class LinkedInSandboxConfig:
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    seed: int = 42
    end: date | None = None  # last day with metrics; default today (UTC)
    days: int = 365
    accounts: list[AccountSpec] = field(default_factory=linkedin_specs)
    #: The day whose version table is served (default: when it was checked, so behaviour does
    #: not follow the wall clock).
    today: date | None = None
    access_ttl: int = ACCESS_TTL
    refresh_ttl: int = REFRESH_TTL
    issue_refresh_tokens: bool = True  # LinkedIn enables refresh tokens per app
    daily_quota: int | None = None  # calls per resource per UTC day for this app; None = unlimited
    max_elements: int = m.MAX_ANALYTICS_ELEMENTS
    auto_approve: bool = False
    faults: FaultConfig | None = None


class ApiError(Exception):
    """Rendered as LinkedIn's error body ``{status, serviceErrorCode?, code, message}``."""

    def __init__(self, status: int, code: str, message: str, *, input_errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.input_errors = input_errors
        self.headers = headers

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.code in m.SERVICE_CODES:
            body["serviceErrorCode"] = m.SERVICE_CODES[self.code]
        if self.input_errors:
            body["errorDetailType"] = "com.linkedin.common.error.BadRequest"
            body["errorDetails"] = {"inputErrors": self.input_errors}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _bad(message: str) -> ApiError:
    return ApiError(400, m.CODE_ILLEGAL_ARGUMENT, message)


def _invalid_field(path: str, description: str, code: str = "INVALID_VALUE") -> ApiError:
    error = {"code": code, "description": description, "input": {"inputPath": {"fieldPath": path}}}
    return ApiError(400, m.CODE_VALIDATION_FAILED, "Validation failed", input_errors=[error])


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _ms(value: datetime | date) -> int:
    moment = value if isinstance(value, datetime) else datetime.combine(value, datetime.min.time(), tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _money(amount_minor: int, currency: str) -> dict[str, str]:
    return {"amount": format_decimal(minor_to_decimal(amount_minor, currency)), "currencyCode": currency}


def _ymd(d: date) -> dict[str, int]:
    return {"year": d.year, "month": d.month, "day": d.day}


class LinkedInSandbox(ServedSandbox):
    """State + Starlette app. ``serve()`` runs it on a free port; ``url`` is then the base URL
    of both the API (``/rest``) and OAuth (``/oauth/v2``)."""

    server_name = "linkedin"

    def __init__(self, config: LinkedInSandboxConfig | None = None, *, world: World | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config or LinkedInSandboxConfig()
        cfg = self.config
        self.world = world or World(WorldConfig(platform="linkedin_ads", seed=cfg.seed, end=cfg.end, days=cfg.days,
                                                accounts=list(cfg.accounts)))
        self.clock = clock
        self.store = TokenStore(prefix="li", access_ttl=cfg.access_ttl, clock=clock)
        self.store.register_client(cfg.client_id, cfg.client_secret)
        self.injector = FaultInjector(cfg.faults)
        self.injector.on_expire_tokens(self.store.expire_all_access)
        self.journal = RequestJournal()
        self._quota_lock = threading.Lock()
        self._quota: dict[tuple[str, str], int] = {}
        self.app: Starlette = self._build_app()

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def client_id(self) -> str:
        return self.config.client_id

    @property
    def client_secret(self) -> str:
        return self.config.client_secret

    def reset(self) -> None:
        self.world.reset()
        with self._quota_lock:
            self._quota.clear()

    def grant_tokens(self, scopes: Sequence[str] = m.SCOPES, accounts: Sequence[str] | None = None) -> dict[str, Any]:
        """Authorize the app without the browser dance (tests, demo seeding): the body
        ``/oauth/v2/accessToken`` would answer."""
        issued = self.store.issue_tokens(
            client_id=self.client_id, subject=MEMBER, scopes=list(scopes),
            with_refresh=self.config.issue_refresh_tokens,
            extra={"accounts": sorted(self.world.accounts) if accounts is None else list(accounts)},
        )
        return self._token_body(issued.access_token, issued.refresh_token, list(scopes))

    # -- app -------------------------------------------------------------------------------
    def _build_app(self) -> Starlette:
        rest: list[tuple[str, Callable[[Request], Any], list[str]]] = [
            ("/rest/adAccountUsers", self.h_account_users, ["GET"]),
            ("/rest/adAccounts", self.h_accounts, ["GET"]),
            ("/rest/adAccounts/{account}", self.h_account, ["GET"]),
            ("/rest/adAccounts/{account}/adCampaignGroups", self.h_groups, ["GET"]),
            ("/rest/adAccounts/{account}/adCampaigns", self.h_campaigns, ["GET"]),
            ("/rest/adAccounts/{account}/adCampaigns/{campaign}", self.h_campaign, ["GET", "POST"]),
            ("/rest/adAccounts/{account}/creatives", self.h_creatives, ["GET"]),
            ("/rest/adAccounts/{account}/creatives/{creative}", self.h_creative, ["GET", "POST"]),
            ("/rest/adAnalytics", self.h_analytics, ["GET"]),
        ]
        routes = [
            Route("/oauth/v2/authorization", self.h_authorize, methods=["GET", "POST"]),
            Route("/oauth/v2/accessToken", self.h_access_token, methods=["POST"]),
            Route("/oauth/v2/revoke", self.h_revoke, methods=["POST"]),
            Route("/oauth/v2/introspectToken", self.h_introspect, methods=["POST"]),
        ]
        routes += [Route(path, self._rest(handler), methods=methods) for path, handler, methods in rest]
        routes += control_routes(self.injector, self.journal, on_reset=self.reset, describe=self.world.describe,
                                 extra_state=lambda: {
            "client_id": self.client_id, "accounts": sorted(self.world.accounts),
            "versions": version.POLICY.served(self.config.today)})
        middleware = [Middleware(FaultMiddleware, injector=self.injector, render=self._render_fault,
                                 journal=self.journal, applies=lambda path: path.startswith("/rest/"))]
        return Starlette(routes=routes, middleware=middleware)

    def _render_fault(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "rate_limit":
            return self._throttled().response()
        names = {500: "INTERNAL_SERVER_ERROR", 502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE", 504: "GATEWAY_TIMEOUT"}
        return ApiError(fault.status, names.get(fault.status, "INTERNAL_SERVER_ERROR"),
                        "Service is temporarily unavailable, please retry" if fault.status != 500
                        else "Internal Server Error").response()

    @staticmethod
    def _throttled() -> ApiError:
        return ApiError(429, m.CODE_TOO_MANY_REQUESTS,
                        "Resource level throttle APPLICATION DAY limit for calls to this resource is reached.")

    def _rest(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            try:
                self._check_version(request)
                result = await handler(request)
            except ApiError as exc:
                return exc.response()
            if isinstance(result, Response):
                return result
            return JSONResponse(result, headers={"X-RestLi-Protocol-Version": "2.0.0"})

        return run

    # -- request checks ----------------------------------------------------------------------
    def _check_version(self, request: Request) -> None:
        raw = request.headers.get("linkedin-version")
        if not raw:
            raise ApiError(400, m.CODE_VERSION_MISSING, "A version must be present. Please specify a version by "
                                                        "adding the LinkedIn-Version header.")
        match = _VERSION_RE.match(raw.strip())
        if match is None:
            raise ApiError(400, m.CODE_ILLEGAL_ARGUMENT, f"Invalid version format {raw!r}: expected YYYYMM")
        if not version.POLICY.is_served(match.group(1), self.config.today):
            raise ApiError(426, m.CODE_NONEXISTENT_VERSION, f"Requested version {match.group(1)}01 is not active")

    def _member(self, request: Request, scopes: frozenset[str]) -> TokenInfo:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not token:
            raise ApiError(401, m.CODE_EMPTY_TOKEN, "Empty oauth2_access_token")
        try:
            info = self.store.validate(token)
        except TokenInvalid as exc:
            if exc.reason == "expired":
                raise ApiError(401, m.CODE_EXPIRED_TOKEN, "The token used in the request has expired") from None
            if exc.reason == "revoked":
                raise ApiError(401, m.CODE_REVOKED_TOKEN,
                               "The token used in the request has been revoked by the user") from None
            raise ApiError(401, m.CODE_INVALID_TOKEN, "Invalid access token") from None
        if not scopes & set(info.scopes):
            resource = request.url.path.removeprefix("/rest/").split("/")[0]
            raise ApiError(403, m.CODE_ACCESS_DENIED, f"Not enough permissions to access: {resource}."
                                                      f"{request.method} ({', '.join(sorted(scopes))} required)")
        self._count_quota(request)
        return info

    def _count_quota(self, request: Request) -> None:
        limit = self.config.daily_quota
        if limit is None:
            return
        resource = [p for p in request.url.path.removeprefix("/rest/").split("/") if p and not p.isdigit()]
        key = (resource[-1] if resource else "", datetime.fromtimestamp(self.clock(), UTC).date().isoformat())
        with self._quota_lock:
            used = self._quota.get(key, 0) + 1
            self._quota[key] = used
        if used > limit:
            raise self._throttled()

    def _account_for(self, info: TokenInfo, account_id: str) -> Account:
        aid = restli.urn_id(account_id, restli.URN_ACCOUNT)
        if aid not in self.world.accounts:
            raise ApiError(404, m.CODE_NOT_FOUND, f"Ad account {aid} does not exist")
        if aid not in info.extra.get("accounts", []):
            raise ApiError(403, m.CODE_ACCESS_DENIED, f"Member has no role on urn:li:sponsoredAccount:{aid}")
        return self.world.account(aid)

    def _params(self, request: Request) -> dict[str, Any]:
        """Decoded query parameters; structured values need protocol 2.0.0 syntax."""
        raw = restli.parse_query(request.scope.get("query_string", b"").decode("latin-1"))
        protocol = request.headers.get("x-restli-protocol-version", "1.0.0")
        out: dict[str, Any] = {}
        for name, value in raw.items():
            if name == "fields":
                out[name] = [f for f in (value.removeprefix("List(").removesuffix(")")).split(",") if f]
                continue
            structured = value.startswith("List(") or value.startswith("(")
            if structured and protocol != "2.0.0":
                raise _bad(f"Invalid query parameter {name}: Rest.li 2.0 syntax needs "
                           "X-Restli-Protocol-Version: 2.0.0")
            try:
                out[name] = restli.decode(value)
            except restli.RestliDecodeError as exc:
                raise _bad(f"Invalid value for param {name}: {exc}") from None
        return out

    # -- OAuth -------------------------------------------------------------------------------
    async def h_authorize(self, request: Request) -> Response:
        q = request.query_params
        client_id, redirect_uri, state = q.get("client_id", ""), q.get("redirect_uri", ""), q.get("state")
        if self.store.client(client_id) is None or not redirect_uri:
            return _oauth_error(400, "invalid_request", "Invalid client_id or redirect_uri")
        if q.get("response_type") != "code":
            return _oauth_error(400, "invalid_request", "response_type must be code")
        scopes = [s for s in q.get("scope", "").replace(",", " ").split() if s]

        def back(params: dict[str, str]) -> str:
            if state is not None:
                params["state"] = state
            return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(params)}"

        refused = [s for s in scopes if s not in APP_SCOPES]
        if not scopes or refused:
            what = refused[0] if refused else ""
            return Response(status_code=302, headers={"location": back({
                "error": "unauthorized_scope_error",
                "error_description": f'Scope "{what}" is not authorized for your application'})})

        def approve() -> str:
            code = self.store.issue_code(client_id=client_id, redirect_uri=redirect_uri, scopes=scopes,
                                         subject=MEMBER, extra={"accounts": sorted(self.world.accounts)})
            return back({"code": code})

        def deny() -> str:
            return back({"error": "user_cancelled_authorize",
                         "error_description": "The user cancelled the authorization"})

        consent = ConsentRequest("LinkedIn", "Omnify", client_id, redirect_uri, scopes, state)
        return await consent_response(request, consent, approve=approve, deny=deny,
                                      auto_approve=self.config.auto_approve)

    def _token_body(self, access: str, refresh: str | None, scopes: list[str],
                    refresh_issued: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"access_token": access, "expires_in": self.config.access_ttl,
                                "scope": ",".join(sorted(scopes))}
        if refresh:
            issued = refresh_issued if refresh_issued is not None else self.clock()
            body["refresh_token"] = refresh
            body["refresh_token_expires_in"] = max(int(issued + self.config.refresh_ttl - self.clock()), 0)
        return body

    async def h_access_token(self, request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return _oauth_error(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
        form = await request.form()
        values = {k: str(v) for k, v in form.items()}
        try:
            client = self.store.authenticate_client(values.get("client_id"), values.get("client_secret"))
        except OAuthError:
            return _oauth_error(401, "invalid_client", "Client authentication failed")
        grant = values.get("grant_type")
        if grant == "authorization_code":
            try:
                granted = self.store.redeem_code(values.get("code", ""), client_id=client.client_id,
                                                 redirect_uri=values.get("redirect_uri") or "")
            except OAuthError:
                return _oauth_error(400, "invalid_request", "Unable to retrieve access token: appid/redirect uri/code "
                                    "verifier does not match authorization code. Or authorization code expired.")
            issued = self.store.issue_tokens(client_id=client.client_id, subject=granted.subject,
                                             scopes=granted.scopes, with_refresh=self.config.issue_refresh_tokens,
                                             extra=granted.extra)
            return JSONResponse(self._token_body(issued.access_token, issued.refresh_token, granted.scopes))
        if grant == "refresh_token":
            token = values.get("refresh_token", "")
            info = self.store.lookup(token)
            if info is None or info.kind != "refresh" or info.issued_at + self.config.refresh_ttl <= self.clock():
                return _oauth_error(400, "invalid_request",
                                    "The provided authorization grant or refresh token is invalid, expired or revoked")
            try:
                issued = self.store.refresh(token, client_id=client.client_id)
            except OAuthError:
                return _oauth_error(400, "invalid_request",
                                    "The provided authorization grant or refresh token is invalid, expired or revoked")
            return JSONResponse(self._token_body(issued.access_token, issued.refresh_token, info.scopes,
                                                 refresh_issued=info.issued_at))
        return _oauth_error(400, "unsupported_grant_type", f"grant_type {grant!r} is not supported")

    async def h_revoke(self, request: Request) -> Response:
        form = await request.form()
        try:
            self.store.authenticate_client(str(form.get("client_id") or ""), str(form.get("client_secret") or ""))
        except OAuthError:
            return _oauth_error(401, "invalid_client", "Client authentication failed")
        token = str(form.get("token") or "")
        info = self.store.lookup(token)
        if info is None:
            return _oauth_error(400, "invalid_request", "The token is invalid")
        # Revoking ends the member's grant to the app: its refresh token and access tokens.
        for candidate in {info.family, token}:
            self.store.revoke(candidate)
        return Response(status_code=200)

    async def h_introspect(self, request: Request) -> Response:
        """Token introspection: what LinkedIn knows of a token (active, expiry, scopes, status)."""
        form = await request.form()
        try:
            self.store.authenticate_client(str(form.get("client_id") or ""), str(form.get("client_secret") or ""))
        except OAuthError:
            return _oauth_error(401, "invalid_client", "Client authentication failed")
        info = self.store.lookup(str(form.get("token") or ""))
        if info is None:
            return JSONResponse({"active": False})
        expired = info.expires_at is not None and info.expires_at <= self.clock()
        status = "revoked" if info.revoked else ("expired" if expired else "active")
        body: dict[str, Any] = {"active": status == "active", "status": status, "client_id": info.client_id,
                                "auth_type": "3L", "authorized_at": int(info.issued_at),
                                "created_at": int(info.issued_at), "scope": ",".join(sorted(info.scopes))}
        if info.expires_at is not None:
            body["expires_at"] = int(info.expires_at)
        return JSONResponse(body)

    # -- rendering ---------------------------------------------------------------------------
    def _groups(self, acc: Account) -> dict[str, dict[str, Any]]:
        """Campaign groups, one per objective present in the account (deterministic ids)."""
        groups: dict[str, dict[str, Any]] = {}
        objectives = sorted({c.objective for c in acc.campaigns.values()})
        for i, objective in enumerate(objectives):
            gid = str(int(acc.id) * 10_000_000 + 5_000_000 + i + 1)
            members = [c for c in acc.campaigns.values() if c.objective == objective]
            live = [c.status for c in members if c.status != "deleted"]
            status = "ACTIVE" if "active" in live else ("PAUSED" if live else "ARCHIVED")
            groups[gid] = {
                "id": int(gid), "account": f"{restli.URN_ACCOUNT}{acc.id}",
                "name": f"{acc.name} - {_OBJECTIVE[objective].replace('_', ' ').title()}",
                "status": status, "objectiveType": _OBJECTIVE[objective], "test": False, "backfilled": False,
                "runSchedule": {"start": _ms(acc.created)},
                "servingStatuses": ["RUNNABLE"] if status == "ACTIVE" else ["CAMPAIGN_GROUP_STATUS_HOLD"],
                "changeAuditStamps": {"created": {"time": _ms(acc.created)},
                                      "lastModified": {"time": _ms(acc.created)}},
                "_objective": objective,
            }
        return groups

    def _group_of(self, acc: Account, objective: str) -> str:
        return next(g for g, v in self._groups(acc).items() if v["_objective"] == objective)

    def _campaign_json(self, acc: Account, cid: str) -> dict[str, Any]:
        c = acc.campaigns[cid]
        group = next((g for g in acc.ad_groups.values() if g.campaign_id == cid), None)
        t = group.targeting if group is not None else {}
        text_ad = int(cid) % 4 == 3  # a quarter of the campaigns run text ads
        geo = ["urn:li:geo:103644278"] if "US" in t.get("geo", ["US"]) else ["urn:li:geo:101282230",
                                                                               "urn:li:geo:105015875"]
        status = _STATUS_OUT[c.status]
        return {
            "id": int(cid), "account": f"{restli.URN_ACCOUNT}{acc.id}",
            "campaignGroup": f"{restli.URN_CAMPAIGN_GROUP}{self._group_of(acc, c.objective)}",
            "name": c.name, "status": status, "type": "TEXT_AD" if text_ad else "SPONSORED_UPDATES",
            "format": "TEXT_AD" if text_ad else "STANDARD_UPDATE",
            "costType": "CPC" if text_ad else "CPM", "objectiveType": _OBJECTIVE[c.objective],
            "dailyBudget": _money(c.daily_budget_minor, acc.currency),
            "unitCost": _money(max(c.daily_budget_minor // 20, 200), acc.currency),
            "locale": {"country": "US" if acc.currency == "USD" else "DE", "language": "en"},
            "targetingCriteria": {"include": {"and": [
                {"or": {"urn:li:adTargetingFacet:locations": geo}},
                {"or": {"urn:li:adTargetingFacet:interfaceLocales": ["urn:li:locale:en_US"]}},
            ]}},
            "runSchedule": {"start": _ms(c.created)}, "offsiteDeliveryEnabled": False,
            "audienceExpansionEnabled": False, "test": False,
            "servingStatuses": ["RUNNABLE"] if status == "ACTIVE" else ["CAMPAIGN_STATUS_NOT_RUNNABLE"],
            "changeAuditStamps": {"created": {"time": _ms(c.created)}, "lastModified": {"time": _ms(c.updated_at)}},
            "version": {"versionTag": str(len(acc.overrides) + 1)},
        }

    def _creative_json(self, acc: Account, ad_id: str) -> dict[str, Any]:
        a = acc.ads[ad_id]
        campaign = self._campaign_json(acc, a.campaign_id)
        cr = a.creative
        content: dict[str, Any]
        if campaign["type"] == "TEXT_AD":
            content = {"textAd": {"headline": cr.title[:25], "description": cr.body[:75],
                                  "landingPage": f"https://www.example.com/lp/{cr.id}"}}
        else:
            content = {"reference": f"urn:li:share:{cr.id}"}
        status = _STATUS_OUT[a.status]
        return {
            "id": f"{restli.URN_CREATIVE}{a.id}", "account": f"{restli.URN_ACCOUNT}{acc.id}",
            "campaign": f"{restli.URN_CAMPAIGN}{a.campaign_id}", "name": a.name, "intendedStatus": status,
            "isServing": status == "ACTIVE" and campaign["status"] == "ACTIVE",
            "servingHoldReasons": [] if status == "ACTIVE" else ["CREATIVE_NOT_ACTIVE"], "isTest": False,
            "content": content, "review": {"status": "APPROVED"},
            "createdAt": _ms(a.created), "createdBy": MEMBER, "lastModifiedAt": _ms(a.updated_at),
            "lastModifiedBy": MEMBER,
        }

    def _account_json(self, acc: Account) -> dict[str, Any]:
        return {"id": int(acc.id), "name": acc.name, "currency": acc.currency, "status": "ACTIVE",
                "type": "BUSINESS", "reference": f"urn:li:organization:{int(acc.id) % 100000 + 2414000}",
                "test": False, "notifiedOnCampaignOptimization": True, "notifiedOnCreativeApproval": True,
                "notifiedOnCreativeRejection": True, "notifiedOnEndOfCampaign": True,
                "servingStatuses": ["RUNNABLE"], "version": {"versionTag": "2"}}

    # -- paging ------------------------------------------------------------------------------
    def _cursor_page(self, request: Request, params: Mapping[str, Any], items: list[Any],
                     resource: str) -> dict[str, Any]:
        size = _int(params.get("pageSize"), "pageSize", default=100, lo=1, hi=PAGE_SIZE_MAX.get(resource, 1000))
        fingerprint = hashlib.sha256(json.dumps({k: v for k, v in params.items() if k not in ("pageToken",
                                                 "pageSize")}, sort_keys=True, default=str).encode()).hexdigest()[:12]
        offset = 0
        token = params.get("pageToken")
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(str(token) + "==").decode())
                offset, seen = int(decoded["o"]), str(decoded["f"])
            except (ValueError, KeyError, TypeError):
                raise _bad("Invalid value for param pageToken") from None
            if seen != fingerprint or offset < 0:
                raise _bad("Invalid value for param pageToken: it belongs to another query")
        page = items[offset:offset + size]
        body: dict[str, Any] = {"elements": page, "paging": {"start": offset, "count": size, "links": []},
                                "metadata": {}}
        if offset + size < len(items):
            nxt = json.dumps({"o": offset + size, "f": fingerprint}).encode()
            body["metadata"]["nextPageToken"] = base64.urlsafe_b64encode(nxt).decode().rstrip("=")
        return body

    @staticmethod
    def _statuses(criteria: Any, name: str, allowed: frozenset[str]) -> set[str] | None:
        if criteria in (None, ""):
            return None
        values = criteria.get("values") if isinstance(criteria, Mapping) else criteria
        if not isinstance(values, list):
            raise _bad(f"Invalid value for {name}: expected (values:List(...))")
        unknown = [v for v in values if v not in allowed]
        if unknown:
            raise _bad(f"Invalid value for {name}: {', '.join(map(str, unknown))}")
        return set(values)

    # -- reads -------------------------------------------------------------------------------
    async def h_account_users(self, request: Request) -> Any:
        info = self._member(request, READ_SCOPES)
        params = self._params(request)
        if params.get("q") != "authenticatedUser":
            raise _bad("Unsupported finder: this sandbox serves q=authenticatedUser")
        start = _int(params.get("start"), "start", default=0, lo=0, hi=10**6)
        count = _int(params.get("count"), "count", default=100, lo=1, hi=1000)
        ids = [a for a in info.extra.get("accounts", []) if a in self.world.accounts]
        elements = [{"account": f"{restli.URN_ACCOUNT}{a}", "user": info.subject,
                     "role": "ACCOUNT_BILLING_ADMIN" if i == 0 else "CAMPAIGN_MANAGER",
                     "changeAuditStamps": {"created": {"time": _ms(self.world.account(a).created)},
                                           "lastModified": {"time": _ms(self.world.account(a).created)}}}
                    for i, a in enumerate(ids)]
        return {"elements": elements[start:start + count],
                "paging": {"start": start, "count": count, "total": len(elements), "links": []}}

    def _search(self, request: Request, resource: str, statuses: frozenset[str], items: list[dict[str, Any]],
                extra: Callable[[Mapping[str, Any], list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
                ) -> dict[str, Any]:
        """A ``q=search`` finder: ``search=(status:(values:List(...)),...)`` filters, cursor paging."""
        params = self._params(request)
        if params.get("q") != "search":
            raise _bad(f"Unsupported finder: {resource} serves q=search")
        search = params.get("search") or {}
        if not isinstance(search, Mapping):
            raise _bad("Invalid value for param search: expected an object")
        wanted = self._statuses(search.get("status"), "search.status", statuses)
        if wanted is not None:
            items = [i for i in items if i["status"] in wanted]
        if search.get("test") in ("true", "false"):
            items = [i for i in items if str(i["test"]).lower() == search["test"]]
        if extra is not None:
            items = extra(search, items)  # nosec B610 # a callback parameter, not Django's QuerySet.extra
        return self._cursor_page(request, params, items, resource)

    async def h_accounts(self, request: Request) -> Any:
        info = self._member(request, READ_SCOPES)
        items = [self._account_json(self.world.account(a)) for a in info.extra.get("accounts", [])
                 if a in self.world.accounts]
        return self._search(request, "adAccounts", _ACCOUNT_STATUSES, items)

    async def h_account(self, request: Request) -> Any:
        info = self._member(request, READ_SCOPES)
        return self._account_json(self._account_for(info, request.path_params["account"]))

    async def h_groups(self, request: Request) -> Any:
        acc = self._account_for(self._member(request, READ_SCOPES), request.path_params["account"])
        items = [{k: v for k, v in g.items() if not k.startswith("_")} for g in self._groups(acc).values()]
        return self._search(request, "adCampaignGroups", _GROUP_STATUSES, items)

    async def h_campaigns(self, request: Request) -> Any:
        acc = self._account_for(self._member(request, READ_SCOPES), request.path_params["account"])

        def in_groups(search: Mapping[str, Any], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            wanted = search.get("campaignGroup")
            if not wanted:
                return items
            groups = set(wanted.get("values", []) if isinstance(wanted, Mapping) else wanted)
            return [i for i in items if i["campaignGroup"] in groups]

        items = [self._campaign_json(acc, cid) for cid in acc.campaigns]
        return self._search(request, "adCampaigns", _CAMPAIGN_STATUSES, items, in_groups)

    async def h_creatives(self, request: Request) -> Any:
        acc = self._account_for(self._member(request, READ_SCOPES), request.path_params["account"])
        params = self._params(request)
        if params.get("q") != "criteria":
            raise _bad("Unsupported finder: creatives serves q=criteria")
        items = [self._creative_json(acc, a) for a in acc.ads]
        for name, key in (("campaigns", "campaign"), ("creatives", "id")):
            wanted = params.get(name)
            if wanted is not None:
                if not isinstance(wanted, list):
                    raise _bad(f"Invalid value for param {name}: expected List(...)")
                items = [i for i in items if i[key] in set(wanted)]
        statuses = self._statuses(params.get("intendedStatuses"), "intendedStatuses", _GROUP_STATUSES)
        if statuses is not None:
            items = [i for i in items if i["intendedStatus"] in statuses]
        return self._cursor_page(request, params, items, "creatives")

    # -- entity get / partial update ---------------------------------------------------------
    async def _patch_body(self, request: Request) -> dict[str, Any]:
        method = request.headers.get("x-restli-method", "").upper()
        if method != "PARTIAL_UPDATE":
            raise _bad(f"Unsupported method {method or 'CREATE'} on an entity: send X-RestLi-Method: PARTIAL_UPDATE")
        try:
            body = await request.json()
        except ValueError:
            raise _bad("Request body is not valid JSON") from None
        patch = body.get("patch") if isinstance(body, Mapping) else None
        changes = patch.get("$set") if isinstance(patch, Mapping) else None
        if not isinstance(changes, Mapping) or not changes:
            raise _bad('Request body must be {"patch": {"$set": {...}}}')
        return dict(changes)

    async def h_campaign(self, request: Request) -> Any:
        writing = request.method == "POST"
        info = self._member(request, WRITE_SCOPES if writing else READ_SCOPES)
        acc = self._account_for(info, request.path_params["account"])
        cid = request.path_params["campaign"]
        if cid not in acc.campaigns:
            raise ApiError(404, m.CODE_NOT_FOUND, f"Campaign {cid} does not exist in account {acc.id}")
        if not writing:
            return self._campaign_json(acc, cid)
        changes = await self._patch_body(request)
        unknown = sorted(set(changes) - {"status", "dailyBudget", "name"})
        if unknown:
            raise _invalid_field(unknown[0], f"Field {unknown[0]} cannot be changed by this request",
                                 "FIELD_NOT_UPDATABLE")
        campaign = acc.campaigns[cid]
        status = budget = name = None
        if "status" in changes:
            status = _STATUS_IN.get(str(changes["status"]))
            if status is None:
                raise _invalid_field("status", f"Invalid campaign status {changes['status']!r}")
            if campaign.status == "deleted":
                raise _invalid_field("status", "A removed campaign cannot change status")
        if "dailyBudget" in changes:
            budget = self._budget(changes["dailyBudget"], acc.currency)
        if "name" in changes:
            name = str(changes["name"]).strip()
            if not name or len(name) > 100:
                raise _invalid_field("name", "Name must be 1 to 100 characters")
        if status is not None and status != campaign.status:
            self.world.set_status(cid, status)  # type: ignore[arg-type]
        if budget is not None and budget != campaign.daily_budget_minor:
            self.world.set_budget(cid, budget)
        if name is not None:
            campaign.name = name
        return Response(status_code=204)

    def _budget(self, value: Any, currency: str) -> int:
        if not isinstance(value, Mapping) or "amount" not in value:
            raise _invalid_field("dailyBudget", "dailyBudget must be {amount, currencyCode}")
        if str(value.get("currencyCode")) != currency:
            raise _invalid_field("dailyBudget.currencyCode", f"Budget currency must be the account's ({currency})")
        if not isinstance(value["amount"], str):
            raise _invalid_field("dailyBudget.amount", "amount must be a decimal string")
        try:
            minor = decimal_to_minor(value["amount"], currency, strict=True)
        except (ValueError, InvalidOperation):
            raise _invalid_field("dailyBudget.amount", f"{value['amount']!r} is not an amount in {currency}") from None
        floor = MIN_DAILY_BUDGET.get(currency, 1000)
        if minor < floor:
            raise _invalid_field("dailyBudget.amount", f"Daily budget must be at least "
                                 f"{format_decimal(minor_to_decimal(floor, currency))} {currency}", "BELOW_MINIMUM")
        return minor

    async def h_creative(self, request: Request) -> Any:
        writing = request.method == "POST"
        info = self._member(request, WRITE_SCOPES if writing else READ_SCOPES)
        acc = self._account_for(info, request.path_params["account"])
        key = request.path_params["creative"]
        if not key.startswith(restli.URN_CREATIVE):
            raise _bad(f"Invalid creative key {key!r}: expected an encoded urn:li:sponsoredCreative URN")
        ad_id = restli.urn_id(key, restli.URN_CREATIVE)
        if ad_id not in acc.ads:
            raise ApiError(404, m.CODE_NOT_FOUND, f"Creative {key} does not exist in account {acc.id}")
        if not writing:
            return self._creative_json(acc, ad_id)
        changes = await self._patch_body(request)
        unknown = sorted(set(changes) - {"intendedStatus", "name"})
        if unknown:
            raise _invalid_field(unknown[0], f"Field {unknown[0]} cannot be changed by this request",
                                 "FIELD_NOT_UPDATABLE")
        ad = acc.ads[ad_id]
        if "intendedStatus" in changes:
            status = _STATUS_IN.get(str(changes["intendedStatus"]))
            if status is None:
                raise _invalid_field("intendedStatus", f"Invalid intendedStatus {changes['intendedStatus']!r}")
            if status != ad.status:
                self.world.set_status(ad_id, status)  # type: ignore[arg-type]
        if "name" in changes:
            ad.name = str(changes["name"])[:255]
        return Response(status_code=204)

    # -- analytics ---------------------------------------------------------------------------
    async def h_analytics(self, request: Request) -> Any:
        info = self._member(request, REPORT_SCOPES)
        params = self._params(request)
        if params.get("q") != "analytics":
            raise _bad("Unsupported finder: this sandbox serves q=analytics")
        pivot = params.get("pivot")
        if pivot not in _PIVOTS:
            raise _bad(f"Invalid value for param pivot: {pivot!r} (one of {', '.join(_PIVOTS)})")
        granularity = params.get("timeGranularity")
        if granularity not in ("DAILY", "MONTHLY", "ALL"):
            raise _bad("Invalid value for param timeGranularity: DAILY, MONTHLY or ALL")
        since, until = _date_range(params.get("dateRange"))
        fields = params.get("fields") or ["dateRange", "pivotValues", "impressions", "clicks"]
        if len(fields) > m.MAX_ANALYTICS_FIELDS:
            raise _bad(f"Invalid query parameters passed to request: fields: at most {m.MAX_ANALYTICS_FIELDS} "
                       f"fields may be requested ({len(fields)} were)")
        unknown = [f for f in fields if f not in METRICS and f not in m.ANALYTICS_KEYS]
        if unknown:
            raise _bad(f"Invalid query parameters passed to request: fields: unknown metric {unknown[0]!r}")
        accounts = self._facet(info, params)
        rows: list[dict[str, Any]] = []
        for acc, ids in accounts:
            rows += self._analytics_rows(acc, pivot, granularity, since, until, ids)
        rows = rows[:self.config.max_elements]
        return {"paging": {"start": 0, "count": 10, "links": []},
                "elements": [{k: v for k, v in r.items() if k in fields} for r in rows]}

    def _facet(self, info: TokenInfo, params: Mapping[str, Any]) -> list[tuple[Account, set[str] | None]]:
        """The accounts (and, for campaign/creative facets, the entity ids) a query covers."""
        out: list[tuple[Account, set[str] | None]] = []
        for name, prefix in (("accounts", restli.URN_ACCOUNT), ("campaigns", restli.URN_CAMPAIGN),
                             ("creatives", restli.URN_CREATIVE)):
            values = params.get(name)
            if values is None:
                continue
            if not isinstance(values, list) or not values:
                raise _bad(f"Invalid value for param {name}: expected List(<URN>,...)")
            bad = [v for v in values if not str(v).startswith(prefix)]
            if bad:
                raise _bad(f"Invalid value for param {name}: {bad[0]!r} is not a {prefix} URN")
            ids = [restli.urn_id(v, prefix) for v in values]
            if name == "accounts":
                out += [(self._account_for(info, a), None) for a in ids]
            else:
                for entity_id in ids:
                    try:
                        acc, _level, _entity = self.world.find(entity_id)
                    except KeyError:
                        raise ApiError(404, m.CODE_NOT_FOUND, f"{prefix}{entity_id} does not exist") from None
                    self._account_for(info, acc.id)
                    out.append((acc, {entity_id}))
            return out
        raise _bad("One of accounts, campaigns or creatives is required")

    def _analytics_rows(self, acc: Account, pivot: str, granularity: str, since: date, until: date,
                        ids: set[str] | None) -> list[dict[str, Any]]:
        rows = acc.metric_rows(since, until, level="ad")
        groups = {v["_objective"]: g for g, v in self._groups(acc).items()}
        buckets: dict[tuple[str, date], dict[str, Any]] = {}
        for i in range(len(rows)):
            r = rows.row(i)
            ad = acc.ads[r["entity_id"]]
            if ids is not None and not ids & {ad.id, ad.campaign_id}:
                continue
            objective = acc.campaigns[ad.campaign_id].objective
            urn = {"ACCOUNT": f"{restli.URN_ACCOUNT}{acc.id}",
                   "CAMPAIGN_GROUP": f"{restli.URN_CAMPAIGN_GROUP}{groups[objective]}",
                   "CAMPAIGN": f"{restli.URN_CAMPAIGN}{ad.campaign_id}",
                   "CREATIVE": f"{restli.URN_CREATIVE}{ad.id}"}[pivot]
            day = r["day"]
            start = day if granularity == "DAILY" else (day.replace(day=1) if granularity == "MONTHLY" else since)
            agg = buckets.setdefault((urn, start), {"urn": urn, "start": start, "end": day, "spend": 0, "impr": 0,
                                                    "reach": 0, "clicks": 0, "web": 0.0, "leads": 0.0, "rev": 0})
            agg["end"] = max(agg["end"], day) if granularity != "ALL" else until
            agg["spend"] += r["spend_minor"]
            agg["impr"] += r["impressions"]
            agg["reach"] += r["reach"]
            agg["clicks"] += r["clicks"]
            agg["rev"] += r["revenue_minor"]
            agg["leads" if objective == "leads" else "web"] += r["conversions"]
        return [self._element(acc, b) for b in sorted(buckets.values(), key=lambda b: (b["start"], b["urn"]))]

    @staticmethod
    def _element(acc: Account, b: Mapping[str, Any]) -> dict[str, Any]:
        cur = acc.currency
        spend = format_decimal(minor_to_decimal(int(b["spend"]), cur))
        clicks, impr = int(b["clicks"]), int(b["impr"])
        web, leads = round(float(b["web"])), round(float(b["leads"]))
        engagements = clicks + impr // 200
        return {
            "pivotValues": [b["urn"]],
            "dateRange": {"start": _ymd(b["start"]), "end": _ymd(b["end"])},
            "impressions": impr, "clicks": clicks, "landingPageClicks": clicks * 17 // 20,
            "costInLocalCurrency": spend, "costInUsd": spend if cur == "USD" else format_decimal(
                (Decimal(spend) * Decimal("1.08")).quantize(Decimal("0.01"))),
            "externalWebsiteConversions": web, "externalWebsitePostClickConversions": web * 3 // 4,
            "externalWebsitePostViewConversions": web - web * 3 // 4, "oneClickLeads": leads,
            "oneClickLeadFormOpens": leads * 3, "conversionValueInLocalCurrency": format_decimal(
                minor_to_decimal(int(b["rev"]), cur)),
            "approximateMemberReach": int(b["reach"]), "totalEngagements": engagements,
            "likes": impr // 400, "comments": impr // 5000, "shares": impr // 8000, "follows": impr // 10000,
            "reactions": impr // 400, "otherEngagements": impr // 1000, "videoViews": 0, "videoStarts": 0,
            "videoCompletions": 0, "companyPageClicks": clicks // 25, "leadGenerationMailContactInfoShares": 0,
        }


def _int(value: Any, name: str, *, default: int, lo: int, hi: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise _bad(f"Invalid value for param {name}: {value!r} is not an integer") from None
    if not lo <= number <= hi:
        raise _bad(f"Invalid value for param {name}: must be between {lo} and {hi}")
    return number


def _date_range(value: Any) -> tuple[date, date]:
    if not isinstance(value, Mapping) or not isinstance(value.get("start"), Mapping):
        raise _bad("Invalid value for param dateRange: expected (start:(year:,month:,day:),end:(...))")

    def one(part: Any) -> date:
        try:
            return date(int(part["year"]), int(part["month"]), int(part["day"]))
        except (KeyError, TypeError, ValueError):
            raise _bad(f"Invalid value for param dateRange: {part!r} is not a date") from None

    start = one(value["start"])
    end = one(value["end"]) if isinstance(value.get("end"), Mapping) else datetime.now(UTC).date()
    if end < start:
        raise _bad("Invalid value for param dateRange: the end precedes the start")
    return start, end


def make_app(**kwargs: Any) -> Starlette:
    """ASGI app for ``omnify sandbox`` (uvicorn factory style)."""
    return LinkedInSandbox(LinkedInSandboxConfig(**kwargs)).app
