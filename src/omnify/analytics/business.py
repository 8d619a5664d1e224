"""Business gauges for the *Business* and *Onboarding* dashboards: organizations, onboarded
clients, spend under management (last 30 days, by currency).

They are totals across tenants, computed in the API process one organization at a time
with its tenant bound (so row-level security holds for the app role), at most every
:data:`REFRESH_SECONDS`: a scrape on the token-protected ``/metrics`` refreshes them when
stale, and the app's lifespan refreshes them in the background for the metrics port.
Every API replica exports the same totals: dashboards take ``max``, not ``sum``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import timedelta

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from omnify.analytics import repository
from omnify.clients.repository import org_ids
from omnify.core.db import Database, bind_tenant, utcnow

REFRESH_SECONDS = 60.0
SPEND_WINDOW_DAYS = 30


class BusinessGauges(Collector):
    def __init__(self, db: Database) -> None:
        self.db = db
        self.organizations = 0
        self.onboarded = 0
        self.spend: dict[str, int] = {}
        self.refreshed_at = -float("inf")

    async def refresh(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self.refreshed_at < REFRESH_SECONDS:
            return
        since = (utcnow() - timedelta(days=SPEND_WINDOW_DAYS)).date()
        async with self.db.sessionmaker() as session:
            orgs = await org_ids(session)
        onboarded, spend = 0, dict.fromkeys(self.spend, 0)
        for org_id in orgs:
            async with self.db.sessionmaker() as session:
                await bind_tenant(session, org_id)
                count, by_currency = await repository.business_totals(session, org_id, since)
            onboarded += count
            for currency, amount in by_currency.items():
                spend[currency] = spend.get(currency, 0) + amount
        self.organizations, self.onboarded, self.spend = len(orgs), onboarded, spend
        self.refreshed_at = time.monotonic()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily("omnify_organizations", "Organizations (tenants).", value=self.organizations)
        yield GaugeMetricFamily("omnify_clients_onboarded", "Clients whose onboarding is complete.",
                                value=self.onboarded)
        spend = GaugeMetricFamily("omnify_spend_under_management_minor",
                                  f"Ad spend synced over the last {SPEND_WINDOW_DAYS} days, minor units.",
                                  labels=["currency"])
        for currency, amount in sorted(self.spend.items()):
            spend.add_metric([currency], amount)
        yield spend

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []
