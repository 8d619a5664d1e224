"""Shopify sandbox and a webhook receiver, each on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from omnify.integrations.base import TokenSet
from omnify.integrations.http import CircuitBreakers, RetryPolicy
from omnify.integrations.sandbox_common import SandboxServer
from omnify.integrations.shopify import ShopifyConnector, ShopifySettings
from omnify.integrations.shopify.sandbox import DEFAULT_API_SECRET, ShopifySandbox
from tests.integration.integrations_shopify.shopify_helpers import SHOP, SHOP_END, MakeConnector, WebhookReceiver


@pytest.fixture(scope="module")
def shopify_sandbox() -> Iterator[ShopifySandbox]:
    sandbox = ShopifySandbox(end=SHOP_END)
    sandbox.serve()
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="module")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(secret=DEFAULT_API_SECRET)
    server = SandboxServer(receiver.app(), name="webhook-receiver").start()
    receiver.url = f"{server.url}/webhooks/shopify"
    yield receiver
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_state(shopify_sandbox: ShopifySandbox, webhook_receiver: WebhookReceiver) -> None:
    shopify_sandbox.injector.reset()
    shopify_sandbox.journal.clear()
    shopify_sandbox.bucket_size, shopify_sandbox.leak_rate, shopify_sandbox.retry_after = 40, 2.0, 2.0
    shopify_sandbox.privacy_webhook_url = webhook_receiver.url
    shopify_sandbox.reset()
    webhook_receiver.received.clear()


@pytest.fixture
async def make_shopify(shopify_sandbox: ShopifySandbox) -> AsyncIterator[MakeConnector]:
    made: list[ShopifyConnector] = []

    def make(
        shop: str = SHOP,
        tokens: TokenSet | None = None,
        *,
        breakers: CircuitBreakers | None = None,
        retry: RetryPolicy | None = None,
        observer: Any = None,
        **settings: Any,
    ) -> ShopifyConnector:
        values: dict[str, Any] = {
            "api_key": shopify_sandbox.api_key,
            "api_secret": shopify_sandbox.api_secret,
            "shop_url_template": shopify_sandbox.shop_url_template,
        }
        connector = ShopifyConnector(
            ShopifySettings(**{**values, **settings}),
            shop,
            tokens,
            observer=observer,
            retry=retry or RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, jitter=0.01),
            breakers=breakers or CircuitBreakers(threshold=50, cooldown=0.5),
        )
        made.append(connector)
        return connector

    yield make
    for c in made:
        await c.aclose()


@pytest.fixture
def shop_token(shopify_sandbox: ShopifySandbox) -> TokenSet:
    """An installed app's offline token (the browser dance is tested on its own)."""
    token = shopify_sandbox.grant_token(SHOP)
    return TokenSet(
        access_token=token,
        scopes=["read_orders", "read_all_orders", "read_customers", "read_products"],
        extra={"shop": SHOP},
    )
