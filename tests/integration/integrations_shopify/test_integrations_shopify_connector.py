"""Shopify connector, OAuth install and webhooks over real HTTP against the Shopify sandbox."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from omnify.integrations.base import (
    AuthRevoked,
    CircuitOpen,
    CommerceConnector,
    InvalidRequest,
    PermissionDenied,
    TokenSet,
    TransientError,
)
from omnify.integrations.http import CircuitBreakers
from omnify.integrations.sandbox_common import SandboxServer
from omnify.integrations.shopify import ShopifyConnector, ShopifySettings
from omnify.integrations.shopify.oauth import (
    InvalidShopDomain,
    InvalidSignature,
    query_hmac,
    sign_query,
    validate_shop_domain,
    verify_shopify_request,
)
from omnify.integrations.shopify.sandbox import ShopifySandbox
from omnify.integrations.shopify.webhooks import (
    HMAC_HEADER,
    Topic,
    WebhookSignatureInvalid,
    deliver_webhook,
    parse_webhook,
    sign_webhook,
    verify_webhook,
)
from tests.integration.integrations_shared.connector_helpers import RecordingObserver
from tests.integration.integrations_shopify.shopify_helpers import (
    OTHER_SHOP,
    SHOP,
    SHOP_REDIRECT,
    MakeConnector,
    WebhookReceiver,
    install_and_authorize,
)


# ------------------------------------------------------------------------------ install + OAuth
def test_install_request_hmac_valid_tampered_stale_and_bad_domain(shopify_sandbox: ShopifySandbox) -> None:
    secret = shopify_sandbox.api_secret
    query = shopify_sandbox.install_query(SHOP)
    assert set(query) == {"shop", "host", "timestamp", "hmac"}
    assert verify_shopify_request(query, secret) == SHOP
    assert verify_shopify_request(query, ["old-rotated-secret", secret]) == SHOP  # secret rotation

    for tampered in (
        {**query, "shop": OTHER_SHOP},
        {**query, "extra": "1"},
        {**query, "hmac": "0" * 64},
        {k: v for k, v in query.items() if k != "hmac"},
    ):
        with pytest.raises(InvalidSignature):
            verify_shopify_request(tampered, secret)
    with pytest.raises(InvalidSignature):
        verify_shopify_request(query, "a-different-app-secret")
    stale = shopify_sandbox.install_query(SHOP, timestamp=int(time.time()) - 3 * 86400)
    with pytest.raises(InvalidSignature):
        verify_shopify_request(stale, secret)
    forged = sign_query({"shop": "evil.example.com", "timestamp": str(int(time.time()))}, secret)
    with pytest.raises(InvalidShopDomain):  # even correctly signed, a non-myshopify host is refused
        verify_shopify_request(forged, secret)


def test_hmac_message_rules_by_hand() -> None:
    # Sorted by key, hmac removed, k=v joined with '&'; hex HMAC-SHA256 with the app secret.
    params = {"shop": "a.myshopify.com", "code": "0907a61c0c8d55e99db179b68161bc00", "timestamp": "1337178173"}
    expected = hmac.new(
        b"hush", b"code=0907a61c0c8d55e99db179b68161bc00&shop=a.myshopify.com&timestamp=1337178173", hashlib.sha256
    ).hexdigest()
    assert query_hmac(params, "hush") == expected
    # array parameters are signed as ids=["1", "2"]; '&' and '%' in values cannot forge pairs
    arr = [("ids[]", "1"), ("ids[]", "2"), ("shop", "a.myshopify.com")]
    msg = hmac.new(b"k", b'ids=["1", "2"]&shop=a.myshopify.com', hashlib.sha256).hexdigest()
    assert query_hmac(arr, "k") == msg
    assert query_hmac({"a": "1&b=2"}, "k") != query_hmac({"a": "1", "b": "2"}, "k")


@pytest.mark.parametrize("good", ["acme.myshopify.com", "ACME-outdoor.MyShopify.com ", "a1-b2.myshopify.com"])
def test_shop_domain_accepts(good: str) -> None:
    assert validate_shop_domain(good) == good.strip().lower()


@pytest.mark.parametrize(
    "bad",
    [
        "",
        None,
        "acme.com",
        "-acme.myshopify.com",
        "acme.myshopify.com.evil.com",
        "acme.myshopify.com/admin",
        "acme.myshopify.com:8443",
        "https://acme.myshopify.com",
        "ac_me.myshopify.com",
        "evil.com#.myshopify.com",
        "acme..myshopify.com",
    ],
)
def test_shop_domain_refuses(bad: str | None, shopify_sandbox: ShopifySandbox) -> None:
    with pytest.raises(InvalidShopDomain):
        validate_shop_domain(bad)

    with pytest.raises(InvalidShopDomain):  # the connector never builds a URL from a bad shop
        ShopifyConnector(ShopifySettings(api_key="k", api_secret="s"), bad or "")


async def test_oauth_consent_callback_hmac_and_code_exchange(
    shopify_sandbox: ShopifySandbox, make_shopify: MakeConnector
) -> None:
    async with make_shopify() as c:
        assert isinstance(c, CommerceConnector)
        start = c.authorize_url(redirect_uri=SHOP_REDIRECT, state="st-1")
        url = httpx.URL(start.url)
        assert url.path == f"/shops/{SHOP}/admin/oauth/authorize"
        assert url.params["scope"] == "read_orders,read_all_orders,read_customers,read_products"
        tokens = await install_and_authorize(c, shopify_sandbox.api_secret, "st-1")
        assert tokens.access_token.startswith("shpat-at-") and tokens.refresh_token is None
        assert tokens.expires_at is None and tokens.extra["shop"] == SHOP
        assert set(tokens.scopes) == {"read_orders", "read_all_orders", "read_customers", "read_products"}
        c.with_tokens(tokens)
        info = await c.verify()
        assert info["ok"] and info["shop"] == SHOP and info["currency"] == "USD"
        assert info["timezone"] == "America/New_York"

    # A code is single-use and bound to its shop.
    async with make_shopify() as c:
        start = c.authorize_url(redirect_uri=SHOP_REDIRECT, state="st-2")
        async with httpx.AsyncClient() as browser:
            redirect = await browser.get(start.url + "&sandbox_auto_approve=1")
        code = httpx.URL(redirect.headers["location"]).params["code"]
        async with make_shopify(OTHER_SHOP) as other:
            with pytest.raises(InvalidRequest):
                await other.exchange_code(code=code)
        with pytest.raises(InvalidRequest):  # consumed by the failed attempt above
            await c.exchange_code(code=code)
    statuses = [e.status for e in shopify_sandbox.journal.entries("/admin/oauth/access_token")]
    assert statuses == [200, 400, 400]  # each exchange sent once: codes are never retried


async def test_partial_scope_grant_is_refused(shopify_sandbox: ShopifySandbox, make_shopify: MakeConnector) -> None:
    async with make_shopify() as c:
        start = c.authorize_url(redirect_uri=SHOP_REDIRECT, state="s")
        narrowed = start.url.replace("read_orders%2Cread_all_orders%2C", "")  # merchant removed scopes
        async with httpx.AsyncClient() as browser:
            redirect = await browser.get(narrowed + "&sandbox_auto_approve=1")
        with pytest.raises(InvalidRequest, match="missing: read_all_orders, read_orders"):
            await c.exchange_code(code=httpx.URL(redirect.headers["location"]).params["code"])


# ------------------------------------------------------------------------------ streams
async def test_backfill_by_bulk_operation_and_paged_reads_agree_with_exact_money(
    shopify_sandbox: ShopifySandbox, make_shopify: MakeConnector, shop_token: TokenSet
) -> None:
    store = shopify_sandbox.shops[SHOP].store
    async with make_shopify(tokens=shop_token) as c:  # no updated_since: a backfill, one bulk operation each
        orders = [o async for o in c.orders()]
        customers = [x async for x in c.customers()]
        products = [p async for p in c.products()]
    graphql_calls = shopify_sandbox.journal.entries("/graphql.json")
    assert len(shopify_sandbox.journal.entries("/__bulk/")) == 3 and len(graphql_calls) <= 1 + 3 * 3
    assert len(orders) == len(store.orders) > 400  # every status: archived and cancelled included
    assert len({o.external_id for o in orders}) == len(orders)
    assert len(customers) == 400 and len(products) == 24
    assert {p.status for p in products} == {"active", "draft", "archived"}

    for o in orders:
        truth = store.orders[int(o.external_id)]
        assert o.total_minor == int(truth.total_price * 100) and o.currency == "USD"
        assert o.customer_external_id == str(truth.customer_id) and o.name == truth.name
        assert sum(li["price_minor"] * li["quantity"] for li in o.line_items) == int(truth.total_line_items_price * 100)
        assert o.created_at.utcoffset() in (timedelta(hours=-4), timedelta(hours=-5))  # shop-local offsets kept
    for cu in customers:
        count, spent, _last = store.customer_totals(int(cu.external_id))
        assert (cu.orders_count, cu.total_spent_minor) == (count, int(spent * 100))
    repeaters = [cu for cu in customers if cu.orders_count >= 2]
    assert 30 < len(repeaters) < 200  # BG/NBD: a minority buys again, a few buy often

    # The same reads paged (a recent window): identical records, several pages, orders with more
    # line items than the first page fetched in full.
    shopify_sandbox.journal.clear()
    shopify_sandbox.graphql.bucket_size, shopify_sandbox.graphql.restore_rate = 20000.0, 1000.0  # a Plus shop
    shopify_sandbox.graphql.reset()
    try:
        async with make_shopify(tokens=shop_token, bulk_after=timedelta(days=36500), orders_page_size=50,
                                order_line_items=2) as c:
            since = datetime(2000, 1, 1, tzinfo=UTC)
            paged = {o.external_id: o async for o in c.orders(updated_since=since)}
            paged_customers = [x async for x in c.customers(updated_since=since)]
    finally:
        shopify_sandbox.graphql.bucket_size, shopify_sandbox.graphql.restore_rate = 2000.0, 100.0
        shopify_sandbox.graphql.reset()
    assert paged == {o.external_id: o for o in orders} and len(paged_customers) == 400
    assert not shopify_sandbox.journal.entries("/__bulk/")
    assert len(shopify_sandbox.journal.entries("/graphql.json")) > -(-len(orders) // 50)
    assert any(len(o.line_items) > 2 for o in orders)  # some orders needed their remaining lines paged

    # Hand-check one order against the raw GraphQL answer: "72.21" (string) -> 7221, cost reported.
    async with httpx.AsyncClient() as raw:
        resp = await raw.post(
            f"{shopify_sandbox.shop_url_template.format(shop=SHOP)}/admin/api/2026-10/graphql.json",
            json={"query": "{ orders(first: 1) { nodes { id totalPriceSet { shopMoney { amount } } createdAt } } }"},
            headers={"X-Shopify-Access-Token": shop_token.access_token},
        )
    body = resp.json()
    assert resp.status_code == 200 and body["extensions"]["cost"]["requestedQueryCost"] == 2 + 1 * 3
    first = body["data"]["orders"]["nodes"][0]
    mine = next(o for o in orders if f"gid://shopify/Order/{o.external_id}" == first["id"])
    assert mine.total_minor == int(Decimal(first["totalPriceSet"]["shopMoney"]["amount"]) * 100)
    assert mine.created_at == datetime.fromisoformat(first["createdAt"])


async def test_incremental_updated_since_sees_refunds(
    shopify_sandbox: ShopifySandbox, make_shopify: MakeConnector, shop_token: TokenSet
) -> None:
    store = shopify_sandbox.shops[SHOP].store
    async with make_shopify(tokens=shop_token) as c:
        everything = [o async for o in c.orders()]
        cursor = max(o.updated_at for o in everything if o.updated_at) + timedelta(seconds=1)
        assert [o async for o in c.orders(updated_since=cursor)] == []
        since_last_month = [o async for o in c.orders(updated_since=cursor - timedelta(days=30))]
        assert 0 < len(since_last_month) < len(everything)
        assert all(o.updated_at and o.updated_at >= cursor - timedelta(days=30) for o in since_last_month)

        target = next(o for o in everything if o.financial_status == "paid")
        async with httpx.AsyncClient() as control:
            await control.post(f"{shopify_sandbox.url}/__sandbox/shops/{SHOP}/orders/{target.external_id}/refund")
        changed = [o async for o in c.orders(updated_since=cursor)]
    assert [o.external_id for o in changed] == [target.external_id]
    assert changed[0].financial_status == "refunded"
    assert store.orders[int(target.external_id)].refunded == store.orders[int(target.external_id)].total_price


async def test_read_all_orders_scope(
    shopify_sandbox: ShopifySandbox, make_shopify: MakeConnector, shop_token: TokenSet
) -> None:
    narrow = shopify_sandbox.grant_token(SHOP, scopes=["read_orders", "read_customers", "read_products"])
    async with make_shopify(tokens=TokenSet(access_token=narrow)) as c:
        recent = [o async for o in c.orders()]
    assert recent == []  # the data ends more than 60 days ago: nothing visible without read_all_orders


async def test_missing_scope_and_bad_token(shopify_sandbox: ShopifySandbox, make_shopify: MakeConnector) -> None:
    orders_only = shopify_sandbox.grant_token(SHOP, scopes=["read_orders"])
    async with make_shopify(tokens=TokenSet(access_token=orders_only)) as c:
        with pytest.raises(PermissionDenied, match="read_customers"):
            [x async for x in c.customers()]
    async with make_shopify(tokens=TokenSet(access_token="shpat-not-a-real-token")) as c:
        with pytest.raises(AuthRevoked):
            await c.verify()
    other = shopify_sandbox.grant_token(OTHER_SHOP)
    async with make_shopify(tokens=TokenSet(access_token=other)) as c:  # token of another shop
        with pytest.raises(AuthRevoked):
            await c.verify()


# ------------------------------------------------------------------------------ rate limits + resilience
async def test_query_cost_makes_client_wait_before_it_is_throttled(
    shopify_sandbox: ShopifySandbox, make_shopify: MakeConnector, shop_token: TokenSet
) -> None:
    # A 10-point bucket refilling 20/s; each page of 5 products costs 2 + 5 x 1 = 7 points.
    shopify_sandbox.graphql.bucket_size, shopify_sandbox.graphql.restore_rate = 10.0, 20.0
    shopify_sandbox.graphql.reset()
    try:
        async with make_shopify(tokens=shop_token, graphql_page_size=5, bulk_after=timedelta(days=36500)) as c:
            started = time.monotonic()
            products = [p async for p in c.products(updated_since=datetime(2000, 1, 1, tzinfo=UTC))]
            elapsed = time.monotonic() - started
    finally:
        shopify_sandbox.graphql.bucket_size, shopify_sandbox.graphql.restore_rate = 2000.0, 100.0
        shopify_sandbox.graphql.reset()
    hits = shopify_sandbox.journal.entries("/graphql.json")
    assert len(products) == 24 and len(hits) == 5
    assert all(e.status == 200 and e.fault is None for e in hits)
    # 5 pages x 7 points through a 10-point bucket at 20/s: at least (35 - 10) / 20 s of waiting.
    assert elapsed >= (5 * 7 - 10) / 20 * 0.9


async def test_throttled_answer_is_retried_after_the_bucket_refills(
    shopify_sandbox: ShopifySandbox, make_shopify: MakeConnector, shop_token: TokenSet
) -> None:
    shopify_sandbox.injector.configure(rate_limit_next=1, retry_after=0.4, errors_5xx_next=1, match="/graphql.json")
    async with make_shopify(tokens=shop_token) as c:
        assert (await c.verify())["ok"]
    hits = shopify_sandbox.journal.entries("/graphql.json")
    assert [e.status for e in hits] == [200, 503, 200] and hits[0].fault == "rate_limit"
    assert hits[1].at - hits[0].at >= 0.4  # (requested - available) / restoreRate, measured on the server


async def test_circuit_opens_and_recovers(
    shopify_sandbox: ShopifySandbox, make_shopify: MakeConnector, shop_token: TokenSet
) -> None:
    breakers = CircuitBreakers(threshold=3, cooldown=0.5)
    shopify_sandbox.injector.configure(errors_5xx_next=100, error_status=502, match="/graphql.json")
    async with make_shopify(tokens=shop_token, breakers=breakers) as c:
        with pytest.raises((CircuitOpen, TransientError)):
            await c.verify()
        assert await breakers.state(f"shopify:{SHOP}") == "opened"
        sent = len(shopify_sandbox.journal.entries("/graphql.json"))
        with pytest.raises(CircuitOpen):
            await c.verify()
        assert len(shopify_sandbox.journal.entries("/graphql.json")) == sent == 3
        shopify_sandbox.injector.reset()
        await asyncio.sleep(0.6)
        assert (await c.verify())["ok"]
        assert await breakers.state(f"shopify:{SHOP}") == "closed"


# ------------------------------------------------------------------------------ webhooks
async def test_signed_webhooks_delivered_end_to_end(
    shopify_sandbox: ShopifySandbox,
    make_shopify: MakeConnector,
    shop_token: TokenSet,
    webhook_receiver: WebhookReceiver,
) -> None:
    async with make_shopify(tokens=shop_token) as c:
        for topic in (Topic.ORDERS_CREATE, Topic.ORDERS_UPDATED, Topic.APP_UNINSTALLED):
            sub = await c.subscribe_webhook(topic, webhook_receiver.url)
            assert sub["topic"] == topic and sub["address"] == webhook_receiver.url
        assert len(await c.webhooks()) == 3
        with pytest.raises(InvalidRequest):  # Shopify refuses a duplicate subscription (422)
            await c.subscribe_webhook(Topic.ORDERS_CREATE, webhook_receiver.url)

        async with httpx.AsyncClient() as control:
            created = (await control.post(f"{shopify_sandbox.url}/__sandbox/shops/{SHOP}/orders")).json()
            order_id = created["order"]["id"]
            await control.post(
                f"{shopify_sandbox.url}/__sandbox/shops/{SHOP}/orders/{order_id}/refund", json={"amount": "5.00"}
            )
        assert created["deliveries"][0]["status"] == 200
        new = [o async for o in c.orders(updated_since=datetime.now(UTC) - timedelta(minutes=5))]
        assert [o.external_id for o in new] == [str(order_id)]
        assert new[0].financial_status == "partially_refunded"

        await c.revoke()  # uninstall -> app/uninstalled, token dead
        with pytest.raises(AuthRevoked):
            await c.verify()

    assert webhook_receiver.topics() == ["orders/create", "orders/updated", "app/uninstalled"]
    first, second, third = webhook_receiver.received
    assert all(r.status == 200 for r in webhook_receiver.received)
    assert first.payload and first.payload["id"] == order_id
    assert second.payload and second.payload["financial_status"] == "partially_refunded"
    assert third.payload and third.payload["myshopify_domain"] == SHOP
    assert first.headers["x-shopify-shop-domain"] == SHOP and first.headers["x-shopify-webhook-id"]
    assert first.headers["x-shopify-webhook-id"] != second.headers["x-shopify-webhook-id"]
    assert verify_webhook(first.body, first.headers["x-shopify-hmac-sha256"], shopify_sandbox.api_secret)


async def test_webhook_signature_valid_and_invalid(
    shopify_sandbox: ShopifySandbox, webhook_receiver: WebhookReceiver
) -> None:
    body = b'{"id":820982911946154508,"email":"jon@example.com"}'
    good = sign_webhook(body, "app-secret")
    assert verify_webhook(body, good, "app-secret")
    assert verify_webhook(body, good, ["rotated-out", "app-secret"])
    assert not verify_webhook(body + b" ", good, "app-secret")  # any byte change breaks it
    assert not verify_webhook(body, good, "other-secret")
    assert not verify_webhook(body, None, "app-secret") and not verify_webhook(body, "", "app-secret")
    with pytest.raises(WebhookSignatureInvalid):
        parse_webhook(
            {HMAC_HEADER: good, "X-Shopify-Topic": "orders/create", "X-Shopify-Shop-Domain": SHOP},
            body.replace(b"jon", b"eve"),
            "app-secret",
        )

    # Over HTTP: a forged delivery is answered 401 by a verifying endpoint, a real one 200.
    response = await deliver_webhook(
        webhook_receiver.url, topic="orders/create", shop_domain=SHOP, payload={"id": 1}, secret="not-the-app-secret"
    )
    assert response.status_code == 401
    response = await deliver_webhook(
        webhook_receiver.url,
        topic="orders/create",
        shop_domain=SHOP,
        payload={"id": 1},
        secret=shopify_sandbox.api_secret,
    )
    assert response.status_code == 200
    assert [r.status for r in webhook_receiver.received] == [401, 200]


async def test_mandatory_privacy_webhooks(shopify_sandbox: ShopifySandbox, webhook_receiver: WebhookReceiver) -> None:
    store = shopify_sandbox.shops[SHOP].store
    customer = next(c for c in store.customers.values() if len(c.order_ids) >= 2)
    async with httpx.AsyncClient() as control:
        for kind in ("customers_data_request", "customers_redact", "shop_redact"):
            resp = await control.post(
                f"{shopify_sandbox.url}/__sandbox/shops/{SHOP}/privacy/{kind}", json={"customer_id": customer.id}
            )
            assert resp.status_code == 200, resp.text
    assert webhook_receiver.topics() == ["customers/data_request", "customers/redact", "shop/redact"]
    request, redact, shop_redact = (r.payload or {} for r in webhook_receiver.received)
    assert request["customer"]["id"] == customer.id and request["orders_requested"] == customer.order_ids
    assert redact["customer"]["email"] == customer.email and redact["orders_to_redact"] == customer.order_ids
    assert shop_redact == {"shop_id": store.shop_id, "shop_domain": SHOP}
    assert all(r.status == 200 for r in webhook_receiver.received)


# ------------------------------------------------------------------------------ secrets
async def test_no_token_or_secret_in_logs_or_errors(
    shopify_sandbox: ShopifySandbox,
    make_shopify: MakeConnector,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    recorder = RecordingObserver()
    errors: list[str] = []
    with structlog.testing.capture_logs() as captured:
        async with make_shopify(observer=recorder) as c:
            tokens = await install_and_authorize(c, shopify_sandbox.api_secret)
            c.with_tokens(tokens)
            shopify_sandbox.injector.configure(
                rate_limit_next=1, retry_after=0.05, errors_5xx_next=1, match="/graphql.json"
            )
            [o async for o in c.orders()]
            await c.revoke()
            for call in (c.verify(), c.exchange_code(code="shpat-code-reused")):
                try:
                    await call
                except Exception as exc:
                    errors.append(f"{exc!s} {exc!r}")
    assert len(errors) == 2 and sum("retry" in t for t in recorder.texts) >= 2
    out = capsys.readouterr()
    haystack = "\n".join([repr(captured), caplog.text, out.out, out.err, *errors, *recorder.texts])
    for secret in (tokens.access_token, shopify_sandbox.api_secret):
        assert secret not in haystack


async def test_bulk_result_is_fetched_without_the_shop_token(shopify_sandbox: ShopifySandbox) -> None:
    """Shopify hands bulk results out on a signed storage URL of another host: the connector
    downloads it without the shop's token (a token sent there would leak)."""
    store = shopify_sandbox.shops[SHOP].store
    first = next(iter(store.products.values()))
    seen_headers: list[dict[str, str]] = []

    async def jsonl(request: Request) -> Response:
        seen_headers.append(dict(request.headers))
        line = {"id": f"gid://shopify/Product/{first.id}", "title": first.title, "status": "ACTIVE",
                "vendor": first.vendor, "productType": first.product_type, "updatedAt": "2025-01-01T00:00:00Z"}
        return Response(json.dumps(line) + "\n", media_type="application/jsonl")

    with SandboxServer(Starlette(routes=[Route("/result.jsonl", jsonl)]), name="storage") as storage:
        async def graphql(request: Request) -> JSONResponse:
            query = (await request.json())["query"]
            if "shop {" in query:
                return JSONResponse({"data": {"shop": {"currencyCode": "USD", "myshopifyDomain": SHOP}}})
            if "bulkOperationRunQuery" in query:
                return JSONResponse({"data": {"bulkOperationRunQuery": {
                    "bulkOperation": {"id": "gid://shopify/BulkOperation/1", "status": "CREATED"}, "userErrors": []}}})
            return JSONResponse({"data": {"node": {"id": "gid://shopify/BulkOperation/1", "status": "COMPLETED",
                                                   "url": f"{storage.url}/result.jsonl"}}})

        with SandboxServer(Starlette(routes=[Route("/s/{shop}/admin/api/2026-10/graphql.json", graphql,
                                                   methods=["POST"])]), name="shop") as server:
            settings = ShopifySettings(api_key="k", api_secret="s", shop_url_template=f"{server.url}/s/{{shop}}")
            async with ShopifyConnector(settings, SHOP, TokenSet(access_token="shpat-secret-token-value")) as c:
                products = [p async for p in c.products()]
    assert [p.external_id for p in products] == [str(first.id)]
    assert len(seen_headers) == 1 and "x-shopify-access-token" not in seen_headers[0]
    assert "shpat-secret-token-value" not in json.dumps(seen_headers)
