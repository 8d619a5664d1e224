"""Knobs of the webhook system, read from :class:`omnify.settings.Settings` with defaults.

Why a separate frozen dataclass instead of reading settings everywhere: the delivery
engine is driven both by the API (save-time URL checks) and by workers, and tests need
a compressed retry schedule and a production-mode SSRF guard without rebuilding the
whole settings object. Every service function takes a :class:`WebhookConfig`; the only
place that knows the settings field names is :meth:`WebhookConfig.from_settings`.

Settings fields (``getattr`` with these defaults until they are declared in settings):

``webhook_allowed_hosts``        hosts exempt from the private-address check (dev only)
``webhook_retry_schedule``       seconds before each attempt, first one usually 0
``webhook_timeout_seconds``      per attempt, connect + read
``webhook_lease_seconds``        an attempt with no result after this long is lost (worker died)
``webhook_disable_after_seconds`` an endpoint failing this long is disabled (5 days)
``webhook_secret_overlap_seconds`` the old secret keeps signing after a rotation (24 h)
``shopify_api_secret``           Shopify app client secret (signs inbound webhooks)
``inbound_shopify_max_age_seconds`` older X-Shopify-Triggered-At is refused (48 h)
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from omnify.settings import Settings

#: Immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts over ~28 hours.
DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
DEFAULT_DISABLE_AFTER = 5 * 24 * 3600.0
DEFAULT_SECRET_OVERLAP = 24 * 3600.0
DEFAULT_TIMEOUT = 15.0
#: Shopify retries for 4 hours and warns that deliveries can be up to a day late.
DEFAULT_SHOPIFY_MAX_AGE = 48 * 3600.0
RESPONSE_EXCERPT_BYTES = 1024
#: Retries due within this many seconds are re-enqueued with a countdown by the task
#: itself; later ones wait for the beat sweep (long ETAs outlive broker visibility).
COUNTDOWN_THRESHOLD = 300.0


def _secret_value(value: Any) -> str | None:
    if value is None:
        return None
    raw = value.get_secret_value() if hasattr(value, "get_secret_value") else value
    text = str(raw).strip()
    return text or None


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    #: Production rules: https only, every resolved address public, allow-list ignored.
    production: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    timeout: float = DEFAULT_TIMEOUT
    #: Seconds an attempt holds its delivery (None: derived from ``timeout``).
    lease: float | None = None
    disable_after: float = DEFAULT_DISABLE_AFTER
    secret_overlap: float = DEFAULT_SECRET_OVERLAP
    #: TLS verification for deliveries: True (system CAs) or a context (tests, private CA).
    verify: bool | ssl.SSLContext = True
    user_agent: str = "Omnify-Webhooks/1.0"
    shopify_secrets: tuple[str, ...] = field(default_factory=tuple)
    shopify_max_age: float = DEFAULT_SHOPIFY_MAX_AGE

    def __post_init__(self) -> None:
        if not self.retry_schedule:
            raise ValueError("the webhook retry schedule needs at least one attempt")
        if any(delay < 0 for delay in self.retry_schedule):
            raise ValueError("webhook retry delays cannot be negative")
        if self.lease is not None and self.lease <= 0:
            raise ValueError("the webhook lease must be positive")

    @property
    def max_attempts(self) -> int:
        return len(self.retry_schedule)

    @property
    def lease_seconds(self) -> float:
        """How long a claimed delivery stays invisible to other workers.

        Longer than one attempt can take, so a live worker never loses its claim; short
        enough that a crashed worker's delivery is retried soon after. One attempt is
        bounded by ``timeout`` + 5 s per checked address (the transport's hard deadline);
        the default, twice the timeout + 30 s (60 s), leaves room for a second address,
        DNS and a slow database. ``OMNIFY_WEBHOOK_LEASE_SECONDS`` sets it.
        """
        return self.lease if self.lease is not None else self.timeout * 2 + 30

    def host_allowed(self, host: str) -> bool:
        """The development allow-list; production never exempts a host."""
        return not self.production and host.lower().rstrip(".") in self.allowed_hosts

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig:
        hosts: Sequence[str] = getattr(settings, "webhook_allowed_hosts", None) or ()
        schedule = getattr(settings, "webhook_retry_schedule", None) or DEFAULT_RETRY_SCHEDULE
        shopify = _secret_value(getattr(settings, "shopify_api_secret", None))
        previous = _secret_value(getattr(settings, "shopify_previous_api_secret", None))
        return cls(
            production=settings.is_production,
            allowed_hosts=frozenset(h.strip().lower().rstrip(".") for h in hosts if h.strip()),
            retry_schedule=tuple(float(s) for s in schedule),
            timeout=float(getattr(settings, "webhook_timeout_seconds", DEFAULT_TIMEOUT)),
            lease=getattr(settings, "webhook_lease_seconds", None),
            disable_after=float(getattr(settings, "webhook_disable_after_seconds", DEFAULT_DISABLE_AFTER)),
            secret_overlap=float(getattr(settings, "webhook_secret_overlap_seconds", DEFAULT_SECRET_OVERLAP)),
            shopify_secrets=tuple(s for s in (shopify, previous) if s),
            shopify_max_age=float(getattr(settings, "inbound_shopify_max_age_seconds", DEFAULT_SHOPIFY_MAX_AGE)),
        )
