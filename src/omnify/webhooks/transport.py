"""One HTTP attempt at a webhook endpoint, through the SSRF guard.

Deliberate choices:

* a fresh client per attempt: connection pools are keyed by address, and a pooled TLS
  connection opened for one host name could otherwise be reused for another host name
  on the same IP without its certificate being checked again;
* ``trust_env=False``: an ``HTTPS_PROXY`` in the environment would make the proxy
  resolve the name, bypassing the pinned address;
* redirects are not followed: a 3xx is a failed attempt (following it would send the
  payload to a second, unchecked URL);
* at most :data:`RESPONSE_EXCERPT_BYTES` of the response are read, so a receiver cannot
  make us download a large body, and a hard overall deadline bounds a slow one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from omnify.webhooks.config import RESPONSE_EXCERPT_BYTES, WebhookConfig
from omnify.webhooks.ssrf import BlockedDestination, PinnedTarget, Resolver, resolve_targets


@dataclass(frozen=True, slots=True)
class AttemptResult:
    ok: bool
    status_code: int | None
    duration_ms: int
    response_excerpt: str | None
    error: str | None
    ip: str | None = None
    blocked: bool = False
    #: Seconds the receiver asked us to wait (``Retry-After`` on a 429 or 503), if any.
    retry_after: float | None = None


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    from datetime import UTC, datetime

    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def excerpt(raw: bytes, limit: int = RESPONSE_EXCERPT_BYTES) -> str:
    """Decoded text whose UTF-8 form is at most ``limit`` bytes."""
    text = raw[:limit].decode("utf-8", "replace")
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


async def _read_excerpt(response: httpx.Response) -> str:
    buf = bytearray()
    async for chunk in response.aiter_bytes():
        buf.extend(chunk)
        if len(buf) >= RESPONSE_EXCERPT_BYTES:
            break
    return excerpt(bytes(buf))


async def _send_to(target: PinnedTarget, body: bytes, headers: dict[str, str], config: WebhookConfig) -> httpx.Response:
    timeout = httpx.Timeout(config.timeout, connect=min(config.timeout, 5.0))
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
    client = httpx.AsyncClient(verify=config.verify, trust_env=False, follow_redirects=False, timeout=timeout)
    try:
        request = client.build_request(
            "POST", target.url, content=body,
            headers={**headers, "Host": target.host_header, "Content-Type": "application/json",
                     "User-Agent": config.user_agent},
            extensions=extensions,
        )
        response = await client.send(request, stream=True)
        try:
            response.extensions["omnify_excerpt"] = await _read_excerpt(response)
        finally:
            await response.aclose()
        return response
    finally:
        await client.aclose()


async def post(
    url: str, body: bytes, headers: dict[str, str], config: WebhookConfig, resolver: Resolver | None = None
) -> AttemptResult:
    """POST ``body`` to ``url``; never raises for network or policy failures."""
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        targets = await resolve_targets(url, config, resolver)
    except BlockedDestination as exc:
        return AttemptResult(False, None, elapsed(), None, f"blocked: {exc.reason}", blocked=True)
    last_error = "no address to connect to"
    for target in targets:
        try:
            response = await asyncio.wait_for(_send_to(target, body, headers, config), timeout=config.timeout + 5)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            last_error = f"connect to {target.ip} failed: {type(exc).__name__}: {exc}"[:500]
            continue  # the next checked address may answer
        except (httpx.TimeoutException, TimeoutError):
            return AttemptResult(False, None, elapsed(), None, f"timed out after {config.timeout:g} s", ip=target.ip)
        except httpx.HTTPError as exc:
            return AttemptResult(False, None, elapsed(), None, f"{type(exc).__name__}: {exc}"[:500], ip=target.ip)
        status = response.status_code
        ok = 200 <= status < 300
        retry_after = parse_retry_after(response.headers.get("retry-after")) if status in (429, 503) else None
        error = None if ok else (f"redirect to {response.headers.get('location', '?')[:200]} not followed"
                                 if 300 <= status < 400 else f"HTTP {status}")
        return AttemptResult(ok, status, elapsed(), response.extensions.get("omnify_excerpt"), error, ip=target.ip,
                             retry_after=retry_after)
    return AttemptResult(False, None, elapsed(), None, last_error)
