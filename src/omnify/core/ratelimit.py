"""Rate limiting per IP, user, API key and organization, built on the ``limits`` library.

Strategy: **moving window**. It is exact (no 2x burst at a fixed-window boundary), and
both storages we use implement it: ``limits``' in-process memory storage when
``OMNIFY_REDIS_URL`` is unset (one process, ``omnify up``) and its async Redis storage
otherwise (shared by every API worker and replica).

Redis client: ``limits`` 5.x defaults its async Redis storage to **coredis** (that is
what the ``limits[async-redis]`` extra installs). We pass ``implementation="redispy"``
so it runs on ``redis.asyncio`` from redis-py (>= 5.2), the client the rest of Omnify
already uses (cache, health checks, Celery); ``coredis`` is then not needed.

Availability over strictness: if Redis is configured but unreachable, :meth:`RateLimiter.hit`
**fails open** - the request is allowed and a (throttled) warning is logged - because a
cache outage must not take the whole API down. Brute-force protection of logins has its
own database-backed lockout, so failing open here does not open that door.

Usage from a route dependency::

    limiter: RateLimiter = request.app.state.rate_limiter
    await limiter.hit(request, "user", str(user.id), settings.rate_limit_user)

Each successful hit stores a :class:`RateLimitStatus` on ``request.state``; the HTTP
middleware turns the most restrictive one into ``RateLimit-*`` response headers.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal, cast, get_args

import redis.asyncio as aioredis
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from prometheus_client import Counter
from redis.exceptions import RedisError
from starlette.requests import Request

from omnify.core.errors import RateLimited
from omnify.core.logging import get_logger
from omnify.settings import Settings

log = get_logger(__name__)

RateLimitScope = Literal["ip", "user", "api_key", "org"]
SCOPES: Final[frozenset[str]] = frozenset(get_args(RateLimitScope))

#: Key on ``request.state`` (i.e. ``scope["state"]``) holding the most restrictive status.
RATE_LIMIT_STATE_KEY: Final = "rate_limit"
KEY_PREFIX: Final = "omnify-rl"

#: Redis round trips must never stall a request for long; past this we fail open.
STORAGE_TIMEOUT_SECONDS: Final = 0.5
#: At most one "storage unavailable" warning per this many seconds (no log floods).
WARNING_INTERVAL_SECONDS: Final = 30.0

# Process-global on purpose: the limiter is built before the app's metrics registry,
# and /metrics exposes the default registry next to the per-app one.
RATE_LIMITED_TOTAL = Counter("omnify_rate_limited_total", "Requests refused by a rate limit.", ["scope"])


@dataclass(frozen=True, slots=True)
class RateLimitStatus:
    """Where one identity stands against one limit after a hit."""

    scope: str
    limit: int
    remaining: int
    reset_after: int  # seconds until the window frees a slot
    window: int  # window length in seconds

    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` headers (draft-ietf-httpapi-ratelimit-headers, delta-seconds reset)."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(self.remaining, 0)),
            "RateLimit-Reset": str(self.reset_after),
            "RateLimit-Policy": f"{self.limit};w={self.window}",
        }

    def is_stricter_than(self, other: RateLimitStatus) -> bool:
        if self.remaining != other.remaining:
            return self.remaining < other.remaining
        return self.reset_after > other.reset_after


def rate_limit_status(scope: MutableMapping[str, Any]) -> RateLimitStatus | None:
    """The status recorded for this ASGI request, if any limit was checked."""
    state = scope.get("state")
    if not isinstance(state, dict):
        return None
    status = state.get(RATE_LIMIT_STATE_KEY)
    return status if isinstance(status, RateLimitStatus) else None


def _record(request: Request | None, status: RateLimitStatus) -> None:
    if request is None:
        return
    current = getattr(request.state, RATE_LIMIT_STATE_KEY, None)
    if not isinstance(current, RateLimitStatus) or status.is_stricter_than(current):
        setattr(request.state, RATE_LIMIT_STATE_KEY, status)


@lru_cache(maxsize=128)
def parse_limit(limit: str) -> tuple[RateLimitItem, ...]:
    """Parse ``"10/minute"`` or ``"10/minute;100/hour"``; raises ValueError when malformed."""
    items = tuple(parse_many(limit))
    if not items:
        raise ValueError(f"empty rate limit {limit!r}")
    return items


def _bucket(scope: str, identity: str) -> str:
    # IPv6 clients usually own a whole /64; limiting single addresses would let one
    # client rotate through billions of them.
    if scope == "ip":
        try:
            ip = ipaddress.ip_address(identity)
        except ValueError:
            pass
        else:
            if ip.version == 6 and ip.ipv4_mapped is None:
                identity = str(ipaddress.ip_network(f"{ip}/64", strict=False))
    # Hash so storage keys have a bounded length and never contain a raw identifier.
    return hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()


def redis_storage_uri(redis_url: str) -> str:
    """Map ``redis://``, ``rediss://`` or ``unix://`` to the ``limits`` async scheme."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    if redis_url.startswith(("redis://", "rediss://")):
        return "async+" + redis_url
    raise ValueError("OMNIFY_REDIS_URL must start with redis://, rediss:// or unix://")


class RateLimiter:
    """Moving-window limiter shared by one app (``app.state.rate_limiter``).

    ``hit`` never raises because of the storage: when Redis is configured but down, it
    logs ``rate_limit_storage_unavailable`` (at most every 30 s) and lets the request
    through. It raises :class:`~omnify.core.errors.RateLimited` only when the identity is
    over its limit.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.enabled = settings.rate_limit_enabled
        # Fail at start-up, not on the first request, when a configured limit is malformed.
        for name in ("rate_limit_auth", "rate_limit_user", "rate_limit_api_key", "rate_limit_org"):
            try:
                parse_limit(getattr(settings, name))
            except ValueError as exc:
                raise ValueError(f"OMNIFY_{name.upper()} is not a valid rate limit: {exc}") from exc

        self._pool: aioredis.ConnectionPool | None = None
        self.storage: Storage
        if settings.redis_url:
            self._pool = aioredis.ConnectionPool.from_url(
                settings.redis_url,
                socket_connect_timeout=STORAGE_TIMEOUT_SECONDS,
                socket_timeout=STORAGE_TIMEOUT_SECONDS,
                health_check_interval=30,
            )
            options: dict[str, Any] = {"connection_pool": self._pool}
            self.storage = RedisStorage(
                redis_storage_uri(settings.redis_url),
                wrap_exceptions=True,
                implementation="redispy",
                key_prefix=KEY_PREFIX,
                **options,
            )
            self.backend = "redis"
        else:
            self.storage = MemoryStorage()
            self.backend = "memory"
        self._strategy = MovingWindowRateLimiter(self.storage)
        self._last_warning = -math.inf
        self._degraded = False

    async def hit(self, request: Request | None, scope: str, identity: str, limit: str) -> None:
        """Count one request of ``identity`` against ``limit`` (e.g. ``"10/minute"``).

        Raises RateLimited (429, ``Retry-After`` in seconds) when over the limit.
        """
        if not self.enabled:
            return
        if scope not in SCOPES:
            raise ValueError(f"unknown rate-limit scope {scope!r}; use one of {sorted(SCOPES)}")
        if not identity:
            raise ValueError("rate-limit identity must not be empty")
        bucket = _bucket(scope, identity)
        for item in parse_limit(limit):
            try:
                async with asyncio.timeout(STORAGE_TIMEOUT_SECONDS * 2):
                    allowed = await self._strategy.hit(item, scope, bucket)
                    stats = await self._strategy.get_window_stats(item, scope, bucket)
            except (StorageError, RedisError, OSError, TimeoutError) as exc:
                self._storage_failed(exc)
                return
            self._storage_ok()
            window = item.get_expiry()
            reset_after = max(0, math.ceil(stats.reset_time - time.time()))
            status = RateLimitStatus(
                scope=scope,
                limit=item.amount,
                remaining=max(0, stats.remaining) if allowed else 0,
                reset_after=min(reset_after, window),
                window=window,
            )
            _record(request, status)
            if not allowed:
                RATE_LIMITED_TOTAL.labels(scope=scope).inc()
                retry_after = max(1, status.reset_after)
                log.info("rate_limited", scope=scope, limit=str(item), retry_after=retry_after)
                raise RateLimited(
                    f"Rate limit for this {scope.replace('_', ' ')} exceeded ({item.amount} per "
                    f"{_window_text(window)}); retry in {retry_after} s.",
                    headers={"Retry-After": str(retry_after), **status.headers()},
                    scope=scope,
                    retry_after=retry_after,
                )

    def _storage_failed(self, exc: BaseException) -> None:
        self._degraded = True
        now = time.monotonic()
        if now - self._last_warning >= WARNING_INTERVAL_SECONDS:
            self._last_warning = now
            log.warning(
                "rate_limit_storage_unavailable",
                backend=self.backend,
                error_type=type(exc).__name__,
                action="failing open: requests are not rate limited until storage recovers",
            )

    def _storage_ok(self) -> None:
        if self._degraded:
            self._degraded = False
            self._last_warning = -math.inf
            log.info("rate_limit_storage_recovered", backend=self.backend)

    async def reset(self) -> None:
        """Forget every counter (tests and operators after an incident)."""
        await self.storage.reset()

    async def close(self) -> None:
        """Release the Redis connections (memory storage holds nothing to release)."""
        if self._pool is not None:
            await self._pool.aclose()  # type: ignore[attr-defined]  # stale types-redis stubs
        elif isinstance(self.storage, MemoryStorage):
            timer = self.storage.timer
            if timer is not None and not timer.done():
                timer.cancel()


def _window_text(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds} seconds"


def client_ip(request: Request, *, trust_forwarded_for: bool | None = None) -> str:
    """The client's IP address for rate limiting and audit.

    ``X-Forwarded-For`` is only believed when ``settings.trust_forwarded_for`` is true
    (deploy behind exactly one trusted proxy/load balancer), and then only its right-most
    entry - the address *our* proxy saw - because anything left of it is client-supplied.
    Behind uvicorn's ``--proxy-headers --forwarded-allow-ips`` the socket address is
    already correct and the flag can stay off.
    """
    if trust_forwarded_for is None:
        settings = getattr(request.app.state, "settings", None) if "app" in request.scope else None
        trust_forwarded_for = bool(getattr(settings, "trust_forwarded_for", False))
    if trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            try:
                return str(ipaddress.ip_address(hops[-1]))
            except ValueError:
                pass
    if request.client and request.client.host:
        return request.client.host
    return "unknown"


def ip_rate_limit(setting: str = "rate_limit_auth") -> Callable[[Request], Awaitable[None]]:
    """FastAPI dependency limiting by client IP with the limit named by ``setting``.

    ``router.post("/login", dependencies=[Depends(ip_rate_limit())])``
    """

    async def _dependency(request: Request) -> None:
        limiter = cast(RateLimiter, request.app.state.rate_limiter)
        limit = cast(str, getattr(limiter.settings, setting))
        await limiter.hit(request, "ip", client_ip(request), limit)

    return _dependency
