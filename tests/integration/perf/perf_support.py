"""Accounts, campaigns and ads of one client, and metric windows written the sync's way.

Windows go through :class:`omnify.sync.repository.MetricWriter`, the very code
``omnify.sync.service`` runs for each window it reads from a platform (staging, the
set-based upsert, the window clean-up and the rollups), so what these tests read back is
what a sync would have left.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from omnify.connections.models import Connection
from omnify.core.db import Database, bind_tenant
from omnify.sync.models import SyncAd, SyncAdAccount, SyncCampaign
from omnify.sync.repository import MetricWriter

D = date.fromisoformat


@dataclass
class Account:
    id: uuid.UUID
    connection_id: uuid.UUID
    platform: str
    currency: str
    campaigns: dict[str, uuid.UUID] = field(default_factory=dict)
    ads: dict[str, tuple[uuid.UUID, uuid.UUID]] = field(default_factory=dict)  # ad key -> (ad id, campaign id)


async def make_accounts(database: Database, org_id: str, client_id: str,
                        spec: dict[str, tuple[str, str, dict[str, list[str]]]]) -> dict[str, Account]:
    """``spec``: account key -> (platform, currency, {campaign name: [ad keys]})."""
    org, client = uuid.UUID(org_id), uuid.UUID(client_id)
    out: dict[str, Account] = {}
    async with database.sessionmaker() as s:
        await bind_tenant(s, org)
        connections: dict[str, uuid.UUID] = {}
        for platform in sorted({p for p, _c, _k in spec.values()}):
            connections[platform] = uuid.uuid4()
            s.add(Connection(id=connections[platform], org_id=org, client_id=client, platform=platform))
        await s.flush()
        for key, (platform, currency, campaigns) in spec.items():
            acc = Account(uuid.uuid4(), connections[platform], platform, currency)
            common: dict[str, Any] = {"org_id": org, "client_id": client, "connection_id": acc.connection_id,
                                      "platform": platform}
            s.add(SyncAdAccount(id=acc.id, external_id=f"acct-{key}", name=key, currency=currency, timezone="UTC",
                                status="active", **common))
            await s.flush()
            for name, ads in campaigns.items():
                acc.campaigns[name] = uuid.uuid4()
                s.add(SyncCampaign(id=acc.campaigns[name], external_id=f"{key}-{name}", name=name, status="active",
                                   currency=currency, ad_account_id=acc.id, **common))
                await s.flush()
                for ad in ads:
                    ad_id = uuid.uuid4()
                    acc.ads[ad] = (ad_id, acc.campaigns[name])
                    s.add(SyncAd(id=ad_id, external_id=ad, name=f"{name} {ad}", status="active",
                                 campaign_id=acc.campaigns[name], ad_account_id=acc.id, **common))
            out[key] = acc
        await s.commit()
    return out


def ad_row(acc: Account, ad: str | None, day: str, spend: int, impressions: int, clicks: int, conversions: float,
           revenue: int, *, level: str = "ad", campaign: str | None = None) -> dict[str, Any]:
    """A metric row as the sync maps it. ``ad=None``: an ad the platform reports but whose
    entity we do not know (no ad id, no campaign)."""
    ad_id, campaign_id = acc.ads.get(ad or "", (None, None))
    if campaign is not None:
        campaign_id = acc.campaigns[campaign]
    return {"level": level, "entity_external_id": ad or f"{level}-{campaign}", "day": D(day),
            "campaign_id": campaign_id, "ad_group_id": None, "ad_id": ad_id, "currency": acc.currency,
            "spend_minor": spend, "impressions": impressions, "clicks": clicks, "conversions": conversions,
            "revenue_minor": revenue, "reach": None, "frequency": None}


async def write_window(database: Database, org_id: str, client_id: str, acc: Account, since: str, until: str,
                       rows: list[dict[str, Any]], batch_size: int = 3) -> MetricWriter:
    """One window in one transaction, in small batches (so batches meet across pages)."""
    org = uuid.UUID(org_id)
    async with database.sessionmaker() as s:
        await bind_tenant(s, org)
        writer = MetricWriter(s, org_id=org, client_id=uuid.UUID(client_id), connection_id=acc.connection_id,
                              account_id=acc.id, platform=acc.platform, since=D(since), until=D(until))
        for start in range(0, len(rows), batch_size):
            await writer.write(rows[start:start + batch_size])
        await writer.finish()
        await s.commit()
    return writer
