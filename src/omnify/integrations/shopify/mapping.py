"""Shopify Admin API (GraphQL, and REST for webhooks/OAuth) -> our normalized records; errors -> typed errors.

Pure functions (no I/O). Facts of the REST shapes (still used by webhooks and their payloads):

* Money is a decimal string in the shop's currency (``"123.45"``); ids are integers.
* Timestamps are ISO 8601 with the shop's UTC offset (``"2024-03-05T10:22:33-05:00"``).
* Errors are ``{"errors": "..."}`` or ``{"errors": {"field": ["..."]}}`` with a meaningful
  HTTP status: 401 (bad/revoked token: a Shopify offline token cannot be refreshed, so it
  means re-install), 402 (shop frozen for non-payment), 403 (missing scope), 404, 423 (shop
  locked), 429 (leaky bucket full, ``Retry-After``), 5xx.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from omnify.integrations.base import (
    AuthRevoked,
    ConnectorError,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    ShopCustomer,
    ShopOrder,
    ShopProduct,
    TransientError,
)
from omnify.integrations.http import parse_retry_after
from omnify.integrations.money import decimal_to_minor
from omnify.integrations.shopify import graphql as gql
from omnify.integrations.shopify.graphql import edges, legacy_id
from omnify.integrations.shopify.version import POLICY as VERSION_POLICY

API_VERSION = VERSION_POLICY.pinned  # integrations/shopify/version.py
CALL_LIMIT_HEADER = "X-Shopify-Shop-Api-Call-Limit"
ACCESS_TOKEN_HEADER = "X-Shopify-Access-Token"


def parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _required_time(value: Any, what: str) -> datetime:
    parsed = parse_time(value)
    if parsed is None:
        raise InvalidRequest(f"{what}: missing or malformed timestamp {value!r}")
    return parsed


def format_time(value: datetime) -> str:
    """What Shopify's ``*_at_min`` filters accept: ISO 8601 with an explicit offset."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat(timespec="seconds")


def _errors_text(body: Any) -> str:
    if isinstance(body, Mapping):
        errors = body.get("errors", body.get("error"))
        if isinstance(errors, str):
            return errors
        if isinstance(errors, Mapping):
            parts = []
            for key, value in errors.items():
                vals = value if isinstance(value, list) else [value]
                parts.append(f"{key}: {', '.join(str(v) for v in vals)}")
            return "; ".join(parts)
        if isinstance(errors, list):
            return "; ".join(str(e) for e in errors)
    return ""


def error_for_response(response: httpx.Response, *, default_retry_after: float = 2.0) -> ConnectorError | None:
    """Shopify-specific status mapping; None for success so the generic mapper is not needed."""
    status = response.status_code
    if status < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = _errors_text(body) or response.reason_phrase or f"HTTP {status}"
    where = f"{response.request.method} {response.request.url.path}"
    text = f"{where}: {detail}"
    request_id = response.headers.get("x-request-id")
    if request_id:
        text += f" (x-request-id {request_id})"
    if status == 401:
        return AuthRevoked(text, status=status)
    if status in (402, 403, 423):
        return PermissionDenied(text, status=status)
    if status == 429:
        return RateLimited(
            text,
            retry_after=parse_retry_after(response.headers.get("retry-after"), default_retry_after),
            status=status,
        )
    if status >= 500 or status in (408, 425):
        return TransientError(text, status=status)
    return InvalidRequest(text, status=status)


def parse_call_limit(value: str | None) -> tuple[int, int] | None:
    """``"32/40"`` -> (32, 40)."""
    if not value or "/" not in value:
        return None
    used, _, limit = value.partition("/")
    try:
        u, lim = int(used), int(limit)
    except ValueError:
        return None
    return (u, lim) if lim > 0 else None


def order_from(item: Mapping[str, Any], *, shop_currency: str) -> ShopOrder:
    currency = str(item.get("currency") or shop_currency).upper()
    customer = item.get("customer") or None
    lines: list[dict[str, Any]] = []
    for li in item.get("line_items") or []:
        lines.append(
            {
                "external_id": str(li.get("id")),
                "product_id": str(li["product_id"]) if li.get("product_id") is not None else None,
                "variant_id": str(li["variant_id"]) if li.get("variant_id") is not None else None,
                "title": li.get("title"),
                "sku": li.get("sku") or None,
                "quantity": int(li.get("quantity") or 0),
                "price_minor": decimal_to_minor(li.get("price"), currency),
            }
        )
    return ShopOrder(
        external_id=str(item["id"]),
        customer_external_id=str(customer["id"]) if isinstance(customer, Mapping) and customer.get("id") else None,
        name=str(item.get("name") or f"#{item.get('order_number', item['id'])}"),
        total_minor=decimal_to_minor(item.get("total_price"), currency),
        currency=currency,
        financial_status=item.get("financial_status"),
        created_at=_required_time(item.get("created_at"), f"order {item['id']}"),
        updated_at=parse_time(item.get("updated_at")),
        line_items=lines,
    )


def customer_from(item: Mapping[str, Any], *, shop_currency: str) -> ShopCustomer:
    currency = str(item.get("currency") or shop_currency).upper()
    return ShopCustomer(
        external_id=str(item["id"]),
        email=item.get("email") or None,
        first_name=item.get("first_name") or None,
        last_name=item.get("last_name") or None,
        orders_count=int(item.get("orders_count") or 0),
        total_spent_minor=decimal_to_minor(item.get("total_spent") or "0", currency),
        currency=currency,
        created_at=_required_time(item.get("created_at"), f"customer {item['id']}"),
        updated_at=parse_time(item.get("updated_at")),
    )


def product_from(item: Mapping[str, Any]) -> ShopProduct:
    return ShopProduct(
        external_id=str(item["id"]),
        title=str(item.get("title") or ""),
        status=str(item.get("status") or "active"),
        vendor=item.get("vendor") or None,
        product_type=item.get("product_type") or None,
        updated_at=parse_time(item.get("updated_at")),
    )


# ------------------------------------------------------------------------------ GraphQL Admin API
def _shop_money(value: Any) -> tuple[Any, str | None]:
    """``{"shopMoney": {"amount", "currencyCode"}}`` (a MoneyBag) or a MoneyV2 -> (amount, currency)."""
    money = value.get("shopMoney", value) if isinstance(value, Mapping) else None
    if not isinstance(money, Mapping):
        return None, None
    return money.get("amount"), (str(money["currencyCode"]).upper() if money.get("currencyCode") else None)


def order_from_graphql(node: Mapping[str, Any], *, shop_currency: str) -> ShopOrder:
    amount, money_currency = _shop_money(node.get("totalPriceSet"))
    currency = money_currency or str(node.get("currencyCode") or shop_currency).upper()
    ident = legacy_id(node.get("id")) or ""
    lines = []
    for li in edges(node.get("lineItems")):
        price, _ = _shop_money(li.get("originalUnitPriceSet"))
        lines.append({
            "external_id": legacy_id(li.get("id")),
            "product_id": legacy_id((li.get("product") or {}).get("id")),
            "variant_id": legacy_id((li.get("variant") or {}).get("id")),
            "title": li.get("title"),
            "sku": li.get("sku") or None,
            "quantity": int(li.get("quantity") or 0),
            "price_minor": decimal_to_minor(price, currency),
        })
    status = node.get("displayFinancialStatus")
    return ShopOrder(
        external_id=ident,
        customer_external_id=legacy_id((node.get("customer") or {}).get("id")),
        name=str(node.get("name") or f"#{ident}"),
        total_minor=decimal_to_minor(amount, currency),
        currency=currency,
        financial_status=str(status).lower() if status else None,  # PARTIALLY_REFUNDED -> REST's partially_refunded
        created_at=_required_time(node.get("createdAt"), f"order {ident}"),
        updated_at=parse_time(node.get("updatedAt")),
        line_items=lines,
    )


def customer_from_graphql(node: Mapping[str, Any], *, shop_currency: str) -> ShopCustomer:
    amount, money_currency = _shop_money(node.get("amountSpent"))
    currency = money_currency or shop_currency.upper()
    ident = legacy_id(node.get("id")) or ""
    return ShopCustomer(
        external_id=ident,
        email=node.get("email") or None,
        first_name=node.get("firstName") or None,
        last_name=node.get("lastName") or None,
        orders_count=int(node.get("numberOfOrders") or 0),  # UnsignedInt64: a string in JSON
        total_spent_minor=decimal_to_minor(amount or "0", currency),
        currency=currency,
        created_at=_required_time(node.get("createdAt"), f"customer {ident}"),
        updated_at=parse_time(node.get("updatedAt")),
    )


def product_from_graphql(node: Mapping[str, Any]) -> ShopProduct:
    return ShopProduct(
        external_id=legacy_id(node.get("id")) or "",
        title=str(node.get("title") or ""),
        status=str(node.get("status") or "ACTIVE").lower(),
        vendor=node.get("vendor") or None,
        product_type=node.get("productType") or None,
        updated_at=parse_time(node.get("updatedAt")),
    )


def graphql_error(response: httpx.Response) -> ConnectorError | None:
    """GraphQL answers HTTP 200 with ``errors``: THROTTLED (wait for the bucket, retryable),
    MAX_COST_EXCEEDED (a query too big: a bug, not retryable), ACCESS_DENIED (scope)."""
    if response.status_code >= 400 or not response.request.url.path.endswith("/graphql.json"):
        return None
    try:
        body = response.json()
    except ValueError:
        return InvalidRequest("Shopify graphql.json returned a non-JSON body", status=response.status_code)
    codes = gql.error_codes(body)
    if not codes:
        return None
    text = f"POST {response.request.url.path}: {gql.error_text(body)}"
    if "THROTTLED" in codes:
        return RateLimited(text, retry_after=max(gql.wait_for(body), 0.1), status=429, platform_code="THROTTLED")
    if "ACCESS_DENIED" in codes:
        return PermissionDenied(text, status=403, platform_code="ACCESS_DENIED")
    if "INTERNAL_SERVER_ERROR" in codes:
        return TransientError(text, status=500, platform_code="INTERNAL_SERVER_ERROR")
    if body.get("data") is None or "MAX_COST_EXCEEDED" in codes:
        return InvalidRequest(text, status=response.status_code, platform_code=next((c for c in codes if c), None))
    return None  # partial data with field errors: the caller decides
