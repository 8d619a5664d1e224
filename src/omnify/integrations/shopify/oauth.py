"""Shopify app install (OAuth authorization-code grant) with Shopify's request signing.

Why each check exists:

* Shop domain validation (``^[a-z0-9][a-z0-9-]*\\.myshopify\\.com$``): the shop parameter
  becomes the host we send the client secret to during the code exchange, so anything else
  (``evil.com``, ``x.myshopify.com.evil.com``, a path, a port) must be refused before any
  request is made.
* HMAC of the install and callback query strings: Shopify signs every request it sends to
  the app with the app secret (hex HMAC-SHA256 over the query parameters, ``hmac`` removed,
  sorted by key, joined ``k=v`` with ``&``); compared in constant time.
* Timestamp freshness: a captured signed URL must not be replayable forever.
* ``state``: the Omnify OAuth flow binds a signed, expiring state to user/org/client; this
  module only carries it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from omnify.integrations.base import InvalidRequest, OAuthStart, TokenSet
from omnify.integrations.http import ConnectorHttp

SHOP_DOMAIN_RE = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")
DEFAULT_SCOPES: tuple[str, ...] = ("read_orders", "read_all_orders", "read_customers", "read_products")
MAX_REQUEST_AGE_SECONDS = 24 * 3600
_SIGNATURE_KEYS = frozenset({"hmac", "signature"})


class InvalidShopDomain(InvalidRequest):
    """The shop parameter is not a ``*.myshopify.com`` domain."""


class InvalidSignature(InvalidRequest):
    """A request claiming to come from Shopify carries a missing, wrong or stale HMAC."""


def validate_shop_domain(shop: str | None) -> str:
    """Return the canonical (lower-case, stripped) shop domain, or raise InvalidShopDomain."""
    candidate = (shop or "").strip().lower()
    if len(candidate) > 255 or not SHOP_DOMAIN_RE.fullmatch(candidate):
        raise InvalidShopDomain(f"not a valid Shopify shop domain: {shop!r}")
    return candidate


def _pairs(query: Mapping[str, Any] | Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """Group query items by key, preserving values order (``ids[]=1&ids[]=2``)."""
    grouped: dict[str, list[str]] = {}
    items = query.items() if isinstance(query, Mapping) else query
    for key, value in items:
        values = [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
        grouped.setdefault(str(key), []).extend(values)
    return list(grouped.items())


def signing_message(query: Mapping[str, Any] | Iterable[tuple[str, str]]) -> str:
    """The string Shopify signs: every parameter but ``hmac``/``signature``, sorted by key,
    ``k=v`` joined with ``&``. Array parameters (``ids[]``) are signed as ``ids=["1", "2"]``;
    ``%``, ``&`` and ``=`` inside keys/values are escaped so a value cannot fake a pair."""
    parts: list[str] = []
    for key, values in _pairs(query):
        if key in _SIGNATURE_KEYS:
            continue
        if key.endswith("[]"):
            name = key[:-2]
            value = json.dumps(values, separators=(", ", ":"))
        else:
            name = key
            value = values[-1] if values else ""
        name = name.replace("%", "%25").replace("&", "%26").replace("=", "%3D")
        value = value.replace("%", "%25").replace("&", "%26")
        parts.append(f"{name}={value}")
    return "&".join(sorted(parts))


def query_hmac(query: Mapping[str, Any] | Iterable[tuple[str, str]], secret: str) -> str:
    return hmac.new(secret.encode(), signing_message(query).encode(), hashlib.sha256).hexdigest()


def verify_query_hmac(query: Mapping[str, Any] | Iterable[tuple[str, str]], secret: str | Sequence[str]) -> bool:
    """Constant-time check of the ``hmac`` parameter; several secrets allow rotation."""
    provided = next((v for k, vs in _pairs(query) if k == "hmac" for v in vs[-1:]), None)
    if not provided:
        return False
    secrets_ = [secret] if isinstance(secret, str) else list(secret)
    ok = False
    for s in secrets_:
        # Evaluate every candidate (no early exit) so timing does not reveal which matched.
        ok |= hmac.compare_digest(query_hmac(query, s).encode(), provided.strip().lower().encode())
    return ok


def verify_shopify_request(
    query: Mapping[str, Any] | Iterable[tuple[str, str]],
    secret: str | Sequence[str],
    *,
    now: float | None = None,
    max_age: int = MAX_REQUEST_AGE_SECONDS,
) -> str:
    """Verify an install or OAuth-callback request from Shopify; return the shop domain.

    Raises InvalidShopDomain or InvalidSignature (both InvalidRequest: a 4xx for the caller).
    """
    flat = {k: vs[-1] for k, vs in _pairs(query) if vs}
    shop = validate_shop_domain(flat.get("shop"))
    if not verify_query_hmac(query, secret):
        raise InvalidSignature("Shopify request signature (hmac) is missing or invalid")
    try:
        ts = int(flat.get("timestamp", ""))
    except ValueError:
        raise InvalidSignature("Shopify request has no valid timestamp") from None
    current = time.time() if now is None else now
    if abs(current - ts) > max_age:
        raise InvalidSignature("Shopify request is too old (timestamp outside the accepted window)")
    return shop


def sign_query(params: Mapping[str, Any], secret: str) -> dict[str, Any]:
    """``params`` plus the ``hmac`` Shopify would add (the sandbox and tests sign with it)."""
    signed = dict(params)
    signed["hmac"] = query_hmac(params, secret)
    return signed


def authorize_url(
    *,
    shop_base_url: str,
    api_key: str,
    scopes: Sequence[str],
    redirect_uri: str,
    state: str,
    online: bool = False,
) -> OAuthStart:
    params: list[tuple[str, str]] = [
        ("client_id", api_key),
        ("scope", ",".join(scopes)),
        ("redirect_uri", redirect_uri),
        ("state", state),
    ]
    if online:
        params.append(("grant_options[]", "per-user"))
    return OAuthStart(url=f"{shop_base_url.rstrip('/')}/admin/oauth/authorize?{urlencode(params)}", state=state)


async def exchange_code(http: ConnectorHttp, *, shop: str, api_key: str, api_secret: str, code: str) -> TokenSet:
    """POST ``https://{shop}/admin/oauth/access_token`` (never retried: codes are single-use)."""
    http.add_secret(api_secret)
    http.add_secret(code)
    payload = await http.post_json(
        "/admin/oauth/access_token",
        json={"client_id": api_key, "client_secret": api_secret, "code": code},
        retry=False,
        circuit=shop,
    )
    token = payload.get("access_token") if isinstance(payload, Mapping) else None
    if not isinstance(token, str) or not token:
        raise InvalidRequest("Shopify token response has no access_token")
    http.add_secret(token)
    scope = str(payload.get("scope") or "")
    extra: dict[str, Any] = {"shop": shop}
    if isinstance(payload.get("associated_user"), Mapping):  # online (per-user) tokens
        extra["associated_user_id"] = payload["associated_user"].get("id")
    expires_in = payload.get("expires_in")
    return TokenSet(
        access_token=token,
        refresh_token=payload.get("refresh_token") or None,
        expires_at=datetime.now(UTC) + timedelta(seconds=int(expires_in)) if expires_in else None,
        scopes=[s for s in scope.split(",") if s],
        extra=extra,
    )
