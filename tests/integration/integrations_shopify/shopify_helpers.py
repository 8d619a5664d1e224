"""Helpers shared by the Shopify integration tests (importable: conftest modules are not)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from omnify.integrations.base import TokenSet
from omnify.integrations.shopify import ShopifyConnector
from omnify.integrations.shopify.oauth import verify_shopify_request
from omnify.integrations.shopify.webhooks import WebhookSignatureInvalid, parse_webhook
from tests.integration.integrations_shared.connector_helpers import approve_consent

SHOP = "acme-outdoor.myshopify.com"
OTHER_SHOP = "bright-smiles.myshopify.com"
SHOP_END = date(2025, 6, 30)
SHOP_REDIRECT = "http://127.0.0.1:8000/api/v1/oauth/shopify/callback"

MakeConnector = Callable[..., ShopifyConnector]


@dataclass
class Received:
    topic: str | None
    headers: dict[str, str]
    body: bytes
    status: int
    payload: dict[str, Any] | None


@dataclass
class WebhookReceiver:
    """A stand-in for the inbound webhook endpoint: verifies like the real one must (401 on a
    bad signature), records everything it was sent."""

    secret: str
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def app(self) -> Starlette:
        async def hook(request: Request) -> JSONResponse:
            body = await request.body()
            headers = dict(request.headers)
            try:
                event = parse_webhook(headers, body, self.secret)
            except WebhookSignatureInvalid:
                self._add(Received(headers.get("x-shopify-topic"), headers, body, 401, None))
                return JSONResponse({"error": "invalid signature"}, status_code=401)
            self._add(Received(event.topic, headers, body, 200, event.payload))
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/webhooks/shopify", hook, methods=["POST"])])

    def _add(self, item: Received) -> None:
        with self.lock:
            self.received.append(item)

    def topics(self) -> list[str | None]:
        with self.lock:
            return [r.topic for r in self.received]


async def install_and_authorize(connector: ShopifyConnector, secret: str, state: str = "st-shop") -> TokenSet:
    """The merchant's browser: consent screen, approve, callback verified, code exchanged."""
    start = connector.authorize_url(redirect_uri=SHOP_REDIRECT, state=state)
    callback = await approve_consent(start.url)
    assert str(callback).startswith(SHOP_REDIRECT)
    query = list(callback.params.multi_items())
    assert verify_shopify_request(query, secret) == connector.shop
    assert callback.params["state"] == state
    return await connector.exchange_code(code=callback.params["code"], redirect_uri=SHOP_REDIRECT)
