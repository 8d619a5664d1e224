"""A local TikTok API for Business (v1.3) server over the shared sandbox world.

It implements the subset Omnify calls, in TikTok's shape, so the connector and TikTok's
official Python SDK (``business_api_client``, pointed at ``url``) both work unchanged:

* ``/portal/auth`` consent screen -> redirect with ``auth_code``/``code``/``state``;
* ``/open_api/v1.3/oauth2/access_token|refresh_token|revoke_token/`` and ``oauth2/advertiser/get/``;
* ``advertiser/info``, ``campaign|adgroup|ad/get`` with ``page_info`` paging, ``fields``
  projection and ``filtering`` by ids; ``report/integrated/get`` (BASIC, AUCTION_* levels,
  ``stat_time_day``, 30-day span limit, decimal-string money);
* ``campaign|adgroup|ad/status/update``, ``campaign/update`` (budget) and ``adgroup/budget/update``,
  which change the world so later reads (metrics included) reflect them.

Errors are TikTok envelopes, HTTP 200 with a non-zero ``code`` (expired token 40102,
revoked/invalid token 40105, no permission 40001, bad parameter 40002, rate limit 40100);
injected 5xx faults answer with the HTTP status and code 50000.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

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
    ServedVersions,
    TokenInfo,
    TokenInvalid,
    TokenStore,
    consent_response,
    control_routes,
)
from omnify.integrations.sandbox_data import Account, EntityNotFound, World, WorldConfig
from omnify.integrations.tiktok import mapping as m
from omnify.integrations.tiktok.version import POLICY

P = m.API_PREFIX
SCOPES = [1, 2, 3, 4, 6]  # TikTok reports scopes as numeric permission ids
DEFAULT_APP_ID = "7000000000000000001"
DEFAULT_SECRET = "sandbox-tiktok-app-secret"

_OPERATION = {"active": "ENABLE", "paused": "DISABLE", "archived": "DISABLE", "deleted": "DISABLE"}
_STATUS_FROM_OPERATION = {"ENABLE": "active", "DISABLE": "paused", "DELETE": "deleted"}
_SECONDARY = {
    "campaign": {
        "active": "CAMPAIGN_STATUS_ENABLE",
        "paused": "CAMPAIGN_STATUS_DISABLE",
        "archived": "CAMPAIGN_STATUS_DISABLE",
        "deleted": "CAMPAIGN_STATUS_DELETE",
    },
    "ad_group": {
        "active": "ADGROUP_STATUS_DELIVERY_OK",
        "paused": "ADGROUP_STATUS_DISABLE",
        "archived": "ADGROUP_STATUS_DISABLE",
        "deleted": "ADGROUP_STATUS_DELETE",
    },
    "ad": {
        "active": "AD_STATUS_DELIVERY_OK",
        "paused": "AD_STATUS_DISABLE",
        "archived": "AD_STATUS_DISABLE",
        "deleted": "AD_STATUS_DELETE",
    },
}
_OBJECTIVE = {
    "sales": "WEB_CONVERSIONS",
    "leads": "LEAD_GENERATION",
    "traffic": "TRAFFIC",
    "awareness": "REACH",
    "app_installs": "APP_PROMOTION",
}
_DATA_LEVELS = {
    "AUCTION_AD": "ad",
    "AUCTION_ADGROUP": "ad_group",
    "AUCTION_CAMPAIGN": "campaign",
    "AUCTION_ADVERTISER": "advertiser",
}
_ID_DIMENSION = {
    "ad": "ad_id",
    "ad_group": "adgroup_id",
    "campaign": "campaign_id",
    "advertiser": "advertiser_id",
}
_KNOWN_METRICS = frozenset(
    {
        "spend",
        "impressions",
        "clicks",
        "conversion",
        "total_complete_payment_rate",
        "complete_payment",
        "reach",
        "frequency",
        "ctr",
        "cpc",
        "cpm",
        "cost_per_conversion",
        "currency",
        "campaign_id",
        "campaign_name",
        "adgroup_id",
        "adgroup_name",
        "ad_name",
        "advertiser_id",
    }
)


class ApiError(Exception):
    """Rendered as a TikTok envelope with HTTP 200 (how TikTok reports almost every error)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _request_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(10).upper()


def envelope(data: Any = None, *, code: int = 0, message: str = "OK", status: int = 200) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "request_id": _request_id(),
            "data": data if data is not None else {},
        },
        status_code=status,
    )


def _fmt_time(value: datetime | date) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{value.isoformat()} 00:00:00"


def _json_param(request: Request, name: str, default: Any = None) -> Any:
    """Query parameter holding JSON (TikTok's convention for lists and objects)."""
    raw = request.query_params.getlist(name)
    if not raw:
        return default
    if len(raw) > 1:  # tolerate repeated keys (a "multi" collection format)
        return raw
    try:
        return json.loads(raw[0])
    except ValueError:
        raise ApiError(m.CODE_INVALID_PARAM, f"{name}: must be a valid JSON string") from None


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(m.CODE_INVALID_PARAM, f"{name}: must be an integer") from None
    if not lo <= value <= hi:
        raise ApiError(m.CODE_INVALID_PARAM, f"{name}: must be between {lo} and {hi}")
    return value


def _page(items: Sequence[Any], page: int, page_size: int) -> tuple[list[Any], dict[str, int]]:
    total = len(items)
    total_page = (total + page_size - 1) // page_size
    start = (page - 1) * page_size
    return list(items[start : start + page_size]), {
        "page": page,
        "page_size": page_size,
        "total_number": total,
        "total_page": total_page,
    }


def _project(item: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    if not fields:
        return item
    return {k: item[k] for k in fields if k in item}


def _money(amount_minor: int, currency: str) -> str:
    return format_decimal(minor_to_decimal(amount_minor, currency))


class TikTokSandbox(ServedSandbox):
    """State + Starlette app. ``serve()`` runs it on a free port; ``url`` is then the base URL."""

    server_name = "tiktok"

    def __init__(
        self,
        *,
        world: World | None = None,
        app_id: str = DEFAULT_APP_ID,
        secret: str = DEFAULT_SECRET,
        faults: FaultConfig | None = None,
        access_ttl: int = 86400,
        auto_approve: bool = False,
        clock: Callable[[], float] = time.time,
        today: date | None = None,  # the day whose version table is served (None: the table's review date)
    ) -> None:
        self.world = world or World(WorldConfig(platform="tiktok_ads"))
        self.app_id = app_id
        self.secret = secret
        self.auto_approve = auto_approve
        self.store = TokenStore(prefix="ttk", access_ttl=access_ttl, clock=clock)
        self.store.register_client(app_id, secret)
        self.injector = FaultInjector(faults)
        self.injector.on_expire_tokens(self._expire_tokens)
        self.journal = RequestJournal()
        self.versions = ServedVersions(POLICY, today)
        self.app: Starlette = self._build_app()
        self._server = None
        # Paging a report re-requests the same window once per page; keep the last few
        # computed windows (keyed on the account object and its write count, so a write or a
        # reset can never serve stale rows).
        # The entry holds the account itself, so its id() cannot be reused while cached.
        self._report_cache: dict[tuple[int, int, str, date, date], tuple[Account, list[dict[str, Any]]]] = {}

    def _expire_tokens(self) -> None:
        self.store.expire_all_access()

    # -- lifecycle -----------------------------------------------------------------
    def reset(self) -> None:
        self.world.reset()

    def grant_tokens(self, advertiser_ids: list[str] | None = None) -> dict[str, Any]:
        """Authorize the app without the browser dance (demo seeding, tests): the same
        ``data`` object ``oauth2/access_token/`` returns."""
        ids = sorted(self.world.accounts) if advertiser_ids is None else list(advertiser_ids)
        issued = self.store.issue_tokens(
            client_id=self.app_id,
            subject="sandbox-business-user",
            scopes=[str(s) for s in SCOPES],
            extra={"advertiser_ids": ids},
        )
        return self._token_data(issued.access_token, issued.expires_in, issued.refresh_token, ids)

    # -- app -----------------------------------------------------------------------
    def _build_app(self) -> Starlette:
        api: list[tuple[str, str, Callable[..., Any]]] = [
            ("POST", "oauth2/access_token", self.h_access_token),
            ("POST", "oauth2/refresh_token", self.h_refresh_token),
            ("POST", "oauth2/revoke_token", self.h_revoke_token),
            ("GET", "oauth2/advertiser/get", self.h_advertiser_get),
            ("GET", "advertiser/info", self.h_advertiser_info),
            ("GET", "campaign/get", self.h_campaign_get),
            ("GET", "adgroup/get", self.h_adgroup_get),
            ("GET", "ad/get", self.h_ad_get),
            ("GET", "report/integrated/get", self.h_report),
            ("POST", "campaign/status/update", self.h_campaign_status),
            ("POST", "adgroup/status/update", self.h_adgroup_status),
            ("POST", "ad/status/update", self.h_ad_status),
            ("POST", "campaign/update", self.h_campaign_update),
            ("POST", "adgroup/budget/update", self.h_adgroup_budget),
            ("POST", "adgroup/update", self.h_adgroup_update),
        ]
        routes = [Route("/portal/auth", self.h_portal_auth, methods=["GET", "POST"])]
        for method, endpoint, handler in api:
            wrapped = self._endpoint(handler)
            routes.append(Route(f"{P}/{endpoint}/", wrapped, methods=[method]))
            routes.append(Route(f"{P}/{endpoint}", wrapped, methods=[method]))
        # Any other version: TikTok switched it off (v1.2) or never had it; answered below.
        routes.append(Route("/open_api/{version}/{rest:path}", self.h_other_version,
                            methods=["GET", "POST", "PUT", "DELETE"]))
        routes += control_routes(
            self.injector,
            self.journal,
            on_reset=self.reset,
            describe=self.world.describe,
            extra_state=lambda: {"app_id": self.app_id, "accounts": sorted(self.world.accounts),
                                 **self.versions.state()},
        )
        middleware = [
            Middleware(
                FaultMiddleware,
                injector=self.injector,
                render=self._render_fault,
                journal=self.journal,
                applies=lambda path: path.startswith(P) and "/oauth2/" not in path,
            )
        ]
        return Starlette(routes=routes, middleware=middleware)

    def _render_fault(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "rate_limit":
            return envelope(code=m.CODE_RATE_LIMITED, message="Too many requests. Please retry in some time.")
        return envelope(code=m.CODE_SYSTEM_ERROR, message="System error, please try again later.", status=fault.status)

    def _endpoint(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            try:
                result = await handler(request)
            except ApiError as exc:
                return envelope(code=exc.code, message=exc.message)
            if isinstance(result, Response):
                return result
            return envelope(result)

        return run

    # -- auth helpers --------------------------------------------------------------
    def _token(self, request: Request) -> TokenInfo:
        token = request.headers.get("Access-Token")
        if not token:
            raise ApiError(m.CODE_TOKEN_INVALID, "Access token is null, please check the Access-Token header.")
        try:
            return self.store.validate(token)
        except TokenInvalid as exc:
            if exc.reason == "expired":
                raise ApiError(m.CODE_TOKEN_EXPIRED, "Access token has expired.") from None
            raise ApiError(m.CODE_TOKEN_INVALID, "Access token is incorrect or has been revoked.") from None

    def _advertiser(self, info: TokenInfo, advertiser_id: Any) -> Account:
        if not advertiser_id:
            raise ApiError(m.CODE_INVALID_PARAM, "advertiser_id: Missing data for required field.")
        aid = str(advertiser_id)
        if aid not in info.extra.get("advertiser_ids", []) or aid not in self.world.accounts:
            raise ApiError(m.CODE_NO_PERMISSION, f"No permission to operate advertiser {aid}.")
        return self.world.account(aid)

    async def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(m.CODE_INVALID_PARAM, "Request body must be valid JSON.") from None
        if not isinstance(body, dict):
            raise ApiError(m.CODE_INVALID_PARAM, "Request body must be a JSON object.")
        return body

    def _app_credentials(self, app_id: Any, secret: Any) -> None:
        try:
            self.store.authenticate_client(str(app_id or ""), str(secret or ""))
        except OAuthError:
            raise ApiError(m.CODE_INVALID_APP, "The app_id or secret is invalid.") from None

    # -- OAuth ---------------------------------------------------------------------
    async def h_portal_auth(self, request: Request) -> Response:
        q = request.query_params
        app_id = q.get("app_id", "")
        redirect_uri = q.get("redirect_uri", "")
        state = q.get("state")
        if self.store.client(app_id) is None or not redirect_uri:
            return JSONResponse({"error": "invalid app_id or redirect_uri"}, status_code=400)

        def approve() -> str:
            code = self.store.issue_code(
                client_id=app_id,
                redirect_uri=redirect_uri,
                scopes=[str(s) for s in SCOPES],
                subject="sandbox-business-user",
                extra={"advertiser_ids": sorted(self.world.accounts)},
            )
            params = {"auth_code": code, "code": code}
            if state is not None:
                params["state"] = state
            return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(params)}"

        def deny() -> str:
            params = {"error": "access_denied"}
            if state is not None:
                params["state"] = state
            return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(params)}"

        consent = ConsentRequest(
            "TikTok for Business",
            "Omnify",
            app_id,
            redirect_uri,
            ["Ad Account Management", "Ads Management", "Reporting"],
            state,
        )
        return await consent_response(request, consent, approve=approve, deny=deny, auto_approve=self.auto_approve)

    def _token_data(
        self, access: str, expires_in: int | None, refresh: str | None, advertiser_ids: list[str]
    ) -> dict[str, Any]:
        return {
            "access_token": access,
            "token_type": "Bearer",
            "scope": SCOPES,
            "advertiser_ids": advertiser_ids,
            "expires_in": expires_in,
            "refresh_token": refresh,
            "refresh_token_expires_in": 365 * 86400,
        }

    async def h_access_token(self, request: Request) -> Any:
        body = await self._body(request)
        self._app_credentials(body.get("app_id"), body.get("secret"))
        try:
            grant = self.store.redeem_code(
                str(body.get("auth_code") or ""), client_id=str(body["app_id"]), redirect_uri=None
            )
        except OAuthError as exc:
            code = m.CODE_AUTH_CODE_EXPIRED if "expired" in exc.description else m.CODE_AUTH_CODE_INVALID
            raise ApiError(code, f"Auth code is invalid or has been used: {exc.description}.") from None
        issued = self.store.issue_tokens(
            client_id=grant.client_id, subject=grant.subject, scopes=grant.scopes, extra=grant.extra
        )
        return self._token_data(
            issued.access_token,
            issued.expires_in,
            issued.refresh_token,
            list(grant.extra.get("advertiser_ids", [])),
        )

    async def h_refresh_token(self, request: Request) -> Any:
        body = await self._body(request)
        self._app_credentials(body.get("app_id"), body.get("secret"))
        refresh_token = str(body.get("refresh_token") or "")
        try:
            issued = self.store.refresh(refresh_token, client_id=str(body["app_id"]))
        except OAuthError:
            raise ApiError(m.CODE_REFRESH_TOKEN_INVALID, "Refresh token is invalid or has expired.") from None
        info = self.store.lookup(issued.access_token)
        ids = list(info.extra.get("advertiser_ids", [])) if info else []
        return self._token_data(issued.access_token, issued.expires_in, issued.refresh_token, ids)

    async def h_revoke_token(self, request: Request) -> Any:
        body = await self._body(request)
        self._app_credentials(body.get("app_id"), body.get("secret"))
        token = str(body.get("access_token") or "")
        info = self.store.lookup(token)
        if info is None or info.kind != "access":
            raise ApiError(m.CODE_TOKEN_INVALID, "Access token is incorrect or has been revoked.")
        # Revoking the long-term token ends the authorization: its refresh token dies too.
        for candidate in (info.family, token):
            self.store.revoke(candidate)
        return {"app_id": self.app_id, "advertiser_ids": list(info.extra.get("advertiser_ids", []))}

    async def h_advertiser_get(self, request: Request) -> Any:
        self._app_credentials(request.query_params.get("app_id"), request.query_params.get("secret"))
        info = self._token(request)
        ids = [a for a in info.extra.get("advertiser_ids", []) if a in self.world.accounts]
        return {"list": [{"advertiser_id": a, "advertiser_name": self.world.account(a).name} for a in ids]}

    # -- reads ---------------------------------------------------------------------
    async def h_advertiser_info(self, request: Request) -> Any:
        info = self._token(request)
        ids = _json_param(request, "advertiser_ids")
        if not isinstance(ids, list) or not ids:
            raise ApiError(m.CODE_INVALID_PARAM, "advertiser_ids: Missing data for required field.")
        if len(ids) > 100:
            raise ApiError(m.CODE_INVALID_PARAM, "advertiser_ids: Length must be between 1 and 100.")
        fields = _json_param(request, "fields")
        out = []
        for aid in ids:
            acc = self._advertiser(info, aid)
            out.append(
                _project(
                    {
                        "advertiser_id": acc.id,
                        "name": acc.name,
                        "currency": acc.currency,
                        "timezone": acc.timezone,
                        "display_timezone": acc.timezone,
                        "status": "STATUS_ENABLE",
                        "company": acc.name.split(" - ")[0],
                        "country": "US" if acc.currency == "USD" else "DE",
                        "role": "ROLE_ADVERTISER",
                        "create_time": int(datetime.combine(acc.created, datetime.min.time(), tzinfo=UTC).timestamp()),
                    },
                    fields,
                )
            )
        return {"list": out}

    def _listing(self, request: Request, items: list[dict[str, Any]], id_field: str, filter_key: str) -> Any:
        filtering = _json_param(request, "filtering", {}) or {}
        if not isinstance(filtering, dict):
            raise ApiError(m.CODE_INVALID_PARAM, "filtering: must be a JSON object.")
        for key, field in (
            (filter_key, id_field),
            ("campaign_ids", "campaign_id"),
            ("adgroup_ids", "adgroup_id"),
        ):
            wanted = filtering.get(key)
            if wanted:
                if not isinstance(wanted, list) or len(wanted) > 100:
                    raise ApiError(m.CODE_INVALID_PARAM, f"filtering.{key}: must be a list of at most 100 ids.")
                allowed = {str(w) for w in wanted}
                items = [i for i in items if str(i.get(field)) in allowed]
        fields = _json_param(request, "fields")
        page = _int_param(request, "page", 1, 1, 1_000_000)
        page_size = _int_param(request, "page_size", 10, 1, 1000)
        chunk, page_info = _page(items, page, page_size)
        return {"list": [_project(i, fields) for i in chunk], "page_info": page_info}

    def _campaign_json(self, acc: Account, c: Any) -> dict[str, Any]:
        return {
            "advertiser_id": acc.id,
            "campaign_id": c.id,
            "campaign_name": c.name,
            "objective_type": _OBJECTIVE.get(c.objective, "WEB_CONVERSIONS"),
            "campaign_type": "REGULAR_CAMPAIGN",
            "budget": float(minor_to_decimal(c.daily_budget_minor, acc.currency)),
            "budget_mode": "BUDGET_MODE_DAY",
            "operation_status": _OPERATION[c.status],
            "secondary_status": _SECONDARY["campaign"][c.status],
            "is_new_structure": True,
            "create_time": _fmt_time(c.created),
            "modify_time": _fmt_time(c.updated_at),
        }

    def _adgroup_json(self, acc: Account, g: Any) -> dict[str, Any]:
        t = g.targeting
        ages = [
            f"AGE_{lo}_{hi}"
            for lo, hi in ((18, 24), (25, 34), (35, 44), (45, 54))
            if lo >= t.get("age_min", 18) and hi <= t.get("age_max", 65)
        ]
        budget = g.daily_budget_minor
        return {
            "advertiser_id": acc.id,
            "campaign_id": g.campaign_id,
            "adgroup_id": g.id,
            "adgroup_name": g.name,
            "budget": float(minor_to_decimal(budget, acc.currency)) if budget else 0.0,
            "budget_mode": "BUDGET_MODE_DAY" if budget else "BUDGET_MODE_INFINITE",
            "operation_status": _OPERATION[g.status],
            "secondary_status": _SECONDARY["ad_group"][g.status],
            "location_ids": ["6252001"] if "US" in t.get("geo", []) else ["2921044", "3017382", "2750405"],
            "age_groups": ages,
            "gender": "GENDER_UNLIMITED",
            "languages": [],
            "placement_type": "PLACEMENT_TYPE_NORMAL",
            "placements": ["PLACEMENT_TIKTOK"],
            "bid_type": "BID_TYPE_NO_BID",
            "optimization_goal": "CONVERT",
            "create_time": _fmt_time(g.created),
            "modify_time": _fmt_time(g.updated_at),
        }

    def _ad_json(self, acc: Account, a: Any) -> dict[str, Any]:
        cr = a.creative
        return {
            "advertiser_id": acc.id,
            "campaign_id": a.campaign_id,
            "adgroup_id": a.ad_group_id,
            "ad_id": a.id,
            "ad_name": a.name,
            "operation_status": _OPERATION[a.status],
            "secondary_status": _SECONDARY["ad"][a.status],
            "ad_format": "SINGLE_VIDEO",
            "ad_text": cr.body,
            "display_name": cr.title,
            "call_to_action": cr.call_to_action,
            "video_id": f"v{cr.id}",
            "image_ids": [f"ad-site-i18n-sg/{cr.id}"],
            "landing_page_url": f"https://shop.example.com/p/{cr.id}",
            "create_time": _fmt_time(a.created),
            "modify_time": _fmt_time(a.updated_at),
        }

    async def h_campaign_get(self, request: Request) -> Any:
        acc = self._advertiser(self._token(request), request.query_params.get("advertiser_id"))
        items = [self._campaign_json(acc, c) for c in acc.campaigns.values()]
        return self._listing(request, items, "campaign_id", "campaign_ids")

    async def h_adgroup_get(self, request: Request) -> Any:
        acc = self._advertiser(self._token(request), request.query_params.get("advertiser_id"))
        items = [self._adgroup_json(acc, g) for g in acc.ad_groups.values()]
        return self._listing(request, items, "adgroup_id", "adgroup_ids")

    async def h_ad_get(self, request: Request) -> Any:
        acc = self._advertiser(self._token(request), request.query_params.get("advertiser_id"))
        items = [self._ad_json(acc, a) for a in acc.ads.values()]
        return self._listing(request, items, "ad_id", "ad_ids")

    async def h_report(self, request: Request) -> Any:
        q = request.query_params
        acc = self._advertiser(self._token(request), q.get("advertiser_id"))
        if q.get("report_type") != "BASIC":
            raise ApiError(m.CODE_INVALID_PARAM, "report_type: only BASIC is supported by this sandbox.")
        if q.get("service_type", "AUCTION") != "AUCTION":
            raise ApiError(m.CODE_INVALID_PARAM, "service_type: must be AUCTION.")
        level = _DATA_LEVELS.get(q.get("data_level", ""))
        if level is None:
            raise ApiError(
                m.CODE_INVALID_PARAM,
                "data_level: Must be one of AUCTION_AD, AUCTION_ADGROUP, AUCTION_CAMPAIGN, AUCTION_ADVERTISER.",
            )
        dimensions = _json_param(request, "dimensions")
        id_dim = _ID_DIMENSION[level]
        if not isinstance(dimensions, list) or set(dimensions) != {id_dim, "stat_time_day"}:
            raise ApiError(
                m.CODE_INVALID_PARAM,
                f'dimensions: this sandbox supports ["{id_dim}", "stat_time_day"] for {q["data_level"]}.',
            )
        metrics = _json_param(request, "metrics", ["spend", "impressions"])
        if not isinstance(metrics, list) or not metrics:
            raise ApiError(m.CODE_INVALID_PARAM, "metrics: must be a non-empty JSON list.")
        unknown = [x for x in metrics if x not in _KNOWN_METRICS]
        if unknown:
            raise ApiError(m.CODE_INVALID_PARAM, f"metrics: invalid metric(s) {', '.join(map(str, unknown))}.")
        try:
            start = date.fromisoformat(q.get("start_date", ""))
            end = date.fromisoformat(q.get("end_date", ""))
        except ValueError:
            raise ApiError(m.CODE_INVALID_PARAM, "start_date/end_date: must be YYYY-MM-DD.") from None
        if end < start:
            raise ApiError(m.CODE_INVALID_PARAM, "end_date must not be earlier than start_date.")
        if (end - start).days + 1 > m.MAX_DAYS_PER_REPORT:
            raise ApiError(
                m.CODE_INVALID_PARAM,
                "The time span between start_date and end_date cannot exceed 30 days "
                "when dimensions include stat_time_day.",
            )
        page = _int_param(request, "page", 1, 1, 1_000_000)
        page_size = _int_param(request, "page_size", 10, 1, 1000)
        rows = self._report_rows(acc, level, start, end)
        chunk, page_info = _page(rows, page, page_size)
        out = []
        for r in chunk:
            out.append(
                {
                    "dimensions": {id_dim: r["entity_id"], "stat_time_day": _fmt_time(r["day"])},
                    "metrics": self._metric_values(acc, level, r, metrics),
                }
            )
        return {"list": out, "page_info": page_info}

    def _report_rows(self, acc: Account, level: str, start: date, end: date) -> list[dict[str, Any]]:
        key = (id(acc), len(acc.overrides), level, start, end)
        hit = self._report_cache.get(key)
        if hit is not None and hit[0] is acc:
            return hit[1]
        rows = self._compute_report_rows(acc, level, start, end)
        if len(self._report_cache) >= 8:
            self._report_cache.pop(next(iter(self._report_cache)))
        self._report_cache[key] = (acc, rows)
        return rows

    def _compute_report_rows(self, acc: Account, level: str, start: date, end: date) -> list[dict[str, Any]]:
        if level == "advertiser":
            rows = acc.metric_rows(start, end, level="campaign")
            by_day: dict[date, dict[str, Any]] = {}
            for i in range(len(rows)):
                r = rows.row(i)
                agg = by_day.setdefault(
                    r["day"],
                    {
                        "entity_id": acc.id,
                        "day": r["day"],
                        "spend_minor": 0,
                        "impressions": 0,
                        "reach": 0,
                        "clicks": 0,
                        "conversions": 0.0,
                        "revenue_minor": 0,
                    },
                )
                for k in ("spend_minor", "impressions", "reach", "clicks", "conversions", "revenue_minor"):
                    agg[k] += r[k]
            return [by_day[d] for d in sorted(by_day)]
        rows = acc.metric_rows(start, end, level=level)  # type: ignore[arg-type]
        return [rows.row(i) for i in range(len(rows))]

    def _metric_values(self, acc: Account, level: str, r: Mapping[str, Any], metrics: list[str]) -> dict[str, str]:
        cur = acc.currency
        spend, impr, clicks = r["spend_minor"], r["impressions"], r["clicks"]
        conv, rev, reach = r["conversions"], r["revenue_minor"], r["reach"]
        spend_d = minor_to_decimal(spend, cur)

        def ratio(num: Decimal, den: int | float, scale: int = 1) -> str:
            if not den:
                return "0.00"
            return format_decimal((num * scale / Decimal(str(den))).quantize(Decimal("0.01")))

        parent: dict[str, str] = {}
        if level == "ad":
            ad = acc.ads[r["entity_id"]]
            parent = {
                "campaign_id": ad.campaign_id,
                "adgroup_id": ad.ad_group_id,
                "ad_name": ad.name,
                "campaign_name": acc.campaigns[ad.campaign_id].name,
                "adgroup_name": acc.ad_groups[ad.ad_group_id].name,
            }
        elif level == "ad_group":
            g = acc.ad_groups[r["entity_id"]]
            parent = {
                "campaign_id": g.campaign_id,
                "adgroup_name": g.name,
                "campaign_name": acc.campaigns[g.campaign_id].name,
            }
        elif level == "campaign":
            parent = {"campaign_name": acc.campaigns[r["entity_id"]].name}
        values: dict[str, str] = {
            "spend": _money(spend, cur),
            "impressions": str(impr),
            "clicks": str(clicks),
            "conversion": str(round(conv)),
            "complete_payment": str(round(conv)),
            "total_complete_payment_rate": _money(rev, cur),
            "reach": str(reach),
            "frequency": ratio(Decimal(impr), reach),
            "ctr": ratio(Decimal(clicks * 100), impr),
            "cpc": ratio(spend_d, clicks),
            "cpm": ratio(spend_d, impr, 1000),
            "cost_per_conversion": ratio(spend_d, conv),
            "currency": cur,
            "advertiser_id": acc.id,
            **parent,
        }
        return {k: values.get(k, "-") for k in metrics}

    # -- writes --------------------------------------------------------------------
    async def _status_update(self, request: Request, level: str, ids_key: str) -> Any:
        info = self._token(request)
        body = await self._body(request)
        acc = self._advertiser(info, body.get("advertiser_id"))
        ids = body.get(ids_key)
        if not isinstance(ids, list) or not ids or len(ids) > 100:
            raise ApiError(m.CODE_INVALID_PARAM, f"{ids_key}: must be a list of 1 to 100 ids.")
        operation = body.get("operation_status")
        if operation not in _STATUS_FROM_OPERATION:
            raise ApiError(m.CODE_INVALID_PARAM, "operation_status: Must be one of ENABLE, DISABLE, DELETE.")
        collections: dict[str, Mapping[str, Any]] = {
            "campaign": acc.campaigns,
            "ad_group": acc.ad_groups,
            "ad": acc.ads,
        }
        collection = collections[level]
        for entity_id in ids:
            entity = collection.get(str(entity_id))
            if entity is None:
                raise ApiError(m.CODE_INVALID_PARAM, f"{ids_key}: {entity_id} does not exist in advertiser {acc.id}.")
            if entity.status == "deleted":
                raise ApiError(m.CODE_INVALID_PARAM, f"{entity_id} has been deleted and cannot be modified.")
        for entity_id in ids:
            self.world.set_status(str(entity_id), _STATUS_FROM_OPERATION[operation])  # type: ignore[arg-type]
        return {ids_key: [str(i) for i in ids], "status": operation}

    async def h_campaign_status(self, request: Request) -> Any:
        return await self._status_update(request, "campaign", "campaign_ids")

    async def h_adgroup_status(self, request: Request) -> Any:
        return await self._status_update(request, "ad_group", "adgroup_ids")

    async def h_ad_status(self, request: Request) -> Any:
        return await self._status_update(request, "ad", "ad_ids")

    def _budget_minor(self, value: Any, currency: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ApiError(m.CODE_INVALID_PARAM, "budget: must be a number.")
        try:
            minor = decimal_to_minor(value, currency, strict=True)
        except (ValueError, InvalidOperation):
            raise ApiError(m.CODE_INVALID_PARAM, f"budget: {value!r} is not a valid amount in {currency}.") from None
        if minor <= 0:
            raise ApiError(m.CODE_INVALID_PARAM, "budget: must be greater than 0.")
        return minor

    async def _update_target(
        self, request: Request, level: str
    ) -> tuple[Account, dict[str, Any], str, Any, str | None]:
        """The advertiser, body, entity and validated new name of a ``<level>/update/`` call
        (nothing applied yet: a call refused for its budget must not have renamed anything)."""
        info = self._token(request)
        body = await self._body(request)
        acc = self._advertiser(info, body.get("advertiser_id"))
        key = f"{level}_id"
        ident = str(body.get(key) or "")
        entity = (acc.campaigns if level == "campaign" else acc.ad_groups).get(ident)
        if entity is None:
            raise ApiError(m.CODE_INVALID_PARAM, f"{key}: {ident} does not exist in advertiser {acc.id}.")
        if entity.status == "deleted":
            raise ApiError(m.CODE_INVALID_PARAM, f"{ident} has been deleted and cannot be modified.")
        name = None
        if f"{level}_name" in body:
            name = str(body[f"{level}_name"]).strip()
            if not name or len(name) > 512:
                raise ApiError(m.CODE_INVALID_PARAM, f"{level}_name: length must be between 1 and 512.")
        return acc, body, ident, entity, name

    async def h_campaign_update(self, request: Request) -> Any:
        acc, body, cid, campaign, name = await self._update_target(request, "campaign")
        minor = self._budget_minor(body["budget"], acc.currency) if "budget" in body else None
        if name is not None:
            campaign.name = name
        if minor is not None:
            self.world.set_budget(cid, minor)
        return self._campaign_json(acc, campaign)

    async def h_other_version(self, request: Request) -> Response:
        """A version this sandbox does not serve. TikTok switched v1.2 off after its migration
        year: its calls fail with HTTP 404 and the usual envelope (code 40002 naming the version);
        unknown versions get the same."""
        version = request.path_params["version"]
        status = self.versions.status(version)
        what = "has been deprecated and is no longer available" if status == "expired" else "does not exist"
        return envelope(code=m.CODE_INVALID_PARAM, status=404,
                        message=f"API version {version} {what}. Please use {self.versions.latest}.")

    async def h_adgroup_update(self, request: Request) -> Any:
        """``adgroup/update/``: the SDK's way to change an ad group (name, daily budget)."""
        acc, body, gid, group, name = await self._update_target(request, "adgroup")
        minor = self._budget_minor(body["budget"], acc.currency) if body.get("budget") is not None else None
        if minor is not None and acc.campaigns[group.campaign_id].daily_budget_minor:
            raise ApiError(m.CODE_INVALID_PARAM, "budget: the campaign uses campaign budget optimization; set "
                           "the budget on the campaign.")
        if name is not None:
            group.name = name
        if minor is not None:
            try:
                self.world.set_budget(gid, minor)
            except (ValueError, EntityNotFound) as exc:
                raise ApiError(m.CODE_INVALID_PARAM, str(exc)) from None
        return self._adgroup_json(acc, group)

    async def h_adgroup_budget(self, request: Request) -> Any:
        info = self._token(request)
        body = await self._body(request)
        acc = self._advertiser(info, body.get("advertiser_id"))
        items = body.get("budget")
        if not isinstance(items, list) or not items:
            raise ApiError(m.CODE_INVALID_PARAM, "budget: must be a non-empty list of {adgroup_id, budget}.")
        changes: list[tuple[str, int]] = []
        for item in items:
            if not isinstance(item, dict):
                raise ApiError(m.CODE_INVALID_PARAM, "budget: items must be objects.")
            gid = str(item.get("adgroup_id") or "")
            if gid not in acc.ad_groups:
                raise ApiError(m.CODE_INVALID_PARAM, f"adgroup_id: {gid} does not exist in advertiser {acc.id}.")
            changes.append((gid, self._budget_minor(item.get("budget"), acc.currency)))
        for gid, minor in changes:
            try:
                self.world.set_budget(gid, minor)
            except (ValueError, EntityNotFound) as exc:
                raise ApiError(m.CODE_INVALID_PARAM, str(exc)) from None
        return {}


def make_app(**kwargs: Any) -> Starlette:
    """ASGI app for ``omnify sandbox`` (uvicorn factory style)."""
    return TikTokSandbox(**kwargs).app
