"""Contract: the official ShopifyAPI library, with its normal host-based session, drives the
sandbox for every call our connector makes (GraphQL reads and bulk operations through its
GraphQL client, the REST webhook subscription and uninstall, the OAuth install) and for each
injected fault.

Nothing in the SDK is configured differently from production: the session is
``https://acme-outdoor.myshopify.com/admin/api/<version>``. Two things outside the SDK make
that host reach the sandbox: a resolver that answers ``*.myshopify.com`` with 127.0.0.1 and
the sandbox's port (``socket.getaddrinfo``, no /etc/hosts), and a test CA, trusted through
``SSL_CERT_FILE``, that signed the sandbox's ``*.myshopify.com`` certificate.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from omnify.integrations.base import TokenSet
from omnify.integrations.shopify import ShopifyConnector, ShopifySettings
from omnify.integrations.shopify import graphql as gql
from omnify.integrations.shopify.sandbox import ShopifySandbox
from omnify.integrations.shopify.version import POLICY
from tests.certs import NOT_AFTER, NOT_BEFORE
from tests.integration.integrations_shopify.shopify_helpers import SHOP, SHOP_END, SHOP_REDIRECT, WebhookReceiver

shopify = pytest.importorskip("shopify", reason="ShopifyAPI (dev extra) not installed")
from pyactiveresource.connection import ClientError  # noqa: E402

VERSION = POLICY.pinned
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _issue(tmp: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a ``*.myshopify.com`` certificate signed by it."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Omnify test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(NOT_BEFORE)
          .not_valid_after(NOT_AFTER)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                                 "*.myshopify.com")]))
            .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("*.myshopify.com")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tmp / "ca.pem", tmp / "leaf.pem", tmp / "leaf.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    return paths


@pytest.fixture(scope="module")
def tls_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ShopifySandbox, Path]]:
    ca, cert, key = _issue(tmp_path_factory.mktemp("shopify-tls"))
    sandbox = ShopifySandbox(end=SHOP_END)
    sandbox.serve(ssl_certfile=str(cert), ssl_keyfile=str(key))
    yield sandbox, ca
    sandbox.stop()


@pytest.fixture
def shop_dns(tls_shop: tuple[ShopifySandbox, Path], monkeypatch: pytest.MonkeyPatch) -> ShopifySandbox:
    """``*.myshopify.com`` -> the sandbox (any port asked: the SDK uses 443), CA trusted."""
    sandbox, ca = tls_shop
    port = int(sandbox.url.rsplit(":", 1)[1])
    real = socket.getaddrinfo

    def resolve(host: Any, service: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.lower().endswith(".myshopify.com"):
            return real("127.0.0.1", port, *args, **kwargs)
        return real(host, service, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    sandbox.injector.reset()
    sandbox.journal.clear()
    sandbox.graphql.bucket_size, sandbox.graphql.restore_rate = 2000.0, 100.0
    sandbox.reset()
    return sandbox


@pytest.fixture
def session(shop_dns: ShopifySandbox) -> Iterator[Any]:
    saved = (shopify.Session.api_key, shopify.Session.secret)
    shopify.Session.setup(api_key=shop_dns.api_key, secret=shop_dns.api_secret)
    live = shopify.Session(SHOP, VERSION, shop_dns.grant_token(SHOP))
    shopify.ShopifyResource.activate_session(live)
    yield live
    shopify.ShopifyResource.clear_session()
    shopify.Session.setup(api_key=saved[0], secret=saved[1])


class ShopHostTransport(httpx.AsyncBaseTransport):
    """Our async client's equivalent of the resolver (asyncio resolves names its own way):
    connect to the sandbox, keep the shop's Host header and TLS server name."""

    def __init__(self, inner: httpx.AsyncBaseTransport, port: int) -> None:
        self.inner, self.port = inner, port

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host.endswith(".myshopify.com"):
            request.extensions = {**request.extensions, "sni_hostname": request.url.host}
            request.url = request.url.copy_with(host="127.0.0.1", port=self.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def run(query: str, variables: dict[str, Any] | None = None, *, patient: bool = True) -> dict[str, Any]:
    """The SDK's GraphQL client; a THROTTLED answer is waited out as Shopify says (cost / rate)."""
    for _ in range(20):
        body: dict[str, Any] = json.loads(shopify.GraphQL().execute(query, variables))
        if not patient or "THROTTLED" not in gql.error_codes(body):
            return body
        time.sleep(gql.wait_for(body))
    raise AssertionError("still throttled")


def test_session_is_host_based_https(session: Any) -> None:
    assert shopify.ShopifyResource.get_site() == f"https://{SHOP}/admin/api/{VERSION}"
    assert shopify.Shop.current().myshopify_domain == SHOP  # REST through the host, TLS verified


def test_oauth_install_with_the_sdk(shop_dns: ShopifySandbox) -> None:
    saved = (shopify.Session.api_key, shopify.Session.secret)
    shopify.Session.setup(api_key=shop_dns.api_key, secret=shop_dns.api_secret)
    try:
        fresh = shopify.Session(SHOP, VERSION)
        url = fresh.create_permission_url(["read_orders", "read_customers"], SHOP_REDIRECT, state="sdk-install")
        assert url.startswith(f"https://{SHOP}/admin/oauth/authorize?")
        with httpx.Client(verify=os.environ["SSL_CERT_FILE"]) as browser:  # the merchant's browser
            consent = browser.get(url + "&sandbox_auto_approve=1")
        params = dict(httpx.URL(consent.headers["location"]).params)
        token = fresh.request_token(params)  # SDK: HMAC check, then POST /admin/oauth/access_token
    finally:
        shopify.Session.setup(api_key=saved[0], secret=saved[1])
    assert token.startswith("shpat") and set(str(fresh.access_scopes).split(",")) == {"read_orders",
                                                                                      "read_customers"}


async def test_every_graphql_read_the_connector_makes(session: Any, shop_dns: ShopifySandbox) -> None:
    store = shop_dns.shops[SHOP].store
    shop_dns.graphql.bucket_size, shop_dns.graphql.restore_rate = 20000.0, 1000.0  # a Plus shop: fewer waits
    shop_dns.graphql.reset()
    shop = run(gql.SHOP)
    assert shop["data"]["shop"]["myshopifyDomain"] == SHOP and "cost" in shop["extensions"]

    seen: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        page = run(gql.ORDERS, {"first": 25, "after": after, "lines": 2, "query": None})
        assert page["extensions"]["cost"]["requestedQueryCost"] <= 1000
        for node in gql.edges(page["data"]["orders"]):
            seen[node["id"]] = node
        after = gql.page_after(page["data"]["orders"])
        if after is None:
            break
    assert len(seen) == len(store.orders)
    long = next(n for n in seen.values() if gql.page_after(n["lineItems"]))
    rest = run(gql.ORDER_LINES, {"id": long["id"], "after": gql.page_after(long["lineItems"])})
    order = store.orders[int(gql.legacy_id(long["id"]) or 0)]
    assert len(gql.edges(long["lineItems"])) + len(gql.edges(rest["data"]["order"]["lineItems"])) == len(
        order.line_items)

    customers = run(gql.CUSTOMERS, {"first": 250, "query": "updated_at:>='2000-01-01T00:00:00Z'"})
    products = run(gql.PRODUCTS, {"first": 250, "query": None})
    assert len(gql.edges(customers["data"]["customers"])) == 250 and gql.page_after(customers["data"]["customers"])
    assert len(gql.edges(products["data"]["products"])) == len(store.products)

    # What the SDK read is what our connector reads.
    settings = ShopifySettings(api_key=shop_dns.api_key, api_secret=shop_dns.api_secret,
                               shop_url_template="https://{shop}")
    port = int(shop_dns.url.rsplit(":", 1)[1])
    trusted = ShopHostTransport(httpx.AsyncHTTPTransport(verify=os.environ["SSL_CERT_FILE"]), port)
    async with ShopifyConnector(settings, SHOP, TokenSet(access_token=session.token), transport=trusted) as connector:
        ours = {o.external_id: o async for o in connector.orders(updated_since=dt.datetime(2000, 1, 1,
                                                                                           tzinfo=dt.UTC))}
    assert set(ours) == {gql.legacy_id(i) for i in seen}


def test_bulk_operation_through_the_sdk(session: Any, shop_dns: ShopifySandbox) -> None:
    started = run(gql.BULK_RUN, {"query": gql.bulk_query("orders", "updated_at:>='2000-01-01T00:00:00Z'")})
    op = started["data"]["bulkOperationRunQuery"]
    assert op["userErrors"] == [] and op["bulkOperation"]["status"] == "CREATED"
    again = run(gql.BULK_RUN, {"query": gql.bulk_query("customers", None)})
    status = run(gql.BULK_STATUS, {"id": op["bulkOperation"]["id"]})["data"]["node"]
    assert status["status"] == "COMPLETED" and status["url"].startswith(f"https://{SHOP}/")
    assert again["data"]["bulkOperationRunQuery"]["userErrors"] == []  # the first one had finished
    with urllib.request.urlopen(status["url"]) as response:
        lines = response.read().decode().splitlines()
    orders = list(gql.parse_jsonl(lines))
    assert len(orders) == len(shop_dns.shops[SHOP].store.orders) == int(
        run(gql.BULK_STATUS, {"id": op["bulkOperation"]["id"]})["data"]["node"]["objectCount"]) - sum(
        len(gql.edges(o.get("lineItems"))) for o in orders)


def test_rest_webhook_subscription_and_uninstall(session: Any, shop_dns: ShopifySandbox,
                                                 webhook_receiver: WebhookReceiver) -> None:
    hook = shopify.Webhook.create({"topic": "orders/create", "address": webhook_receiver.url, "format": "json"})
    assert hook.id and not hook.errors.full_messages()
    assert [w.id for w in shopify.Webhook.find()] == [hook.id]
    shopify.ApiPermission.delete()  # uninstall: the token stops working, app/uninstalled fires
    with pytest.raises(ClientError) as gone:
        shopify.Shop.current()
    assert gone.value.code == 401


def test_faults_reach_the_sdk(session: Any, shop_dns: ShopifySandbox) -> None:
    shop_dns.injector.configure(rate_limit_next=1, retry_after=0.2, match="/graphql.json")
    throttled = run(gql.SHOP, patient=False)
    assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED" and "data" not in throttled
    assert throttled["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 0
    assert gql.wait_for(throttled) == pytest.approx(0.2)

    shop_dns.injector.configure(errors_5xx_next=1, error_status=503, match="/graphql.json")
    with pytest.raises(urllib.error.HTTPError) as boom:
        run(gql.SHOP)
    assert boom.value.code == 503

    shop_dns.injector.configure(rate_limit_next=1, retry_after=2, match="/shop.json")
    with pytest.raises(ClientError) as limited:
        shopify.Shop.current()
    headers = {k.lower(): v for k, v in limited.value.response.headers.items()}
    assert limited.value.code == 429 and headers["retry-after"] == "2.0"

    too_big = run("{ orders(first: 250) { nodes { id lineItems(first: 250) { nodes { id } } } } }")
    assert too_big["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"


def test_a_retired_version_falls_forward(shop_dns: ShopifySandbox) -> None:
    retired = sorted(v.name for v in POLICY.versions if POLICY.is_expired(v.name))[-1]
    old = shopify.Session(SHOP, retired, shop_dns.grant_token(SHOP))
    shopify.ShopifyResource.activate_session(old)
    try:
        assert shopify.Shop.current().myshopify_domain == SHOP
        headers = shopify.ShopifyResource.connection.response.headers
        served = {k.lower(): v for k, v in headers.items()}["x-shopify-api-version"]
    finally:
        shopify.ShopifyResource.clear_session()
    assert served == POLICY.oldest_served() and served != retired
