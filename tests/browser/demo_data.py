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
import time
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


def wait_for_startup_brain_runs(served: Served, timeout_s: float = 180.0) -> None:
    """Wait until the brain runs `omnify up` set off are over, read from the API.

    A brain run expires the open recommendations it does not find again, a planted one
    included. `up` queues one run per synced connection (trigger ``sync``) before the worker
    starts, then the beat's start-up sweep queues one per client (``schedule``) behind them;
    the worker takes them in order, so once every demo client has a finished ``schedule``
    run, nothing else runs until the next sync sweep (every 15 minutes)."""
    api = f"{served.origin}/api/v1"
    login = httpx.post(f"{api}/auth/login", json={"email": served.demo_email, "password": served.demo_password},
                       timeout=30)
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    [org] = httpx.get(f"{api}/orgs", headers=headers, timeout=30).json()["items"]
    clients = [c["id"] for c in httpx.get(f"{api}/orgs/{org['id']}/clients", headers=headers,
                                          timeout=30).json()["items"]]
    assert clients
    deadline = time.monotonic() + timeout_s
    waiting = set(clients)
    while waiting:
        for client_id in sorted(waiting):
            runs = httpx.get(f"{api}/orgs/{org['id']}/clients/{client_id}/brain-runs", headers=headers,
                             params={"limit": 100}, timeout=30).json()["items"]
            if any(r["trigger"] == "schedule" and r["status"] != "running" for r in runs):
                waiting.discard(client_id)
        if waiting:
            assert time.monotonic() < deadline, f"no finished start-up brain run for {waiting} after {timeout_s} s"
            time.sleep(0.5)  # polling the API for a state, not a timing assertion


def plant_pause_ad(served: Served) -> PlantedPause:
    """An open ``pause_ad`` recommendation for an ad the demo synced from Meta and that is
    active at the sandbox, stored through the recommendations service as a brain run does
    (once the start-up runs are over, so none of them expires it)."""
    wait_for_startup_brain_runs(served)
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
