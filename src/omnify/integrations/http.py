"""The one outbound-HTTP path every ad-platform connector uses.

Why one wrapper: retries, rate-limit waits, the circuit breaker and secret redaction are
easy to get subtly wrong, and a connector that gets them wrong either hammers a platform
that asked us to slow down or leaks a client's token into a log. Connectors describe only
what is platform-specific (how a response maps to a typed error, how a platform signals
"slow down" before it refuses) and get the rest from here.

Order of the layers, outermost first::

    retry (tenacity: exponential backoff + jitter, honours RateLimited.retry_after)
      -> circuit breaker per (platform, account) (purgatory; only TransientError counts)
        -> one HTTP attempt (httpx) -> error mapper -> typed ConnectorError

The breaker sits *inside* the retry so each failed attempt counts and a breaker that opens
mid-retry stops the retry at once (CircuitOpen is not retryable).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, Self, TypeVar

import httpx
import structlog
from purgatory import AsyncCircuitBreakerFactory, AsyncRedisUnitOfWork
from purgatory.domain.model import OpenedState
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from omnify.integrations.base import (
    AuthExpired,
    AuthRevoked,
    CircuitOpen,
    ConnectorError,
    InvalidRequest,
    OAuthStart,
    PermissionDenied,
    RateLimited,
    TokenSet,
    TransientError,
)

log = structlog.get_logger(__name__)

SleepFn = Callable[[float], Awaitable[None]]
ErrorMapper = Callable[[httpx.Response], ConnectorError | None]
"""Turns a response into a typed error, or None when the response is fine (or when the
platform mapper has no opinion and the generic status-code mapping should decide).
It runs on *every* response, 2xx included, because some platforms (TikTok) report errors
inside a 200 envelope."""
ThrottleHint = Callable[[httpx.Response], float]
"""Seconds to pause before the next request after a *successful* response; lets a connector
slow down when the platform's usage headers (Meta's X-Business-Use-Case-Usage, Shopify's
call limit) say we are close to being throttled, instead of waiting for the refusal."""

TokenCallback = Callable[[TokenSet], Awaitable[None] | None]
"""Receives every TokenSet a connector refreshed by itself, so the caller can store it."""
_T = TypeVar("_T")

REDACTED = "[REDACTED]"

# Query/form/JSON keys whose values are credentials on at least one platform we speak to.
SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "access_token",
        "refresh_token",
        "client_secret",
        "app_secret",
        "appsecret_proof",
        "fb_exchange_token",
        "input_token",
        "code",
        "auth_code",
        "code_verifier",
        "secret",
        "password",
        "token",
        "id_token",
        "developer_token",
        "developer-token",
        "x-shopify-access-token",
        "access-token",
        "authorization",
    }
)
_KEY_ALT = "|".join(sorted((re.escape(k) for k in SENSITIVE_KEYS), key=len, reverse=True))
_QUERY_RE = re.compile(rf"(?i)([?&;]|^)({_KEY_ALT})=([^&#\s\"']+)")
_JSON_RE = re.compile(rf"(?i)([\"']({_KEY_ALT})[\"']\s*:\s*[\"'])([^\"']+)")
_BEARER_RE = re.compile(r"(?i)\b(bearer|oauth)\s+[A-Za-z0-9._~+/=-]+")


class Redactor:
    """Scrubs known secret values and credential-looking fragments out of text.

    Connectors register every token they hold (:meth:`add`), so even a platform error that
    echoes the token back ("Malformed access token EAAB...") cannot carry it into an
    exception message or a log line.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: set[str] = set()
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        # Very short values would redact ordinary words; real credentials are long.
        if secret and len(secret) >= 6:
            self._secrets.add(secret)

    def redact(self, text: str) -> str:
        for s in sorted(self._secrets, key=len, reverse=True):
            if s in text:
                text = text.replace(s, REDACTED)
        text = _QUERY_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}={REDACTED}", text)
        text = _JSON_RE.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
        return _BEARER_RE.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


class _RedactingFilter(logging.Filter):
    """httpx logs every request line at INFO *with its query string*; on Meta that query
    holds ``access_token``. This filter scrubs credential-looking parameters out of any
    record of the httpx/httpcore loggers before a handler formats it."""

    _redactor = Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        cleaned = self._redactor.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction() -> None:
    """Idempotent; runs at import so no connector can log before it is in place."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactingFilter) for f in logger.filters):
            logger.addFilter(_RedactingFilter())


install_log_redaction()


def redact_url(url: httpx.URL | str) -> str:
    """A URL safe to log: scheme, host and path only (query strings carry tokens on Meta)."""
    u = httpx.URL(str(url))
    return str(u.copy_with(query=None, fragment=None))


# ------------------------------------------------------------------------------ retry policy
async def _default_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try before giving a failure back to the caller.

    ``max_retry_after``: a platform asking us to wait longer than this is not waited for
    in-process; the RateLimited error goes back to the caller (the sync task reschedules
    itself), so a worker slot is not parked for minutes. ``sleep`` is injectable so tests can
    record the waits (they still sleep for real when they want to measure them).
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.5
    max_retry_after: float = 300.0
    retry_after_jitter: float = 0.1
    sleep: SleepFn = _default_sleep

    def wait_for(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        backoff = wait_exponential_jitter(
            initial=self.base_delay, max=self.max_delay, jitter=self.jitter
        )(retry_state)
        if isinstance(exc, RateLimited):
            # Never earlier than the platform asked; a little jitter so parallel workers that
            # were refused together do not come back together.
            extra = self.retry_after_jitter * (backoff / max(self.max_delay, 1e-9))
            return max(exc.retry_after, 0.0) + min(extra, self.retry_after_jitter)
        return float(backoff)

    def should_retry(self, exc: BaseException) -> bool:
        if not isinstance(exc, ConnectorError) or not exc.retryable:
            return False
        return not (isinstance(exc, RateLimited) and exc.retry_after > self.max_retry_after)


# ------------------------------------------------------------------------------ observer
class HttpObserver(Protocol):
    """Metrics/log hook. The metric *names* are fixed project-wide (METRICS.md), so the
    wrapper does not register any; the sync service plugs an observer that feeds
    omnify_sync_errors_total etc., tests plug a recorder."""

    def on_response(
        self, *, platform: str, method: str, path: str, status: int, elapsed: float, attempt: int
    ) -> None: ...

    def on_error(self, *, platform: str, circuit: str, error: ConnectorError, attempt: int) -> None: ...

    def on_retry(
        self, *, platform: str, circuit: str, error: ConnectorError, wait: float, attempt: int
    ) -> None: ...

    def on_breaker(self, *, platform: str, circuit: str, event: str) -> None: ...


class LoggingObserver:
    """Default observer: structured debug/warning logs, with paths only (no query, no token)."""

    def on_response(
        self, *, platform: str, method: str, path: str, status: int, elapsed: float, attempt: int
    ) -> None:
        log.debug("connector.http", platform=platform, method=method, path=path, status=status,
                  elapsed_ms=round(elapsed * 1000, 1), attempt=attempt)

    def on_error(self, *, platform: str, circuit: str, error: ConnectorError, attempt: int) -> None:
        log.info("connector.error", platform=platform, circuit=circuit, error=type(error).__name__,
                 status=error.status, platform_code=error.platform_code, detail=str(error), attempt=attempt)

    def on_retry(
        self, *, platform: str, circuit: str, error: ConnectorError, wait: float, attempt: int
    ) -> None:
        log.warning("connector.retry", platform=platform, circuit=circuit, error=type(error).__name__,
                    wait_s=round(wait, 3), attempt=attempt)

    def on_breaker(self, *, platform: str, circuit: str, event: str) -> None:
        log.warning("connector.breaker", platform=platform, circuit=circuit, state=event)


# ------------------------------------------------------------------------------ circuit breakers
# Errors that say nothing about the platform's health: they must neither open the breaker
# nor hide a run of real failures (purgatory treats excluded errors as a success).
_NOT_A_FAILURE: list[type[BaseException]] = [
    AuthExpired,
    AuthRevoked,
    PermissionDenied,
    InvalidRequest,
    RateLimited,
    asyncio.CancelledError,
]


class CircuitBreakers:
    """Breakers keyed by ``"<platform>:<account>"``, opened after ``threshold`` consecutive
    transient failures, half-open after ``cooldown`` seconds (one success closes it, one
    failure re-opens it).

    In-memory by default (per process). Pass ``redis_url`` so every worker shares one state:
    a platform outage then trips the breaker for the whole fleet, not worker by worker.
    """

    def __init__(self, *, threshold: int = 5, cooldown: float = 30.0, redis_url: str | None = None) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        uow = AsyncRedisUnitOfWork(redis_url) if redis_url else None
        self._factory = AsyncCircuitBreakerFactory(
            default_threshold=threshold, default_ttl=cooldown, exclude=list(_NOT_A_FAILURE), uow=uow
        )
        self._initialized = redis_url is None
        self._init_lock = asyncio.Lock()
        self._listeners: list[Callable[[str, str], None]] = []
        self._factory.add_listener(self._on_event)

    def _on_event(self, name: str, event_type: str, event: Any) -> None:
        label = event_type
        if event_type == "state_changed":
            label = str(getattr(event, "state", event_type))
        for listener in self._listeners:
            listener(name, label)

    def subscribe(self, listener: Callable[[str, str], None]) -> None:
        """``listener(circuit, event)``; event is opened/half-opened/closed/failed/recovered."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[str, str], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def get(self, circuit: str) -> Any:
        if not self._initialized:
            async with self._init_lock:
                if not self._initialized:
                    await self._factory.initialize()
                    self._initialized = True
        return await self._factory.get_breaker(circuit)

    async def state(self, circuit: str) -> str:
        brk = await self.get(circuit)
        return str(brk.context.state)


_default_breakers: CircuitBreakers | None = None


def default_breakers() -> CircuitBreakers:
    """Process-wide breakers, so two connector instances for one account share a breaker."""
    global _default_breakers
    if _default_breakers is None:
        _default_breakers = CircuitBreakers()
    return _default_breakers


# ------------------------------------------------------------------------------ default error mapping
def parse_retry_after(value: str | None, default: float) -> float:
    """Seconds from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        return max(when.timestamp() - time.time(), 0.0)
    # "NaN" and "inf" parse as floats: a NaN wait made every comparison false (and
    # asyncio.sleep(nan) raises), an infinite one is meaningless; both fall back.
    return max(seconds, 0.0) if math.isfinite(seconds) else default


def default_error_for(response: httpx.Response, *, default_retry_after: float = 1.0) -> ConnectorError | None:
    """Generic HTTP status mapping, used when the platform mapper has no opinion."""
    status = response.status_code
    if status < 400:
        return None
    where = f"{response.request.method} {redact_url(response.request.url)}"
    if status == 401:
        return AuthExpired(f"{where}: unauthorized", status=status)
    if status == 403:
        return PermissionDenied(f"{where}: forbidden", status=status)
    if status == 429:
        return RateLimited(
            f"{where}: rate limited",
            retry_after=parse_retry_after(response.headers.get("retry-after"), default_retry_after),
            status=status,
        )
    if status in (408, 425) or status >= 500:
        return TransientError(f"{where}: HTTP {status}", status=status)
    return InvalidRequest(f"{where}: HTTP {status}", status=status)


# ------------------------------------------------------------------------------ the client
@dataclass(slots=True)
class _Attempt:
    number: int = 0
    started: float = field(default_factory=time.monotonic)


class ConnectorHttp:
    """httpx.AsyncClient + retries + breaker + typed errors + redaction for one platform.

    One instance per connector instance (it owns its httpx client). ``circuit`` names the
    account the breaker is keyed on; calls not tied to an account (token exchange, account
    listing) use ``"_"``.
    """

    def __init__(
        self,
        *,
        platform: str,
        base_url: str,
        error_mapper: ErrorMapper | None = None,
        throttle_hint: ThrottleHint | None = None,
        retry: RetryPolicy | None = None,
        breakers: CircuitBreakers | None = None,
        timeout: float | httpx.Timeout = 30.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: HttpObserver | None = None,
        redactor: Redactor | None = None,
        user_agent: str = "omnify-connector/1.0",
    ) -> None:
        self.platform = platform
        self.retry = retry or RetryPolicy()
        self.breakers = breakers or default_breakers()
        self.observer: HttpObserver = observer or LoggingObserver()
        self.redactor = redactor or Redactor()
        self._error_mapper = error_mapper
        self._throttle_hint = throttle_hint
        self._pause_until = 0.0
        t = (
            timeout if isinstance(timeout, httpx.Timeout)
            else httpx.Timeout(timeout, connect=min(timeout, 10.0))
        )
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=t,
            headers={"User-Agent": user_agent, **dict(headers or {})},
            transport=transport,
            follow_redirects=False,
        )
        self.breakers.subscribe(self._breaker_event)

    # -- lifecycle -----------------------------------------------------------------
    async def aclose(self) -> None:
        self.breakers.unsubscribe(self._breaker_event)
        await self._client.aclose()

    async def __aenter__(self) -> ConnectorHttp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def base_url(self) -> httpx.URL:
        return self._client.base_url

    def add_secret(self, secret: str | None) -> None:
        """Register a credential so it is scrubbed from every error and log we produce."""
        self.redactor.add(secret)

    def circuit_name(self, circuit: str | None) -> str:
        return f"{self.platform}:{circuit or '_'}"

    def _breaker_event(self, name: str, event: str) -> None:
        if name.startswith(f"{self.platform}:") and event in ("opened", "half-opened", "closed"):
            self.observer.on_breaker(platform=self.platform, circuit=name, event=event)

    # -- requests ------------------------------------------------------------------
    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        circuit: str | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        """Send with retries; return the (successful) response or raise a ConnectorError.

        ``retry=False`` is for calls that must not be repeated blindly (a code exchange: the
        code is single-use, a second try after a lost response can only fail).
        """
        name = self.circuit_name(circuit)
        attempt = _Attempt()

        async def once() -> httpx.Response:
            attempt.number += 1
            return await self._attempt(method, url, params, json, data, headers, name, attempt.number)

        if not retry:
            return await once()

        async def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            if isinstance(exc, ConnectorError):
                self.observer.on_retry(platform=self.platform, circuit=name, error=exc, wait=wait,
                                       attempt=state.attempt_number)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.max_attempts),
            wait=self.retry.wait_for,
            retry=retry_if_exception(self.retry.should_retry),
            sleep=self.retry.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        result: httpx.Response = await retrying(once)
        return result

    async def _attempt(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        circuit: str,
        number: int,
    ) -> httpx.Response:
        pause = self._pause_until - time.monotonic()
        if pause > 0:
            await self.retry.sleep(pause)
        breaker = await self.breakers.get(circuit)
        try:
            async with breaker:
                return await self._send(method, url, params, json, data, headers, circuit, number)
        except OpenedState:
            err = CircuitOpen(
                f"circuit {circuit} is open after repeated failures; calls resume after a "
                f"{self.breakers.cooldown:g}s cool-down"
            )
            self.observer.on_error(platform=self.platform, circuit=circuit, error=err, attempt=number)
            raise err from None

    async def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        circuit: str,
        number: int,
    ) -> httpx.Response:
        started = time.monotonic()
        try:
            response = await self._client.request(
                method, url, params=params, json=json, data=data, headers=headers
            )
        except httpx.TimeoutException as exc:
            err: ConnectorError = TransientError(
                f"{method} {self._safe_path(url)}: timed out ({type(exc).__name__})"
            )
            self.observer.on_error(platform=self.platform, circuit=circuit, error=err, attempt=number)
            raise err from None
        except httpx.TransportError as exc:
            err = TransientError(
                f"{method} {self._safe_path(url)}: connection failed ({type(exc).__name__})"
            )
            self.observer.on_error(platform=self.platform, circuit=circuit, error=err, attempt=number)
            raise err from None
        elapsed = time.monotonic() - started
        self.observer.on_response(platform=self.platform, method=method,
                                  path=response.request.url.path, status=response.status_code,
                                  elapsed=elapsed, attempt=number)
        mapped = await self._map(response)
        if mapped is not None:
            mapped.args = (self.redactor.redact(str(mapped)),)
            self.observer.on_error(platform=self.platform, circuit=circuit, error=mapped, attempt=number)
            raise mapped
        if self._throttle_hint is not None:
            hint = self._throttle_hint(response)
            if hint > 0:
                self._pause_until = max(self._pause_until, time.monotonic() + hint)
        return response

    async def _map(self, response: httpx.Response) -> ConnectorError | None:
        await response.aread()
        mapped = self._error_mapper(response) if self._error_mapper else None
        if mapped is None:
            mapped = default_error_for(response)
        return mapped

    def _safe_path(self, url: str) -> str:
        return self.redactor.redact(redact_url(self._client.base_url.join(url)))

    # -- JSON helpers --------------------------------------------------------------
    async def get_json(self, url: str, **kw: Any) -> Any:
        return self._json(await self.request("GET", url, **kw))

    async def post_json(self, url: str, **kw: Any) -> Any:
        return self._json(await self.request("POST", url, **kw))

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise InvalidRequest(
                f"{response.request.method} {redact_url(response.request.url)}: response is not JSON",
                status=response.status_code,
            ) from None


# ------------------------------------------------------------------------------ connector bases
class HttpConnector:
    """What every connector owning one :class:`ConnectorHttp` does the same way.

    The connector's client (and its breaker subscription) must be released exactly once
    however the connector is used, so closing and the async context manager live here
    rather than being re-typed, and possibly forgotten, in each platform's connector.
    Subclasses set ``_http`` and ``_tokens`` in ``__init__``; both are exposed read-only so
    tokens are only ever bound through the subclass's ``with_tokens`` (which registers
    them for redaction).
    """

    _http: ConnectorHttp
    _tokens: TokenSet | None

    @property
    def http(self) -> ConnectorHttp:
        return self._http

    @property
    def tokens(self) -> TokenSet | None:
        return self._tokens

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class OAuthFlow(Protocol):
    """A platform's standard OAuth 2.0 authorization-code client (Google, Meta)."""

    def authorize_url(self, *, redirect_uri: str, state: str) -> OAuthStart: ...

    async def exchange_code(self, *, code: str, redirect_uri: str, code_verifier: str | None = None) -> TokenSet: ...

    async def refresh(self, tokens: TokenSet) -> TokenSet: ...

    async def revoke(self, tokens: TokenSet) -> None: ...


class OAuthConnector(HttpConnector, ABC):
    """A connector whose OAuth steps are its :class:`OAuthFlow`'s, with fresh tokens bound.

    Binding every token the flow hands back (on exchange and on refresh) keeps the
    connector using, and the redactor scrubbing, the newest credentials without the
    caller having to remember a second step.
    """

    oauth: OAuthFlow

    @abstractmethod
    def with_tokens(self, tokens: TokenSet) -> OAuthConnector:
        """Bind ``tokens`` in place (registering them for redaction) and return self."""

    def authorize_url(self, *, redirect_uri: str, state: str) -> OAuthStart:
        return self.oauth.authorize_url(redirect_uri=redirect_uri, state=state)

    async def exchange_code(self, *, code: str, redirect_uri: str, code_verifier: str | None = None) -> TokenSet:
        tokens = await self.oauth.exchange_code(code=code, redirect_uri=redirect_uri, code_verifier=code_verifier)
        self.with_tokens(tokens)
        return tokens

    async def refresh(self, tokens: TokenSet) -> TokenSet:
        fresh = await self.oauth.refresh(tokens)
        self.with_tokens(fresh)
        return fresh

    async def revoke(self, tokens: TokenSet) -> None:
        await self.oauth.revoke(tokens)


class TokenKeeper:
    """Keeps the tokens bound to a connector usable without the caller's help.

    For platforms whose access tokens expire during a sync (TikTok, LinkedIn): tokens are
    refreshed ``skew`` seconds before they expire, and once more when the platform answers
    with an expired-token error (the call is then replayed). Several calls that notice the
    expiry together cause one refresh, and every fresh TokenSet goes to ``on_tokens`` (the
    caller persists it: the refresh token may rotate).
    """

    def __init__(self, *, platform: str, current: Callable[[], TokenSet | None],
                 refresh: Callable[[TokenSet], Awaitable[TokenSet]], bind: Callable[[TokenSet], object],
                 on_tokens: TokenCallback | None = None, skew: float = 300.0) -> None:
        self.platform = platform
        self._current = current
        self._refresh = refresh
        self._bind = bind
        self._on_tokens = on_tokens
        self._skew = skew
        self._lock = asyncio.Lock()

    async def fresh(self) -> TokenSet:
        """The bound tokens, refreshed first when they are about to expire."""
        tokens = self._current()
        if tokens is None or not tokens.access_token:
            raise AuthRevoked(f"the {self.platform} connector has no tokens bound: authorize first")
        if (tokens.expires_at is not None and tokens.refresh_token
                and tokens.expires_at - datetime.now(UTC) < timedelta(seconds=self._skew)):
            tokens = await self.replace(tokens)
        return tokens

    async def replace(self, stale: TokenSet) -> TokenSet:
        """Refresh ``stale`` unless another task already did; bind and hand back the result."""
        async with self._lock:
            current = self._current()
            if current is not None and current.access_token != stale.access_token:
                return current
            fresh = await self._refresh(stale)
            self._bind(fresh)
            if self._on_tokens is not None:
                result = self._on_tokens(fresh)
                if inspect.isawaitable(result):
                    await result
            return fresh

    async def call(self, send: Callable[[TokenSet], Awaitable[_T]]) -> _T:
        """``send`` with fresh tokens; after an expired-token error, refresh once and send again."""
        tokens = await self.fresh()
        try:
            return await send(tokens)
        except AuthExpired:
            if not tokens.refresh_token:
                raise
        return await send(await self.replace(tokens))
