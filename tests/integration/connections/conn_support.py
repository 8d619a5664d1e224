"""Shared by the connections and sync tests: the five platform sandboxes on loopback ports,
an Omnify app pointed at them, a team with every role, and the OAuth dance through
Omnify's own routes (authorize -> platform consent -> callback).

Everything is real: the app is create_app() on the suite's database, the sandboxes are
HTTP servers, connectors talk to them over TCP. Only the retry waits and the breaker
thresholds are shortened (a test-owned ConnectorFactory), so failure paths stay fast.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import Table, select

from omnify.app import create_app
from omnify.connections.connectors import ConnectorFactory
from omnify.core.db import Base, Database, bind_tenant
from omnify.integrations.google.sandbox import GoogleSandbox, GoogleSandboxConfig
from omnify.integrations.http import CircuitBreakers, RetryPolicy
from omnify.integrations.linkedin.sandbox import LinkedInSandbox, LinkedInSandboxConfig
from omnify.integrations.meta.sandbox import MetaSandbox, MetaSandboxConfig
from omnify.integrations.sandbox_common import SandboxServer
from omnify.integrations.sandbox_data import AccountSpec, World, WorldConfig
from omnify.integrations.shopify.sandbox import ShopifySandbox
from omnify.integrations.tiktok.sandbox import TikTokSandbox
from omnify.notifications import dispatch
from omnify.settings import Settings
from tests.conftest import DatabaseUrls, make_settings
from tests.factories import Account, add_member, register

API = "/api/v1"
HISTORY_DAYS = 120
#: The small accounts (2 campaigns x 2 ad groups x 3 ads) used for speed.
META_SMALL, GOOGLE_SMALL, TIKTOK_SMALL = "1000003", "3456789012", "1000003"
LINKEDIN_SMALL, LINKEDIN_MID = "507400003", "507400001"
#: Meta's mid-size account (2 x 2 x 10 = 40 ads): the default run's smaller variant of the
#: 200 ads x 365 days backfill that bench/sync_backfill.py measures.
META_MID = "1000001"
SHOP = "acme-outdoor.myshopify.com"
SYNC_TABLES = ("ad_accounts", "campaigns", "ad_groups", "creatives", "ads", "ad_metrics_daily", "shop_customers",
               "shop_orders")


class SyncTestSettings(Settings):
    """The knobs the connections/sync domains read with getattr (see connections.config),
    declared so a test can set them, exactly as the lead will add them to Settings."""

    sync_backfill_days: int = 45
    sync_lookback_days: int = 7
    sync_metrics_chunk_days: int = 31
    sync_batch_size: int = 500
    sync_lock_lease_seconds: float = 300.0
    connections_state_ttl_seconds: float = 600.0


def small_specs() -> list[AccountSpec]:
    return [AccountSpec(1000003, "Bright Smiles Dental", "USD", "America/Chicago", 2, 2, 3),
            AccountSpec(1000002, "Acme Outdoor - EU", "EUR", "Europe/Berlin", 1, 2, 2)]


@dataclass
class Sandboxes:
    meta: MetaSandbox
    google: GoogleSandbox
    tiktok: TikTokSandbox
    shopify: ShopifySandbox
    linkedin: LinkedInSandbox
    servers: dict[str, SandboxServer] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.servers[name].url

    def reset(self) -> None:
        for sandbox in (self.meta, self.google, self.tiktok, self.shopify, self.linkedin):
            sandbox.injector.reset()
            sandbox.journal.clear()


def start_sandboxes() -> Sandboxes:
    google_specs = [AccountSpec(3456789012, "Bright Smiles Dental", "USD", "America/Chicago", 2, 2, 3)]
    boxes = Sandboxes(
        meta=MetaSandbox(MetaSandboxConfig(days=HISTORY_DAYS, accounts=[
            *small_specs(), AccountSpec(1000001, "Acme Outdoor - US", "USD", "America/New_York", 2, 2, 10)])),
        google=GoogleSandbox(GoogleSandboxConfig(days=HISTORY_DAYS, accounts=google_specs, managed=())),
        tiktok=TikTokSandbox(world=World(WorldConfig(platform="tiktok_ads", days=HISTORY_DAYS,
                                                     accounts=small_specs()))),
        shopify=ShopifySandbox(customers=60),
        linkedin=LinkedInSandbox(LinkedInSandboxConfig(days=HISTORY_DAYS, accounts=[
            AccountSpec(507400003, "Bright Smiles Dental", "USD", "UTC", 2, 1, 3),
            AccountSpec(507400002, "Acme Outdoor - EMEA", "EUR", "UTC", 1, 1, 2),
            AccountSpec(507400001, "Acme Outdoor - B2B", "USD", "UTC", 4, 1, 4)])),
    )
    for name, sandbox in (("meta", boxes.meta), ("google", boxes.google), ("tiktok", boxes.tiktok),
                          ("shopify", boxes.shopify), ("linkedin", boxes.linkedin)):
        boxes.servers[name] = sandbox.server().start()
    return boxes


def base_values(base: Settings) -> dict[str, Any]:
    """The base settings minus the knobs SyncTestSettings tunes (so its defaults win)."""
    tuned = {name for name in SyncTestSettings.model_fields
             if SyncTestSettings.model_fields[name].default != Settings.model_fields[name].default}
    return base.model_dump(exclude=tuned)


def settings_for(boxes: Sandboxes, base: Settings, **overrides: Any) -> SyncTestSettings:
    meta, google, tiktok, shop = boxes.url("meta"), boxes.url("google"), boxes.url("tiktok"), boxes.url("shopify")
    values: dict[str, Any] = {
        **base_values(base),
        "meta_app_id": boxes.meta.config.app_id, "meta_app_secret": boxes.meta.config.app_secret,
        "meta_graph_url": meta, "meta_dialog_url": meta,
        "google_client_id": boxes.google.config.client_id, "google_client_secret": boxes.google.config.client_secret,
        "google_developer_token": boxes.google.config.developer_token, "google_ads_url": google,
        "google_auth_url": f"{google}/o/oauth2/v2/auth", "google_token_url": f"{google}/token",
        "google_revoke_url": f"{google}/revoke",
        "tiktok_app_id": boxes.tiktok.app_id, "tiktok_app_secret": boxes.tiktok.secret, "tiktok_base_url": tiktok,
        "tiktok_auth_url": f"{tiktok}/portal/auth",
        "shopify_api_key": boxes.shopify.api_key, "shopify_api_secret": boxes.shopify.api_secret,
        "shopify_shop_url_template": f"{shop}/shops/{{shop}}",
        "linkedin_client_id": boxes.linkedin.client_id, "linkedin_client_secret": boxes.linkedin.client_secret,
        "linkedin_api_url": boxes.url("linkedin"), "linkedin_oauth_url": f"{boxes.url('linkedin')}/oauth/v2",
        # Where platforms would call us back (webhooks): nothing listens on the discard port.
        "public_base_url": "http://127.0.0.1:9",
    }
    values.update(overrides)
    return SyncTestSettings.model_validate(values)


def fast_factory(settings: Settings, *, threshold: int = 3, cooldown: float = 0.5) -> ConnectorFactory:
    return ConnectorFactory(settings, retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, jitter=0.01,
                                                        max_retry_after=5.0),
                            breakers=CircuitBreakers(threshold=threshold, cooldown=cooldown))


@dataclass
class Env:
    api: httpx.AsyncClient
    app: Any
    settings: SyncTestSettings
    boxes: Sandboxes
    db: Database
    owner_db: Database

    @property
    def factory(self) -> ConnectorFactory:
        factory = self.app.state.connector_factory
        assert isinstance(factory, ConnectorFactory)
        return factory

    def use_factory(self, factory: ConnectorFactory) -> None:
        self.app.state.connector_factory = factory


@dataclass
class Team:
    owner: Account
    admin: Account
    viewer: Account
    outsider: Account
    client_id: str

    def url(self, *rest: str, acct: Account | None = None, client_id: str | None = None) -> str:
        org = (acct or self.owner).org_id
        return "/".join([f"{API}/orgs/{org}/clients/{client_id or self.client_id}/connections", *rest])


async def new_team(api: httpx.AsyncClient) -> Team:
    owner = await register(api)
    admin = await add_member(api, owner, "admin")
    viewer = await add_member(api, owner, "viewer")
    outsider = await register(api)
    resp = await api.post(f"{API}/orgs/{owner.org_id}/clients", headers=owner.headers,
                          json={"company_name": f"Client {uuid.uuid4().hex[:8]}"})
    assert resp.status_code == 201, resp.text
    return Team(owner=owner, admin=admin, viewer=viewer, outsider=outsider, client_id=resp.json()["id"])


# ------------------------------------------------------------------------------ the dance
@dataclass
class Consent:
    authorize: httpx.Response
    callback_path: str
    params: dict[str, str]


async def consent(env: Env, team: Team, platform: str, *, acct: Account | None = None,
                  shop: str | None = None, approve: bool = True) -> Consent:
    """Omnify's authorize route, then the platform's consent screen (auto-approved)."""
    acct = acct or team.owner
    resp = await env.api.get(team.url(platform, "authorize", acct=acct), headers=acct.headers,
                             params={"shop": shop} if shop else None)
    assert resp.status_code == 302, resp.text
    location = resp.headers["location"]
    flag = "sandbox_auto_approve=1" if approve else "sandbox_auto_approve=0"
    async with httpx.AsyncClient() as browser:
        if approve:
            page = await browser.get(location + ("&" if "?" in location else "?") + flag)
        else:
            form = await browser.get(location)
            assert form.status_code == 200
            page = await browser.post(location, data={"decision": "deny"})
    assert page.status_code in (302, 303), page.text[:500]
    back = urlsplit(page.headers["location"])
    assert back.path == f"{API}/connections/{platform}/callback", back.path
    params = {k: v[-1] for k, v in parse_qs(back.query).items()}
    return Consent(authorize=resp, callback_path=f"{back.path}?{back.query}", params=params)


async def connect(env: Env, team: Team, platform: str, *, shop: str | None = None) -> dict[str, Any]:
    grant = await consent(env, team, platform, shop=shop)
    resp = await env.api.get(grant.callback_path)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def select_accounts(env: Env, team: Team, platform: str, accounts: list[str]) -> dict[str, Any]:
    resp = await env.api.put(team.url(platform, "accounts"), headers=team.owner.headers,
                             json={"account_ids": accounts})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


# ------------------------------------------------------------------------------ snapshots
async def snapshot(owner_db: Database, connection_id: str | uuid.UUID) -> dict[str, list[tuple[Any, ...]]]:
    """Every synced row of one connection, every column (updated_at included), sorted."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with owner_db.sessionmaker() as session:
        for name in SYNC_TABLES:
            table = Base.metadata.tables[name]
            assert isinstance(table, Table)
            rows = (await session.execute(select(table).where(table.c.connection_id == uuid.UUID(str(connection_id))))
                    ).all()
            out[name] = sorted(tuple(r) for r in rows)
    return out


async def tenant_session_rows(db: Database, org_id: str, model: Any) -> list[Any]:
    """One organization's rows, through the app role (RLS on PostgreSQL) and an explicit
    filter (SQLite has no row-level security), oldest first where the table records time:
    without an ORDER BY PostgreSQL returns rows in whatever order its heap holds them."""
    org = uuid.UUID(org_id)
    stmt = select(model).where(model.org_id == org)
    if hasattr(model, "created_at"):
        stmt = stmt.order_by(model.created_at, model.id)
    async with db.sessionmaker() as session:
        await bind_tenant(session, org)
        return list((await session.scalars(stmt)).all())


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def boxes() -> Iterator[Sandboxes]:
    running = start_sandboxes()
    yield running
    for server in running.servers.values():
        server.stop()


@contextlib.asynccontextmanager
async def open_env(boxes: Sandboxes, settings: Settings, db_urls: DatabaseUrls, database: Database,
                   owner_database: Database, **overrides: Any) -> AsyncIterator[Env]:
    """The app wired to the sandboxes (``overrides`` adjust its settings) and a client."""
    sync_settings = settings_for(boxes, make_settings(settings.data_dir, db_urls), **overrides)
    app = create_app(sync_settings, database)
    app.state.connector_factory = fast_factory(sync_settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as api:
        yield Env(api=api, app=app, settings=sync_settings, boxes=boxes, db=database, owner_db=owner_database)


@pytest.fixture(scope="module")
async def env(boxes: Sandboxes, settings: Settings, db_urls: DatabaseUrls, database: Database,
              owner_database: Database) -> AsyncIterator[Env]:
    async with open_env(boxes, settings, db_urls, database, owner_database) as opened:
        yield opened


@dataclass
class Enqueued:
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def named(self, name: str) -> list[dict[str, Any]]:
        """Calls so far; publishing runs in a thread after commit, so wait for it first."""
        await dispatch.drain()
        return [kw for n, kw in self.calls if n == name]


@pytest.fixture(autouse=True)
def enqueued(boxes: Sandboxes) -> Iterator[Enqueued]:
    """Record the tasks Omnify would publish (no broker in these tests); fresh sandboxes."""
    boxes.reset()
    record = Enqueued()
    previous = dispatch.set_enqueuer(lambda name, kwargs, countdown: record.calls.append((name, kwargs)))
    yield record
    dispatch.set_enqueuer(previous)


@pytest.fixture
async def team(env: Env) -> Team:
    return await new_team(env.api)
