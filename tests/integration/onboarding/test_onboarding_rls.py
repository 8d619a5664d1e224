"""Row-level security on every onboarding table (PostgreSQL): the second lock behind the
scoped repositories."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select, text

from omnify.clients.models import ClientProfile
from omnify.core.db import Database, bind_tenant
from omnify.credentials.models import PlatformCredential
from omnify.events.models import DomainEvent
from omnify.files.models import UploadedFile
from omnify.models import tenant_tables
from tests.conftest import requires_postgres
from tests.integration.onboarding.onboarding_support import Team, clients_url, new_client, pdf, upload

ONBOARDING_TABLES = {"client_profiles", "uploaded_files", "platform_credentials", "campaign_ideas",
                     "campaign_idea_files", "client_onboarding", "domain_events"}


def test_onboarding_tables_are_tenant_tables() -> None:
    assert set(tenant_tables()) >= ONBOARDING_TABLES


@requires_postgres
async def test_policies_enabled(database: Database) -> None:
    async with database.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT c.relname FROM pg_class c JOIN pg_policies p ON p.tablename = c.relname "
            "WHERE c.relrowsecurity AND p.policyname = 'tenant_isolation'"))).scalars().all()
    assert set(rows) >= ONBOARDING_TABLES


@requires_postgres
async def test_unscoped_queries_see_nothing_and_other_tenants_stay_hidden(
    client: httpx.AsyncClient, team: Team, database: Database
) -> None:
    c = await new_client(client, team.owner)
    await upload(client, team.owner, c["id"], pdf("rls"), category="brand_guide")
    await client.put(clients_url(team.owner, c["id"], "credentials", "meta_ads"), headers=team.owner.headers,
                     json={"secrets": {"access_token": "EAAB" + "r" * 30}, "account_id": "act_7"})
    models: tuple[Any, ...] = (ClientProfile, UploadedFile, PlatformCredential, DomainEvent)
    async with database.sessionmaker() as s:
        for model in models:
            assert (await s.scalars(select(model))).all() == []  # no app.org_id: nothing at all
        await bind_tenant(s, uuid.UUID(team.outsider.org_id))
        for model in models:
            rows = (await s.scalars(select(model))).all()
            assert all(str(r.org_id) == team.outsider.org_id for r in rows)
        await bind_tenant(s, uuid.UUID(team.owner.org_id))
        assert [str(r.id) for r in (await s.scalars(select(ClientProfile))).all()].count(c["id"]) == 1
