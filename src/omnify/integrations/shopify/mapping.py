"""Shopify REST Admin API resources -> our normalized records; Shopify errors -> typed errors.

Pure functions (no I/O). Facts encoded here (Shopify REST Admin API, 2024-10):

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

API_VERSION = "2024-10"
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
