"""Shopify Admin API connector: reads through the GraphQL Admin API, implements CommerceConnector.

Shopify-specific behaviour and why:

* One connector per shop: the shop domain is the API host (``shop_url_template``, default
  ``https://{shop}``; the sandbox also serves ``http://127.0.0.1:PORT/shops/{shop}``), and the
  circuit breaker is keyed on it.
* Reads (shop, orders, customers, products) use ``/admin/api/<version>/graphql.json``:
  Shopify made the REST Admin API legacy. Paging follows ``pageInfo.endCursor``; incremental
  reads filter with the search syntax ``updated_at:>='...'`` sorted by ``UPDATED_AT``.
* Backfills (a window older than ``bulk_after``) run as a **bulk operation**: one mutation,
  a few status polls, one JSONL download - no paging and no query cost for a year of orders.
* Throttling is cost-based (see graphql.py): the connector waits before a query the bucket
  cannot pay for (``throttle_hint`` from ``extensions.cost``) and a ``THROTTLED`` answer is a
  RateLimited with the exact wait, retried by the shared retry policy.
* Webhook subscriptions, uninstall and OAuth stay on their REST endpoints (REST's leaky
  bucket: ``X-Shopify-Shop-Api-Call-Limit``, slowed down before it is full).
* Offline tokens do not expire; a 401 means the app was uninstalled or the token revoked,
  mapped to AuthRevoked (re-install needed), never to a refresh attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from omnify.integrations.base import (
    AuthRevoked,
    ConnectorError,
    InvalidRequest,
    OAuthStart,
    Platform,
    ShopCustomer,
    ShopOrder,
    ShopProduct,
    TokenSet,
    TransientError,
)
from omnify.integrations.http import CircuitBreakers, ConnectorHttp, HttpConnector, HttpObserver, RetryPolicy
from omnify.integrations.shopify import graphql as gql
from omnify.integrations.shopify import mapping, oauth
from omnify.integrations.shopify.mapping import ACCESS_TOKEN_HEADER, API_VERSION, CALL_LIMIT_HEADER


@dataclass(frozen=True, slots=True)
class ShopifySettings:
    api_key: str  # the app's client id
    api_secret: str  # the app's client secret (signs OAuth requests and webhooks)
    scopes: tuple[str, ...] = oauth.DEFAULT_SCOPES
    shop_url_template: str = "https://{shop}"
    api_version: str = API_VERSION
    page_size: int = 250  # Shopify's maximum
    call_limit_threshold: float = 0.8  # start slowing down when the bucket is this full
    leak_rate: float = 2.0  # requests/second the bucket drains (standard plans; Plus: 20)
    timeout: float = 30.0
    # GraphQL page sizes keep each query under Shopify's 1000-point limit: an order with 5 line
    # items costs 31 points (25 orders: 777), a customer or product 2 (250: 502).
    graphql_page_size: int = 250
    orders_page_size: int = 25
    order_line_items: int = 5  # line items fetched with each order; more are paged per order
    bulk_after: timedelta = timedelta(days=7)  # a read window older than this runs as a bulk operation
    bulk_poll_seconds: float = 1.0
    bulk_timeout_seconds: float = 3600.0

    def shop_base_url(self, shop: str) -> str:
        return self.shop_url_template.format(shop=shop).rstrip("/")


class ShopifyConnector(HttpConnector):
    """One shop, optionally bound to its offline access token."""

    platform: Platform = Platform.SHOPIFY

    def __init__(
        self,
        settings: ShopifySettings,
        shop: str,
        tokens: TokenSet | None = None,
        *,
        retry: RetryPolicy | None = None,
        breakers: CircuitBreakers | None = None,
        observer: HttpObserver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.shop = oauth.validate_shop_domain(shop)
        self._http = ConnectorHttp(
            platform=Platform.SHOPIFY.value,
            base_url=settings.shop_base_url(self.shop),
            error_mapper=self._map_error,
            throttle_hint=self._throttle_hint,
            retry=retry,
            breakers=breakers,
            timeout=settings.timeout,
            transport=transport,
            observer=observer,
        )
        self._http.add_secret(settings.api_secret)
        self._tokens: TokenSet | None = None
        self._currency: str | None = None
        self._bulk_transport = transport
        if tokens is not None:
            self.with_tokens(tokens)

    # -- plumbing ------------------------------------------------------------------
    def with_tokens(self, tokens: TokenSet) -> ShopifyConnector:
        """Bind the shop's access token (in place; returns self for chaining)."""
        self._tokens = tokens
        self._http.add_secret(tokens.access_token)
        return self

    def _map_error(self, response: httpx.Response) -> ConnectorError | None:
        return mapping.graphql_error(response) or mapping.error_for_response(response)

    def _throttle_hint(self, response: httpx.Response) -> float:
        if response.request.url.path.endswith("/graphql.json"):
            try:
                return gql.wait_for(response.json())  # can the bucket pay for the same query again?
            except ValueError:
                return 0.0
        parsed = mapping.parse_call_limit(response.headers.get(CALL_LIMIT_HEADER))
        if parsed is None:
            return 0.0
        used, size = parsed
        threshold = self.settings.call_limit_threshold * size
        if used < threshold:
            return 0.0
        # Wait until the bucket has leaked back under the threshold, plus room for one call.
        return (used - threshold + 1) / self.settings.leak_rate

    def _path(self, resource: str) -> str:
        return f"/admin/api/{self.settings.api_version}/{resource}.json"

    def _headers(self) -> dict[str, str]:
        if self._tokens is None:
            raise AuthRevoked(f"Shopify connector for {self.shop} has no access token: install the app first")
        return {ACCESS_TOKEN_HEADER: self._tokens.access_token, "Accept": "application/json"}

    # -- OAuth ---------------------------------------------------------------------
    def authorize_url(self, *, redirect_uri: str, state: str, online: bool = False) -> OAuthStart:
        return oauth.authorize_url(
            shop_base_url=self.settings.shop_base_url(self.shop),
            api_key=self.settings.api_key,
            scopes=self.settings.scopes,
            redirect_uri=redirect_uri,
            state=state,
            online=online,
        )

    async def exchange_code(self, *, code: str, redirect_uri: str = "", code_verifier: str | None = None) -> TokenSet:
        tokens = await oauth.exchange_code(
            self._http,
            shop=self.shop,
            api_key=self.settings.api_key,
            api_secret=self.settings.api_secret,
            code=code,
        )
        missing = set(self.settings.scopes) - set(tokens.scopes)
        if missing:
            # The merchant can edit scopes on the consent screen; a partial grant is not a
            # working connection (and Shopify docs require apps to check this).
            raise InvalidRequest(f"Shopify granted fewer scopes than requested; missing: {', '.join(sorted(missing))}")
        return tokens

    async def revoke(self, tokens: TokenSet | None = None) -> None:
        """Uninstall the app from the shop (DELETE /admin/api_permissions/current.json)."""
        token = tokens or self._tokens
        if token is None:
            return
        self._http.add_secret(token.access_token)
        await self._http.request(
            "DELETE",
            "/admin/api_permissions/current.json",
            headers={ACCESS_TOKEN_HEADER: token.access_token},
            circuit=self.shop,
        )

    # -- reads (GraphQL) -------------------------------------------------------------
    async def _graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        body = await self._http.post_json(self._path("graphql"), json={"query": query, "variables": variables or {}},
                                          headers=self._headers(), circuit=self.shop)
        data = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(data, dict):
            raise InvalidRequest(f"Shopify graphql.json returned no data: {gql.error_text(body)}")
        return data

    async def shop_info(self) -> Mapping[str, Any]:
        shop = (await self._graphql(gql.SHOP)).get("shop")
        if not isinstance(shop, Mapping):
            raise InvalidRequest("Shopify shop query returned no shop")
        self._currency = str(shop.get("currencyCode") or "USD").upper()
        return shop

    async def verify(self) -> dict[str, Any]:
        shop = await self.shop_info()
        return {
            "ok": True,
            "platform": self.platform.value,
            "shop": shop.get("myshopifyDomain") or self.shop,
            "name": shop.get("name"),
            "currency": self._currency,
            "plan": (shop.get("plan") or {}).get("displayName"),
            "timezone": shop.get("ianaTimezone"),
        }

    async def _currency_code(self) -> str:
        if self._currency is None:
            await self.shop_info()
        assert self._currency is not None
        return self._currency

    def _use_bulk(self, updated_since: datetime | None) -> bool:
        if updated_since is None:
            return True
        since = updated_since if updated_since.tzinfo else updated_since.replace(tzinfo=UTC)
        return datetime.now(UTC) - since > self.settings.bulk_after

    async def _paged(self, query: str, root: str, variables: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        after: str | None = None
        while True:
            data = await self._graphql(query, {**variables, "after": after})
            connection = data.get(root)
            for node in gql.edges(connection):
                yield node
            after = gql.page_after(connection)
            if after is None:
                return

    async def _read(self, resource: str, query: str, updated_since: datetime | None,
                    extra: Mapping[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        search = gql.updated_since_query(mapping.format_time(updated_since) if updated_since else None)
        if self._use_bulk(updated_since):
            async for node in self.bulk(resource, search):
                yield node
            return
        variables = {"first": self.settings.graphql_page_size, "query": search, **(extra or {})}
        async for node in self._paged(query, resource, variables):
            yield node

    async def _all_lines(self, order: dict[str, Any]) -> dict[str, Any]:
        """An order with more line items than the first page: fetch the rest by its id."""
        after = gql.page_after(order.get("lineItems"))
        lines = gql.edges(order.get("lineItems"))
        while after is not None:
            data = await self._graphql(gql.ORDER_LINES, {"id": order["id"], "after": after})
            connection = (data.get("order") or {}).get("lineItems")
            lines += gql.edges(connection)
            after = gql.page_after(connection)
        return {**order, "lineItems": {"nodes": lines}}

    async def orders(self, updated_since: datetime | None = None) -> AsyncIterator[ShopOrder]:
        currency = await self._currency_code()
        extra = {"first": self.settings.orders_page_size, "lines": self.settings.order_line_items}
        async for node in self._read("orders", gql.ORDERS, updated_since, extra):
            if gql.page_after(node.get("lineItems")):
                node = await self._all_lines(node)
            yield mapping.order_from_graphql(node, shop_currency=currency)

    async def customers(self, updated_since: datetime | None = None) -> AsyncIterator[ShopCustomer]:
        currency = await self._currency_code()
        async for node in self._read("customers", gql.CUSTOMERS, updated_since):
            yield mapping.customer_from_graphql(node, shop_currency=currency)

    async def products(self, updated_since: datetime | None = None) -> AsyncIterator[ShopProduct]:
        async for node in self._read("products", gql.PRODUCTS, updated_since):
            yield mapping.product_from_graphql(node)

    # -- bulk operations -------------------------------------------------------------
    async def bulk(self, resource: str, search: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Run one bulk query over ``resource`` and stream its result's root objects."""
        run = (await self._graphql(gql.BULK_RUN, {"query": gql.bulk_query(resource, search)}))
        payload = run.get("bulkOperationRunQuery") or {}
        errors = payload.get("userErrors") or []
        if errors or not payload.get("bulkOperation"):
            raise InvalidRequest(f"Shopify refused the bulk {resource} query: "
                                 f"{'; '.join(str(e.get('message')) for e in errors) or 'no operation'}")
        op_id = str(payload["bulkOperation"]["id"])
        waited = 0.0
        while True:
            node = (await self._graphql(gql.BULK_STATUS, {"id": op_id})).get("node") or {}
            status = node.get("status")
            if status == "COMPLETED":
                break
            if status in ("FAILED", "CANCELED", "EXPIRED"):
                raise TransientError(f"Shopify bulk {resource} operation {op_id} ended {status} "
                                     f"({node.get('errorCode') or 'no error code'})")
            if waited >= self.settings.bulk_timeout_seconds:
                raise TransientError(f"Shopify bulk {resource} operation {op_id} still {status} after {waited:g}s")
            await asyncio.sleep(self.settings.bulk_poll_seconds)
            waited += self.settings.bulk_poll_seconds
        url = node.get("url")
        if not url:  # nothing matched: Shopify gives no file
            return
        # A signed storage URL on another host: fetched without our token.
        async with httpx.AsyncClient(timeout=self.settings.timeout, transport=self._bulk_transport) as client, \
                client.stream("GET", str(url)) as response:
            if response.status_code >= 400:
                raise TransientError(f"Shopify bulk result download failed: HTTP {response.status_code}")
            for item in gql.parse_jsonl([line async for line in response.aiter_lines()]):
                yield item

    # -- webhook subscriptions -----------------------------------------------------
    async def subscribe_webhook(self, topic: str, address: str) -> Mapping[str, Any]:
        payload = await self._http.post_json(
            self._path("webhooks"),
            json={"webhook": {"topic": topic, "address": address, "format": "json"}},
            headers=self._headers(),
            circuit=self.shop,
        )
        webhook = payload.get("webhook") if isinstance(payload, Mapping) else None
        if not isinstance(webhook, Mapping):
            raise InvalidRequest("Shopify webhooks.json returned no webhook object")
        return webhook

    async def webhooks(self) -> list[Mapping[str, Any]]:
        payload = await self._http.get_json(self._path("webhooks"), headers=self._headers(), circuit=self.shop)
        return list(payload.get("webhooks") or []) if isinstance(payload, Mapping) else []
