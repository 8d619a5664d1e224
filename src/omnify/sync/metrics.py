"""Sync metrics (names fixed in notes/METRICS.md).

``omnify_sync_lag_seconds`` must grow between syncs, so it is computed at scrape time
(``now - oldest last success`` per platform) from what :func:`observe_lag` last learned;
the beat task ``omnify.sync.run_due`` refreshes that from the database on every pass,
and every successful run moves its own connection forward.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

ROWS = Counter("omnify_sync_rows_total", "Rows read from ad platforms and shops by sync runs.",
               ["platform", "stream"])
ERRORS = Counter("omnify_sync_errors_total", "Sync runs that failed or were deferred by a rate limit.",
                 ["platform"])


class LagCollector(Collector):
    """``platform -> {connection: last success (unix time)}``; exports the worst per platform."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, dict[str, float]] = {}

    def replace(self, snapshot: Mapping[str, Mapping[str, datetime]]) -> None:
        with self._lock:
            self._last = {p: {c: t.timestamp() for c, t in conns.items()} for p, conns in snapshot.items()}

    def succeeded(self, platform: str, connection: str, at: datetime) -> None:
        with self._lock:
            self._last.setdefault(platform, {})[connection] = at.timestamp()

    def forget(self, platform: str, connection: str) -> None:
        with self._lock:
            self._last.get(platform, {}).pop(connection, None)

    def lag(self, now: float | None = None) -> dict[str, float]:
        moment = time.time() if now is None else now
        with self._lock:
            return {p: max(0.0, moment - min(conns.values())) for p, conns in self._last.items() if conns}

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("omnify_sync_lag_seconds",
                                   "Seconds since the last successful sync of the most lagging connection.",
                                   labels=["platform"])
        for platform, seconds in sorted(self.lag().items()):
            family.add_metric([platform], seconds)
        yield family

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [GaugeMetricFamily("omnify_sync_lag_seconds", "", labels=["platform"])]


LAG = LagCollector()
REGISTRY.register(LAG)
