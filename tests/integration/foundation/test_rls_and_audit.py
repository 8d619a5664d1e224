from __future__ import annotations

import subprocess
import sys
import uuid

import httpx
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from omnify.audit import service as audit_service
from omnify.audit.models import AuditLog
from omnify.core.db import Database, bind_tenant
from omnify.orgs.models import ApiKey, Membership
from tests.conftest import requires_postgres
from tests.factories import add_member, register


@requires_postgres
async def test_query_that_forgets_its_scope_returns_nothing(client: httpx.AsyncClient, database: Database) -> None:
    a = await register(client)
    await add_member(client, a, "member")
    async with database.sessionmaker() as s:
        unscoped = (await s.scalars(select(Membership))).all()
        assert unscoped == []  # the app role sees no tenant rows without app.org_id
        await bind_tenant(s, uuid.UUID(a.org_id))
        scoped = (await s.scalars(select(Membership))).all()
        assert {str(m.org_id) for m in scoped} == {a.org_id} and len(scoped) == 2
        # and cannot write into another tenant either
        other = await register(client)
        with pytest.raises(DBAPIError):
            s.add(Membership(org_id=uuid.UUID(other.org_id), user_id=uuid.UUID(a.user_id), role="viewer"))
            await s.flush()


@requires_postgres
async def test_app_role_has_no_bypassrls(database: Database) -> None:
    async with database.engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT rolbypassrls, rolsuper FROM pg_roles WHERE rolname = current_user"))).one()
        assert row == (False, False)
        forced = (await conn.execute(text(
            "SELECT count(*) FROM pg_class WHERE relname IN ('memberships','api_keys','invitations','audit_log',"
            "'org_quotas') AND relrowsecurity"))).scalar()
        assert forced == 5


@requires_postgres
async def test_database_refuses_audit_update_and_delete(
    client: httpx.AsyncClient, database: Database, owner_database: Database
) -> None:
    acct = await register(client)
    for db in (database, owner_database):  # the app role and even the owner
        async with db.sessionmaker() as s:
            await bind_tenant(s, uuid.UUID(acct.org_id))
            with pytest.raises(DBAPIError):
                await s.execute(update(AuditLog).where(AuditLog.org_id == uuid.UUID(acct.org_id))
                                .values(action="tampered"))
            await s.rollback()
            await bind_tenant(s, uuid.UUID(acct.org_id))
            with pytest.raises(DBAPIError):
                await s.execute(text("DELETE FROM audit_log WHERE org_id = :o"), {"o": acct.org_id})
            await s.rollback()


async def _tamper(owner_database: Database, org_id: str, seq: int, dialect: str) -> None:
    async with owner_database.sessionmaker() as s:
        if dialect == "postgresql":  # bypass the immutability trigger as a superuser attacker would
            await s.execute(text("SET LOCAL session_replication_role = replica"))
        await s.execute(update(AuditLog).where(AuditLog.org_id == uuid.UUID(org_id), AuditLog.seq == seq)
                        .values(changes={"role": {"from": "viewer", "to": "owner"}}))
        await s.commit()


async def test_audit_entries_recorded_and_chain_tampering_detected(
    client: httpx.AsyncClient, owner_database: Database, db_urls  # type: ignore[no-untyped-def]
) -> None:
    owner = await register(client)
    member = await add_member(client, owner, "member")
    await client.patch(f"/api/v1/orgs/{owner.org_id}/members/{member.user_id}", headers=owner.headers,
                       json={"role": "viewer"})
    await client.post(f"/api/v1/orgs/{owner.org_id}/api-keys", headers=owner.headers, json={"name": "k"})
    await client.post("/api/v1/auth/login", json={"email": owner.email, "password": "wrong-password-1"})
    await client.post("/api/v1/auth/login", json={"email": owner.email, "password": owner.password})

    resp = await client.get(f"/api/v1/orgs/{owner.org_id}/audit?limit=100", headers=owner.headers)
    assert resp.status_code == 200
    entries = resp.json()["items"]
    actions = [e["action"] for e in entries]
    for expected in ("org.created", "invitation.created", "invitation.accepted", "member.role_changed",
                     "api_key.created", "auth.login_failed", "auth.login"):
        assert expected in actions, actions
    role_change = next(e for e in entries if e["action"] == "member.role_changed")
    assert role_change["changes"] == {"role": {"from": "member", "to": "viewer"}}
    assert role_change["actor_id"] == owner.user_id and role_change["request_id"]
    assert all("key" not in str(e["changes"]).lower() or "prefix" in str(e["changes"]) for e in entries)

    filtered = await client.get(f"/api/v1/orgs/{owner.org_id}/audit?action=auth.login", headers=owner.headers)
    assert {e["action"] for e in filtered.json()["items"]} == {"auth.login"}
    naive = await client.get(f"/api/v1/orgs/{owner.org_id}/audit?since=2026-01-01T00:00:00", headers=owner.headers)
    assert naive.status_code == 422

    async with owner_database.sessionmaker() as s:
        report = await audit_service.verify_org(s, uuid.UUID(owner.org_id))
    assert report.ok and report.entries == len(entries)

    await _tamper(owner_database, owner.org_id, 3, db_urls.dialect)
    async with owner_database.sessionmaker() as s:
        report = await audit_service.verify_org(s, uuid.UUID(owner.org_id))
    assert not report.ok and report.broken_seq == 3
    assert "hash" in (report.reason or "")


async def test_cli_audit_verify_and_export(client: httpx.AsyncClient, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import gzip
    import json
    import os

    acct = await register(client)
    env = {**os.environ, "OMNIFY_DATABASE_URL": settings.database_url,
           "OMNIFY_MIGRATION_DATABASE_URL": settings.migration_database_url, "OMNIFY_DATA_DIR": str(tmp_path)}
    out = tmp_path / "export"
    res = subprocess.run([sys.executable, "-m", "omnify.cli", "audit", "export", "--out-dir", str(out)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = gzip.open(out / f"{acct.org_id}.jsonl.gz", "rt").read().splitlines()
    assert json.loads(lines[0])["action"] == "org.created"
    res = subprocess.run([sys.executable, "-m", "omnify.cli", "audit", "verify", "--org", acct.org_id],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


async def test_api_key_lookup_is_hash_bound(client: httpx.AsyncClient, database: Database, db_urls) -> None:  # type: ignore[no-untyped-def]
    if db_urls.dialect != "postgresql":
        pytest.skip("RLS look-up policy is PostgreSQL-only")
    acct = await register(client)
    await client.post(f"/api/v1/orgs/{acct.org_id}/api-keys", headers=acct.headers, json={"name": "k"})
    async with database.sessionmaker() as s:
        await bind_tenant(s, None, api_key_hash="0" * 64)
        assert (await s.scalars(select(ApiKey))).all() == []


async def test_retention_purge_keeps_chain_verifiable(client: httpx.AsyncClient, owner_database: Database) -> None:
    from datetime import timedelta

    from omnify.core.db import utcnow

    acct = await register(client)
    await add_member(client, acct, "viewer")
    org_id = uuid.UUID(acct.org_id)
    async with owner_database.sessionmaker() as s:
        entries = (await s.scalars(select(AuditLog).where(AuditLog.org_id == org_id).order_by(AuditLog.seq))).all()
        assert len(entries) >= 3
        # purge as if "now" were just after the second entry, with zero-day retention
        cutoff_now = entries[1].created_at + timedelta(microseconds=1)
        purged = await audit_service.repository.delete_before(s, org_id, cutoff_now)
        await s.commit()
        assert purged == 2
        report = await audit_service.verify_org(s, org_id)
        assert report.ok and report.entries == len(entries) - 2
        assert await audit_service.purge_expired(s, 1, now=utcnow()) == 0
