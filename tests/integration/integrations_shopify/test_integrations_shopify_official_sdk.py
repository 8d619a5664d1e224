"""Shopify's official Python library (``ShopifyAPI``) against the sandbox.

An independent implementation of the same contract: its HMAC check must accept the
sandbox's signed OAuth callback, its REST resources must page through our Link headers,
and what it writes must be what our connector reads.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from omnify.integrations.base import TokenSet
from omnify.integrations.shopify.sandbox import ShopifySandbox
from tests.integration.integrations_shopify.shopify_helpers import SHOP, SHOP_REDIRECT, MakeConnector, WebhookReceiver

shopify = pytest.importorskip("shopify", reason="ShopifyAPI not installed")


@pytest.fixture
def sdk_session(shopify_sandbox: ShopifySandbox) -> Iterator[str]:
    """The SDK keeps its session in class attributes: set them for one test, then restore."""
    saved = (shopify.Session.api_key, shopify.Session.secret)
    shopify.Session.setup(api_key=shopify_sandbox.api_key, secret=shopify_sandbox.api_secret)
    token = shopify_sandbox.grant_token(SHOP)
    shopify.ShopifyResource.activate_session(shopify.Session(SHOP, "2026-10", token))
    shopify.ShopifyResource.set_site(f"{shopify_sandbox.shop_url_template.format(shop=SHOP)}/admin/api/2026-10")
    yield token
    shopify.ShopifyResource.clear_session()
    shopify.Session.setup(api_key=saved[0], secret=saved[1])


async def test_sdk_validates_sandbox_signed_callback(
    shopify_sandbox: ShopifySandbox, make_shopify: MakeConnector, sdk_session: str
) -> None:
    async with make_shopify() as c:
        start = c.authorize_url(redirect_uri=SHOP_REDIRECT, state="sdk-state")
    async with httpx.AsyncClient() as browser:
        redirect = await browser.get(start.url + "&sandbox_auto_approve=1")
    params = dict(httpx.URL(redirect.headers["location"]).params)
    assert shopify.Session.validate_params(params) is True  # Shopify's own HMAC + freshness rules
    assert shopify.Session.validate_params({**params, "shop": "bright-smiles.myshopify.com"}) is False
    assert shopify.Session.validate_params(shopify_sandbox.install_query(SHOP)) is True


async def test_sdk_reads_pages_and_writes_through_sandbox(
    shopify_sandbox: ShopifySandbox, make_shopify: MakeConnector, sdk_session: str, webhook_receiver: WebhookReceiver
) -> None:
    assert shopify.Shop.current().myshopify_domain == SHOP

    page = shopify.Order.find(status="any", limit=100)
    sdk_ids = [o.id for o in page]
    pages = 1
    while page.has_next_page():
        page = page.next_page()
        sdk_ids += [o.id for o in page]
        pages += 1
    store = shopify_sandbox.shops[SHOP].store
    assert pages == -(-len(store.orders) // 100) and sorted(sdk_ids) == sorted(store.orders)

    async with make_shopify(tokens=TokenSet(access_token=sdk_session)) as c:
        mine = {o.external_id: o for o in [o async for o in c.orders()]}
        sdk_customer = shopify.Customer.find(limit=1)[0]
        ours = {x.external_id: x async for x in c.customers()}[str(sdk_customer.id)]
        assert ours.total_spent_minor == round(float(sdk_customer.total_spent) * 100)
        assert ours.orders_count == sdk_customer.orders_count
        sample = shopify.Order.find(sdk_ids[0])
        assert mine[str(sample.id)].total_minor == round(float(sample.total_price) * 100)

        hook = shopify.Webhook.create({"topic": "orders/create", "address": webhook_receiver.url, "format": "json"})
        assert hook.id and not hook.errors.full_messages()
        assert [w["id"] for w in await c.webhooks()] == [hook.id]
