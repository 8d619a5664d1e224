"""Rate limiting per IP, user, API key and organization.

Strategies, the two of ``limits``: a limit over a window shorter than an hour (logins,
per-minute limits) is a **moving window**, exact: a log of the window's hits (a sorted
set in Redis), no 2x burst at a window boundary. A daily one (the API quota of a plan:
50,000 to 10,000,000 a day) is a **sliding window counter**: a counter per fixed window,
the previous one weighted by how much of it still overlaps; two integers per identity
however large the limit, where a log would hold millions of timestamps, at the cost of a
small approximation.

All the limits of one request - the caller's, the organization's per-minute and its daily
quota - are checked and counted in **one** Redis round trip: one Lua script
(:data:`_LUA`) reads every counter, refuses if any limit would be passed (then counting
nothing), otherwise increments them all, and can return a few cache entries read in the
same trip (:meth:`RateLimiter.hit_many`'s ``fetch``, used by the analytics cache so a
cached report costs one Redis round trip in all). ``limits`` has the same algorithm but
one script call per limit; its parser reads the limit strings. Without
``OMNIFY_REDIS_URL`` (one process, ``omnify up``) the same arithmetic runs in memory.

Availability over strictness: if Redis is configured but unreachable, :meth:`RateLimiter.hit`
**fails open** - the request is allowed and a (throttled) warning is logged - because a
cache outage must not take the whole API down. Brute-force protection of logins has its
own database-backed throttle (auth/throttle.py), so failing open here does not open that door.

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
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal, cast, get_args

import redis.asyncio as aioredis
from limits import RateLimitItem, parse_many
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


@dataclass(frozen=True, slots=True)
class Limit:
    """One identity against one configured limit string (``"600/minute"``, ``"5/minute;2/hour"``)."""

    scope: str
    identity: str
    limit: str


class PendingLimits:
    """A request's limits, checked later in one trip (see ``require(..., defer_limits=True)``)."""

    def __init__(self, limiter: RateLimiter, request: Request | None, checks: Sequence[Limit]) -> None:
        self.limiter, self.request, self.checks = limiter, request, list(checks)
        self.applied = False

    async def apply(self, fetch: Sequence[str] = ()) -> list[bytes | None]:
        """Check and count them (raises RateLimited); returns the ``fetch`` keys' values."""
        self.applied = True
        return await self.limiter.hit_many(self.request, self.checks, fetch=fetch)


#: Limits over windows shorter than this are kept as an exact log (a sorted set of the
#: window's hits); longer ones (daily quotas) as a sliding window counter. By window, not
#: amount: a plan change that moves a daily quota keeps what was already used today.
LOG_WINDOW_MAX_SECONDS: Final = 3600

#: KEYS: one key per limit item, then the keys to fetch. ARGV: number of items, then
#: (kind, amount, window ms) per item, kind 1 = log, 0 = counter. Checks every item, and
#: only if all allow, counts the hit in each. Returns {all allowed (1/0), then per item
#: three numbers (log: hits in the window before this one, age in ms of the oldest, 0;
#: counter: previous window's count, current window's count, ms into the window; the
#: counts are after this hit when allowed), then the fetched values}.
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = t[1] .. t[2]
local n = tonumber(ARGV[1])
local out = {1}
local current = {}
for i = 1, n do
  local kind, amount, win = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  if kind == 1 then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - win)
    local count = redis.call('ZCARD', KEYS[i])
    local age = 0
    if count > 0 then
      age = now - tonumber(redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')[2])
    end
    if count + 1 > amount then out[1] = 0 end
    out[#out + 1] = count
    out[#out + 1] = age
    out[#out + 1] = 0
  else
    local idx = math.floor(now / win)
    local elapsed = now - idx * win
    current[i] = KEYS[i] .. ':' .. idx
    local cur = tonumber(redis.call('GET', current[i]) or '0')
    local prev = tonumber(redis.call('GET', KEYS[i] .. ':' .. (idx - 1)) or '0')
    if math.floor(prev * (win - elapsed) / win) + cur + 1 > amount then out[1] = 0 end
    out[#out + 1] = prev
    out[#out + 1] = cur
    out[#out + 1] = elapsed
  end
end
if out[1] == 1 then
  for i = 1, n do
    local kind, win = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i + 1])
    if kind == 1 then
      redis.call('ZADD', KEYS[i], now, member)
      redis.call('PEXPIRE', KEYS[i], win)
    else
      local c = redis.call('INCR', current[i])
      if c == 1 then redis.call('PEXPIRE', current[i], 2 * win) end
      out[3 * i] = c
    end
  end
end
for j = n + 1, #KEYS do out[#out + 1] = redis.call('GET', KEYS[j]) end
return out
"""


@dataclass(frozen=True, slots=True)
class _Item:
    scope: str
    limit: RateLimitItem
    key: str

    @property
    def is_log(self) -> bool:
        return self.limit.get_expiry() < LOG_WINDOW_MAX_SECONDS

    @property
    def window_ms(self) -> int:
        return self.limit.get_expiry() * 1000


class _MemoryCounters:
    """The script's arithmetic in process, for the embedded single-process set-up."""

    def __init__(self) -> None:
        self._logs: dict[str, deque[int]] = {}
        self._counts: dict[str, tuple[int, float]] = {}  # counter key -> (count, expires at)
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def hit(self, items: Sequence[_Item]) -> tuple[bool, list[tuple[int, int, int]]]:
        now_s = time.time()
        now = int(now_s * 1000)
        with self._lock:
            if now_s >= self._next_sweep:
                self._sweep(now, now_s)
            stats: list[tuple[int, int, int]] = []
            ok = True
            for item in items:
                win, amount = item.window_ms, item.limit.amount
                if item.is_log:
                    log = self._logs.setdefault(item.key, deque())
                    while log and log[0] <= now - win:
                        log.popleft()
                    ok = ok and len(log) + 1 <= amount
                    stats.append((len(log), now - log[0] if log else 0, 0))
                else:
                    idx = now // win
                    elapsed = now - idx * win
                    cur = self._live(f"{item.key}:{idx}", now_s)
                    prev = self._live(f"{item.key}:{idx - 1}", now_s)
                    ok = ok and prev * (win - elapsed) // win + cur + 1 <= amount
                    stats.append((prev, cur, elapsed))
            if ok:
                for i, item in enumerate(items):
                    if item.is_log:
                        self._logs[item.key].append(now)
                    else:
                        key = f"{item.key}:{now // item.window_ms}"
                        count = self._live(key, now_s) + 1
                        self._counts[key] = (count, now_s + 2 * item.window_ms / 1000)
                        stats[i] = (stats[i][0], count, stats[i][2])
        return ok, stats

    def _live(self, key: str, now_s: float) -> int:
        found = self._counts.get(key)
        return found[0] if found and found[1] > now_s else 0

    def _sweep(self, now: int, now_s: float) -> None:
        self._counts = {k: v for k, v in self._counts.items() if v[1] > now_s}
        self._logs = {k: v for k, v in self._logs.items() if v and v[-1] > now - 86_400_000}
        self._next_sweep = now_s + 60

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._logs.clear()


def _status(item: _Item, a: int, b: int, c: int, allowed: bool) -> tuple[RateLimitStatus, bool]:
    """(where the identity stands, whether this limit is one refusing), from the numbers the
    check returned for it (see :data:`_LUA`)."""
    amount, window, win = item.limit.amount, item.limit.get_expiry(), item.window_ms
    if item.is_log:
        count, oldest_age = a, b
        over = not allowed and count + 1 > amount
        used = count + (1 if allowed else 0)
        remaining = 0 if over else max(0, amount - used)
        # The oldest hit leaves the window first (this one, if it is the only one).
        reset_ms = win - oldest_age if count else win
    else:
        prev, cur, elapsed = a, b, c
        weighted = prev * (win - elapsed) // win + cur
        over = not allowed and weighted + 1 > amount
        remaining = 0 if over else max(0, amount - weighted)
        if not over:
            reset_ms = win - elapsed  # the current window's end
        elif cur < amount and prev > 0:  # the previous window fades out enough within this one
            reset_ms = max(0, math.ceil(win - (amount - cur) * win / prev) - elapsed)
        else:  # not before the next window, where this one's count fades in turn
            reset_ms = (win - elapsed) + max(0, math.ceil(win - amount * win / max(cur, 1)))
    reset_after = min(max(1, math.ceil(reset_ms / 1000)), 2 * window)
    status = RateLimitStatus(scope=item.scope, limit=amount, remaining=remaining, reset_after=reset_after,
                             window=window)
    return status, over


class RateLimiter:
    """Sliding-window-counter limiter shared by one app (``app.state.rate_limiter``).

    ``hit``/``hit_many`` never raise because of the storage: when Redis is configured but
    down, they log ``rate_limit_storage_unavailable`` (at most every 30 s) and let the
    request through. They raise :class:`~omnify.core.errors.RateLimited` only when an
    identity is over its limit.
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
        self._redis: aioredis.Redis | None = None
        self._memory = _MemoryCounters()
        if settings.redis_url:
            redis_storage_uri(settings.redis_url)  # validates the scheme
            self._pool = aioredis.ConnectionPool.from_url(
                settings.redis_url,
                socket_connect_timeout=STORAGE_TIMEOUT_SECONDS,
                socket_timeout=STORAGE_TIMEOUT_SECONDS,
                health_check_interval=30,
            )
            self._redis = aioredis.Redis(connection_pool=self._pool)
            self._script = self._redis.register_script(_LUA)
            self.backend = "redis"
        else:
            self.backend = "memory"
        self._last_warning = -math.inf
        self._degraded = False

    async def hit(self, request: Request | None, scope: str, identity: str, limit: str) -> None:
        """Count one request of ``identity`` against ``limit`` (e.g. ``"10/minute"``).

        Raises RateLimited (429, ``Retry-After`` in seconds) when over the limit.
        """
        await self.hit_many(request, [Limit(scope, identity, limit)])

    async def hit_many(self, request: Request | None, checks: Sequence[Limit],
                       fetch: Sequence[str] = ()) -> list[bytes | None]:
        """Check and count several limits at once (one Redis round trip); nothing is
        counted when one of them refuses. Also returns the values of the Redis keys in
        ``fetch`` (all ``None`` without Redis, or when it is unreachable)."""
        items: list[_Item] = []
        for check in checks:
            if check.scope not in SCOPES:
                raise ValueError(f"unknown rate-limit scope {check.scope!r}; use one of {sorted(SCOPES)}")
            if not check.identity:
                raise ValueError("rate-limit identity must not be empty")
            bucket = _bucket(check.scope, check.identity)
            for parsed in parse_limit(check.limit):
                # Counted per identity and window, not per amount (see LOG_WINDOW_MAX_SECONDS).
                items.append(_Item(check.scope, parsed,
                                   f"{KEY_PREFIX}:{check.scope}:{bucket}:{parsed.get_expiry()}"))
        if not self.enabled:
            items = []
        nothing: list[bytes | None] = [None] * len(fetch)
        if not items and not fetch:
            return nothing
        fetched = nothing
        if self._redis is None:
            allowed, stats = self._memory.hit(items)
        else:
            args: list[int] = [len(items)]
            for one in items:
                args += [1 if one.is_log else 0, one.limit.amount, one.window_ms]
            try:
                async with asyncio.timeout(STORAGE_TIMEOUT_SECONDS * 2):
                    reply = await self._script(keys=[i.key for i in items] + list(fetch), args=args)
            except (RedisError, OSError, TimeoutError) as exc:
                self._storage_failed(exc)
                return nothing
            self._storage_ok()
            allowed = bool(reply[0])
            stats = [(int(reply[1 + 3 * i]), int(reply[2 + 3 * i]), int(reply[3 + 3 * i])) for i in range(len(items))]
            fetched = list(reply[1 + 3 * len(items):])
        judged = [(*_status(item, *stat, allowed=allowed), item) for item, stat in zip(items, stats, strict=True)]
        for status, _over, _item in judged:
            _record(request, status)
        if not allowed:
            # Retry when every refusing limit allows again: after the longest wait.
            worst, _over, refusing = max((j for j in judged if j[1]), key=lambda j: j[0].reset_after)
            RATE_LIMITED_TOTAL.labels(scope=worst.scope).inc()
            retry_after = max(1, worst.reset_after)
            log.info("rate_limited", scope=worst.scope, limit=str(refusing.limit), retry_after=retry_after)
            raise RateLimited(
                f"Rate limit for this {worst.scope.replace('_', ' ')} exceeded ({refusing.limit.amount} per "
                f"{_window_text(worst.window)}); retry in {retry_after} s.",
                headers={"Retry-After": str(retry_after), **worst.headers()},
                scope=worst.scope,
                retry_after=retry_after,
            )
        return fetched

    @property
    def degraded(self) -> bool:
        """True since the storage last failed (requests pass unlimited meanwhile)."""
        return self._degraded

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
        self._memory.reset()
        if self._redis is not None:
            keys = [k async for k in self._redis.scan_iter(match=f"{KEY_PREFIX}:*", count=1000)]
            for start in range(0, len(keys), 500):
                await self._redis.delete(*keys[start:start + 500])

    async def close(self) -> None:
        """Release the Redis connections (memory counters hold nothing to release)."""
        if self._redis is not None:
            await self._redis.aclose()
        if self._pool is not None:
            await self._pool.aclose()  # type: ignore[attr-defined]  # stale types-redis stubs


def _window_text(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds} seconds"


def client_ip(request: Request) -> str:
    """The client's IP address for rate limiting and audit: the socket peer.

    Behind a reverse proxy the peer is the proxy; :func:`omnify.core.middleware.install_proxy_headers`
    (uvicorn's ProxyHeadersMiddleware with exactly ``OMNIFY_TRUSTED_PROXIES``) has then
    already replaced it with the address that proxy saw. ``X-Forwarded-For`` is never
    read here: from anyone but a trusted proxy it is whatever the client chose.
    """
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
