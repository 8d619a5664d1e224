"""A local Graph API / Marketing API server for the subset Omnify calls.

Faithful where clients notice (so facebook-business, pointed at it, works unchanged):
versioned paths (``/v26.0/...``; only the versions Meta's table serves, an expired one answered
with error 2635 "deprecated version"; with or without a trailing slash), the
access token as ``access_token`` query/form parameter *or* ``Authorization: Bearer|OAuth``,
``appsecret_proof`` checked when sent (required by configuration), field selection with
nested expansion (``creative{id,title}``) and Graph's error for unknown fields, cursor paging
(``paging.cursors.before/after`` + ``paging.next`` only when there is a next page), numbers
as strings in insights, budgets as minor-unit strings, ``{"success": true}`` on writes,
Graph-shaped error objects (HTTP 400 with code/subcode/type/fbtrace_id), and BUC usage
headers that climb with traffic and turn into error 80004 when the budget is spent.

Sandbox-only extensions: faults and state under ``/__sandbox`` (see sandbox_common), and a
``Retry-After`` header on throttling errors in addition to Meta's minute-granular
``estimated_time_to_regain_access`` (so tests can wait seconds, not minutes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.datastructures import FormData, QueryParams
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from omnify.integrations.meta.version import POLICY
from omnify.integrations.money import minor_to_decimal
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
from omnify.integrations.sandbox_data import (
    Account,
    AccountSpec,
    Ad,
    AdGroup,
    Campaign,
    EntityNotFound,
    World,
    WorldConfig,
    default_specs,
)

_VERSION_RE = re.compile(r"^v\d+\.\d+$")
_OBJECTIVES = {"sales": "OUTCOME_SALES", "leads": "OUTCOME_LEADS", "traffic": "OUTCOME_TRAFFIC",
               "awareness": "OUTCOME_AWARENESS", "app_installs": "OUTCOME_APP_PROMOTION"}
_STATUSES = ("ACTIVE", "PAUSED", "DELETED", "ARCHIVED")
MIN_DAILY_BUDGET_MINOR = 100
SANDBOX_USER_ID = "100000000000001"


@dataclass(slots=True)
class MetaSandboxConfig:
    app_id: str = "100200300400500"
    app_secret: str = "sandbox-meta-app-secret"
    app_name: str = "Omnify (sandbox)"
    redirect_uris: tuple[str, ...] = ()  # empty: any redirect URI is accepted
    seed: int = 42
    end: date | None = None
    days: int = 365
    accounts: list[AccountSpec] = field(default_factory=default_specs)
    short_token_ttl: int = 2 * 3600
    long_token_ttl: int = 60 * 86400
    require_appsecret_proof: bool = False
    auto_approve: bool = False
    faults: FaultConfig = field(default_factory=FaultConfig)
    buc_call_limit: int = 100_000  # calls per ad account per window before error 80004
    buc_window_seconds: float = 3600.0
    default_page_size: int = 25
    max_page_size: int = 500
    today: date | None = None  # the day whose version table is served (None: the table's review date)


class GraphError(Exception):
    def __init__(
        self,
        message: str,
        code: int,
        *,
        subcode: int | None = None,
        kind: str = "OAuthException",
        status: int = 400,
        headers: Mapping[str, str] | None = None,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.code, self.subcode, self.kind = message, code, subcode, kind
        self.status, self.headers, self.transient = status, dict(headers or {}), transient

    def response(self) -> JSONResponse:
        err: dict[str, Any] = {"message": self.message, "type": self.kind, "code": self.code,
                               "fbtrace_id": base64.urlsafe_b64encode(secrets.token_bytes(9)).decode()}
        if self.subcode is not None:
            err["error_subcode"] = self.subcode
        if self.transient is not None:
            err["is_transient"] = self.transient
        return JSONResponse({"error": err}, status_code=self.status,
                            headers={"WWW-Authenticate": 'OAuth "Facebook Platform" "invalid_request"',
                                     **self.headers})


#: Meta's throttling errors, selectable as the ``throttle`` fault: (message, code, subcode).
#: 80004: the ad account's Business Use Case budget; 17: the user's request limit; 613: the
#: per-endpoint rate limit. All come with ``X-Business-Use-Case-Usage`` naming the account.
THROTTLES: dict[str, tuple[str, int, int | None]] = {
    "80004": ("(#80004) There have been too many calls to this ad-account. Wait a bit and try again. For more "
              "info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting"
              "#ads-management.", 80004, 2446079),
    "17": ("(#17) User request limit reached", 17, 2446079),
    "613": ("(#613) Calls to this api have exceeded the rate limit.", 613, 1487742),
}


def _no_node(obj_id: str) -> GraphError:
    return GraphError(
        f"Unsupported get request. Object with ID '{obj_id}' does not exist, cannot be loaded due to missing "
        "permissions, or does not support this operation.", 100, subcode=33, kind="GraphMethodException",
    )


# ------------------------------------------------------------------------------ field selection
FieldSpec = dict[str, "FieldSpec | None"]


def parse_fields(text: str | None) -> FieldSpec:
    """``id,name,creative{id,title},insights.limit(5){spend}`` -> nested dict (modifiers dropped)."""
    spec: FieldSpec = {}
    if not text:
        return spec
    stack: list[FieldSpec] = [spec]
    token = ""
    last: str | None = None

    def flush() -> None:
        nonlocal token, last
        name = token.strip().split(".", 1)[0]
        if name:
            stack[-1][name] = None
            last = name
        token = ""

    for ch in text:
        if ch == ",":
            flush()
            last = None
        elif ch == "{":
            flush()
            if last is None:
                raise GraphError("(#100) Syntax error in the fields parameter", 100)
            child: FieldSpec = {}
            stack[-1][last] = child
            stack.append(child)
        elif ch == "}":
            flush()
            if len(stack) == 1:
                raise GraphError("(#100) Syntax error in the fields parameter", 100)
            stack.pop()
        else:
            token += ch
    flush()
    if len(stack) != 1:
        raise GraphError("(#100) Syntax error in the fields parameter", 100)
    return spec


def select(node_type: str, full: Mapping[str, Any], spec: FieldSpec, default: Iterable[str] = ("id",),
           nested: Mapping[str, Callable[[FieldSpec], Any]] | None = None) -> dict[str, Any]:
    wanted: FieldSpec = spec or dict.fromkeys(default)
    out: dict[str, Any] = {}
    if "id" in full and "id" not in wanted:  # Graph always returns a node's id
        out["id"] = full["id"]
    for name, sub in wanted.items():
        if nested and name in nested:
            out[name] = nested[name](sub or {})
            continue
        if name not in full:
            raise GraphError(f"(#100) Tried accessing nonexisting field ({name}) on node type ({node_type})", 100)
        if full[name] is not None:
            out[name] = full[name]
    return out


def _ts(value: datetime | date) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
    return f"{value.isoformat()}T00:00:00+0000"


# ------------------------------------------------------------------------------ the sandbox
class MetaSandbox(ServedSandbox):
    """State + ASGI app. ``MetaSandbox().server().start()`` serves it on a free port."""

    server_name = "meta"

    def __init__(self, config: MetaSandboxConfig | None = None) -> None:
        self.config = config or MetaSandboxConfig()
        c = self.config
        self.world = World(WorldConfig(platform="meta_ads", seed=c.seed, end=c.end, days=c.days,
                                       accounts=list(c.accounts)))
        self.tokens = TokenStore(prefix="EAAsbx", access_ttl=c.short_token_ttl)
        self.tokens.register_client(c.app_id, c.app_secret, c.redirect_uris)
        self.injector = FaultInjector(c.faults)
        self.injector.on_expire_tokens(self.tokens.expire_all_access)
        self.journal = RequestJournal()
        self.versions = ServedVersions(POLICY, c.today)
        self._usage: dict[str, deque[float]] = {}
        self._usage_lock = threading.Lock()
        self.app: Starlette = self._build_app()

    def reset(self) -> None:
        self.world.reset()
        with self._usage_lock:
            self._usage.clear()

    # -- app -----------------------------------------------------------------------
    def _build_app(self) -> Starlette:
        def applies(path: str) -> bool:
            return "/dialog/" not in path and "/oauth/" not in path

        routes = [
            *control_routes(self.injector, self.journal, on_reset=self.reset,
                            extra_state=lambda: {"accounts": list(self.world.accounts), **self.versions.state()},
                            describe=self.world.describe),
            Route("/{path:path}", self._dispatch, methods=["GET", "POST", "DELETE"]),
        ]
        return Starlette(routes=routes, middleware=[
            Middleware(FaultMiddleware, injector=self.injector, render=self._render_fault,
                       journal=self.journal, applies=applies),
        ])

    def _render_fault(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "rate_limit":
            minutes = max(1, math.ceil(fault.retry_after / 60))
            usage = self._usage_header(self._account_in_path(request.url.path) or "0", pct=100,
                                       regain_minutes=minutes)
            headers = {"X-Business-Use-Case-Usage": usage, "Retry-After": f"{fault.retry_after:g}"}
            message, code, subcode = THROTTLES.get(fault.variant or "80004", THROTTLES["80004"])
            return GraphError(message, code, subcode=subcode, headers=headers, transient=True).response()
        return GraphError("An unexpected error has occurred. Please retry your request later.", 2,
                          status=fault.status, transient=True).response()

    @staticmethod
    def _account_in_path(path: str) -> str | None:
        m = re.search(r"/act_(\d+)", path)
        return m.group(1) if m else None

    async def _dispatch(self, request: Request) -> Response:
        try:
            return await self._route(request)
        except GraphError as exc:
            return exc.response()

    async def _route(self, request: Request) -> Response:
        parts = [p for p in request.path_params["path"].split("/") if p]
        if parts and _VERSION_RE.match(parts[0]):
            status = self.versions.status(parts[0])
            if status == "expired":  # what Graph answers for a version past its expiration
                raise GraphError(f"(#2635) You are calling a deprecated version of the Ads API. Please update to "
                                 f"the latest version: {self.versions.latest}.", 2635)
            if status == "unknown":
                raise _no_node(parts[0])
            parts = parts[1:]
        if parts == ["dialog", "oauth"] and request.method in ("GET", "POST"):
            return await self._dialog(request)
        if parts == ["oauth", "access_token"]:
            return self._access_token(await self._params(request))
        params = await self._params(request)
        if not parts:
            raise GraphError("Unsupported get request.", 100, kind="GraphMethodException")
        token = self._authenticate(request, params)
        method = request.method
        node, edge = parts[0], (parts[1] if len(parts) > 1 else None)
        if len(parts) > 2:
            raise GraphError("Unknown path components: /" + "/".join(parts[2:]), 2500)
        if node == "me":
            return self._me(method, edge, params, token, request)
        if node.startswith("act_"):
            acc = self._account(node.removeprefix("act_"), token)
            headers = self._count_call(acc.id)
            if method != "GET":
                raise GraphError("Unsupported post request.", 100, subcode=33, kind="GraphMethodException")
            if edge is None:
                body: Any = select("AdAccount", self._account_node(acc), parse_fields(params.get("fields")))
            elif edge == "campaigns":
                body = self._list(request, params, [self._campaign_node(acc, c) for c in acc.campaigns.values()],
                                  "Campaign")
            elif edge == "adsets":
                body = self._list(request, params, [self._adset_node(acc, g) for g in acc.ad_groups.values()],
                                  "AdSet")
            elif edge == "ads":
                body = self._list(request, params, [self._ad_node(acc, a) for a in acc.ads.values()], "Ad",
                                  lambda node: self._ad_nested(acc, node["id"]))
            elif edge == "insights":
                body = self._list(request, params, self._insights(acc, params), "AdsInsights",
                                  default_fields=("date_start", "date_stop", "account_id", "spend", "impressions"))
            else:
                raise GraphError(f"(#100) Unknown edge ({edge}) on node type (AdAccount)", 100)
            return JSONResponse(body, headers=headers)
        return self._object(method, node, edge, params, token)

    async def _params(self, request: Request) -> dict[str, str]:
        params: dict[str, str] = dict(request.query_params)
        if request.method in ("POST", "DELETE"):
            ctype = request.headers.get("content-type", "")
            if ctype.startswith("application/json"):
                try:
                    data = await request.json()
                except ValueError:
                    raise GraphError("(#100) Invalid JSON in request body", 100) from None
                if isinstance(data, dict):
                    params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()})
            elif ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
                form: FormData = await request.form()
                params.update({k: str(v) for k, v in form.items()})
        return params

    # -- auth ----------------------------------------------------------------------
    def _authenticate(self, request: Request, params: Mapping[str, str]) -> TokenInfo:
        token = params.get("access_token")
        auth = request.headers.get("authorization", "")
        if not token and auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() in ("bearer", "oauth"):
                token = value.strip()
        if not token:
            raise GraphError("An active access token must be used to query information about the current user.",
                             2500)
        try:
            info = self.tokens.validate(token)
        except TokenInvalid as exc:
            if exc.reason == "expired":
                raise GraphError("Error validating access token: Session has expired.", 190, subcode=463) from None
            if exc.reason == "revoked":
                raise GraphError("Error validating access token: The user has not authorized application "
                                 f"{self.config.app_id}.", 190, subcode=458) from None
            raise GraphError("Invalid OAuth access token - Cannot parse access token", 190) from None
        proof = params.get("appsecret_proof")
        expected = hmac.new(self.config.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
        if proof is not None and not hmac.compare_digest(proof.encode(), expected.encode()):
            raise GraphError("Invalid appsecret_proof provided in the API argument", 100, kind="GraphMethodException")
        if proof is None and self.config.require_appsecret_proof:
            raise GraphError("API calls from the server require an appsecret_proof argument", 100,
                             kind="GraphMethodException")
        return info

    async def _dialog(self, request: Request) -> Response:
        q = request.query_params
        client = self.tokens.client(q.get("client_id", ""))
        redirect_uri = q.get("redirect_uri", "")
        if client is None:
            return HTMLResponse("<h1>Invalid App ID</h1><p>The provided app ID does not look like a valid app ID.</p>",
                                status_code=400)
        if not redirect_uri or not client.allows_redirect(redirect_uri):
            return HTMLResponse("<h1>URL blocked</h1><p>This redirect failed because the redirect URI is not "
                                "whitelisted in the app's Client OAuth Settings.</p>", status_code=400)
        scopes = [s for s in re.split(r"[,\s]+", q.get("scope", "")) if s]
        state = q.get("state")

        def back(extra: dict[str, str]) -> str:
            if state is not None:
                extra["state"] = state
            return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(extra)}"

        def approve() -> str:
            code = self.tokens.issue_code(client_id=client.client_id, redirect_uri=redirect_uri, scopes=scopes,
                                          subject=SANDBOX_USER_ID)
            return back({"code": code}) + "#_=_"

        def deny() -> str:
            return back({"error": "access_denied", "error_code": "200", "error_description": "Permissions error",
                         "error_reason": "user_denied"}) + "#_=_"

        consent = ConsentRequest("Facebook", self.config.app_name, client.client_id, redirect_uri, scopes, state)
        return await consent_response(request, consent, approve=approve, deny=deny,
                                      auto_approve=self.config.auto_approve)

    def _access_token(self, params: Mapping[str, str]) -> Response:
        client_id = params.get("client_id")
        try:
            self.tokens.authenticate_client(client_id, params.get("client_secret"))
        except OAuthError:
            raise GraphError("Error validating client secret.", 1, kind="OAuthException", transient=False) from None
        assert client_id is not None
        c = self.config
        if params.get("grant_type") == "fb_exchange_token":
            current = params.get("fb_exchange_token", "")
            try:
                info = self.tokens.validate(current)
            except TokenInvalid as exc:
                if exc.reason == "expired":
                    raise GraphError("Error validating access token: Session has expired.", 190,
                                     subcode=463) from None
                raise GraphError("Invalid OAuth access token - Cannot parse access token", 190) from None
            issued = self.tokens.issue_tokens(client_id=client_id, subject=info.subject, scopes=info.scopes,
                                              access_ttl=c.long_token_ttl, with_refresh=False)
        else:
            code = params.get("code")
            if not code:
                raise GraphError("Missing authorization code", 100)
            try:
                grant = self.tokens.redeem_code(code, client_id=client_id, redirect_uri=params.get("redirect_uri"))
            except OAuthError as exc:
                if "redirect_uri" in exc.description:
                    raise GraphError("Error validating verification code. Please make sure your redirect_uri is "
                                     "identical to the one you used in the OAuth dialog request", 100,
                                     subcode=36008) from None
                raise GraphError("This authorization code has been used.", 100, subcode=36009) from None
            issued = self.tokens.issue_tokens(client_id=client_id, subject=grant.subject, scopes=grant.scopes,
                                              access_ttl=c.short_token_ttl, with_refresh=False)
        return JSONResponse({"access_token": issued.access_token, "token_type": "bearer",
                             "expires_in": issued.expires_in})

    def _account(self, account_id: str, token: TokenInfo) -> Account:
        try:
            return self.world.account(account_id)
        except EntityNotFound:
            raise _no_node(f"act_{account_id}") from None

    # -- usage / throttling ---------------------------------------------------------
    def _count_call(self, account_id: str) -> dict[str, str]:
        now = time.monotonic()
        c = self.config
        with self._usage_lock:
            calls = self._usage.setdefault(account_id, deque())
            while calls and calls[0] < now - c.buc_window_seconds:
                calls.popleft()
            refused = len(calls) >= c.buc_call_limit
            if not refused:
                calls.append(now)
            used = len(calls)
            oldest = calls[0]
        pct = min(100, math.floor(used * 100 / c.buc_call_limit))
        if refused:
            wait = max(0.1, oldest + c.buc_window_seconds - now)
            header = self._usage_header(account_id, pct=100, regain_minutes=max(1, math.ceil(wait / 60)))
            raise GraphError(
                "(#80004) There have been too many calls to this ad-account. Wait a bit and try again.",
                80004, subcode=2446079, headers={"X-Business-Use-Case-Usage": header, "Retry-After": f"{wait:.3f}"},
            )
        return {"X-Business-Use-Case-Usage": self._usage_header(account_id, pct=pct, regain_minutes=0),
                "X-Ad-Account-Usage": json.dumps({"acc_id_util_pct": float(pct), "reset_time_duration": 0,
                                                  "ads_api_access_tier": "standard_access"})}

    @staticmethod
    def _usage_header(account_id: str, *, pct: int, regain_minutes: int) -> str:
        return json.dumps({account_id: [{
            "type": "ads_management", "call_count": pct, "total_cputime": max(pct // 2, 1 if pct else 0),
            "total_time": max(pct // 2, 1 if pct else 0), "estimated_time_to_regain_access": regain_minutes,
            "ads_api_access_tier": "standard_access",
        }]})

    # -- /me -------------------------------------------------------------------------
    def _me(self, method: str, edge: str | None, params: Mapping[str, str], token: TokenInfo,
            request: Request) -> Response:
        if edge is None and method == "GET":
            full = {"id": token.subject, "name": "Sandbox Advertiser", "email": "advertiser@sandbox.omnify.local"}
            return JSONResponse(select("User", full, parse_fields(params.get("fields")), default=("id", "name")))
        if edge == "permissions" and method == "GET":
            return JSONResponse({"data": [{"permission": s, "status": "granted"} for s in token.scopes]})
        if edge == "permissions" and method == "DELETE":
            self.tokens.revoke_subject(token.client_id, token.subject)
            return JSONResponse({"success": True})
        if edge == "adaccounts" and method == "GET":
            nodes = [self._account_node(a) for a in self.world.accounts.values()]
            return JSONResponse(self._list(request, params, nodes, "AdAccount"))
        raise GraphError(f"(#100) Unknown path on node type (User): {edge}", 100)

    # -- objects ----------------------------------------------------------------------
    def _object(self, method: str, node: str, edge: str | None, params: Mapping[str, str],
                token: TokenInfo) -> Response:
        try:
            acc, level, entity = self.world.find(node)
        except EntityNotFound:
            raise _no_node(node) from None
        headers = self._count_call(acc.id)
        if edge is not None:
            raise GraphError(f"(#100) Unknown edge ({edge})", 100)
        if method == "GET":
            if level == "campaign":
                body = select("Campaign", self._campaign_node(acc, entity), parse_fields(params.get("fields")))
            elif level == "ad_group":
                body = select("AdSet", self._adset_node(acc, entity), parse_fields(params.get("fields")))
            else:
                body = select("Ad", self._ad_node(acc, entity), parse_fields(params.get("fields")),
                              nested=self._ad_nested(acc, entity.id))
            return JSONResponse(body, headers=headers)
        if method == "POST":
            self._update(acc, level, entity, params)
            return JSONResponse({"success": True}, headers=headers)
        raise GraphError("Unsupported delete request.", 100, subcode=33, kind="GraphMethodException")

    def _update(self, acc: Account, level: str, entity: Campaign | AdGroup | Ad, params: Mapping[str, str]) -> None:
        known = {"status", "daily_budget", "name", "access_token", "appsecret_proof", "execution_options"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise GraphError(f"(#100) Param {unknown[0]} is not a valid parameter for this object", 100)
        status = params.get("status")
        budget = params.get("daily_budget")
        if status is None and budget is None and "name" not in params:
            raise GraphError("(#100) No fields to update", 100)
        if status is not None and status not in _STATUSES:
            raise GraphError(f"(#100) Param status must be one of {{{', '.join(_STATUSES)}}}", 100)
        new_budget: int | None = None
        if budget is not None:
            if level == "ad":
                raise GraphError("(#100) Param daily_budget is not a valid parameter for this object", 100)
            try:
                new_budget = int(budget)
            except ValueError:
                raise GraphError("(#100) Param daily_budget must be an integer", 100) from None
            cbo = isinstance(entity, AdGroup) and bool(acc.campaigns[entity.campaign_id].daily_budget_minor)
            if level == "ad_group" and cbo:
                raise GraphError("Your campaign uses campaign budget optimization, so you can't set a budget "
                                 "for this ad set.", 100, subcode=1885621, kind="OAuthException")
            if new_budget < MIN_DAILY_BUDGET_MINOR:
                raise GraphError("Your budget is too low. The minimum budget for this ad set is "
                                 f"{minor_to_decimal(MIN_DAILY_BUDGET_MINOR, acc.currency)} {acc.currency}.", 100,
                                 subcode=1885272)
        if "name" in params:
            entity.name = params["name"]
        if status is not None:
            self.world.set_status(entity.id, status.lower())  # type: ignore[arg-type]
        if new_budget is not None:
            self.world.set_budget(entity.id, new_budget)

    # -- renderers --------------------------------------------------------------------
    def _account_node(self, acc: Account) -> dict[str, Any]:
        spent = int(acc.metrics.spend_minor.sum())
        return {"id": f"act_{acc.id}", "account_id": acc.id, "name": acc.name, "currency": acc.currency,
                "timezone_name": acc.timezone, "account_status": 1, "amount_spent": str(spent),
                "created_time": _ts(acc.created), "business": {"id": "200300400500600", "name": "Sandbox Business"}}

    def _campaign_node(self, acc: Account, c: Campaign) -> dict[str, Any]:
        return {"id": c.id, "account_id": acc.id, "name": c.name, "status": c.status.upper(),
                "configured_status": c.status.upper(), "effective_status": c.status.upper(),
                "objective": _OBJECTIVES.get(c.objective, "OUTCOME_SALES"), "buying_type": "AUCTION",
                "daily_budget": str(c.daily_budget_minor) if c.daily_budget_minor else None,
                "lifetime_budget": "0", "special_ad_categories": [], "created_time": _ts(c.created),
                "start_time": _ts(c.created), "updated_time": _ts(c.updated_at)}

    def _adset_node(self, acc: Account, g: AdGroup) -> dict[str, Any]:
        camp = acc.campaigns[g.campaign_id]
        effective = g.status.upper()
        if effective == "ACTIVE" and camp.status != "active":
            effective = "CAMPAIGN_PAUSED"
        t = g.targeting
        return {"id": g.id, "account_id": acc.id, "campaign_id": g.campaign_id, "name": g.name,
                "status": g.status.upper(), "configured_status": g.status.upper(), "effective_status": effective,
                "daily_budget": str(g.daily_budget_minor) if g.daily_budget_minor else None,
                "lifetime_budget": "0", "bid_strategy": "LOWEST_COST_WITHOUT_CAP", "billing_event": "IMPRESSIONS",
                "optimization_goal": "OFFSITE_CONVERSIONS",
                "targeting": {"geo_locations": {"countries": list(t.get("geo", []))},
                              "age_min": t.get("age_min"), "age_max": t.get("age_max")},
                "created_time": _ts(g.created), "updated_time": _ts(g.updated_at)}

    def _ad_node(self, acc: Account, a: Ad) -> dict[str, Any]:
        effective = a.status.upper()
        if effective == "ACTIVE" and acc.ad_groups[a.ad_group_id].status != "active":
            effective = "ADSET_PAUSED"
        if effective == "ACTIVE" and acc.campaigns[a.campaign_id].status != "active":
            effective = "CAMPAIGN_PAUSED"
        return {"id": a.id, "account_id": acc.id, "campaign_id": a.campaign_id, "adset_id": a.ad_group_id,
                "name": a.name, "status": a.status.upper(), "configured_status": a.status.upper(),
                "effective_status": effective, "creative": {"id": a.creative.id},
                "created_time": _ts(a.created), "updated_time": _ts(a.updated_at)}

    def _ad_nested(self, acc: Account, ad_id: str) -> dict[str, Callable[[FieldSpec], Any]]:
        """``creative`` expands (``creative{title,body}``) instead of returning only its id."""

        def creative(spec: FieldSpec) -> Any:
            cr = acc.ads[ad_id].creative
            full = {"id": cr.id, "account_id": acc.id, "name": cr.name, "title": cr.title, "body": cr.body,
                    "image_url": cr.image_url, "thumbnail_url": cr.image_url, "video_id": None,
                    "call_to_action_type": cr.call_to_action, "object_type": "SHARE", "status": "ACTIVE"}
            return select("AdCreative", full, spec)

        return {"creative": creative}

    # -- listing and paging ---------------------------------------------------------
    def _list(
        self,
        request: Request,
        params: Mapping[str, str],
        nodes: list[dict[str, Any]],
        node_type: str,
        nested: Callable[[dict[str, Any]], Mapping[str, Callable[[FieldSpec], Any]]] | None = None,
        default_fields: Iterable[str] = ("id",),
    ) -> dict[str, Any]:
        spec = parse_fields(params.get("fields"))
        try:
            limit = int(params.get("limit", self.config.default_page_size))
        except ValueError:
            raise GraphError("(#100) Param limit must be an integer", 100) from None
        limit = max(1, min(limit, self.config.max_page_size))
        start = 0
        if params.get("after"):
            start = _decode_cursor(params["after"]) + 1
        elif params.get("before"):
            start = max(0, _decode_cursor(params["before"]) - limit)
        page = nodes[start : start + limit]
        data = [select(node_type, node, spec, default=default_fields, nested=nested(node) if nested else None)
                for node in page]
        body: dict[str, Any] = {"data": data}
        if page:
            end = start + len(page) - 1
            paging: dict[str, Any] = {"cursors": {"before": _encode_cursor(start), "after": _encode_cursor(end)}}
            if end + 1 < len(nodes):
                paging["next"] = self._page_url(request, {"after": _encode_cursor(end), "limit": str(limit)})
            if start > 0:
                paging["previous"] = self._page_url(request, {"before": _encode_cursor(start), "limit": str(limit)})
            body["paging"] = paging
        if params.get("summary") in ("true", "1", "total_count"):
            body["summary"] = {"total_count": len(nodes)}
        return body

    @staticmethod
    def _page_url(request: Request, changes: Mapping[str, str]) -> str:
        q = QueryParams(request.query_params)
        items = [(k, v) for k, v in q.multi_items() if k not in ("after", "before", "limit")]
        items += list(changes.items())
        return str(request.url.replace(query=urlencode(items)))

    # -- insights -------------------------------------------------------------------
    def _insights(self, acc: Account, params: Mapping[str, str]) -> list[dict[str, Any]]:
        level = params.get("level", "account")
        if level not in ("ad", "adset", "campaign", "account"):
            raise GraphError("(#100) level must be one of the following values: ad, adset, campaign, account", 100)
        since, until = self._time_range(acc, params)
        inc = params.get("time_increment", "all_days")
        daily = inc == "1"
        if not daily and inc not in ("all_days", "monthly"):
            raise GraphError("(#100) time_increment must be 1, monthly or all_days in this sandbox", 100)
        neutral = {"ad": "ad", "adset": "ad_group", "campaign": "campaign", "account": "campaign"}[level]
        rows = acc.metric_rows(since, until, level=neutral)  # type: ignore[arg-type]
        # aggregate: key -> sums
        buckets: dict[tuple[str, date], list[float]] = {}
        for i in range(len(rows)):
            entity = rows.entity_ids[i] if level != "account" else acc.id
            day = rows.days[i] if daily else since
            b = buckets.setdefault((entity, day), [0, 0, 0, 0, 0.0, 0])
            b[0] += int(rows.spend_minor[i])
            b[1] += int(rows.impressions[i])
            b[2] += int(rows.reach[i])
            b[3] += int(rows.clicks[i])
            b[4] += float(rows.conversions[i])
            b[5] += int(rows.revenue_minor[i])
        out = []
        for (entity, day), (spend, impr, reach, clicks, conv, rev) in buckets.items():
            stop = day if daily else until
            row: dict[str, Any] = {
                "account_id": acc.id, "account_name": acc.name, "account_currency": acc.currency,
                "date_start": day.isoformat(), "date_stop": stop.isoformat(),
                "spend": str(minor_to_decimal(int(spend), acc.currency)), "impressions": str(int(impr)),
                "reach": str(int(reach)), "frequency": f"{(impr / reach) if reach else 0:.6f}",
                "clicks": str(int(clicks)),
                "ctr": f"{(clicks * 100 / impr) if impr else 0:.6f}",
                "cpm": f"{(spend / 100 * 1000 / impr) if impr else 0:.6f}",
            }
            actions = [{"action_type": "link_click", "value": str(int(clicks))}] if clicks else []
            values = []
            if conv:
                n = f"{conv:g}"
                v = str(minor_to_decimal(int(rev), acc.currency))
                actions += [{"action_type": t, "value": n} for t in
                            ("offsite_conversion.fb_pixel_purchase", "omni_purchase", "purchase")]
                values = [{"action_type": t, "value": v} for t in
                          ("offsite_conversion.fb_pixel_purchase", "omni_purchase", "purchase")]
            row["actions"] = actions or None
            row["action_values"] = values or None
            self._insight_ids(acc, level, entity, row)
            out.append(row)
        return out

    @staticmethod
    def _insight_ids(acc: Account, level: str, entity: str, row: dict[str, Any]) -> None:
        row.update({"campaign_id": None, "campaign_name": None, "adset_id": None, "adset_name": None,
                    "ad_id": None, "ad_name": None})
        if level == "ad":
            ad = acc.ads[entity]
            row.update({"ad_id": ad.id, "ad_name": ad.name, "adset_id": ad.ad_group_id,
                        "adset_name": acc.ad_groups[ad.ad_group_id].name, "campaign_id": ad.campaign_id,
                        "campaign_name": acc.campaigns[ad.campaign_id].name})
        elif level == "adset":
            g = acc.ad_groups[entity]
            row.update({"adset_id": g.id, "adset_name": g.name, "campaign_id": g.campaign_id,
                        "campaign_name": acc.campaigns[g.campaign_id].name})
        elif level == "campaign":
            row.update({"campaign_id": entity, "campaign_name": acc.campaigns[entity].name})

    def _time_range(self, acc: Account, params: Mapping[str, str]) -> tuple[date, date]:
        today = min(datetime.now(UTC).date(), acc.metrics.end)
        raw = params.get("time_range")
        if raw:
            try:
                tr = json.loads(raw)
                since, until = date.fromisoformat(tr["since"]), date.fromisoformat(tr["until"])
            except (ValueError, KeyError, TypeError):
                raise GraphError("(#100) time_range must be a JSON object with since and until as YYYY-MM-DD",
                                 100) from None
            if since > until:
                raise GraphError("(#100) time_range: since must be on or before until", 100)
            if (until - since).days > 37 * 31:
                raise GraphError("(#3018) The start date of the time range cannot be beyond 37 months from the "
                                 "current date", 3018)
            return since, until
        preset = params.get("date_preset", "last_30d")
        m = re.fullmatch(r"last_(\d+)d", preset)
        if m:
            n = int(m.group(1))
            return today - timedelta(days=n), today - timedelta(days=1)
        if preset == "today":
            return today, today
        if preset == "yesterday":
            return today - timedelta(days=1), today - timedelta(days=1)
        if preset == "maximum":
            return acc.metrics.start, today
        raise GraphError(f"(#100) date_preset {preset} is not supported by this sandbox", 100)


def _encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"idx:{index}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("idx:"):
            raise ValueError(raw)
        return int(raw[4:])
    except (ValueError, UnicodeDecodeError):
        raise GraphError("(#100) The after/before cursor is invalid", 100) from None
