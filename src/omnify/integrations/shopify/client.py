"""Shopify Admin REST API connector (versioned ``/admin/api/<version>/``): implements CommerceConnector.

Shopify-specific behaviour and why:

* One connector per shop: the shop domain is the API host (``shop_url_template``, default
  ``https://{shop}``; the sandbox serves ``http://127.0.0.1:PORT/shops/{shop}``), and the
  circuit breaker is keyed on it.
* Paging follows the ``Link`` header (``rel="next"`` URL carrying an opaque ``page_info``);
  Shopify forbids repeating filters next to ``page_info``, so the next URL is used verbatim.
* Rate limit: REST is a leaky bucket (40 requests, leaking 2/s on standard plans) reported
  in ``X-Shopify-Shop-Api-Call-Limit: used/size``. The connector slows down *before* the
  bucket is full (``throttle_hint``: pause long enough for the bucket to drain back to the
  threshold) and honours ``Retry-After`` on 429 through the shared retry policy.
* ``orders.json`` defaults to open orders only, and to the last 60 days without the
  ``read_all_orders`` scope: the connector always asks ``status=any``.
* Offline tokens do not expire; a 401 means the app was uninstalled or the token revoked,
  mapped to AuthRevoked (re-install needed), never to a refresh attempt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
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
)
from omnify.integrations.http import CircuitBreakers, ConnectorHttp, HttpConnector, HttpObserver, RetryPolicy
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
        if tokens is not None:
            self.with_tokens(tokens)

    # -- plumbing ------------------------------------------------------------------
    def with_tokens(self, tokens: TokenSet) -> ShopifyConnector:
        """Bind the shop's access token (in place; returns self for chaining)."""
        self._tokens = tokens
        self._http.add_secret(tokens.access_token)
        return self

    def _map_error(self, response: httpx.Response) -> ConnectorError | None:
        return mapping.error_for_response(response)

    def _throttle_hint(self, response: httpx.Response) -> float:
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

    # -- reads ---------------------------------------------------------------------
    async def shop_info(self) -> Mapping[str, Any]:
        payload = await self._http.get_json(self._path("shop"), headers=self._headers(), circuit=self.shop)
        shop = payload.get("shop") if isinstance(payload, Mapping) else None
        if not isinstance(shop, Mapping):
            raise InvalidRequest("Shopify shop.json has no shop object")
        self._currency = str(shop.get("currency") or "USD").upper()
        return shop

    async def verify(self) -> dict[str, Any]:
        shop = await self.shop_info()
        return {
            "ok": True,
            "platform": self.platform.value,
            "shop": shop.get("myshopify_domain") or self.shop,
            "name": shop.get("name"),
            "currency": self._currency,
            "plan": shop.get("plan_name"),
            "timezone": shop.get("iana_timezone"),
        }

    async def _currency_code(self) -> str:
        if self._currency is None:
            await self.shop_info()
        assert self._currency is not None
        return self._currency

    async def _paged(self, resource: str, key: str, params: Mapping[str, Any]) -> AsyncIterator[Mapping[str, Any]]:
        url: str = self._path(resource)
        query: Mapping[str, Any] | None = {"limit": self.settings.page_size, **params}
        while True:
            response = await self._http.request("GET", url, params=query, headers=self._headers(), circuit=self.shop)
            try:
                payload = response.json()
            except ValueError:
                raise InvalidRequest(f"Shopify {resource}.json returned a non-JSON body") from None
            for item in payload.get(key) or []:
                yield item
            nxt = response.links.get("next", {}).get("url")
            if not nxt:
                return
            self._check_same_origin(nxt)
            url, query = nxt, None  # the next URL carries page_info (+limit) and nothing else may be added

    def _check_same_origin(self, url: str) -> None:
        """The access token goes wherever the Link header points: never leave the shop's host."""
        target, base = httpx.URL(url), self._http.base_url
        if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
            raise InvalidRequest(f"Shopify pagination link points outside {self.shop}; refusing to follow it")

    @staticmethod
    def _since(updated_since: datetime | None) -> dict[str, str]:
        return {"updated_at_min": mapping.format_time(updated_since)} if updated_since else {}

    async def orders(self, updated_since: datetime | None = None) -> AsyncIterator[ShopOrder]:
        currency = await self._currency_code()
        params = {"status": "any", **self._since(updated_since)}
        async for item in self._paged("orders", "orders", params):
            yield mapping.order_from(item, shop_currency=currency)

    async def customers(self, updated_since: datetime | None = None) -> AsyncIterator[ShopCustomer]:
        currency = await self._currency_code()
        async for item in self._paged("customers", "customers", self._since(updated_since)):
            yield mapping.customer_from(item, shop_currency=currency)

    async def products(self, updated_since: datetime | None = None) -> AsyncIterator[ShopProduct]:
        async for item in self._paged("products", "products", self._since(updated_since)):
            yield mapping.product_from(item)

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
