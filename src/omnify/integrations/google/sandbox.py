"""A local Google OAuth 2.0 + Google Ads API (REST) server for the subset Omnify calls.

Faithful where a client notices: OAuth consent at ``/o/oauth2/v2/auth`` with PKCE (S256,
verifier mismatch refused with ``invalid_grant``), ``/token`` (authorization_code and
refresh_token grants, refresh tokens only for ``access_type=offline``), ``/revoke``;
the Ads API under ``/vNN/`` with ``Authorization: Bearer``, ``developer-token`` and
``login-customer-id`` checked (a manager's client is refused without its manager as login
customer, as Google does), ``customers:listAccessibleCustomers``, ``googleAds:search``
(fixed-size pages, ``nextPageToken``) and ``googleAds:searchStream``, both answering the GAQL
they are sent (parsed, validated, filtered, ordered, limited - see gaql.py),
``campaigns|adGroups|adGroupAds|campaignBudgets:mutate`` with update masks, and the Google
error envelope with GoogleAdsFailure details (quota errors carry ``retryDelay``), its ``@type``
naming the request's version. Only the versions live on Google's timetable are served: a sunset
one gets ``UNSUPPORTED_VERSION``, an unknown one Google's HTML 404. ``responseContentType:
MUTABLE_RESOURCE`` on mutate returns each changed resource.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from omnify.integrations.google import gaql
from omnify.integrations.google.mapping import ADWORDS_SCOPE
from omnify.integrations.google.version import POLICY
from omnify.integrations.money import currency_exponent
from omnify.integrations.sandbox_common import (
    ConsentRequest,
    Fault,
    FaultConfig,
    FaultInjector,
    FaultMiddleware,
    OAuthError,
    RequestJournal,
    ServedSandbox,
    ServedVersions,
    TokenInfo,
    TokenInvalid,
    TokenStore,
    consent_response,
    control_routes,
)
from omnify.integrations.sandbox_data import Account, AccountSpec, EntityNotFound, World, WorldConfig

_VERSION_RE = re.compile(r"^v\d+$")
_SERVICE_RESOURCE = {"campaigns": "campaign", "adGroups": "ad_group", "adGroupAds": "ad_group_ad",
                     "campaignBudgets": "campaign_budget"}
_RESULT_KEY = {"campaigns": "campaign", "adGroups": "adGroup", "adGroupAds": "adGroupAd",
               "campaignBudgets": "campaignBudget"}
_NOT_FOUND_HTML = ("<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>Error 404 (Not Found)!!1</title>"
                   "<p><b>404.</b> <ins>That's an error.</ins><p>The requested URL <code>{path}</code> was not "
                   "found on this server. <ins>That's all we know.</ins>")
_CHANNEL = {"sales": "SEARCH", "leads": "SEARCH", "traffic": "DISPLAY", "awareness": "VIDEO",
            "app_installs": "MULTI_CHANNEL"}
_STATUS = {"active": "ENABLED", "paused": "PAUSED", "archived": "REMOVED", "deleted": "REMOVED"}
SANDBOX_SUBJECT = "google-sandbox-user"


def google_specs() -> list[AccountSpec]:
    return [
        AccountSpec(1234567890, "Acme Outdoor - Search US", "USD", "America/New_York", 5, 4, 10),
        AccountSpec(2345678901, "Acme Outdoor - Search EU", "EUR", "Europe/Berlin", 3, 2, 4),
        AccountSpec(3456789012, "Bright Smiles Dental", "USD", "America/Chicago", 2, 2, 3),
    ]


@dataclass(slots=True)
class GoogleSandboxConfig:
    client_id: str = "sandbox-client.apps.googleusercontent.com"
    client_secret: str = "sandbox-google-client-secret"
    developer_token: str = "sandbox-developer-token"
    app_name: str = "Omnify (sandbox)"
    redirect_uris: tuple[str, ...] = ()
    manager_id: str = "9990001111"
    managed: tuple[str, ...] = ("1234567890", "2345678901")  # clients under the manager
    seed: int = 42
    end: date | None = None
    days: int = 365
    accounts: list[AccountSpec] = field(default_factory=google_specs)
    access_token_ttl: int = 3599
    require_pkce: bool = True  # Omnify always sends PKCE; a missing challenge is a regression
    auto_approve: bool = False
    faults: FaultConfig = field(default_factory=FaultConfig)
    stream_batch_size: int = 10_000
    search_page_size: int = 10_000  # googleAds:search pages are fixed-size (page_size is refused)
    today: date | None = None  # the day whose version table is served (None: the table's review date)


class AdsError(Exception):
    def __init__(self, http: int, status: str, message: str, errors: list[tuple[str, str, str]] | None = None,
                 *, quota_delay: float | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.http, self.status, self.message, self.errors = http, status, message, errors or []
        self.quota_delay, self.headers = quota_delay, dict(headers or {})

    def response(self, version: str = POLICY.pinned) -> JSONResponse:
        """``version``: the API version of the request, which names the failure's proto type."""
        request_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        body: dict[str, Any] = {"error": {"code": self.http, "message": self.message, "status": self.status}}
        if self.errors:
            failures = []
            for family, value, msg in self.errors:
                item: dict[str, Any] = {"errorCode": {family: value}, "message": msg}
                if self.quota_delay is not None:
                    item["details"] = {"quotaErrorDetails": {"rateScope": "ACCOUNT",
                                                             "rateName": "Requests per account",
                                                             "retryDelay": f"{self.quota_delay:g}s"}}
                failures.append(item)
            body["error"]["details"] = [{"@type": f"type.googleapis.com/google.ads.googleads.{version}.errors."
                                                  "GoogleAdsFailure", "errors": failures, "requestId": request_id}]
        return JSONResponse(body, status_code=self.http, headers=self.headers)


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


@dataclass(slots=True)
class _Customer:
    id: str
    name: str
    currency: str
    timezone: str
    manager: bool
    account: Account | None
    manager_id: str | None = None


@dataclass(slots=True)
class _Ctx:
    customer: _Customer
    campaign: Any = None
    group: Any = None
    ad: Any = None
    client: _Customer | None = None
    day: date | None = None
    metrics: dict[str, Any] | None = None


# field name -> (owning resource, getter). Owning resource decides both compatibility with
# FROM and where the value goes in the JSON row.
_Getter = Callable[[_Ctx], Any]


def _rn(cid: str, kind: str, ident: str) -> str:
    return f"customers/{cid}/{kind}/{ident}"


def budget_id(campaign_id: str) -> str:
    return str(int(campaign_id) + 5_000_000)


_FIELDS: dict[str, tuple[str, _Getter]] = {
    "customer.id": ("customer", lambda c: c.customer.id),
    "customer.descriptive_name": ("customer", lambda c: c.customer.name),
    "customer.currency_code": ("customer", lambda c: c.customer.currency),
    "customer.time_zone": ("customer", lambda c: c.customer.timezone),
    "customer.status": ("customer", lambda c: "ENABLED"),
    "customer.manager": ("customer", lambda c: c.customer.manager),
    "customer.resource_name": ("customer", lambda c: f"customers/{c.customer.id}"),
    "customer_client.id": ("customer_client", lambda c: c.client.id if c.client else None),
    "customer_client.descriptive_name": ("customer_client", lambda c: c.client.name if c.client else None),
    "customer_client.currency_code": ("customer_client", lambda c: c.client.currency if c.client else None),
    "customer_client.time_zone": ("customer_client", lambda c: c.client.timezone if c.client else None),
    "customer_client.status": ("customer_client", lambda c: "ENABLED"),
    "customer_client.manager": ("customer_client", lambda c: c.client.manager if c.client else None),
    "customer_client.level": ("customer_client",
                              lambda c: 0 if c.client and c.client.id == c.customer.id else 1),
    "customer_client.client_customer": ("customer_client", lambda c: f"customers/{c.client.id}" if c.client else None),
    "customer_client.resource_name": (
        "customer_client", lambda c: _rn(c.customer.id, "customerClients", c.client.id) if c.client else None),
    "campaign.id": ("campaign", lambda c: c.campaign.id),
    "campaign.name": ("campaign", lambda c: c.campaign.name),
    "campaign.status": ("campaign", lambda c: _STATUS[c.campaign.status]),
    "campaign.advertising_channel_type": ("campaign", lambda c: _CHANNEL.get(c.campaign.objective, "SEARCH")),
    "campaign.bidding_strategy_type": ("campaign", lambda c: "MAXIMIZE_CONVERSION_VALUE"),
    "campaign.start_date": ("campaign", lambda c: c.campaign.created.isoformat()),
    "campaign.campaign_budget": ("campaign", lambda c: _rn(c.customer.id, "campaignBudgets",
                                                           budget_id(c.campaign.id))),
    "campaign.resource_name": ("campaign", lambda c: _rn(c.customer.id, "campaigns", c.campaign.id)),
    "campaign_budget.id": ("campaign_budget", lambda c: budget_id(c.campaign.id)),
    "campaign_budget.amount_micros": ("campaign_budget", lambda c: c.campaign.daily_budget_minor * 10 ** (
        6 - currency_exponent(c.customer.currency))),
    "campaign_budget.explicitly_shared": ("campaign_budget", lambda c: False),
    "campaign_budget.delivery_method": ("campaign_budget", lambda c: "STANDARD"),
    "campaign_budget.resource_name": ("campaign_budget", lambda c: _rn(c.customer.id, "campaignBudgets",
                                                                       budget_id(c.campaign.id))),
    "ad_group.id": ("ad_group", lambda c: c.group.id),
    "ad_group.name": ("ad_group", lambda c: c.group.name),
    "ad_group.status": ("ad_group", lambda c: _STATUS[c.group.status]),
    "ad_group.type": ("ad_group", lambda c: "SEARCH_STANDARD"),
    "ad_group.campaign": ("ad_group", lambda c: _rn(c.customer.id, "campaigns", c.group.campaign_id)),
    "ad_group.cpc_bid_micros": ("ad_group", lambda c: 1_500_000),
    "ad_group.resource_name": ("ad_group", lambda c: _rn(c.customer.id, "adGroups", c.group.id)),
    "ad_group_ad.status": ("ad_group_ad", lambda c: _STATUS[c.ad.status]),
    "ad_group_ad.ad_group": ("ad_group_ad", lambda c: _rn(c.customer.id, "adGroups", c.ad.ad_group_id)),
    "ad_group_ad.resource_name": ("ad_group_ad", lambda c: _rn(c.customer.id, "adGroupAds",
                                                               f"{c.ad.ad_group_id}~{c.ad.id}")),
    "ad_group_ad.ad.id": ("ad_group_ad", lambda c: c.ad.id),
    "ad_group_ad.ad.name": ("ad_group_ad", lambda c: c.ad.name),
    "ad_group_ad.ad.type": ("ad_group_ad", lambda c: "RESPONSIVE_SEARCH_AD"),
    "ad_group_ad.ad.resource_name": ("ad_group_ad", lambda c: _rn(c.customer.id, "ads", c.ad.id)),
    "ad_group_ad.ad.final_urls": ("ad_group_ad", lambda c: [f"https://shop.sandbox.omnify.local/p/{c.ad.id}"]),
    "ad_group_ad.ad.responsive_search_ad.headlines": ("ad_group_ad", lambda c: [
        {"text": c.ad.creative.title}, {"text": c.ad.creative.name}]),
    "ad_group_ad.ad.responsive_search_ad.descriptions": ("ad_group_ad", lambda c: [{"text": c.ad.creative.body}]),
    "metrics.cost_micros": ("metrics", lambda c: c.metrics["cost_micros"] if c.metrics else 0),
    "metrics.impressions": ("metrics", lambda c: c.metrics["impressions"] if c.metrics else 0),
    "metrics.clicks": ("metrics", lambda c: c.metrics["clicks"] if c.metrics else 0),
    "metrics.conversions": ("metrics", lambda c: c.metrics["conversions"] if c.metrics else 0.0),
    "metrics.conversions_value": ("metrics", lambda c: c.metrics["conversions_value"] if c.metrics else 0.0),
    "metrics.ctr": ("metrics", lambda c: (c.metrics["clicks"] / c.metrics["impressions"])
                    if c.metrics and c.metrics["impressions"] else 0.0),
    "segments.date": ("segments", lambda c: c.day.isoformat() if c.day else None),
}
_INT64 = {"customer.id", "customer_client.id", "customer_client.level", "campaign.id", "campaign_budget.id",
          "campaign_budget.amount_micros", "ad_group.id", "ad_group.cpc_bid_micros", "ad_group_ad.ad.id",
          "metrics.cost_micros", "metrics.impressions", "metrics.clicks"}
# FROM resource -> resources whose fields may be selected with it (attributed resources).
_COMPATIBLE = {
    "customer": {"customer", "metrics", "segments"},
    "customer_client": {"customer_client", "customer"},
    "campaign": {"campaign", "campaign_budget", "customer", "metrics", "segments"},
    "campaign_budget": {"campaign_budget", "customer"},
    "ad_group": {"ad_group", "campaign", "customer", "metrics", "segments"},
    "ad_group_ad": {"ad_group_ad", "ad_group", "campaign", "customer", "metrics", "segments"},
}
_METRIC_LEVEL = {"campaign": "campaign", "ad_group": "ad_group", "ad_group_ad": "ad", "customer": "campaign"}


class GoogleSandbox(ServedSandbox):
    server_name = "google"

    def __init__(self, config: GoogleSandboxConfig | None = None) -> None:
        self.config = config or GoogleSandboxConfig()
        c = self.config
        self.world = World(WorldConfig(platform="google_ads", seed=c.seed, end=c.end, days=c.days,
                                       accounts=list(c.accounts)))
        self.tokens = TokenStore(prefix="ya29.sbx", access_ttl=c.access_token_ttl)
        self.tokens.register_client(c.client_id, c.client_secret, c.redirect_uris)
        self.injector = FaultInjector(c.faults)
        self.injector.on_expire_tokens(self.tokens.expire_all_access)
        self.journal = RequestJournal()
        self.versions = ServedVersions(POLICY, c.today)
        self.app: Starlette = self._build_app()

    # -- customers -----------------------------------------------------------------
    def customers(self) -> dict[str, _Customer]:
        c = self.config
        out = {c.manager_id: _Customer(c.manager_id, "Omnify Sandbox MCC", "USD", "America/New_York", True, None)}
        for acc in self.world.accounts.values():
            out[acc.id] = _Customer(acc.id, acc.name, acc.currency, acc.timezone, False, acc,
                                    c.manager_id if acc.id in c.managed else None)
        return out

    def accessible(self) -> list[str]:
        """Customers the sandbox user has *direct* access to (the manager and any account not
        under it)."""
        return [cid for cid, cu in self.customers().items() if cu.manager_id is None]

    # -- app -----------------------------------------------------------------------
    def _build_app(self) -> Starlette:
        def applies(path: str) -> bool:
            return path.startswith("/v") and "/o/oauth2" not in path

        return Starlette(
            routes=[
                *control_routes(self.injector, self.journal, on_reset=self.world.reset,
                                extra_state=lambda: {"accessible": self.accessible(), **self.versions.state()},
                                describe=self.world.describe),
                Route("/o/oauth2/v2/auth", self._consent, methods=["GET", "POST"]),
                Route("/token", self._token, methods=["POST"]),
                Route("/revoke", self._revoke, methods=["POST"]),
                Route("/{path:path}", self._ads, methods=["GET", "POST"]),
            ],
            middleware=[Middleware(FaultMiddleware, injector=self.injector, render=self._render_fault,
                                   journal=self.journal, applies=applies)],
        )

    def _render_fault(self, fault: Fault, request: Request) -> Response:
        version = self._version_of(request)
        if fault.kind == "rate_limit":
            return AdsError(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).",
                            [("quotaError", "RESOURCE_TEMPORARILY_EXHAUSTED",
                              f"Too many requests. Retry in {fault.retry_after:g} seconds.")],
                            quota_delay=fault.retry_after).response(version)
        if fault.status == 503:
            return AdsError(503, "UNAVAILABLE", "The service is currently unavailable.").response(version)
        return AdsError(fault.status, "INTERNAL", "Internal error encountered.",
                        [("internalError", "INTERNAL_ERROR", "An internal error has occurred.")]).response(version)

    def _version_of(self, request: Request) -> str:
        first = request.url.path.strip("/").split("/", 1)[0]
        return first if _VERSION_RE.match(first) else POLICY.pinned

    # -- OAuth ---------------------------------------------------------------------
    async def _consent(self, request: Request) -> Response:
        q = request.query_params
        client = self.tokens.client(q.get("client_id", ""))
        redirect_uri = q.get("redirect_uri", "")
        if client is None:
            return HTMLResponse("<h1>Access blocked: Authorization Error</h1><p>Error 401: invalid_client</p>",
                                status_code=401)
        if not redirect_uri or not client.allows_redirect(redirect_uri):
            return HTMLResponse("<h1>Access blocked</h1><p>Error 400: redirect_uri_mismatch</p>", status_code=400)
        state = q.get("state")

        def back(params: dict[str, str]) -> str:
            if state is not None:
                params["state"] = state
            return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(params)}"

        if q.get("response_type") != "code":
            return Response(status_code=302, headers={"location": back({"error": "unsupported_response_type"})})
        scopes = [s for s in q.get("scope", "").split() if s]
        challenge = q.get("code_challenge")
        method = q.get("code_challenge_method")
        if (self.config.require_pkce and not challenge) or (challenge and method not in (None, "S256", "plain")):
            return Response(status_code=302, headers={"location": back({
                "error": "invalid_request", "error_description": "code_challenge (S256) is required"})})

        def approve() -> str:
            code = self.tokens.issue_code(
                client_id=client.client_id, redirect_uri=redirect_uri, scopes=scopes, subject=SANDBOX_SUBJECT,
                code_challenge=challenge, code_challenge_method=method,
                extra={"offline": q.get("access_type") == "offline"},
            )
            return back({"code": code, "scope": " ".join(scopes)})

        def deny() -> str:
            return back({"error": "access_denied"})

        consent = ConsentRequest("Google", self.config.app_name, client.client_id, redirect_uri, scopes, state)
        return await consent_response(request, consent, approve=approve, deny=deny,
                                      auto_approve=self.config.auto_approve)

    async def _client_auth(self, request: Request, form: Mapping[str, str]) -> str:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise OAuthError("invalid_client", "Unauthorized") from None
        self.tokens.authenticate_client(client_id, secret)
        assert client_id is not None
        return client_id

    async def _token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        try:
            client_id = await self._client_auth(request, form)
        except OAuthError:
            return _oauth_error("invalid_client", "Unauthorized", 401)
        grant_type = form.get("grant_type")
        try:
            if grant_type == "authorization_code":
                grant = self.tokens.redeem_code(form.get("code", ""), client_id=client_id,
                                                redirect_uri=form.get("redirect_uri"),
                                                code_verifier=form.get("code_verifier"))
                issued = self.tokens.issue_tokens(client_id=client_id, subject=grant.subject, scopes=grant.scopes,
                                                  with_refresh=bool(grant.extra.get("offline")))
            elif grant_type == "refresh_token":
                issued = self.tokens.refresh(form.get("refresh_token", ""), client_id=client_id)
                issued = type(issued)(issued.access_token, issued.expires_in, None, issued.scopes)
            else:
                return _oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        except OAuthError as exc:
            if grant_type == "refresh_token" and ("revoked" in exc.description or "invalid" in exc.description):
                return _oauth_error("invalid_grant", "Token has been expired or revoked.")
            return _oauth_error(exc.error, "Bad Request" if exc.error == "invalid_grant" else exc.description)
        body: dict[str, Any] = {"access_token": issued.access_token, "expires_in": issued.expires_in,
                                "scope": " ".join(issued.scopes), "token_type": "Bearer"}
        if issued.refresh_token:
            body["refresh_token"] = issued.refresh_token
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def _revoke(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        token = request.query_params.get("token") or form.get("token", "")
        if not self.tokens.revoke(token):
            return _oauth_error("invalid_token", "Token expired or revoked")
        return JSONResponse({})

    # -- Ads API ---------------------------------------------------------------------
    async def _ads(self, request: Request) -> Response:
        try:
            return await self._ads_route(request)
        except AdsError as exc:
            return exc.response(self._version_of(request))

    def _authenticate(self, request: Request) -> TokenInfo:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            raise AdsError(401, "UNAUTHENTICATED", "Request is missing required authentication credential. "
                           "Expected OAuth 2 access token, login cookie or other valid authentication credential.")
        try:
            info = self.tokens.validate(auth[7:].strip())
        except TokenInvalid as exc:
            value = {"expired": "OAUTH_TOKEN_EXPIRED", "revoked": "OAUTH_TOKEN_REVOKED"}.get(
                exc.reason, "OAUTH_TOKEN_INVALID")
            raise AdsError(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected "
                           "OAuth 2 access token, login cookie or other valid authentication credential.",
                           [("authenticationError", value, "Authentication of the request failed.")]) from None
        if ADWORDS_SCOPE not in info.scopes:
            raise AdsError(403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.")
        if not request.headers.get("developer-token"):
            raise AdsError(401, "UNAUTHENTICATED", "The caller does not have permission",
                           [("requestError", "DEVELOPER_TOKEN_PARAMETER_MISSING",
                             "Developer token parameter is missing in the request header.")])
        if request.headers.get("developer-token") != self.config.developer_token:
            raise AdsError(401, "UNAUTHENTICATED", "The caller does not have permission",
                           [("authenticationError", "DEVELOPER_TOKEN_INVALID", "The developer token is not valid.")])
        return info

    def _check_customer(self, request: Request, cid: str) -> _Customer:
        customers = self.customers()
        if not cid.isdigit():
            raise AdsError(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                           [("authenticationError", "CLIENT_CUSTOMER_ID_INVALID",
                             "Client customer ID is not a number.")])
        if cid not in customers:
            raise AdsError(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                           [("authenticationError", "CUSTOMER_NOT_FOUND",
                             "No customer found for the provided customer ID.")])
        login = request.headers.get("login-customer-id")
        if login is not None and not login.isdigit():
            raise AdsError(400, "INVALID_ARGUMENT", "Invalid login-customer-id header (digits only, no dashes).")
        cust = customers[cid]
        # A directly accessible account may name itself (or nobody); a managed one needs its manager.
        ok = (login is None or login == cid) if cust.manager_id is None else login == cust.manager_id
        if not ok:
            raise AdsError(403, "PERMISSION_DENIED", "The caller does not have permission",
                           [("authorizationError", "USER_PERMISSION_DENIED",
                             "User doesn't have permission to access customer. Note: If you're accessing a client "
                             "customer, the manager's customer id must be set in the 'login-customer-id' header.")])
        return cust

    async def _ads_route(self, request: Request) -> Response:
        parts = [p for p in request.path_params["path"].split("/") if p]
        if not parts or not _VERSION_RE.match(parts[0]):
            raise AdsError(404, "NOT_FOUND", f"Method not found: /{request.path_params['path']}")
        status = self.versions.status(parts[0])
        if status == "expired":  # right after a sunset Google still answers, with this
            raise AdsError(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                           [("requestError", "UNSUPPORTED_VERSION",
                             f"Version {parts[0]} is deprecated. Requests to this version will be blocked.")])
        if status == "unknown":  # Google's front end: an HTML 404 for a path it does not route
            return HTMLResponse(_NOT_FOUND_HTML.format(path=html.escape(request.url.path)), status_code=404)
        self._authenticate(request)
        rest = parts[1:]
        if rest == ["customers:listAccessibleCustomers"] and request.method == "GET":
            return JSONResponse({"resourceNames": [f"customers/{cid}" for cid in self.accessible()]})
        if len(rest) == 3 and rest[0] == "customers" and request.method == "POST":
            cust = self._check_customer(request, rest[1])
            try:
                body = await request.json()
            except ValueError:
                raise AdsError(400, "INVALID_ARGUMENT", "Invalid JSON payload received.") from None
            if not isinstance(body, dict):
                raise AdsError(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
            method = rest[2]
            if method == "googleAds:searchStream":
                return JSONResponse(self._search_stream(cust, body))
            if method == "googleAds:search":
                return JSONResponse(self._search(cust, body))
            if method.endswith(":mutate"):
                return JSONResponse(self._mutate(cust, method.removesuffix(":mutate"), body))
        raise AdsError(404, "NOT_FOUND", f"Method not found: {request.method} /{request.path_params['path']}")

    # -- search ----------------------------------------------------------------------
    def _query(self, cust: _Customer, body: Mapping[str, Any]) -> tuple[gaql.Query, list[dict[str, Any]]]:
        try:
            query = gaql.parse(str(body.get("query") or ""))
            return query, self._run(cust, query)
        except gaql.GaqlError as exc:
            raise AdsError(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                           [("queryError", exc.code, str(exc))]) from None

    @staticmethod
    def _mask(query: gaql.Query) -> str:
        return ",".join(".".join(_camel(p) for p in f.split(".")) for f in query.select)

    def _search(self, cust: _Customer, body: Mapping[str, Any]) -> dict[str, Any]:
        """``GoogleAdsService.Search``: fixed-size pages chained by ``nextPageToken``; a
        ``pageSize`` is refused (PAGE_SIZE_NOT_SUPPORTED) and a token only works for the query
        and customer it was issued for."""

        def bad(value: str, message: str) -> AdsError:
            return AdsError(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                            [("requestError", value, message)])

        if body.get("pageSize") is not None:
            raise bad("PAGE_SIZE_NOT_SUPPORTED", "Setting the page size is not supported. Search responses "
                      "will have fixed page size of 10000 rows.")
        text = str(body.get("query") or "")
        fingerprint = hashlib.sha256(f"{cust.id}\n{text}".encode()).hexdigest()[:16]
        start = 0
        token = body.get("pageToken")
        if token:
            if body.get("validateOnly"):
                raise bad("VALIDATE_ONLY_REQUEST_HAS_PAGE_TOKEN", "A validate-only request cannot have a page token.")
            try:
                raw = json.loads(base64.urlsafe_b64decode(str(token) + "=" * (-len(str(token)) % 4)))
                start = int(raw["o"])
                if raw["q"] != fingerprint:
                    raise ValueError("other query")
            except (ValueError, KeyError, TypeError):
                raise bad("INVALID_PAGE_TOKEN", "Page token is invalid.") from None
        query, rows = self._query(cust, body)
        out: dict[str, Any] = {"fieldMask": self._mask(query)}
        if body.get("validateOnly"):
            return out
        size = self.config.search_page_size
        page = rows[start : start + size]
        if page:
            out["results"] = page
        if start + size < len(rows):
            nxt = json.dumps({"q": fingerprint, "o": start + size}).encode()
            out["nextPageToken"] = base64.urlsafe_b64encode(nxt).decode().rstrip("=")
        if (body.get("searchSettings") or {}).get("returnTotalResultsCount"):
            out["totalResultsCount"] = str(len(rows))
        out["queryResourceConsumption"] = str(max(1, len(page)))
        return out

    def _search_stream(self, cust: _Customer, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        query, rows = self._query(cust, body)
        mask = self._mask(query)
        request_id = secrets.token_hex(11)
        size = self.config.stream_batch_size
        batches = [{"results": rows[i : i + size], "fieldMask": mask, "requestId": request_id}
                   for i in range(0, len(rows), size)]
        return batches or [{"fieldMask": mask, "requestId": request_id}]

    def _run(self, cust: _Customer, q: gaql.Query) -> list[dict[str, Any]]:
        if q.resource not in _COMPATIBLE:
            raise gaql.GaqlError("INVALID_RESOURCE_NAME", f"Error in query: unknown resource {q.resource}.")
        for name in [*q.select, *(c.field for c in q.where), *(f for f, _ in q.order_by)]:
            if name not in _FIELDS:
                raise gaql.GaqlError("UNRECOGNIZED_FIELD", f"Unrecognized field in the query: '{name}'.")
            if _FIELDS[name][0] not in _COMPATIBLE[q.resource]:
                raise gaql.GaqlError("PROHIBITED_RESOURCE_TYPE_IN_SELECT_CLAUSE",
                                     f"Cannot select or filter on '{name}' when FROM is '{q.resource}'.")  # noqa: S608
        date_conds = [c for c in q.where if c.field == "segments.date"]
        other = [c for c in q.where if c.field != "segments.date"]
        wants_metrics = any(f.startswith(("metrics.", "segments.")) for f in q.select)
        segmented = "segments.date" in q.select
        if segmented and not date_conds:
            raise gaql.GaqlError("MISSING_DATE_RANGE", "A finite date range on segments.date is required when "
                                 "segments.date is selected.")
        ctxs = self._contexts(cust, q.resource)
        if wants_metrics and q.resource in _METRIC_LEVEL and cust.account is not None:
            ctxs = self._with_metrics(cust, q.resource, ctxs, date_conds, segmented)
        out = [c for c in ctxs if all(gaql.matches(_FIELDS[cond.field][1](c), cond) for cond in other)]
        for name, desc in reversed(q.order_by):
            getter = _FIELDS[name][1]
            out.sort(key=lambda c, g=getter: _sort_key(g(c)), reverse=desc)  # type: ignore[misc]
        if q.limit is not None:
            out = out[: q.limit]
        return [self._render(q.select, c) for c in out]

    def _contexts(self, cust: _Customer, resource: str) -> list[_Ctx]:
        if resource == "customer":
            return [_Ctx(cust)]
        if resource == "customer_client":
            if not cust.manager:
                return [_Ctx(cust, client=cust)]
            children = [c for c in self.customers().values() if c.manager_id == cust.id]
            return [_Ctx(cust, client=cust), *(_Ctx(cust, client=ch) for ch in children)]
        acc = cust.account
        if acc is None:
            return []
        if resource in ("campaign", "campaign_budget"):
            return [_Ctx(cust, campaign=c) for c in acc.campaigns.values()]
        if resource == "ad_group":
            return [_Ctx(cust, campaign=acc.campaigns[g.campaign_id], group=g) for g in acc.ad_groups.values()]
        return [_Ctx(cust, campaign=acc.campaigns[a.campaign_id], group=acc.ad_groups[a.ad_group_id], ad=a)
                for a in acc.ads.values()]

    def _date_range(self, acc: Account, conds: list[gaql.Condition]) -> tuple[date, date]:
        lo, hi = acc.metrics.start, acc.metrics.end
        today = min(datetime.now(UTC).date(), acc.metrics.end)
        for c in conds:
            try:
                values = [date.fromisoformat(str(v)) for v in c.values] if c.op != "DURING" else []
            except ValueError:
                raise gaql.GaqlError("INVALID_VALUE_WITH_BETWEEN_OPERATOR" if c.op == "BETWEEN" else "BAD_VALUE",
                                     f"Error in query: invalid date in {c.field}.") from None
            if c.op == "BETWEEN":
                lo, hi = max(lo, values[0]), min(hi, values[1])
            elif c.op == "=":
                lo, hi = max(lo, values[0]), min(hi, values[0])
            elif c.op in (">=", ">"):
                lo = max(lo, values[0] + timedelta(days=1 if c.op == ">" else 0))
            elif c.op in ("<=", "<"):
                hi = min(hi, values[0] - timedelta(days=1 if c.op == "<" else 0))
            elif c.op == "DURING":
                preset = str(c.values[0])
                m = re.fullmatch(r"LAST_(\d+)_DAYS", preset)
                if m:
                    lo, hi = max(lo, today - timedelta(days=int(m.group(1)))), min(hi, today - timedelta(days=1))
                elif preset == "TODAY":
                    lo, hi = max(lo, today), min(hi, today)
                elif preset == "YESTERDAY":
                    lo, hi = max(lo, today - timedelta(days=1)), min(hi, today - timedelta(days=1))
                else:
                    raise gaql.GaqlError("INVALID_VALUE_WITH_DURING_OPERATOR", f"Unsupported DURING {preset}.")
            else:
                raise gaql.GaqlError("PROHIBITED_FIELD_IN_WHERE_CLAUSE", f"Operator {c.op} on segments.date.")
        return lo, hi

    def _with_metrics(self, cust: _Customer, resource: str, ctxs: list[_Ctx], date_conds: list[gaql.Condition],
                      segmented: bool) -> list[_Ctx]:
        acc = cust.account
        assert acc is not None
        lo, hi = self._date_range(acc, date_conds)
        level = _METRIC_LEVEL[resource]
        rows = acc.metric_rows(lo, hi, level=level)  # type: ignore[arg-type]
        exp = currency_exponent(acc.currency)

        def key_of(c: _Ctx) -> str:
            if resource == "ad_group_ad":
                return str(c.ad.id)
            if resource == "ad_group":
                return str(c.group.id)
            if resource == "customer":
                return "*"
            return str(c.campaign.id)

        per: dict[tuple[str, date | None], dict[str, Any]] = {}
        for i in range(len(rows)):
            ent = "*" if resource == "customer" else rows.entity_ids[i]
            day = rows.days[i] if segmented else None
            m = per.setdefault((ent, day), {"cost_micros": 0, "impressions": 0, "clicks": 0, "conversions": 0.0,
                                            "value_minor": 0})
            m["cost_micros"] += int(rows.spend_minor[i]) * 10 ** (6 - exp)
            m["impressions"] += int(rows.impressions[i])
            m["clicks"] += int(rows.clicks[i])
            m["conversions"] += float(rows.conversions[i])
            m["value_minor"] += int(rows.revenue_minor[i])
        for m in per.values():
            m["conversions_value"] = m["value_minor"] / 10**exp
        out: list[_Ctx] = []
        by_entity = {key_of(c): c for c in ctxs}
        if segmented:
            # Google omits segmented rows without activity.
            for (ent, day), m in sorted(per.items(), key=lambda kv: (kv[0][1] or date.min, kv[0][0])):
                base = by_entity.get(ent)
                if base is not None:
                    out.append(_Ctx(base.customer, base.campaign, base.group, base.ad, base.client, day, m))
            return out
        zero = {"cost_micros": 0, "impressions": 0, "clicks": 0, "conversions": 0.0, "conversions_value": 0.0}
        return [_Ctx(c.customer, c.campaign, c.group, c.ad, c.client, None, per.get((key_of(c), None), zero))
                for c in ctxs]

    @staticmethod
    def _render(select: list[str], ctx: _Ctx) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name in select:
            owner, getter = _FIELDS[name]
            value = getter(ctx)
            if value is None:
                continue
            if name in _INT64 and isinstance(value, int | float):
                value = str(int(value))
            path = [_camel(p) for p in name.split(".")]
            node = row
            for p in path[:-1]:
                node = node.setdefault(p, {})
            node[path[-1]] = value
            if name.startswith("ad_group_ad.ad."):  # the nested ad carries its own resourceName
                row["adGroupAd"]["ad"].setdefault("resourceName", _FIELDS["ad_group_ad.ad.resource_name"][1](ctx))
            # every resource touched carries its resourceName, as Google returns it
            if owner not in ("metrics", "segments"):
                rn_field = f"{owner}.resource_name"
                if rn_field in _FIELDS:
                    row.setdefault(_camel(owner), {}).setdefault("resourceName", _FIELDS[rn_field][1](ctx))
        return row

    # -- mutate ----------------------------------------------------------------------
    def _mutate(self, cust: _Customer, service: str, body: Mapping[str, Any]) -> dict[str, Any]:
        kinds = {"campaigns": "campaigns", "adGroups": "adGroups", "adGroupAds": "adGroupAds",
                 "campaignBudgets": "campaignBudgets"}
        if service not in kinds:
            raise AdsError(404, "NOT_FOUND", f"Method not found: {service}:mutate")
        ops = body.get("operations")
        if not isinstance(ops, list) or not ops:
            raise AdsError(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                           [("requestError", "OPERATIONS_REQUIRED", "At least one operation is required.")])
        content = body.get("responseContentType") or "RESOURCE_NAME_ONLY"
        if content not in ("RESOURCE_NAME_ONLY", "MUTABLE_RESOURCE"):
            raise AdsError(400, "INVALID_ARGUMENT", f"Invalid value at 'response_content_type' ({content!r})")
        acc = cust.account
        planned: list[tuple[str, Callable[[], None]]] = []
        for op in ops:
            if not isinstance(op, dict) or "update" not in op:
                raise AdsError(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                               [("mutateError", "OPERATION_NOT_SUPPORTED",
                                 "Only update operations are supported by this sandbox.")])
            update = op["update"]
            rn = str(update.get("resourceName") or "")
            mask = {_camel(p.strip()) for p in str(op.get("updateMask") or "").split(",") if p.strip()}
            m = re.fullmatch(rf"customers/{cust.id}/{kinds[service]}/([0-9~]+)", rn)
            if acc is None or m is None:
                raise AdsError(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                               [("mutateError", "RESOURCE_NOT_FOUND", f"Resource was not found: {rn}")])
            ident = m.group(1)
            planned.append((rn, self._plan_update(acc, service, ident, update, mask, rn)))
        if body.get("validateOnly"):
            return {}
        for _, apply in planned:
            apply()
        results: list[dict[str, Any]] = []
        for rn, _ in planned:
            item: dict[str, Any] = {"resourceName": rn}
            if content == "MUTABLE_RESOURCE":  # the resource as it is after the change
                item[_RESULT_KEY[service]] = self._resource(cust, service, rn)
            results.append(item)
        return {"results": results}

    def _resource(self, cust: _Customer, service: str, rn: str) -> dict[str, Any]:
        resource = _SERVICE_RESOURCE[service]
        fields = [f for f, (owner, _) in _FIELDS.items() if owner == resource]
        query = gaql.parse(f"SELECT {', '.join(fields)} FROM {resource}")  # noqa: S608 - our own field names
        for row in self._run(cust, query):
            node = row.get(_camel(resource)) or {}
            if node.get("resourceName") == rn:
                return dict(node)
        raise AdsError(400, "INVALID_ARGUMENT", "Resource was not found.")

    def _plan_update(self, acc: Account, service: str, ident: str, update: Mapping[str, Any], mask: set[str],
                     rn: str) -> Callable[[], None]:
        def bad(family: str, value: str, msg: str) -> AdsError:
            return AdsError(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", [(family, value, msg)])

        if not mask:
            raise bad("fieldMaskError", "FIELD_MASK_MISSING", "The field mask must be set for an update.")
        if service == "campaignBudgets":
            if mask != {"amountMicros"}:
                raise bad("fieldMaskError", "FIELD_NOT_FOUND", f"Unsupported update mask {sorted(mask)}.")
            campaign_id = str(int(ident) - 5_000_000)
            if campaign_id not in acc.campaigns:
                raise bad("mutateError", "RESOURCE_NOT_FOUND", f"Resource was not found: {rn}")
            try:
                micros = int(update.get("amountMicros"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise bad("fieldError", "INVALID_VALUE", "amount_micros must be an int64.") from None
            unit = 10 ** (6 - currency_exponent(acc.currency))
            if micros % unit:
                raise bad("campaignBudgetError", "NON_MULTIPLE_OF_MINIMUM_CURRENCY_UNIT",
                          "Budget amount must be a multiple of the minimum currency unit.")
            if micros < 100 * unit:
                raise bad("campaignBudgetError", "MONEY_AMOUNT_LESS_THAN_CURRENCY_MINIMUM_CPC",
                          "Budget amount is too low.")
            return lambda: self._set_budget(campaign_id, micros // unit)
        if mask != {"status"}:
            raise bad("fieldMaskError", "FIELD_NOT_FOUND", f"Unsupported update mask {sorted(mask)}.")
        status = update.get("status")
        if status not in ("ENABLED", "PAUSED"):
            raise bad("fieldError", "INVALID_VALUE", f"Invalid status {status!r}: ENABLED or PAUSED.")
        entity_id = ident
        if service == "adGroupAds":
            group_id, _, entity_id = ident.partition("~")
            if entity_id not in acc.ads or acc.ads[entity_id].ad_group_id != group_id:
                raise bad("mutateError", "RESOURCE_NOT_FOUND", f"Resource was not found: {rn}")
        elif (service == "adGroups" and entity_id not in acc.ad_groups) or (
                service == "campaigns" and entity_id not in acc.campaigns):
            raise bad("mutateError", "RESOURCE_NOT_FOUND", f"Resource was not found: {rn}")
        neutral = "active" if status == "ENABLED" else "paused"
        return lambda: self._set_status(entity_id, neutral)

    def _set_status(self, entity_id: str, status: str) -> None:
        try:
            self.world.set_status(entity_id, status)  # type: ignore[arg-type]
        except EntityNotFound:  # pragma: no cover - validated before
            raise AdsError(400, "INVALID_ARGUMENT", "Resource was not found.") from None

    def _set_budget(self, campaign_id: str, amount_minor: int) -> None:
        self.world.set_budget(campaign_id, amount_minor)


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value))
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, json.dumps(value, sort_keys=True, default=str))
