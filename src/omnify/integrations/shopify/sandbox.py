"""A local Shopify server: app install (OAuth + HMAC), the GraphQL and REST Admin APIs, signed webhooks.

Shops are found by host name, as at Shopify (``Host: <shop>.myshopify.com``, resolved to this
server by a test resolver, a hosts entry or a proxy; HTTPS when served with a certificate),
or under ``/shops/{shop}`` (``shop_url_template``) for clients that can only change a base
URL. Below that the paths are Shopify's own, so the connector and the official ``ShopifyAPI``
SDK both work unchanged. Implemented subset:

* ``/admin/oauth/authorize`` (consent screen) -> redirect with ``code, hmac, host, shop,
  state, timestamp`` signed with the app secret; ``/admin/oauth/access_token``;
  ``DELETE [/admin/api/<version>]/admin/api_permissions/current.json`` (uninstall: revokes the
  token and fires ``app/uninstalled``).
* ``/admin/api/<version>/graphql.json``: the GraphQL Admin API with query cost, ``THROTTLED``
  and bulk operations (see sandbox_graphql.py).
* ``/admin/api/<version>/shop.json``, ``orders.json``, ``customers.json``, ``products.json``
  (filters, ``fields``, Link-header cursor paging with ``page_info``), ``webhooks.json``.
* Versions: those on Shopify's support window; a retired one falls forward to the oldest
  supported (``X-Shopify-API-Version`` says which), as Shopify does.
* The REST leaky bucket per shop+app (``X-Shopify-Shop-Api-Call-Limit``; 429 with
  ``Retry-After`` when full), scopes (403 without them; orders older than 60 days hidden
  without ``read_all_orders``), 401 for bad or revoked tokens.
* Sandbox controls under ``/__sandbox``: faults, journal, a signed install link, and
  simulated shop events (new order, refund, privacy requests) delivered as real signed
  webhooks to the subscribed addresses and the app's privacy endpoint.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from omnify.integrations.sandbox_common import (
    CONTROL_PREFIX,
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
from omnify.integrations.shopify import oauth
from omnify.integrations.shopify.mapping import ACCESS_TOKEN_HEADER, API_VERSION, CALL_LIMIT_HEADER
from omnify.integrations.shopify.sandbox_graphql import AdminGraphQL, throttled
from omnify.integrations.shopify.store_data import (
    Order,
    Store,
    StoreConfig,
    customer_json,
    generate_store,
    iso,
    order_json,
    product_json,
)
from omnify.integrations.shopify.version import POLICY
from omnify.integrations.shopify.webhooks import SUBSCRIBABLE_TOPICS, Topic, deliver_webhook

DEFAULT_API_KEY = "sandbox-shopify-client-id"
DEFAULT_API_SECRET = "sandbox-shopify-client-secret"  # sandbox-only credential
DEFAULT_SHOPS = ("acme-outdoor.myshopify.com", "bright-smiles.myshopify.com")
MAX_LIMIT = 250
RECENT_ORDER_DAYS = 60

_FILTERS: dict[str, frozenset[str]] = {
    "orders": frozenset(
        {
            "status",
            "financial_status",
            "fulfillment_status",
            "updated_at_min",
            "updated_at_max",
            "created_at_min",
            "created_at_max",
            "since_id",
            "ids",
        }
    ),
    "customers": frozenset({"updated_at_min", "updated_at_max", "created_at_min", "created_at_max", "since_id", "ids"}),
    "products": frozenset(
        {
            "updated_at_min",
            "updated_at_max",
            "created_at_min",
            "created_at_max",
            "since_id",
            "ids",
            "status",
            "vendor",
            "product_type",
        }
    ),
}
_SCOPE_FOR = {"orders": "read_orders", "customers": "read_customers", "products": "read_products"}


class RestError(Exception):
    def __init__(self, status: int, errors: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(str(errors))
        self.status = status
        self.errors = errors
        self.headers = dict(headers or {})


@dataclass(slots=True)
class _Bucket:
    level: float = 0.0
    updated: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class WebhookSubscription:
    id: int
    topic: str
    address: str
    created_at: datetime


@dataclass(slots=True)
class ShopState:
    store: Store
    webhooks: dict[int, WebhookSubscription] = field(default_factory=dict)
    installed: bool = False
    deliveries: list[dict[str, Any]] = field(default_factory=list)


def _parse_ts(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RestError(400, {name: ["must be an ISO 8601 date"]}) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _encode_cursor(data: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(token: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (ValueError, binascii.Error):
        raise RestError(400, {"page_info": ["Invalid value."]}) from None
    if not isinstance(data, dict):
        raise RestError(400, {"page_info": ["Invalid value."]})
    return data


class ShopHostRouting:
    """``Host: <shop>.myshopify.com`` -> the shop's ``/shops/<shop>`` prefix.

    The ShopifyAPI SDK's normal session talks to ``https://<shop>.myshopify.com/admin/...``;
    resolved to this one loopback server (a test resolver, a hosts entry, a proxy), the host
    name is what says which shop is meant, as it is at Shopify. The original path is kept in
    the scope so links the sandbox writes (REST ``Link``, bulk file URLs) look like Shopify's.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").rsplit(":", 1)[0].lower()
            path = scope["path"]
            if host.endswith(".myshopify.com") and not path.startswith(("/shops/", CONTROL_PREFIX)):
                scope = {**scope, "path": f"/shops/{host}{path}", "raw_path": f"/shops/{host}{path}".encode(),
                         "shopify_path": path}
        await self.app(scope, receive, send)


def public_url(request: Request, path: str | None = None) -> str:
    """The URL the client used (without the sandbox's ``/shops/<shop>`` prefix when it came by host)."""
    original = request.scope.get("shopify_path")
    if path is None:
        path = original or request.url.path
    elif original is None:
        path = "/shops/" + request.path_params["shop"] + path
    return str(request.url.replace(path=path, query=""))


class ShopifySandbox(ServedSandbox):
    """Shops, the app's installs and the Starlette app that serves them."""

    server_name = "shopify"

    def __init__(
        self,
        *,
        shops: Iterable[str] = DEFAULT_SHOPS,
        seed: int = 7,
        end: date | None = None,
        customers: int = 400,
        api_key: str = DEFAULT_API_KEY,
        api_secret: str = DEFAULT_API_SECRET,
        privacy_webhook_url: str | None = None,
        bucket_size: int = 40,
        leak_rate: float = 2.0,
        retry_after: float | None = 2.0,
        faults: FaultConfig | None = None,
        auto_approve: bool = False,
        clock: Callable[[], float] = time.time,
        today: date | None = None,  # the day whose version table is served (None: the table's review date)
        bulk_seconds: float = 0.0,  # how long a bulk operation stays RUNNING before COMPLETED
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.privacy_webhook_url = privacy_webhook_url
        self.bucket_size = bucket_size
        self.leak_rate = leak_rate
        # Shopify answers a full bucket with "Retry-After: 2.0"; None = the exact drain time.
        self.retry_after = retry_after
        self.auto_approve = auto_approve
        self.clock = clock
        self._store_args = {"seed": seed, "end": end, "customers": customers}
        self._shop_names = [oauth.validate_shop_domain(s) for s in shops]
        self.shops: dict[str, ShopState] = {}
        self.store = TokenStore(prefix="shpat", access_ttl=None, clock=clock)
        self.store.register_client(api_key, api_secret)
        self.injector = FaultInjector(faults)
        self.injector.on_expire_tokens(self._expire_tokens)
        self.journal = RequestJournal()
        self.versions = ServedVersions(POLICY, today)
        self.graphql = AdminGraphQL(bulk_seconds=bulk_seconds)
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()
        self._webhook_seq = 1_100_000_000
        self.reset()
        self.app: Starlette = self._build_app()
        self._server = None

    # -- lifecycle -----------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self.shops = {
                s: ShopState(generate_store(StoreConfig(shop=s, **self._store_args)))  # type: ignore[arg-type]
                for s in self._shop_names
            }
            self._buckets.clear()
        self.graphql.reset()

    def _expire_tokens(self) -> None:
        self.store.expire_all_access()

    @property
    def shop_url_template(self) -> str:
        return f"{self.url}/shops/{{shop}}"

    def shop(self, domain: str) -> ShopState:
        try:
            return self.shops[domain]
        except KeyError:
            raise RestError(404, "Not Found") from None

    def install_query(self, shop: str, *, timestamp: int | None = None) -> dict[str, str]:
        """What Shopify appends to the app URL when a merchant installs the app (signed)."""
        host = base64.b64encode(f"admin.shopify.com/store/{shop.split('.')[0]}".encode()).decode()
        params = {"shop": shop, "host": host, "timestamp": str(timestamp or int(self.clock()))}
        return oauth.sign_query(params, self.api_secret)

    def grant_token(self, shop: str, scopes: Iterable[str] = oauth.DEFAULT_SCOPES) -> str:
        """Install the app on ``shop`` without the browser dance (tests, demo seeding)."""
        self.shop(shop).installed = True
        return self.store.issue_tokens(
            client_id=self.api_key, subject=shop, scopes=list(scopes), access_ttl=None, with_refresh=False
        ).access_token

    # -- app -----------------------------------------------------------------------
    def _build_app(self) -> Starlette:
        base = "/shops/{shop}"
        api = f"{base}/admin/api/{{version}}"
        routes = [
            Route(f"{base}/admin/oauth/authorize", self._wrap(self.h_authorize), methods=["GET", "POST"]),
            Route(f"{base}/admin/oauth/access_token", self._wrap(self.h_access_token), methods=["POST"]),
            Route(f"{base}/admin/api_permissions/current.json", self._wrap(self.h_uninstall), methods=["DELETE"]),
            Route(f"{api}/api_permissions/current.json", self._wrap(self.h_uninstall), methods=["DELETE"]),
            Route(f"{api}/graphql.json", self._wrap(self.h_graphql), methods=["POST"]),
            Route(f"{base}/__bulk/{{number:int}}.jsonl", self._wrap(self.h_bulk_file), methods=["GET"]),
            Route(f"{api}/shop.json", self._wrap(self.h_shop), methods=["GET"]),
            Route(f"{api}/orders.json", self._wrap(self.h_orders), methods=["GET"]),
            Route(f"{api}/orders/count.json", self._wrap(self.h_orders_count), methods=["GET"]),
            Route(f"{api}/orders/{{item_id:int}}.json", self._wrap(self.h_order), methods=["GET"]),
            Route(f"{api}/customers.json", self._wrap(self.h_customers), methods=["GET"]),
            Route(f"{api}/customers/{{item_id:int}}.json", self._wrap(self.h_customer), methods=["GET"]),
            Route(f"{api}/products/{{item_id:int}}.json", self._wrap(self.h_product), methods=["GET"]),
            Route(f"{api}/products.json", self._wrap(self.h_products), methods=["GET"]),
            Route(f"{api}/webhooks.json", self._wrap(self.h_webhooks_list), methods=["GET"]),
            Route(f"{api}/webhooks.json", self._wrap(self.h_webhooks_create), methods=["POST"]),
            Route(f"{api}/webhooks/{{webhook_id:int}}.json", self._wrap(self.h_webhooks_delete), methods=["DELETE"]),
            Route(f"{CONTROL_PREFIX}/shops/{{shop}}/install", self._wrap(self.c_install), methods=["GET"]),
            Route(f"{CONTROL_PREFIX}/shops/{{shop}}/orders", self._wrap(self.c_new_order), methods=["POST"]),
            Route(
                f"{CONTROL_PREFIX}/shops/{{shop}}/orders/{{order_id:int}}/refund",
                self._wrap(self.c_refund),
                methods=["POST"],
            ),
            Route(f"{CONTROL_PREFIX}/shops/{{shop}}/privacy/{{kind}}", self._wrap(self.c_privacy), methods=["POST"]),
            Route(f"{CONTROL_PREFIX}/shops/{{shop}}/deliveries", self._wrap(self.c_deliveries), methods=["GET"]),
        ]
        routes += control_routes(
            self.injector, self.journal, on_reset=self.reset,
            extra_state=lambda: {"shops": sorted(self.shops), **self.versions.state()},
        )
        middleware = [
            Middleware(ShopHostRouting),
            Middleware(
                FaultMiddleware,
                injector=self.injector,
                render=self._render_fault,
                journal=self.journal,
                applies=lambda path: "/admin/api/" in path,
            )
        ]
        return Starlette(routes=routes, middleware=middleware)

    def _render_fault(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "rate_limit" and request.url.path.endswith("/graphql.json"):
            # GraphQL is throttled by cost, answered with HTTP 200 and a THROTTLED error.
            bucket = self.graphql.bucket(request.path_params.get("shop", ""), "")
            bucket.available = 0.0
            return JSONResponse(throttled(int(fault.retry_after * bucket.restore_rate), bucket))
        if fault.kind == "rate_limit":
            return JSONResponse(
                {
                    "errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume "
                    "uninterrupted service."
                },
                status_code=429,
                headers={
                    "Retry-After": f"{fault.retry_after:.1f}",
                    CALL_LIMIT_HEADER: f"{self.bucket_size}/{self.bucket_size}",
                },
            )
        return JSONResponse({"errors": "Internal Server Error"}, status_code=fault.status)

    def _wrap(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            try:
                result = await handler(request)
            except RestError as exc:
                return JSONResponse({"errors": exc.errors}, status_code=exc.status, headers=exc.headers)
            return result if isinstance(result, Response) else JSONResponse(result)

        return run

    # -- auth / throttling ---------------------------------------------------------
    def _authorize_api(self, request: Request, scope: str | None = None) -> tuple[ShopState, TokenInfo, dict[str, str]]:
        shop = request.path_params["shop"]
        state = self.shop(shop)
        try:
            info = self.store.validate(request.headers.get(ACCESS_TOKEN_HEADER))
        except TokenInvalid:
            raise RestError(
                401, "[API] Invalid API key or access token (unrecognized login or wrong password)"
            ) from None
        if info.subject != shop:
            raise RestError(401, "[API] Invalid API key or access token (unrecognized login or wrong password)")
        headers = {} if request.url.path.endswith("/graphql.json") else self._take_from_bucket(shop, info.client_id)
        headers["X-Shopify-API-Version"] = self._served_version(request)
        if scope is not None and scope not in info.scopes:
            raise RestError(403, f"[API] This action requires merchant approval for {scope} scope.", headers)
        return state, info, headers

    def _served_version(self, request: Request) -> str:
        """Shopify serves a version it no longer supports as the oldest supported one ("falls
        forward") and names what it served in ``X-Shopify-API-Version``; a version that never
        existed is a 404."""
        asked = request.path_params.get("version", API_VERSION)
        status = self.versions.status(asked)
        if status == "served" or asked == "unstable":
            return str(asked)
        if status == "expired":
            return self.versions.oldest or self.versions.latest
        raise RestError(404, "Not Found")

    def _take_from_bucket(self, shop: str, app: str) -> dict[str, str]:
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.setdefault((shop, app), _Bucket(0.0, now))
            bucket.level = max(0.0, bucket.level - (now - bucket.updated) * self.leak_rate)
            bucket.updated = now
            if bucket.level + 1 > self.bucket_size:
                drain = (bucket.level + 1 - self.bucket_size) / self.leak_rate
                wait = self.retry_after if self.retry_after is not None else drain
                raise RestError(
                    429,
                    "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service.",
                    {
                        "Retry-After": f"{math.ceil(wait * 10) / 10:.1f}",
                        CALL_LIMIT_HEADER: f"{self.bucket_size}/{self.bucket_size}",
                    },
                )
            bucket.level += 1
            used = math.ceil(bucket.level)
        return {CALL_LIMIT_HEADER: f"{used}/{self.bucket_size}"}

    # -- OAuth ---------------------------------------------------------------------
    async def h_authorize(self, request: Request) -> Response:
        shop = request.path_params["shop"]
        self.shop(shop)
        q = request.query_params
        client_id = q.get("client_id", "")
        redirect_uri = q.get("redirect_uri", "")
        state = q.get("state")
        scopes = [s for s in q.get("scope", "").split(",") if s]
        if self.store.client(client_id) is None:
            raise RestError(400, "Oauth error invalid_request: The client_id is invalid or missing")
        if not redirect_uri.startswith(("http://", "https://")):
            raise RestError(400, "Oauth error invalid_request: The redirect_uri is missing or not whitelisted")

        def callback(params: dict[str, str]) -> str:
            signed = oauth.sign_query(params, self.api_secret)
            return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(signed)}"

        def approve() -> str:
            code = self.store.issue_code(client_id=client_id, redirect_uri=redirect_uri, scopes=scopes, subject=shop)
            host = base64.b64encode(f"admin.shopify.com/store/{shop.split('.')[0]}".encode()).decode()
            params = {"code": code, "host": host, "shop": shop, "timestamp": str(int(self.clock()))}
            if state is not None:
                params["state"] = state
            return callback(params)

        def deny() -> str:
            params = {"error": "access_denied", "shop": shop, "timestamp": str(int(self.clock()))}
            if state is not None:
                params["state"] = state
            return callback(params)

        consent = ConsentRequest("Shopify", "Omnify", client_id, redirect_uri, scopes, state)
        return await consent_response(request, consent, approve=approve, deny=deny, auto_approve=self.auto_approve)

    async def h_access_token(self, request: Request) -> Any:
        shop = request.path_params["shop"]
        state = self.shop(shop)
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise RestError(400, "invalid_request")
            params = {k: str(v) for k, v in body.items()}
        else:
            form = await request.form()
            params = {k: str(v) for k, v in form.items()} or dict(request.query_params)
        try:
            self.store.authenticate_client(params.get("client_id"), params.get("client_secret"))
            grant = self.store.redeem_code(params.get("code", ""), client_id=params["client_id"], redirect_uri=None)
        except OAuthError as exc:
            return JSONResponse({"error": exc.error, "error_description": exc.description}, status_code=400)
        if grant.subject != shop:
            return JSONResponse(
                {"error": "invalid_request", "error_description": "The authorization code was issued for another shop"},
                status_code=400,
            )
        issued = self.store.issue_tokens(
            client_id=grant.client_id, subject=shop, scopes=grant.scopes, access_ttl=None, with_refresh=False
        )
        state.installed = True
        return {"access_token": issued.access_token, "scope": ",".join(grant.scopes)}

    async def h_uninstall(self, request: Request) -> Any:
        state, info, _headers = self._authorize_api(request)
        shop = request.path_params["shop"]
        self.store.revoke_subject(info.client_id, shop)
        state.installed = False
        await self._fire(shop, Topic.APP_UNINSTALLED, self._shop_json(shop))
        return {}

    # -- REST reads ----------------------------------------------------------------
    def _shop_json(self, shop: str) -> dict[str, Any]:
        store = self.shop(shop).store
        return {
            "id": store.shop_id,
            "name": store.name,
            "email": f"owner@{shop.split('.')[0]}.example.com",
            "domain": shop,
            "myshopify_domain": shop,
            "province": "Colorado",
            "country": "US",
            "currency": store.config.currency,
            "money_format": "${{amount}}",
            "iana_timezone": store.config.timezone,
            "timezone": f"(GMT-05:00) {store.config.timezone}",
            "plan_name": "basic",
            "plan_display_name": "Basic",
            "shop_owner": "Sandbox Owner",
            "created_at": iso(datetime(2021, 3, 1, tzinfo=UTC), store.tz),
            "updated_at": iso(datetime(2024, 1, 1, tzinfo=UTC), store.tz),
            "primary_locale": "en",
        }

    async def h_shop(self, request: Request) -> Response:
        _state, _info, headers = self._authorize_api(request)
        return JSONResponse({"shop": self._shop_json(request.path_params["shop"])}, headers=headers)

    def _matches(self, item: Mapping[str, Any], filters: Mapping[str, str], resource: str) -> bool:
        for key, raw in filters.items():
            if key.endswith(("_min", "_max")):
                field = key[:-4]
                value = datetime.fromisoformat(str(item[field]))
                bound = _parse_ts(raw, key)
                if (key.endswith("_min") and value < bound) or (key.endswith("_max") and value > bound):
                    return False
            elif key == "since_id":
                if int(item["id"]) <= int(raw):
                    return False
            elif key == "ids":
                if str(item["id"]) not in {s.strip() for s in raw.split(",")}:
                    return False
            elif key == "status" and resource == "orders":
                if raw == "open" and (item["closed_at"] or item["cancelled_at"]):
                    return False
                if raw == "closed" and not item["closed_at"]:
                    return False
                if raw == "cancelled" and not item["cancelled_at"]:
                    return False
            elif key == "status" and resource == "products":
                if item["status"] not in {s.strip() for s in raw.split(",")}:
                    return False
            elif str(item.get(key)) != raw:
                return False
        return True

    def _listing(
        self, request: Request, resource: str, items: list[dict[str, Any]], headers: dict[str, str]
    ) -> Response:
        q = request.query_params
        try:
            limit = int(q.get("limit", "50"))
        except ValueError:
            raise RestError(400, {"limit": ["must be an integer"]}, headers) from None
        if not 1 <= limit <= MAX_LIMIT:
            raise RestError(400, {"limit": [f"must be between 1 and {MAX_LIMIT}"]}, headers)
        fields = q.get("fields")
        page_info = q.get("page_info")
        if page_info:
            extra = set(q.keys()) - {"page_info", "limit", "fields"}
            if extra:
                raise RestError(400, {"page_info": [f"cannot be combined with {', '.join(sorted(extra))}"]}, headers)
            cursor = _decode_cursor(page_info)
            if cursor.get("r") != resource:
                raise RestError(400, {"page_info": ["Invalid value."]}, headers)
            filters: dict[str, str] = cursor.get("f", {})
            after, before = cursor.get("after"), cursor.get("before")
        else:
            unknown = {k for k in q if k not in _FILTERS[resource] | {"limit", "fields", "order"}}
            if unknown:
                raise RestError(400, {k: ["is not a supported filter"] for k in sorted(unknown)}, headers)
            filters = {k: v for k, v in q.items() if k in _FILTERS[resource]}
            if resource == "orders":
                filters.setdefault("status", "open")  # Shopify's default: open orders only
            after = before = None
        selected = sorted((i for i in items if self._matches(i, filters, resource)), key=lambda i: int(i["id"]))
        if after is not None:
            page = [i for i in selected if int(i["id"]) > int(after)][:limit]
        elif before is not None:
            page = [i for i in selected if int(i["id"]) < int(before)][-limit:]
        else:
            page = selected[:limit]
        links = []
        if page:
            base = public_url(request)
            if any(int(i["id"]) > int(page[-1]["id"]) for i in selected):
                token = _encode_cursor({"r": resource, "f": filters, "after": page[-1]["id"]})
                links.append(f'<{base}?{urlencode({"limit": limit, "page_info": token})}>; rel="next"')
            if any(int(i["id"]) < int(page[0]["id"]) for i in selected):
                token = _encode_cursor({"r": resource, "f": filters, "before": page[0]["id"]})
                links.insert(0, f'<{base}?{urlencode({"limit": limit, "page_info": token})}>; rel="previous"')
        if links:
            headers = {**headers, "Link": ", ".join(links)}
        if fields:
            wanted = [f.strip() for f in fields.split(",") if f.strip()]
            page = [{k: i[k] for k in wanted if k in i} for i in page]
        return JSONResponse({resource: page}, headers=headers)

    def _orders_for(self, state: ShopState, info: TokenInfo) -> list[Order]:
        """Orders the token may see: the last 60 days unless it has ``read_all_orders``."""
        orders = list(state.store.orders.values())
        if "read_all_orders" not in info.scopes:
            horizon = datetime.fromtimestamp(self.clock(), UTC) - timedelta(days=RECENT_ORDER_DAYS)
            orders = [o for o in orders if o.created_at >= horizon]
        return orders

    def _visible_orders(self, state: ShopState, info: TokenInfo) -> list[dict[str, Any]]:
        return [order_json(state.store, o) for o in self._orders_for(state, info)]

    async def h_orders(self, request: Request) -> Response:
        state, info, headers = self._authorize_api(request, _SCOPE_FOR["orders"])
        return self._listing(request, "orders", self._visible_orders(state, info), headers)

    async def h_orders_count(self, request: Request) -> Response:
        state, info, headers = self._authorize_api(request, _SCOPE_FOR["orders"])
        filters = {k: v for k, v in request.query_params.items() if k in _FILTERS["orders"]}
        filters.setdefault("status", "open")
        count = sum(1 for o in self._visible_orders(state, info) if self._matches(o, filters, "orders"))
        return JSONResponse({"count": count}, headers=headers)

    def _single(self, request: Request, key: str, items: list[dict[str, Any]], headers: dict[str, str]) -> Response:
        wanted = int(request.path_params["item_id"])
        item = next((i for i in items if int(i["id"]) == wanted), None)
        if item is None:
            raise RestError(404, "Not Found", headers)
        fields = request.query_params.get("fields")
        if fields:
            item = {k: item[k] for k in (f.strip() for f in fields.split(",")) if k in item}
        return JSONResponse({key: item}, headers=headers)

    async def h_order(self, request: Request) -> Response:
        state, info, headers = self._authorize_api(request, _SCOPE_FOR["orders"])
        return self._single(request, "order", self._visible_orders(state, info), headers)

    async def h_customer(self, request: Request) -> Response:
        state, _info, headers = self._authorize_api(request, _SCOPE_FOR["customers"])
        customer = state.store.customers.get(int(request.path_params["item_id"]))
        items = [customer_json(state.store, customer)] if customer else []
        return self._single(request, "customer", items, headers)

    async def h_product(self, request: Request) -> Response:
        state, _info, headers = self._authorize_api(request, _SCOPE_FOR["products"])
        product = state.store.products.get(int(request.path_params["item_id"]))
        items = [product_json(state.store, product)] if product else []
        return self._single(request, "product", items, headers)

    async def h_customers(self, request: Request) -> Response:
        state, _info, headers = self._authorize_api(request, _SCOPE_FOR["customers"])
        store = state.store
        items = [customer_json(store, c) for c in store.customers.values()]
        return self._listing(request, "customers", items, headers)

    async def h_products(self, request: Request) -> Response:
        state, _info, headers = self._authorize_api(request, _SCOPE_FOR["products"])
        store = state.store
        items = [product_json(store, p) for p in store.products.values()]
        return self._listing(request, "products", items, headers)

    # -- GraphQL Admin API -------------------------------------------------------------
    async def h_graphql(self, request: Request) -> Response:
        state, info, headers = self._authorize_api(request)
        try:
            body = await request.json()
        except ValueError:
            raise RestError(400, {"query": ["Required parameter missing or invalid"]}, headers) from None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            raise RestError(400, {"query": ["Required parameter missing or invalid"]}, headers)
        variables = body.get("variables")
        if variables is not None and not isinstance(variables, dict):
            raise RestError(400, {"variables": ["must be an object"]}, headers)
        shop = request.path_params["shop"]
        result = self.graphql.execute(
            shop=shop, app=info.client_id, store=state.store, orders=self._orders_for(state, info),
            shop_node=self._shop_node(shop), query=body["query"], variables=variables,
            operation=body.get("operationName") or None,
            file_url=lambda n: public_url(request, f"/__bulk/{n}.jsonl"),
        )
        asked = body["query"] + json.dumps(variables or {})  # a bulk query travels in a variable
        for scope in self._missing_scopes(asked, info):
            result.setdefault("errors", []).append({
                "message": f"Access denied for {scope[1]} field. Required access: `{scope[0]}` access scope.",
                "extensions": {"code": "ACCESS_DENIED"}})
            result["data"] = None
        return JSONResponse(result, headers=headers)

    @staticmethod
    def _missing_scopes(query: str, info: TokenInfo) -> list[tuple[str, str]]:
        return [(needed, name) for name, needed in (("orders", "read_orders"), ("customers", "read_customers"),
                                                    ("products", "read_products"))
                if re.search(rf"\b{name}\b", query) and needed not in info.scopes]

    async def h_bulk_file(self, request: Request) -> Response:
        """The JSONL result of a bulk operation (at Shopify a signed storage URL: no token)."""
        text = self.graphql.bulk_file(int(request.path_params["number"]))
        if text is None:
            raise RestError(404, "Not Found")
        return Response(text, media_type="application/jsonl")

    def _shop_node(self, shop: str) -> dict[str, Any]:
        rest = self._shop_json(shop)
        return {"__typename": "Shop", "id": f"gid://shopify/Shop/{rest['id']}", "name": rest["name"],
                "email": rest["email"], "myshopifyDomain": rest["myshopify_domain"], "currencyCode": rest["currency"],
                "ianaTimezone": rest["iana_timezone"], "timezoneAbbreviation": "EST",
                "plan": {"displayName": rest["plan_display_name"], "partnerDevelopment": False, "shopifyPlus": False},
                "createdAt": rest["created_at"], "updatedAt": rest["updated_at"]}

    # -- webhooks ------------------------------------------------------------------
    def _subscription_json(self, shop: str, sub: WebhookSubscription) -> dict[str, Any]:
        tz = self.shop(shop).store.tz
        return {
            "id": sub.id,
            "address": sub.address,
            "topic": sub.topic,
            "format": "json",
            "fields": [],
            "metafield_namespaces": [],
            "api_version": API_VERSION,
            "created_at": iso(sub.created_at, tz),
            "updated_at": iso(sub.created_at, tz),
        }

    async def h_webhooks_list(self, request: Request) -> Response:
        state, _info, headers = self._authorize_api(request)
        shop = request.path_params["shop"]
        subs = [self._subscription_json(shop, s) for s in state.webhooks.values()]
        return JSONResponse({"webhooks": subs}, headers=headers)

    async def h_webhooks_create(self, request: Request) -> Response:
        state, _info, headers = self._authorize_api(request)
        shop = request.path_params["shop"]
        try:
            body = await request.json()
        except ValueError:
            raise RestError(400, {"webhook": ["Required parameter missing or invalid"]}, headers) from None
        hook = body.get("webhook") if isinstance(body, dict) else None
        if not isinstance(hook, dict):
            raise RestError(400, {"webhook": ["Required parameter missing or invalid"]}, headers)
        topic, address = str(hook.get("topic") or ""), str(hook.get("address") or "")
        if topic not in {t.value for t in SUBSCRIBABLE_TOPICS}:
            raise RestError(422, {"topic": ["Invalid topic specified."]}, headers)
        if not address.startswith(("http://", "https://")):
            raise RestError(422, {"address": ["is invalid"]}, headers)
        if any(s.topic == topic and s.address == address for s in state.webhooks.values()):
            raise RestError(422, {"address": ["for this topic has already been taken"]}, headers)
        with self._lock:
            self._webhook_seq += 1
            sub = WebhookSubscription(self._webhook_seq, topic, address, datetime.now(UTC))
        state.webhooks[sub.id] = sub
        return JSONResponse({"webhook": self._subscription_json(shop, sub)}, status_code=201, headers=headers)

    async def h_webhooks_delete(self, request: Request) -> Response:
        state, _info, headers = self._authorize_api(request)
        if state.webhooks.pop(int(request.path_params["webhook_id"]), None) is None:
            raise RestError(404, "Not Found", headers)
        return JSONResponse({}, headers=headers)

    async def _fire(
        self, shop: str, topic: str, payload: Mapping[str, Any], addresses: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Deliver one event to every address (each delivery signed with the app secret)."""
        state = self.shop(shop)
        targets = (
            list(addresses)
            if addresses is not None
            else [s.address for s in state.webhooks.values() if s.topic == topic]
        )
        results = []
        async with httpx.AsyncClient(timeout=5.0) as client:
            for address in targets:
                try:
                    response = await deliver_webhook(
                        address, topic=topic, shop_domain=shop, payload=payload, secret=self.api_secret, client=client
                    )
                    result = {"topic": topic, "address": address, "status": response.status_code}
                except httpx.HTTPError as exc:
                    result = {"topic": topic, "address": address, "status": None, "error": type(exc).__name__}
                state.deliveries.append(result)
                results.append(result)
        return results

    # -- sandbox controls ----------------------------------------------------------
    async def c_install(self, request: Request) -> Response:
        shop = request.path_params["shop"]
        self.shop(shop)
        app_url = request.query_params.get("app_url")
        query = self.install_query(shop)
        if app_url:
            sep = "&" if "?" in app_url else "?"
            return Response(status_code=302, headers={"Location": f"{app_url}{sep}{urlencode(query)}"})
        return JSONResponse(query)

    async def _json_body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise RestError(400, "body must be JSON") from None
        if not isinstance(body, dict):
            raise RestError(400, "body must be a JSON object")
        return body

    async def c_new_order(self, request: Request) -> Any:
        shop = request.path_params["shop"]
        state = self.shop(shop)
        body = await self._json_body(request)
        customer_id = body.get("customer_id")
        if customer_id is not None and int(customer_id) not in state.store.customers:
            raise RestError(404, "customer not found")
        order = state.store.new_order(customer_id=int(customer_id) if customer_id is not None else None)
        payload = order_json(state.store, order)
        deliveries = await self._fire(shop, Topic.ORDERS_CREATE, payload)
        return {"order": payload, "deliveries": deliveries}

    async def c_refund(self, request: Request) -> Any:
        shop = request.path_params["shop"]
        state = self.shop(shop)
        order_id = int(request.path_params["order_id"])
        if order_id not in state.store.orders:
            raise RestError(404, "order not found")
        body = await self._json_body(request)
        amount = Decimal(str(body["amount"])) if body.get("amount") is not None else None
        order = state.store.refund(order_id, amount=amount)
        payload = order_json(state.store, order)
        deliveries = await self._fire(shop, Topic.ORDERS_UPDATED, payload)
        return {"order": payload, "deliveries": deliveries}

    async def c_privacy(self, request: Request) -> Any:
        """Simulate Shopify's mandatory privacy webhooks (sent to the app's configured URL)."""
        shop = request.path_params["shop"]
        state = self.shop(shop)
        kind = request.path_params["kind"]
        body = await self._json_body(request)
        url = body.get("url") or self.privacy_webhook_url
        if not url:
            raise RestError(400, "no privacy webhook URL configured (privacy_webhook_url or body.url)")
        base: dict[str, Any] = {"shop_id": state.store.shop_id, "shop_domain": shop}
        if kind in ("customers_data_request", "customers_redact"):
            cid = int(body.get("customer_id") or 0)
            customer = state.store.customers.get(cid)
            if customer is None:
                raise RestError(404, "customer not found")
            who = {"id": customer.id, "email": customer.email, "phone": customer.phone}
            orders = list(customer.order_ids)
            if kind == "customers_data_request":
                topic = Topic.CUSTOMERS_DATA_REQUEST
                payload = {
                    **base,
                    "customer": who,
                    "orders_requested": orders,
                    "data_request": {"id": int(self.clock())},
                }
            else:
                topic = Topic.CUSTOMERS_REDACT
                payload = {**base, "customer": who, "orders_to_redact": orders}
        elif kind == "shop_redact":
            topic, payload = Topic.SHOP_REDACT, base
        else:
            raise RestError(404, "unknown privacy request kind")
        deliveries = await self._fire(shop, topic, payload, addresses=[str(url)])
        return {"topic": topic.value, "payload": payload, "deliveries": deliveries}

    async def c_deliveries(self, request: Request) -> Any:
        return {"deliveries": self.shop(request.path_params["shop"]).deliveries}


def make_app(**kwargs: Any) -> Starlette:
    """ASGI app for ``omnify sandbox``."""
    return ShopifySandbox(**kwargs).app
