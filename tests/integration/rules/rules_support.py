"""A team whose client is connected to the Meta sandbox's small account and synced for
real (120 days), shared by the rules tests of a module; raw daily rows for the fixtures
the tests compute by hand."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select

from omnify.core.db import Base, Database
from tests.integration.connections.conn_support import HISTORY_DAYS, META_SMALL, Env, Team, new_team
from tests.integration.sync.sync_support import connected, run

API = "/api/v1"


@dataclass
class Synced:
    team: Team
    connection_id: str

    def url(self, *rest: str) -> str:
        return "/".join([f"{API}/orgs/{self.team.owner.org_id}", *rest])


async def synced_team(env: Env) -> Synced:
    team = await new_team(env.api)
    conn_id = await connected(env, team, "meta_ads", META_SMALL)
    result = await run(env, team, conn_id)
    assert result.status == "succeeded" and result.rows_written > 0, result
    return Synced(team, conn_id)


@dataclass
class AdDays:
    """Per ad (our id): external id, name, status, and {day: (spend, impressions, clicks, conversions, revenue)}."""

    external: dict[str, str]
    names: dict[str, str]
    status: dict[str, str]
    days: dict[str, dict[date, tuple[int, int, int, float, int]]]


async def ad_days(owner_db: Database, client_id: str) -> AdDays:
    """Straight from the tables with plain SQL: the tests' own view of the data."""
    a, m = Base.metadata.tables["ads"], Base.metadata.tables["ad_metrics_daily"]
    cid = uuid.UUID(client_id)
    async with owner_db.sessionmaker() as s:
        ads = (await s.execute(select(a.c.id, a.c.external_id, a.c.name, a.c.status).where(a.c.client_id == cid))).all()
        rows = (await s.execute(select(m.c.ad_id, m.c.day, m.c.spend_minor, m.c.impressions, m.c.clicks,
                                       m.c.conversions, m.c.revenue_minor)
                                .where(m.c.client_id == cid, m.c.level == "ad", m.c.ad_id.is_not(None)))).all()
    days: dict[str, dict[date, tuple[int, int, int, float, int]]] = defaultdict(dict)
    for ad_id, day, spend, impressions, clicks, conversions, revenue in rows:
        d = day if isinstance(day, date) else date.fromisoformat(str(day)[:10])
        days[str(uuid.UUID(str(ad_id)))][d] = (int(spend), int(impressions), int(clicks), float(conversions),
                                               int(revenue))
    norm = {str(uuid.UUID(str(a[0]))): a for a in ads}
    return AdDays(external={k: str(a[1]) for k, a in norm.items()}, names={k: str(a[2]) for k, a in norm.items()},
                  status={k: str(a[3]) for k, a in norm.items()}, days=dict(days))


def window_sum(series: dict[date, tuple[Any, ...]], last: date, days: int, col: int) -> float:
    from datetime import timedelta

    return float(sum(series.get(last - timedelta(days=k), (0, 0, 0, 0.0, 0))[col] for k in range(days)))


__all__ = ["HISTORY_DAYS", "AdDays", "Synced", "ad_days", "synced_team", "window_sum"]
