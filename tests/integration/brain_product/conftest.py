"""An app pointed at a live Meta sandbox, a team with every role, and recommendation seeding.

The app is the real one (create_app) on the suite's database, with settings whose Meta
base URLs and app secret are the sandbox's, so one-click actions go over HTTP to a
Graph-shaped server and change its state.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnify.app import create_app
from omnify.core.db import Database, bind_tenant, utcnow
from omnify.integrations.meta.sandbox import SANDBOX_USER_ID, MetaSandbox, MetaSandboxConfig
from omnify.integrations.sandbox_common import SandboxServer
from omnify.recommendations import service as rec_service
from omnify.settings import Settings
from tests.conftest import DatabaseUrls, make_settings
from tests.factories import Account, add_member, register

API = "/api/v1"
#: The small sandbox account (2 campaigns x 2 ad sets x 3 ads, USD).
ACCOUNT = "1000003"


@dataclass
class Team:
    owner: Account
    admin: Account
    member: Account
    viewer: Account
    outsider: Account


@dataclass
class MetaEnv:
    sandbox: MetaSandbox
    server: SandboxServer

    def token(self) -> str:
        c = self.sandbox.config
        return self.sandbox.tokens.issue_tokens(client_id=c.app_id, subject=SANDBOX_USER_ID,
                                                scopes=["ads_read", "ads_management"], access_ttl=3600,
                                                with_refresh=False).access_token

    def writes(self) -> list[Any]:
        return [e for e in self.sandbox.journal.entries() if e.method == "POST"]


@pytest.fixture(scope="module")
def meta_env() -> Iterator[MetaEnv]:
    sandbox = MetaSandbox(MetaSandboxConfig(days=120))
    server = sandbox.server().start()
    yield MetaEnv(sandbox, server)
    server.stop()


@pytest.fixture(scope="module")
def brain_settings(db_urls: DatabaseUrls, settings: Settings, meta_env: MetaEnv, tmp_path_factory: Any) -> Settings:
    """The suite's database (already migrated) with Meta pointed at the sandbox."""
    data: Path = settings.data_dir
    return make_settings(data, db_urls, meta_app_id=meta_env.sandbox.config.app_id,
                         meta_app_secret=meta_env.sandbox.config.app_secret, meta_graph_url=meta_env.server.url,
                         meta_dialog_url=meta_env.server.url)


@pytest.fixture(scope="module")
async def api(brain_settings: Settings, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(brain_settings, database)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


async def make_team(api: httpx.AsyncClient) -> Team:
    owner = await register(api)
    admin = await add_member(api, owner, "admin")
    member = await add_member(api, owner, "member")
    viewer = await add_member(api, owner, "viewer")
    outsider = await register(api)
    return Team(owner, admin, member, viewer, outsider)


@pytest.fixture
async def team(api: httpx.AsyncClient) -> Team:
    return await make_team(api)


def org_url(acct: Account, *rest: str) -> str:
    return "/".join([f"{API}/orgs/{acct.org_id}", *rest])


async def new_client(api: httpx.AsyncClient, acct: Account) -> str:
    resp = await api.post(org_url(acct, "clients"), headers=acct.headers,
                          json={"company_name": f"Client {uuid.uuid4().hex[:8]}", "currency": "USD"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def connect_meta(api: httpx.AsyncClient, acct: Account, client_id: str, env: MetaEnv) -> None:
    resp = await api.put(org_url(acct, "clients", client_id, "credentials", "meta_ads"), headers=acct.headers, json={
        "secrets": {"access_token": env.token()}, "account_id": f"act_{ACCOUNT}",
        "scopes": ["ads_read", "ads_management"], "expires_at": (utcnow() + timedelta(days=30)).isoformat(),
    })
    assert resp.status_code in (200, 201), resp.text


def sandbox_ads(env: MetaEnv) -> list[Any]:
    return list(env.sandbox.world.account(ACCOUNT).ads.values())


def sandbox_campaigns(env: MetaEnv) -> list[Any]:
    return list(env.sandbox.world.account(ACCOUNT).campaigns.values())


def pause_finding(ad: Any, *, spend_minor: int = 2_000, key: str | None = None) -> rec_service.Finding:
    return rec_service.Finding(
        module="fatigue", kind="pause_ad", dedupe_key=key or f"USD|fatigue:{ad.id}:2026-01-01",
        title=f"Creative fatigue: CTR of ad {ad.name} is 40% below its early level",
        target={"level": "ad", "id": str(uuid.uuid4()), "name": ad.name, "platform": "meta_ads",
                "external_id": ad.id},
        platform="meta_ads", confidence=0.8, impact_minor=12_345, currency="USD",
        action={"type": "pause_ad", "platform": "meta_ads", "account_id": ACCOUNT, "entity_id": ad.id,
                "name": ad.name, "daily_spend_minor": spend_minor},
        evidence={"ctr_drop": 0.4, "series": {"dates": ["2026-01-01"], "ctr": [0.01]}},
    )


def budget_finding(changes: list[tuple[Any, int, int]], key: str | None = None) -> rec_service.Finding:
    return rec_service.Finding(
        module="allocation", kind="change_budgets", dedupe_key=key or f"USD|allocation:{uuid.uuid4().hex[:8]}",
        title=f"Reallocate daily budgets across {len(changes)} campaigns", target={"level": "client", "id": "budgets"},
        platform="meta_ads", confidence=0.85, impact_minor=50_000, currency="USD",
        action={"type": "set_budgets", "currency": "USD", "budgets": [
            {"platform": "meta_ads", "account_id": ACCOUNT, "level": "campaign", "entity_id": c.id, "name": c.name,
             "campaign_id": str(uuid.uuid4()), "current_minor": cur, "recommended_minor": new}
            for c, cur, new in changes]},
        evidence={"daily_revenue_change": 10.0},
    )


async def seed(database: Database, org_id: str, client_id: str,
               findings: list[rec_service.Finding]) -> rec_service.MergeOutcome:
    """Store findings through the recommendations service, as a brain run does."""
    async with database.sessionmaker() as session:
        await bind_tenant(session, uuid.UUID(org_id))
        outcome = await rec_service.merge_findings(session, uuid.UUID(org_id), uuid.UUID(client_id), findings, None,
                                                   expire_missing=False)
        await session.commit()
        return outcome


async def rec_id_by_key(api: httpx.AsyncClient, acct: Account, client_id: str, key: str) -> str:
    resp = await api.get(org_url(acct, "recommendations"), headers=acct.headers,
                         params={"client_id": client_id, "limit": 200})
    assert resp.status_code == 200, resp.text
    for item in resp.json()["items"]:
        if item["dedupe_key"] == key:
            return str(item["id"])
    raise AssertionError(f"no recommendation {key}")
