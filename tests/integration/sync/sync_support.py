"""Helpers for the sync tests: a connected, account-selected connection and a run."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from omnify.connections.connectors import ConnectorFactory
from omnify.core.db import bind_tenant
from omnify.sync import service as sync
from omnify.sync.models import SyncRun
from tests.integration.connections.conn_support import Env, Team, connect, select_accounts


async def connected(env: Env, team: Team, platform: str, account: str | None = None,
                    shop: str | None = None) -> str:
    body = await connect(env, team, platform, shop=shop)
    if account is not None and body["selected_account_ids"] != [account]:
        body = await select_accounts(env, team, platform, [account])
    return str(body["id"])


async def run(env: Env, team: Team, connection_id: str, factory: ConnectorFactory | None = None,
              **kw: Any) -> sync.RunResult:
    return await sync.run_connection(env.db, factory or env.factory, uuid.UUID(team.owner.org_id),
                                     uuid.UUID(connection_id), **kw)


async def connection_view(env: Env, team: Team, platform: str) -> dict[str, Any]:
    resp = await env.api.get(team.url(platform), headers=team.owner.headers)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def runs_of(env: Env, team: Team, connection_id: str) -> list[SyncRun]:
    org = uuid.UUID(team.owner.org_id)
    async with env.db.sessionmaker() as session:
        await bind_tenant(session, org)
        stmt = (select(SyncRun).where(SyncRun.org_id == org, SyncRun.connection_id == uuid.UUID(connection_id))
                .order_by(SyncRun.started_at))
        return list((await session.scalars(stmt)).all())
