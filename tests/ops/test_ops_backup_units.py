"""Fast tests of the backup building blocks: archive encryption, stores (directory and a real S3
emulator), SQLite online backup/restore, WAL push/fetch semantics, retention, and the CLI."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from omnify.ops import backup as bk
from omnify.ops.crypto import (
    CHUNK,
    KEY_ENV,
    PREVIOUS_KEYS_ENV,
    BackupCryptoError,
    BackupKey,
    KeyRing,
    decrypt_stream,
    encrypt_stream,
)
from omnify.ops.store import LocalStore, S3Store, StoreError, open_store


@pytest.fixture
def keys() -> KeyRing:
    return KeyRing(BackupKey.generate())


def _roundtrip(data: bytes, keys: KeyRing) -> bytes:
    sealed = io.BytesIO()
    encrypt_stream(io.BytesIO(data), sealed, keys.active)
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(sealed.getvalue()), out, keys)
    return out.getvalue()


# ----------------------------------------------------------------------------------- crypto
@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17])
def test_encrypt_roundtrip_across_chunk_boundaries(size: int, keys: KeyRing) -> None:
    data = os.urandom(size)
    assert _roundtrip(data, keys) == data


def _sealed(data: bytes, keys: KeyRing) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, keys.active)
    return out.getvalue()


def test_tampering_and_truncation_are_detected(keys: KeyRing) -> None:
    blob = _sealed(os.urandom(2 * CHUNK + 5), keys)
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x01
    with pytest.raises(BackupCryptoError, match="authentication"):
        decrypt_stream(io.BytesIO(bytes(flipped)), io.BytesIO(), keys)
    # Drop the last chunk entirely: the previous chunk was not sealed as final.
    header_len = 8 + 1 + 16 + 8
    first_two = header_len + 2 * (4 + CHUNK + 16)
    with pytest.raises(BackupCryptoError):
        decrypt_stream(io.BytesIO(blob[:first_two]), io.BytesIO(), keys)
    with pytest.raises(BackupCryptoError, match="truncated"):
        decrypt_stream(io.BytesIO(blob[:-3]), io.BytesIO(), keys)


def test_wrong_key_and_rotation(keys: KeyRing) -> None:
    blob = _sealed(b"tenant data", keys)
    other = KeyRing(BackupKey.generate())
    with pytest.raises(BackupCryptoError, match="neither"):
        decrypt_stream(io.BytesIO(blob), io.BytesIO(), other)
    rotated = KeyRing.from_env({KEY_ENV: BackupKey.generate().encoded(), PREVIOUS_KEYS_ENV: keys.active.encoded()})
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(blob), out, rotated)
    assert out.getvalue() == b"tenant data"


def test_key_from_env_is_required_and_validated() -> None:
    with pytest.raises(BackupCryptoError, match="not set"):
        KeyRing.from_env({})
    with pytest.raises(BackupCryptoError, match="32 bytes"):
        KeyRing.from_env({KEY_ENV: "c2hvcnQ="})


# ----------------------------------------------------------------------------------- stores
def _exercise_store(store: LocalStore | S3Store, tmp_path: Path) -> None:
    src = tmp_path / "payload"
    src.write_bytes(b"one")
    assert store.put_file("wal/000000010000000000000001.enc", src) is True
    src.write_bytes(b"two")
    assert store.put_file("wal/000000010000000000000001.enc", src) is False, "must never overwrite"
    assert store.exists("wal/000000010000000000000001.enc")
    assert not store.exists("wal/000000010000000000000002.enc")
    got = tmp_path / "got"
    store.get_file("wal/000000010000000000000001.enc", got)
    assert got.read_bytes() == b"one"
    store.put_file("base/20260101T000000Z/meta.json", src)
    assert [f.key for f in store.list("wal/")] == ["wal/000000010000000000000001.enc"]
    assert len(store.list("")) == 2
    store.delete("wal/000000010000000000000001.enc")
    assert store.list("wal/") == []
    with pytest.raises(StoreError):
        store.get_file("wal/missing.enc", got)
    with pytest.raises(StoreError):
        store.put_file("../escape", src)


def test_local_store(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path / 'bk'}")
    assert isinstance(store, LocalStore)
    _exercise_store(store, tmp_path)


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_s3_store_against_emulator(tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("OMNIFY_BACKUP_S3_ENDPOINT_URL", moto_endpoint)
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket="omnify-backups")
    store = open_store("s3://omnify-backups/prod")
    assert isinstance(store, S3Store)
    _exercise_store(store, tmp_path)


# ----------------------------------------------------------------------------------- SQLite
def _make_db(path: Path, rows: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS clients (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO clients (name) VALUES (?)", [(f"c{i}",) for i in range(rows)])


def test_sqlite_online_backup_while_writing_and_restore(tmp_path: Path, keys: KeyRing) -> None:
    db = tmp_path / "omnify.db"
    _make_db(db, 500)
    store = LocalStore(tmp_path / "store")
    stop = threading.Event()

    def writer() -> None:  # the application keeps writing during the backup
        conn = sqlite3.connect(db, timeout=5)
        while not stop.is_set():
            with conn:
                conn.execute("INSERT INTO clients (name) VALUES ('live')")
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        meta = bk.backup_sqlite(store, db, keys)
    finally:
        stop.set()
        thread.join()
    assert meta["row_counts"]["clients"] >= 500
    blob = next((tmp_path / "store" / "sqlite").rglob("*.enc")).read_bytes()
    assert blob[:8] == b"OMNIBAK1" and b"SQLite format 3" not in blob

    target = tmp_path / "restored.db"
    bk.restore_sqlite(store, target, keys)
    with sqlite3.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM clients").fetchone()[0] == meta["row_counts"]["clients"]
    with pytest.raises(bk.BackupError, match="exists"):
        bk.restore_sqlite(store, target, keys)


# ----------------------------------------------------------------------------- WAL semantics
def test_wal_push_is_idempotent_and_refuses_conflicts(tmp_path: Path, keys: KeyRing) -> None:
    store = LocalStore(tmp_path / "store")
    seg = tmp_path / "000000010000000000000007"
    seg.write_bytes(os.urandom(4096))
    assert bk.wal_push(store, seg, seg.name, keys) == "archived"
    assert bk.wal_push(store, seg, seg.name, keys) == "already-archived"
    seg.write_bytes(os.urandom(4096))
    with pytest.raises(bk.BackupError, match="different content"):
        bk.wal_push(store, seg, seg.name, keys)
    out = tmp_path / "fetched"
    assert bk.wal_fetch(store, "000000010000000000000008", out, keys) is False
    assert bk.wal_fetch(store, seg.name, out, keys) is True


def test_wal_segment_names() -> None:
    assert bk.wal_segment_name(1, "0/2000028", 16 * 1024 * 1024) == "000000010000000000000002"
    assert bk.wal_segment_name(2, "1/FF000000", 16 * 1024 * 1024) == "0000000200000001000000FF"
    assert bk._parse_size("16MB") == 16 * 1024 * 1024


# ---------------------------------------------------------------------------------- retention
def _fake_base(store: LocalStore, ident: str, end: datetime, start_wal: str, tmp: Path) -> None:
    meta = bk.BaseBackupMeta(ident, end - timedelta(minutes=5), end, 1, "0/0", "0/0", start_wal, 16 << 20, "15", "k")
    path = tmp / "m.json"
    path.write_text(meta.to_json())
    store.put_file(f"base/{ident}/meta.json", path)
    store.put_file(f"base/{ident}/base.tar.gz.enc", path)


def test_prune_keeps_the_window_restorable(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    now = datetime(2026, 3, 1, tzinfo=UTC)
    for days, wal in (
        (45, "000000010000000000000010"),
        (35, "000000010000000000000020"),
        (20, "000000010000000000000030"),
        (1, "000000010000000000000040"),
    ):
        end = now - timedelta(days=days)
        _fake_base(store, bk.backup_id(end), end, wal, tmp_path)
    seg = tmp_path / "seg"
    seg.write_bytes(b"x")
    for n in (0x0F, 0x10, 0x1F, 0x20, 0x21, 0x45):
        store.put_file(f"wal/0000000100000000000000{n:02X}.enc", seg)
    store.put_file("wal/00000002.history.enc", seg)

    result = bk.prune(store, 30, now)
    kept = {m.id for m in bk.list_base_backups(store)}
    # 35 days old is kept: it is the newest base backup from before the window start.
    assert kept == {bk.backup_id(now - timedelta(days=d)) for d in (35, 20, 1)}
    assert result.deleted_base == [bk.backup_id(now - timedelta(days=45))]
    remaining = sorted(f.key for f in store.list("wal/"))
    assert "wal/00000002.history.enc" in remaining
    assert "wal/00000001000000000000001F.enc" not in remaining
    assert "wal/000000010000000000000020.enc" in remaining
    assert result.deleted_wal == 3


# ---------------------------------------------------------------------------------------- CLI
def test_cli_sqlite_backup_and_restore(tmp_path: Path, keys: KeyRing) -> None:
    db = tmp_path / "omnify.db"
    _make_db(db, 3)
    env = {KEY_ENV: keys.active.encoded(), "OMNIFY_BACKUP_URL": f"file://{tmp_path / 'store'}"}
    runner = CliRunner()
    app = bk._standalone()
    result = runner.invoke(
        app, ["backup", "sqlite", "--db", str(db), "--metrics-file", str(tmp_path / "m.prom")], env=env
    )
    assert result.exit_code == 0, result.output
    event = json.loads(result.output.splitlines()[0])
    assert event["event"] == "backup_sqlite_complete"
    assert 'omnify_backup_last_success_timestamp_seconds{kind="sqlite"}' in (tmp_path / "m.prom").read_text()
    result = runner.invoke(app, ["restore", "sqlite", str(tmp_path / "r.db")], env=env)
    assert result.exit_code == 0, result.output
    # Without a key nothing is written or read in clear.
    result = runner.invoke(app, ["backup", "sqlite", "--db", str(db)], env={**env, KEY_ENV: ""})
    assert result.exit_code == 2
    # restore_command semantics: a missing segment exits 1 (PostgreSQL treats it as end of WAL).
    result = runner.invoke(app, ["restore", "wal-fetch", "000000010000000000000001", str(tmp_path / "x")], env=env)
    assert result.exit_code == 1
