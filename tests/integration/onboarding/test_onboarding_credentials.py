"""Platform credentials: encrypted at rest, masked on read, decrypted only by the audited service
function, bound to their row, and still readable after master-key rotation."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from omnify.audit.models import AuditLog
from omnify.core.context import Actor
from omnify.core.crypto import EncryptedBlob
from omnify.core.db import Database, bind_tenant, utcnow
from omnify.core.secrets import FileBackend
from omnify.credentials import keys
from omnify.credentials import service as cred_service
from omnify.credentials.cli import keys_app
from omnify.credentials.models import PlatformCredential
from omnify.credentials.platforms import Platform
from omnify.settings import Settings
from tests.integration.onboarding.onboarding_support import Team, clients_url, new_client

# Random per run: an 8-character window of a fixed token could occur in a date or id by chance.
META_TOKEN = "EAAB" + secrets.token_urlsafe(48)
APP_SECRET = secrets.token_urlsafe(24)
SHOP_TOKEN = "shpat_" + secrets.token_hex(16)


def _cred_url(acct_team: Team, client_id: str, platform: str | None = None) -> str:
    rest = ["credentials"] + ([platform] if platform else [])
    return clients_url(acct_team.owner, client_id, *rest)


async def _put_meta(client: httpx.AsyncClient, team: Team, client_id: str, token: str = META_TOKEN) -> httpx.Response:
    return await client.put(_cred_url(team, client_id, "meta_ads"), headers=team.owner.headers, json={
        "secrets": {"access_token": token, "app_secret": APP_SECRET},
        "account_id": "act_1234567890", "scopes": ["ads_read", "ads_management", "ads_read"],
        "expires_at": (utcnow() + timedelta(days=60)).isoformat(),
    })


def _every_window(secret: str, size: int = 8) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


async def test_put_get_list_delete_and_masking(client: httpx.AsyncClient, team: Team,
                                               owner_database: Database) -> None:
    c = await new_client(client, team.owner)
    created = await _put_meta(client, team, c["id"])
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["platform"] == "meta_ads" and body["status"] == "active"
    assert body["scopes"] == ["ads_management", "ads_read"] and body["account_id"] == "act_1234567890"
    assert set(body["hints"]) == {"access_token", "app_secret"}
    assert body["hints"]["access_token"].startswith("EAAB") and "…" in body["hints"]["access_token"]
    assert not any(w in created.text for w in _every_window(META_TOKEN))

    got = await client.get(_cred_url(team, c["id"], "meta_ads"), headers=team.viewer.headers)
    assert got.status_code == 200 and got.json()["hints"] == body["hints"]
    assert "secret" not in got.json() and "secrets" not in got.json()

    replaced = await _put_meta(client, team, c["id"], token="EAAnewTOKENvalue" + "z" * 40)
    assert replaced.status_code == 200 and replaced.json()["id"] == body["id"]
    assert replaced.json()["hints"]["access_token"].startswith("EAAn")

    shop = await client.put(_cred_url(team, c["id"], "shopify"), headers=team.owner.headers,
                            json={"secrets": {"access_token": SHOP_TOKEN}, "account_id": "acme-store.myshopify.com"})
    assert shop.status_code == 201, shop.text
    listed = (await client.get(_cred_url(team, c["id"]), headers=team.owner.headers)).json()["items"]
    assert {i["platform"] for i in listed} == {"meta_ads", "shopify"}

    assert (await client.delete(_cred_url(team, c["id"], "shopify"), headers=team.owner.headers)).status_code == 204
    assert (await client.get(_cred_url(team, c["id"], "shopify"), headers=team.owner.headers)).status_code == 404
    assert (await client.delete(_cred_url(team, c["id"], "shopify"), headers=team.owner.headers)).status_code == 404

    async with owner_database.sessionmaker() as s:
        actions = (await s.scalars(select(AuditLog.action).where(AuditLog.org_id == uuid.UUID(team.owner.org_id))
                                   .where(AuditLog.action.like("credential.%")))).all()
        assert {"credential.connected", "credential.replaced", "credential.deleted"} <= set(actions)
        # the audit trail never holds a secret either
        changes = (await s.scalars(select(AuditLog.changes).where(AuditLog.org_id == uuid.UUID(team.owner.org_id)))).all()
        assert not any(w in repr(changes) for w in _every_window(META_TOKEN))


@pytest.mark.parametrize(("platform", "body", "field"), [
    ("meta_ads", {"secrets": {}, "account_id": "act_1"}, "secrets"),
    ("meta_ads", {"secrets": {"app_secret": "x" * 20}, "account_id": "act_1"}, "secrets.access_token"),
    ("meta_ads", {"secrets": {"access_token": "t" * 20, "password": "p" * 20}, "account_id": "act_1"},
     "secrets.password"),
    ("meta_ads", {"secrets": {"access_token": "t" * 20}, "account_id": "1234"}, "account_id"),
    ("meta_ads", {"secrets": {"access_token": "t" * 20}}, "account_id"),
    ("google_ads", {"secrets": {"refresh_token": "r" * 20}, "account_id": "123-456-7890"}, "secrets.developer_token"),
    ("shopify", {"secrets": {"access_token": "t" * 20}, "account_id": "evil.example.com"}, "account_id"),
    ("meta_ads", {"secrets": {"access_token": "   "}, "account_id": "act_1"}, "secrets"),
    ("meta_ads", {"secrets": {"access_token": "t" * 20}, "account_id": "act_1",
                  "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
])
async def test_validation_failures_never_echo_secrets(client: httpx.AsyncClient, shared: Team, shared_client_id: str,
                                                      platform: str, body: dict[str, object], field: str) -> None:
    resp = await client.put(_cred_url(shared, shared_client_id, platform), headers=shared.owner.headers, json=body)
    assert resp.status_code == 422, resp.text
    assert any(e["field"].startswith(field) for e in resp.json()["errors"]), resp.json()
    assert "t" * 20 not in resp.text and "r" * 20 not in resp.text and "p" * 20 not in resp.text
    unknown = await client.put(_cred_url(shared, shared_client_id, "myspace_ads"), headers=shared.owner.headers,
                               json=body)
    assert unknown.status_code == 422


async def test_credentials_are_unreadable_in_the_database(
    client: httpx.AsyncClient, team: Team, owner_database: Database
) -> None:
    c = await new_client(client, team.owner)
    assert (await _put_meta(client, team, c["id"])).status_code == 201
    async with owner_database.sessionmaker() as s:
        row = (await s.execute(text("SELECT * FROM platform_credentials WHERE client_id = :c"),
                               {"c": c["id"] if owner_database.dialect == "postgresql" else uuid.UUID(c["id"]).hex}
                               )).mappings().one()
    dump = b"".join(v if isinstance(v, bytes | memoryview) else str(v).encode() for v in row.values())
    for secret in (META_TOKEN, APP_SECRET):
        assert secret.encode() not in dump
        assert not any(w.encode() in dump for w in _every_window(secret))
    blob = EncryptedBlob.from_bytes(bytes(row["secret_blob"]))
    assert blob.master_key_id == row["master_key_id"]


async def test_reveal_is_audited_and_bound_to_its_row(
    client: httpx.AsyncClient, team: Team, settings: Settings, database: Database, owner_database: Database
) -> None:
    a = await new_client(client, team.owner)
    b = await new_client(client, team.owner)
    await _put_meta(client, team, a["id"])
    await _put_meta(client, team, b["id"], token="EAAother" + "q" * 40)
    org, ca, cb = uuid.UUID(team.owner.org_id), uuid.UUID(a["id"]), uuid.UUID(b["id"])
    rings = keys.keyrings_for(settings)
    actor = Actor.system("meta sync")

    async with database.sessionmaker() as s:
        await bind_tenant(s, org)
        revealed = await cred_service.reveal(s, rings, org, ca, Platform.META_ADS, actor, purpose="daily sync")
    assert revealed.secret("access_token") == META_TOKEN and revealed.account_id == "act_1234567890"
    assert META_TOKEN not in repr(revealed) and META_TOKEN not in str(revealed.secrets)

    async with owner_database.sessionmaker() as s:
        entry = await s.scalar(select(AuditLog).where(AuditLog.action == "credential.decrypted",
                                                      AuditLog.org_id == org).order_by(AuditLog.seq.desc()))
        assert entry is not None and entry.changes["purpose"] == "daily sync" and entry.actor_label == "meta sync"
        # move client b's ciphertext into client a's row: authenticated data no longer matches
        blob_b = await s.scalar(select(PlatformCredential.secret_blob).where(PlatformCredential.client_id == cb))
        await s.execute(update(PlatformCredential).where(PlatformCredential.client_id == ca)
                        .values(secret_blob=blob_b))
        await s.commit()

    async with database.sessionmaker() as s:
        await bind_tenant(s, org)
        with pytest.raises(cred_service.CredentialUnreadable) as err:
            await cred_service.reveal(s, rings, org, ca, Platform.META_ADS, actor, purpose="daily sync")
    assert "EAA" not in str(err.value)
    shown = (await client.get(_cred_url(team, a["id"], "meta_ads"), headers=team.owner.headers)).json()
    assert shown["status"] == "invalid" and "reconnect" in shown["last_error"]
    async with owner_database.sessionmaker() as s:
        failed = await s.scalar(select(AuditLog).where(AuditLog.action == "credential.decrypt_failed",
                                                       AuditLog.target_id == shown["id"]))
        assert failed is not None


async def test_tampered_ciphertext_is_refused(
    client: httpx.AsyncClient, team: Team, settings: Settings, database: Database, owner_database: Database
) -> None:
    c = await new_client(client, team.owner)
    await _put_meta(client, team, c["id"])
    org, cid = uuid.UUID(team.owner.org_id), uuid.UUID(c["id"])
    async with owner_database.sessionmaker() as s:
        row = await s.scalar(select(PlatformCredential).where(PlatformCredential.client_id == cid))
        assert row is not None
        tampered = bytearray(row.secret_blob)
        tampered[-1] ^= 0x01  # one bit of the GCM tag
        row.secret_blob = bytes(tampered)
        await s.commit()
    async with database.sessionmaker() as s:
        await bind_tenant(s, org)
        with pytest.raises(cred_service.CredentialUnreadable):
            await cred_service.reveal(s, keys.keyrings_for(settings), org, cid, Platform.META_ADS,
                                      Actor.system("test"), purpose="tamper check")


async def test_rotation_keeps_every_credential_decryptable(
    client: httpx.AsyncClient, team: Team, settings: Settings, database: Database, owner_database: Database
) -> None:
    clients_made = [await new_client(client, team.owner) for _ in range(3)]
    tokens = {}
    for i, c in enumerate(clients_made):
        tokens[c["id"]] = f"EAArotation{i}" + "k" * 40
        assert (await _put_meta(client, team, c["id"], token=tokens[c["id"]])).status_code == 201
    backend = FileBackend(settings.data_dir / "master-keys.json")
    old_ring = backend.load()

    result = await keys.rotate(settings, database, backend=backend)
    assert result.report is not None and result.report.failed == []
    assert result.report.rewrapped >= 3
    new_ring = backend.load()
    assert new_ring.active_key_id == result.new_key_id != old_ring.active_key_id
    assert set(old_ring.keys) < set(new_ring.keys)  # old keys stay readable during the rollout
    usage = await keys.key_usage(database)
    assert set(usage) == {result.new_key_id}

    # retiring too early is refused (other processes may still encrypt with the old key)
    with pytest.raises(keys.RetireRefused):
        await keys.retire(settings, database, old_ring.active_key_id, backend=backend)
    with pytest.raises(keys.RetireRefused):
        await keys.retire(settings, database, result.new_key_id, backend=backend, force=True)
    retired = await keys.retire(settings, database, old_ring.active_key_id, backend=backend, force=True)
    assert retired.report.failed == []
    assert old_ring.active_key_id not in backend.load()

    org = uuid.UUID(team.owner.org_id)
    for c in clients_made:
        async with database.sessionmaker() as s:
            await bind_tenant(s, org)
            revealed = await cred_service.reveal(s, keys.keyrings_for(settings), org, uuid.UUID(c["id"]),
                                                 Platform.META_ADS, Actor.system("test"), purpose="after rotation")
        assert revealed.secret("access_token") == tokens[c["id"]]
    # the API keeps working for new and existing credentials
    assert (await _put_meta(client, team, clients_made[0]["id"])).status_code == 200
    async with owner_database.sessionmaker() as s:
        kids = set((await s.scalars(select(PlatformCredential.master_key_id))).all())
    assert kids == {result.new_key_id}


def test_keys_cli_status_rotate_and_retire_refusal(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The typer sub-app the main CLI mounts as `omnify keys`, on the session's real key file."""
    from omnify import settings as settings_module

    env = {
        "OMNIFY_ENV": "test", "OMNIFY_DATA_DIR": str(settings.data_dir),
        "OMNIFY_DATABASE_URL": settings.resolved_database_url,
        "OMNIFY_MIGRATION_DATABASE_URL": settings.resolved_migration_database_url,
        "OMNIFY_SECRETS_BACKEND": "file", "OMNIFY_MASTER_KEY_FILE": str(settings.data_dir / "master-keys.json"),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings_module.get_settings.cache_clear()
    try:
        runner = CliRunner()
        status = runner.invoke(keys_app, ["status"])
        assert status.exit_code == 0, status.output
        assert "active:" in status.output
        rotated = runner.invoke(keys_app, ["rotate"])
        assert rotated.exit_code == 0, rotated.output
        assert "new active master key: mk-" in rotated.output and "0 failed" in rotated.output
        refused = runner.invoke(keys_app, ["retire", "no-such-key"])
        assert refused.exit_code == 1 and "not in the key ring" in refused.output
        after = runner.invoke(keys_app, ["status"])
        assert "(active)" in after.output or "credential(s)" not in after.output
    finally:
        settings_module.get_settings.cache_clear()
        keys.keyrings_for(settings).invalidate()  # what the cache TTL does for a running API
