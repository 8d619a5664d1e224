"""The scheduled housekeeping of issue 14 item 3, each run for real: the expired-credential
purge, the audit export to cold storage (with the retention that follows it) and the
backup freshness check. (That every scheduled name resolves to a task, and that beat
refuses to start otherwise: tests/unit/jobs.)"""

from __future__ import annotations

import gzip
import itertools
import json
import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text

from omnify.audit import service as audit
from omnify.audit.models import AuditLog
from omnify.auth import service as auth
from omnify.core.db import Database, bind_tenant, utcnow
from omnify.ops import backup
from omnify.ops.crypto import BackupKey, KeyRing
from omnify.ops.store import LocalStore
from omnify.orgs.models import Invitation
from tests.conftest import is_postgres
from tests.factories import register, unique_email

API = "/api/v1"


async def _count(db: Database, sql: str, **params: object) -> int:
    async with db.sessionmaker() as session:
        return int((await session.execute(text(sql), params)).scalar_one())


async def test_purge_expired_removes_only_what_nobody_can_use(client: httpx.AsyncClient, settings, database: Database,
                                                               owner_database: Database) -> None:  # type: ignore[no-untyped-def]
    acct = await register(client)
    invited = unique_email("invitee")
    resp = await client.post(f"{API}/orgs/{acct.org_id}/invitations", headers=acct.headers,
                             json={"email": invited, "role": "member"})
    assert resp.status_code == 201, resp.text
    await client.post(f"{API}/auth/password-reset/request", json={"email": acct.email})
    await client.post(f"{API}/auth/login", json={"email": unique_email("ghost"), "password": "not-a-password"})
    user = {"u": acct.user_id.replace("-", "") if not is_postgres() else acct.user_id}

    # Today nothing is expired: the purge keeps everything of this account.
    await auth.purge_expired(database, settings)
    assert await _count(owner_database, "SELECT count(*) FROM refresh_tokens WHERE user_id = :u", **user) == 1
    async with owner_database.sessionmaker() as session:
        invitations = (await session.scalars(select(Invitation).where(Invitation.email == invited))).all()
    assert len(invitations) == 1

    # Two months on: the refresh token, the invitation and the e-mailed links are gone.
    later = utcnow() + timedelta(days=60)
    report = await auth.purge_expired(database, settings, now=later)
    assert report.refresh_tokens >= 1 and report.invitations >= 1 and report.links_redacted >= 2
    assert report.login_throttles >= 1
    assert await _count(owner_database, "SELECT count(*) FROM refresh_tokens WHERE user_id = :u", **user) == 0
    async with owner_database.sessionmaker() as session:
        assert not (await session.scalars(select(Invitation).where(Invitation.email == invited))).all()
        rows = (await session.execute(text(
            "SELECT template, context FROM email_outbox WHERE to_email IN (:a, :b)"), {"a": acct.email, "b": invited})).all()
    contexts = {template: (json.loads(ctx) if isinstance(ctx, str) else ctx) for template, ctx in rows}
    for template in ("password_reset", "invitation"):  # the sealed links are dropped, nothing else holds one
        assert "sealed" not in contexts[template] and "token" not in json.dumps(contexts[template])
    # Signing in still works for a live account (its password, not a token, was purged nothing).
    assert (await client.post(f"{API}/auth/login", json={"email": acct.email, "password": acct.password})).status_code == 200


async def test_audit_export_appends_segments_and_purges_only_exported_history(
    client: httpx.AsyncClient, settings, owner_database: Database, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    acct = await register(client)
    org = uuid.UUID(acct.org_id)
    store = LocalStore(tmp_path / "cold")
    first = await audit.export_to_cold_storage(owner_database, store, retention_days=settings.audit_retention_days)
    assert first.segments >= 1 and first.entries >= 1 and first.purged == 0
    mine = list(store.list(f"audit/{org}/"))
    assert len(mine) == 1 and mine[0].key.startswith(f"audit/{org}/000000000001-")

    # The copy is verifiable on its own: each line's hash chains to the previous one.
    local = tmp_path / "segment.jsonl.gz"
    store.get_file(mine[0].key, local)
    lines = [json.loads(line) for line in gzip.open(local, "rt", encoding="utf-8")]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(lines))

    # Nothing new: nothing written. New entries: a segment that continues the chain.
    again = await audit.export_to_cold_storage(owner_database, store, retention_days=settings.audit_retention_days)
    assert [f.key for f in store.list(f"audit/{org}/")] == [mine[0].key]
    assert again.purged == 0
    await client.patch(f"{API}/orgs/{acct.org_id}", headers=acct.headers, json={"name": "Renamed for the audit"})
    await audit.export_to_cold_storage(owner_database, store, retention_days=settings.audit_retention_days)
    keys = [f.key for f in store.list(f"audit/{org}/")]
    assert len(keys) == 2 and keys[1].startswith(f"audit/{org}/{len(lines) + 1:012d}-")

    # Past the retention, the database drops exactly what cold storage holds.
    async with owner_database.sessionmaker() as session:
        before = int(await session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.org_id == org)) or 0)
    later = utcnow() + timedelta(days=settings.audit_retention_days + 1)
    await audit.export_to_cold_storage(owner_database, store, retention_days=settings.audit_retention_days, now=later)
    async with owner_database.sessionmaker() as session:
        after = int(await session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.org_id == org)) or 0)
    assert before > 0 and after == 0


async def test_audit_export_never_purges_what_is_not_exported(client: httpx.AsyncClient, settings, database: Database,
                                                               owner_database: Database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    acct = await register(client)
    org = uuid.UUID(acct.org_id)

    class Unwritable(LocalStore):
        def put_file(self, key: str, path: Path) -> bool:
            raise OSError("cold storage is down")

    later = utcnow() + timedelta(days=settings.audit_retention_days + 1)
    with pytest.raises(OSError, match="cold storage is down"):
        await audit.export_to_cold_storage(owner_database, Unwritable(tmp_path / "down"),
                                           retention_days=settings.audit_retention_days, now=later)
    async with database.sessionmaker() as session:
        await bind_tenant(session, org)
        assert (await session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.org_id == org)) or 0) > 0


def _sqlite_backup(store: LocalStore, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
    backup.backup_sqlite(store, db, KeyRing(BackupKey.generate()))


@pytest.mark.server_clock  # ages come from the store's modification times (the file system's clock)
def test_backup_check_alerts_on_missing_and_stale_backups(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "backups")
    limits = {"max_age": timedelta(hours=26), "wal_max_age": timedelta(minutes=60)}
    with pytest.raises(backup.BackupStale, match="no sqlite backup at all"):
        backup.check_freshness(store, sqlite=True, **limits)
    _sqlite_backup(store, tmp_path)
    [fresh] = backup.check_freshness(store, sqlite=True, **limits)
    assert fresh.kind == "sqlite" and fresh.newest is not None
    with pytest.raises(backup.BackupStale, match=r"newest sqlite backup is 2[78]\.\d h old"):
        backup.check_freshness(store, sqlite=True, now=utcnow() + timedelta(hours=27), **limits)
    # PostgreSQL installs: base backups and WAL are watched, each against its own limit.
    with pytest.raises(backup.BackupStale, match="no base backup at all; no wal backup at all"):
        backup.check_freshness(store, sqlite=False, **limits)


@pytest.mark.server_clock  # ages come from the store's modification times (the file system's clock)
def test_backup_check_task_fails_loudly_when_stale(tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    from omnify.notifications.runtime import use_settings
    from omnify.ops import tasks

    store_dir = tmp_path / "store"
    with use_settings(settings.model_copy(update={"backup_url": f"file://{store_dir}", "database_url": None,
                                                  "data_dir": tmp_path})):
        with pytest.raises(backup.BackupStale):
            tasks.check.run()
        _sqlite_backup(LocalStore(store_dir), tmp_path)
        assert tasks.check.run()["status"] == "fresh"
    with use_settings(settings.model_copy(update={"backup_url": None})):
        assert tasks.check.run() == {"status": "not-configured"}
