"""Knobs of the connections and sync domains, read from Settings with safe defaults.

They are read with ``getattr`` so the domains work before the fields exist on
:class:`omnify.settings.Settings`; adding a field there (``OMNIFY_<NAME>``) makes each
one configurable from the environment without touching this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omnify.settings import Settings

#: How long before its access token expires a connection is refreshed, per platform.
#: Meta's long-lived tokens last ~60 days and can only be renewed while still valid, so a
#: generous week; Google access tokens live an hour; TikTok's a day; LinkedIn's 60 days (a
#: week ahead, like Meta). Shopify's offline tokens do not expire.
DEFAULT_REFRESH_WINDOWS: dict[str, float] = {
    "meta_ads": 7 * 86400.0,
    "google_ads": 15 * 60.0,
    "tiktok_ads": 2 * 3600.0,
    "linkedin_ads": 7 * 86400.0,
}


def knob(settings: Settings, name: str, default: Any) -> Any:
    value = getattr(settings, name, None)
    return default if value is None else value


@dataclass(frozen=True, slots=True)
class ConnectionsConfig:
    state_ttl_seconds: float = 600.0
    refresh_windows: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_REFRESH_WINDOWS))
    #: A token this close to expiry is refreshed before use rather than after a 401.
    refresh_skew_seconds: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionsConfig:
        windows = dict(DEFAULT_REFRESH_WINDOWS)
        windows.update(knob(settings, "connections_refresh_windows", {}))
        return cls(
            state_ttl_seconds=float(knob(settings, "connections_state_ttl_seconds", 600.0)),
            refresh_windows=windows,
            refresh_skew_seconds=float(knob(settings, "connections_refresh_skew_seconds", 300.0)),
        )


@dataclass(frozen=True, slots=True)
class SyncConfig:
    backfill_days: int = 365
    lookback_days: int = 28
    #: Cadence of incremental syncs per connection (the beat task only picks due ones).
    interval_seconds: float = 3600.0
    #: Longest pause after repeated failures (the pause doubles per consecutive failure).
    max_backoff_seconds: float = 6 * 3600.0
    #: The run's lease on its connection; a heartbeat renews it every third of this, so a
    #: dead worker's lease lapses within it and the redelivered task takes over.
    lock_lease_seconds: float = 60.0
    batch_size: int = 1000
    metrics_chunk_days: int = 30
    #: Shopify streams re-read this much before their cursor (clock skew, late writes).
    shop_overlap_seconds: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SyncConfig:
        return cls(
            backfill_days=int(knob(settings, "sync_backfill_days", 365)),
            lookback_days=int(knob(settings, "sync_lookback_days", 28)),
            interval_seconds=float(knob(settings, "sync_interval_seconds", 3600.0)),
            max_backoff_seconds=float(knob(settings, "sync_max_backoff_seconds", 6 * 3600.0)),
            lock_lease_seconds=float(knob(settings, "sync_lock_lease_seconds", 60.0)),
            batch_size=int(knob(settings, "sync_batch_size", 1000)),
            metrics_chunk_days=int(knob(settings, "sync_metrics_chunk_days", 30)),
            shop_overlap_seconds=float(knob(settings, "sync_shop_overlap_seconds", 3600.0)),
        )
