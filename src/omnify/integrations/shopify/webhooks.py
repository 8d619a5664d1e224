"""Shopify webhooks: topics, signature verification (inbound) and signed delivery (sandbox side).

Why verification is done on the raw body: Shopify signs the exact bytes it sent
(``X-Shopify-Hmac-Sha256`` = base64 HMAC-SHA256 of the body with the app's client secret);
re-serialising parsed JSON changes whitespace/ordering and breaks the signature, so the
inbound framework must hand these helpers ``await request.body()``, not a parsed dict.

Deduplication key: Shopify retries a delivery (up to 8 times over 4 hours) with the same
``X-Shopify-Webhook-Id``; the inbound framework stores that id to process each event once.
The privacy topics (``customers/data_request``, ``customers/redact``, ``shop/redact``) are
mandatory for every public app and must answer 200 after verifying, 401 if the HMAC fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import httpx

from omnify.integrations.base import InvalidRequest
from omnify.integrations.shopify.mapping import API_VERSION

HMAC_HEADER = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER = "X-Shopify-Topic"
SHOP_HEADER = "X-Shopify-Shop-Domain"
API_VERSION_HEADER = "X-Shopify-API-Version"
WEBHOOK_ID_HEADER = "X-Shopify-Webhook-Id"
EVENT_ID_HEADER = "X-Shopify-Event-Id"
TRIGGERED_AT_HEADER = "X-Shopify-Triggered-At"


class Topic(StrEnum):
    ORDERS_CREATE = "orders/create"
    ORDERS_UPDATED = "orders/updated"
    APP_UNINSTALLED = "app/uninstalled"
    CUSTOMERS_DATA_REQUEST = "customers/data_request"
    CUSTOMERS_REDACT = "customers/redact"
    SHOP_REDACT = "shop/redact"


MANDATORY_PRIVACY_TOPICS: frozenset[Topic] = frozenset(
    {Topic.CUSTOMERS_DATA_REQUEST, Topic.CUSTOMERS_REDACT, Topic.SHOP_REDACT}
)
SUBSCRIBABLE_TOPICS: frozenset[Topic] = frozenset({Topic.ORDERS_CREATE, Topic.ORDERS_UPDATED, Topic.APP_UNINSTALLED})


class WebhookSignatureInvalid(InvalidRequest):
    """Missing or wrong X-Shopify-Hmac-Sha256: answer 401 and do not process."""


def sign_webhook(body: bytes, secret: str) -> str:
    """The X-Shopify-Hmac-Sha256 value for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_webhook(body: bytes, signature: str | None, secret: str | Sequence[str]) -> bool:
    """Constant-time comparison; accepts a list of secrets so the app secret can rotate."""
    if not signature:
        return False
    provided = signature.strip().encode("ascii", errors="replace")
    candidates = [secret] if isinstance(secret, str) else list(secret)
    ok = False
    for s in candidates:
        ok |= hmac.compare_digest(sign_webhook(body, s).encode("ascii"), provided)
    return ok


@dataclass(frozen=True, slots=True)
class ShopifyWebhook:
    topic: str
    shop_domain: str
    webhook_id: str | None
    event_id: str | None
    api_version: str | None
    triggered_at: str | None
    payload: dict[str, Any]

    @property
    def is_privacy(self) -> bool:
        return self.topic in {t.value for t in MANDATORY_PRIVACY_TOPICS}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def parse_webhook(headers: Mapping[str, str], body: bytes, secret: str | Sequence[str]) -> ShopifyWebhook:
    """Verify then decode one delivery. Raises WebhookSignatureInvalid or InvalidRequest."""
    if not verify_webhook(body, _header(headers, HMAC_HEADER), secret):
        raise WebhookSignatureInvalid("Shopify webhook signature is missing or invalid")
    topic = _header(headers, TOPIC_HEADER)
    shop = _header(headers, SHOP_HEADER)
    if not topic or not shop:
        raise InvalidRequest("Shopify webhook lacks X-Shopify-Topic or X-Shopify-Shop-Domain")
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        raise InvalidRequest("Shopify webhook body is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("Shopify webhook body is not a JSON object")
    return ShopifyWebhook(
        topic=topic,
        shop_domain=shop.lower(),
        webhook_id=_header(headers, WEBHOOK_ID_HEADER),
        event_id=_header(headers, EVENT_ID_HEADER),
        api_version=_header(headers, API_VERSION_HEADER),
        triggered_at=_header(headers, TRIGGERED_AT_HEADER),
        payload=payload,
    )


def webhook_request(
    *,
    topic: str,
    shop_domain: str,
    payload: Mapping[str, Any],
    secret: str,
    api_version: str = API_VERSION,
    webhook_id: str | None = None,
    event_id: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Body bytes and headers of a delivery exactly as Shopify sends it."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        TOPIC_HEADER: topic,
        HMAC_HEADER: sign_webhook(body, secret),
        SHOP_HEADER: shop_domain,
        API_VERSION_HEADER: api_version,
        WEBHOOK_ID_HEADER: webhook_id or str(uuid.uuid4()),
        EVENT_ID_HEADER: event_id or str(uuid.uuid4()),
        TRIGGERED_AT_HEADER: datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "User-Agent": "Shopify-Captain-Hook",
    }
    return body, headers


async def deliver_webhook(
    url: str,
    *,
    topic: str,
    shop_domain: str,
    payload: Mapping[str, Any],
    secret: str,
    api_version: str = API_VERSION,
    webhook_id: str | None = None,
    client: httpx.AsyncClient | None = None,
    request_timeout: float = 5.0,
) -> httpx.Response:
    """POST one signed delivery (Shopify's 5-second timeout by default)."""
    body, headers = webhook_request(
        topic=topic,
        shop_domain=shop_domain,
        payload=payload,
        secret=secret,
        api_version=api_version,
        webhook_id=webhook_id,
    )
    if client is not None:
        return await client.post(url, content=body, headers=headers, timeout=request_timeout)
    async with httpx.AsyncClient(timeout=request_timeout, follow_redirects=False) as own:
        return await own.post(url, content=body, headers=headers)
