"""Demo data flow for `omnify up`: the demo organization's clients, connected to the local
platform sandboxes through the real OAuth flow, with their history backfilled.

Nothing here is a shortcut around the product: each platform is connected with
:func:`omnify.connections.service.start_authorization` (signed state, PKCE for Google),
the sandbox's consent screen (auto-approved) and
:func:`omnify.connections.service.complete_authorization` (code exchange, encrypted token
storage, account listing), then synced with :func:`omnify.sync.service.run_connection`.
Running it again is harmless: connected platforms are left alone and a backfill that is
done is not repeated (an incremental run brings them up to date instead).

Wiring (the lead's `omnify up`), in this order::

    running = start_all(ports={p: 0 for p in Platform})           # free ports
    os.environ.update(sandbox_env(running))                        # before Settings are read
    settings = _settings(data_dir); migrate; ensure_demo(...)
    asyncio.run(ensure_demo_connections(settings, db))             # after ensure_demo
    ... serve; finally: running.stop()
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

import httpx
import structlog

from omnify.auth import repository as auth_repo
from omnify.clients import service as clients
from omnify.clients.schemas import ClientCreateIn
from omnify.connections import service as connections
from omnify.connections.config import SyncConfig
from omnify.connections.connectors import ConnectorFactory
from omnify.connections.models import BackfillStatus
from omnify.core.context import Actor
from omnify.core.db import Database, bind_tenant
from omnify.core.pagination import PageParams
from omnify.demo import DEMO_EMAIL
from omnify.integrations.base import Platform
from omnify.integrations.sandbox_common import AUTO_APPROVE_PARAM
from omnify.integrations.sandboxes import RunningSandboxes
from omnify.orgs import service as orgs
from omnify.settings import Settings
from omnify.sync import service as sync

log = structlog.get_logger(__name__)

#: client -> [(platform, accounts to select, shop domain)]; ids are the sandboxes' seeded ones.
ClientsSpec = dict[str, list[tuple[Platform, list[str], str | None]]]
DEMO_CLIENTS: ClientsSpec = {
    "Acme Outdoor": [
        (Platform.META_ADS, ["1000001"], None),
        (Platform.GOOGLE_ADS, ["1234567890"], None),
        (Platform.TIKTOK_ADS, ["1000001"], None),
        (Platform.LINKEDIN_ADS, ["507400001"], None),
        (Platform.SHOPIFY, ["acme-outdoor.myshopify.com"], "acme-outdoor.myshopify.com"),
    ],
    "Bright Smiles Dental": [
        (Platform.META_ADS, ["1000003"], None),
        (Platform.GOOGLE_ADS, ["3456789012"], None),
        (Platform.SHOPIFY, ["bright-smiles.myshopify.com"], "bright-smiles.myshopify.com"),
    ],
}

Backfill = Literal["inline", "queue", "none"]


def sandbox_env(running: RunningSandboxes) -> dict[str, str]:
    """Every setting that points Omnify at running sandboxes: base URLs *and* the sandbox
    apps' ids and secrets (sandbox-only values), so the API and the worker both use them."""
    from omnify.integrations.google.sandbox import GoogleSandbox
    from omnify.integrations.linkedin.sandbox import LinkedInSandbox
    from omnify.integrations.meta.sandbox import MetaSandbox
    from omnify.integrations.shopify.sandbox import ShopifySandbox
    from omnify.integrations.tiktok.sandbox import TikTokSandbox

    env = running.env_for()
    meta = running.sandboxes[Platform.META_ADS]
    google = running.sandboxes[Platform.GOOGLE_ADS]
    tiktok = running.sandboxes[Platform.TIKTOK_ADS]
    shopify = running.sandboxes[Platform.SHOPIFY]
    linkedin = running.sandboxes[Platform.LINKEDIN_ADS]
    assert isinstance(meta, MetaSandbox) and isinstance(google, GoogleSandbox)
    assert isinstance(tiktok, TikTokSandbox) and isinstance(shopify, ShopifySandbox)
    assert isinstance(linkedin, LinkedInSandbox)
    env.update({
        "OMNIFY_META_APP_ID": meta.config.app_id,
        "OMNIFY_META_APP_SECRET": meta.config.app_secret,
        "OMNIFY_GOOGLE_CLIENT_ID": google.config.client_id,
        "OMNIFY_GOOGLE_CLIENT_SECRET": google.config.client_secret,
        "OMNIFY_GOOGLE_DEVELOPER_TOKEN": google.config.developer_token,
        "OMNIFY_TIKTOK_APP_ID": tiktok.app_id,
        "OMNIFY_TIKTOK_APP_SECRET": tiktok.secret,
        "OMNIFY_SHOPIFY_API_KEY": shopify.api_key,
        "OMNIFY_SHOPIFY_API_SECRET": shopify.api_secret,
        "OMNIFY_LINKEDIN_CLIENT_ID": linkedin.client_id,
        "OMNIFY_LINKEDIN_CLIENT_SECRET": linkedin.client_secret,
    })
    return env


@dataclass
class DemoSyncReport:
    org_id: uuid.UUID | None = None
    clients: dict[str, uuid.UUID] = field(default_factory=dict)
    connected: list[str] = field(default_factory=list)
    synced: dict[str, int] = field(default_factory=dict)  # "client/platform" -> rows read
    errors: list[str] = field(default_factory=list)


async def ensure_demo_connections(
    settings: Settings, db: Database, *, factory: ConnectorFactory | None = None, backfill: Backfill = "inline",
    backfill_days: int | None = None, clients_spec: ClientsSpec | None = None,
) -> DemoSyncReport:
    """Connect the demo organization's clients to the sandboxes and backfill them.

    ``backfill``: ``inline`` syncs now (the demo shows data at once), ``queue`` leaves it to
    the worker (the tasks were nudged when the accounts were chosen), ``none`` connects only.
    ``backfill_days`` shortens the inline backfill (a laptop demo need not wait for a year).
    A platform that fails is reported and skipped; the others still connect.
    """
    factory = factory or ConnectorFactory(settings)
    report = DemoSyncReport()
    async with db.sessionmaker() as session:
        user = await auth_repo.get_user_by_email(session, DEMO_EMAIL)
        if user is None:
            report.errors.append("the demo user does not exist; run ensure_demo first")
            return report
        memberships = await orgs.memberships_of(session, user)
        if not memberships:
            report.errors.append("the demo user has no organization")
            return report
        org_id = memberships[0][0].org_id
        user_id, user_email = user.id, user.email
    report.org_id = org_id
    actor = Actor(actor_type="user", actor_id=str(user_id), label=user_email, request_id="omnify-up-demo")
    config = SyncConfig.from_settings(settings)
    if backfill_days is not None:
        config = dataclasses.replace(config, backfill_days=backfill_days)
    for client_name, platforms in (clients_spec or DEMO_CLIENTS).items():
        client_id = await _ensure_client(db, org_id, actor, client_name)
        report.clients[client_name] = client_id
        for platform, accounts, shop in platforms:
            label = f"{client_name}/{platform.value}"
            try:
                conn_id = await _ensure_connected(db, settings, factory, org_id, user_id, actor, client_id, platform,
                                                  accounts, shop)
                report.connected.append(label)
                if backfill == "inline":
                    result = await sync.run_connection(db, factory, org_id, conn_id, trigger="connect",
                                                       config=config)
                    if result.status not in ("succeeded", "skipped"):
                        report.errors.append(f"{label}: {result.error_code}: {result.error}")
                    report.synced[label] = result.rows_read
            except Exception as exc:  # the demo shows what worked; one platform must not stop the rest
                log.warning("demo.connect_failed", platform=platform.value, client=client_name,
                            error=f"{type(exc).__name__}: {exc}"[:300])
                report.errors.append(f"{label}: {type(exc).__name__}: {exc}"[:300])
    return report


async def _ensure_client(db: Database, org_id: uuid.UUID, actor: Actor, name: str) -> uuid.UUID:
    async with db.sessionmaker() as session:
        await bind_tenant(session, org_id)
        for client in await clients.list_clients(session, org_id, PageParams(limit=200), search=name):
            if client.company_name == name:
                return client.id
        created = await clients.create_client(session, org_id, actor, ClientCreateIn(company_name=name))
        return created.id


async def _ensure_connected(
    db: Database, settings: Settings, factory: ConnectorFactory, org_id: uuid.UUID, user_id: uuid.UUID,
    actor: Actor, client_id: uuid.UUID, platform: Platform, accounts: list[str], shop: str | None,
) -> uuid.UUID:
    async with db.sessionmaker() as session:
        await bind_tenant(session, org_id)
        # Authorized again on every start, connected or not: the sandboxes `up` started hold
        # the tokens they issued in memory, so a second `up` on the same data directory found
        # every stored token refused and all demo connections failed (issue 14).
        url = await connections.start_authorization(session, settings, factory, org_id, actor, user_id,
                                                    client_id, platform, shop=shop)
        query = await _consent(url)
        conn = await connections.complete_authorization(session, settings, factory, platform, query, actor)
        if sorted(conn.selected_account_ids) != sorted(accounts):
            conn = await connections.select_accounts(session, org_id, actor, client_id, platform, accounts)
        elif conn.backfill_status == BackfillStatus.NONE.value:
            conn.backfill_status = BackfillStatus.PENDING.value
            await session.commit()
        return conn.id


async def _consent(url: str) -> list[tuple[str, str]]:
    """Be the user's browser on the sandbox's consent screen: approve, read the redirect."""
    sep = "&" if "?" in url else "?"
    async with httpx.AsyncClient(timeout=30.0) as browser:
        resp = await browser.get(f"{url}{sep}{AUTO_APPROVE_PARAM}=1")
    if resp.status_code not in (302, 303) or "location" not in resp.headers:
        raise RuntimeError(f"the sandbox consent screen answered {resp.status_code}, not a redirect")
    return parse_qsl(urlsplit(resp.headers["location"]).query, keep_blank_values=True)
