"""Reach into the served demo from the test process: plant a recommendation the way a brain
run stores it, and read an entity as the platform sandbox holds it.

The demo's 60 synced days hold no creative fatigue the brain would call (it compares an ad's
recent weeks with its early ones), so a test that must click Apply plants the finding itself:
through :func:`omnify.recommendations.service.merge_findings` on the served database, for a
real ad the demo synced from the Meta sandbox. Everything after that (the page, the action,
the platform write, the audit entry, the undo) is the product's own path.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import httpx
from sqlalchemy import select

import omnify.models  # noqa: F401  (every table, so the models' foreign keys resolve)
from omnify.core.db import Database, bind_tenant
from omnify.recommendations import service as rec_service
from omnify.recommendations.models import Recommendation
from omnify.settings import Settings
from omnify.sync.models import SyncAd, SyncAdAccount

from .conftest import Served

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PlantedPause:
    org_id: str
    client_id: str
    recommendation_id: str
    ad_external_id: str
    ad_name: str
    title: str


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine from a Playwright (sync API) test: that thread's event loop is marked
    running while the browser is open, so the coroutine gets a thread and a loop of its own."""

    async def main() -> T:
        return await make()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result(timeout=60)


def sandbox_object(base_url: str, object_id: str) -> dict[str, str]:
    """An entity as the sandbox holds it now (``GET /__sandbox/objects/{id}``)."""
    resp = httpx.get(f"{base_url}/__sandbox/objects/{object_id}", timeout=10)
    assert resp.status_code == 200, resp.text
    body: dict[str, str] = resp.json()
    return body


def plant_pause_ad(served: Served) -> PlantedPause:
    """An open ``pause_ad`` recommendation for an ad the demo synced from Meta and that is
    active at the sandbox, stored through the recommendations service as a brain run does."""
    settings = Settings(env="test", data_dir=served.data_dir,
                        database_url=f"sqlite+aiosqlite:///{(served.data_dir / 'omnify.db').resolve()}")

    async def plant() -> PlantedPause:
        db = Database(settings)
        try:
            async with db.sessionmaker() as session:
                rows = (await session.execute(
                    select(SyncAd, SyncAdAccount.external_id)
                    .join(SyncAdAccount, SyncAdAccount.id == SyncAd.ad_account_id)
                    .where(SyncAd.platform == "meta_ads", SyncAd.status == "active")
                    .order_by(SyncAd.external_id))).all()
                assert rows, "the demo synced no active Meta ad"
                ad, account = next((a, acc) for a, acc in rows
                                   if sandbox_object(served.sandboxes["meta_ads"], a.external_id)["status"] == "active")
                await bind_tenant(session, ad.org_id)
                title = f"Creative fatigue: pause the ad '{ad.name}'"
                finding = rec_service.Finding(
                    module="fatigue", kind="pause_ad", dedupe_key=f"USD|fatigue:browser-{uuid.uuid4().hex[:8]}",
                    title=title, target={"level": "ad", "id": str(ad.id), "name": ad.name, "platform": "meta_ads",
                                         "external_id": ad.external_id, "account_id": account},
                    platform="meta_ads", confidence=0.82, impact_minor=12_345, currency="USD",
                    action={"type": "pause_ad", "platform": "meta_ads", "account_id": account,
                            "entity_id": ad.external_id, "name": ad.name, "ad_id": str(ad.id),
                            "daily_spend_minor": 2_000},
                    evidence={"ctr_drop": 0.4, "recent_daily_spend": 2_000})
                outcome = await rec_service.merge_findings(session, ad.org_id, ad.client_id, [finding], None,
                                                           expire_missing=False)
                assert outcome.created == 1, outcome
                await session.commit()
                stored = (await session.scalars(select(Recommendation).where(
                    Recommendation.org_id == ad.org_id, Recommendation.dedupe_key == finding.dedupe_key))).one()
                return PlantedPause(str(ad.org_id), str(ad.client_id), str(stored.id), ad.external_id, ad.name,
                                    title)
        finally:
            await db.dispose()

    return run_async(plant)
