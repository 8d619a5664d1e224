"""Backups and restores: PostgreSQL base backups + WAL archive (point-in-time recovery), SQLite
online backups, retention, and restore drills that prove the backups work.

Why this shape:

* **PITR, not dumps.** ``pg_basebackup`` takes a physical copy while the database runs, and
  PostgreSQL's ``archive_command`` hands over every finished WAL segment (``omnify backup wal-push
  %p %f``). Any moment inside the retention window can be restored by replaying WAL onto the
  newest base backup older than that moment. With ``archive_timeout = 300`` at most five minutes
  of commits are outside the archive at any time (RPO), far inside the 1 h objective.
* **Encrypted before it leaves the host** (AES-256-GCM, :mod:`omnify.ops.crypto`), to a local
  directory or S3 (:mod:`omnify.ops.store`). Nothing is ever overwritten; ``meta.json`` is written
  last and marks a base backup complete.
* **A backup is only as good as its last restore.** ``omnify backup drill`` restores into a
  scratch cluster, runs integrity checks (``pg_amcheck``, row counts, the audit hash chain) and
  prints the achieved RPO and RTO. It runs weekly from a CronJob and in the test suite.
* **SQLite** (the embedded default) uses the online backup API, which copies a consistent snapshot
  while the application keeps writing.

Commands (mounted by the CLI as ``omnify backup ...`` and ``omnify restore ...``)::

    omnify backup pg-base            daily base backup, then prune (30 days)
    omnify backup wal-push %p %f     PostgreSQL archive_command
    omnify backup sqlite             online SQLite backup
    omnify backup prune              retention
    omnify backup list               what the store holds
    omnify backup drill              restore the newest backup into a scratch cluster and verify
    omnify restore wal-fetch %f %p   PostgreSQL restore_command
    omnify restore pg-base DIR       restore a base backup (+ WAL, optional target time) into DIR
    omnify restore sqlite PATH       restore the newest SQLite backup to PATH
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from omnify.ops.crypto import BackupCryptoError, KeyRing, decrypt_stream, encrypt_stream
from omnify.ops.store import BackupStore, StoreError, open_store

DEFAULT_RETENTION_DAYS = 30
DEFAULT_PG_BIN = Path(os.environ.get("OMNIFY_PG_BIN", "/usr/lib/postgresql/15/bin"))
WAL_NAME = re.compile(r"^[0-9A-F]{24}(\.partial)?$")
META = "meta.json"

backup_app = typer.Typer(
    help="Backups: PostgreSQL base backups + WAL archive (PITR), SQLite online backups, drills.",
    no_args_is_help=True,
)
restore_app = typer.Typer(help="Restore PostgreSQL (point in time) or SQLite from backups.", no_args_is_help=True)

StoreOpt = Annotated[
    str,
    typer.Option("--store", envvar="OMNIFY_BACKUP_URL", help="file:///dir or s3://bucket/prefix"),
]


class BackupError(RuntimeError):
    """A backup/restore step failed; the message says which and why."""


# ----------------------------------------------------------------------------------- helpers
def utc_now() -> datetime:
    return datetime.now(UTC)


def backup_id(now: datetime | None = None) -> str:
    return (now or utc_now()).strftime("%Y%m%dT%H%M%SZ")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float | None = None) -> str:
    """Run a tool; on failure raise BackupError carrying its stderr (the useful part)."""
    proc = subprocess.run(  # noqa: S603 - fixed argv, never a shell
        list(cmd), capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise BackupError(
            f"{Path(cmd[0]).name} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc.stdout


def as_user(cmd: Sequence[str], user: str | None) -> list[str]:
    """PostgreSQL refuses to run as root: when we are root, run server tools as ``user``."""
    if user and os.geteuid() == 0:
        return ["runuser", "-u", user, "--", *cmd]
    return list(cmd)


def libpq_dsn(url: str) -> str:
    """SQLAlchemy URL (postgresql+asyncpg://...) -> libpq URL understood by pg_* tools and psycopg."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        raise BackupError(f"not a PostgreSQL URL: {parsed.drivername}")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def encrypt_file(src: Path, dst: Path, keys: KeyRing) -> None:
    with src.open("rb") as fin, dst.open("wb") as fout:
        encrypt_stream(fin, fout, keys.active)


def decrypt_file(src: Path, dst: Path, keys: KeyRing) -> None:
    tmp = dst.with_name(dst.name + ".partial-decrypt")
    try:
        with src.open("rb") as fin, tmp.open("wb") as fout:
            decrypt_stream(fin, fout, keys)
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)


def record_success(kind: str, when: datetime | None = None, metrics_file: Path | None = None) -> None:
    """Publish omnify_backup_last_success_timestamp_seconds{kind} for the backup-age alerts.

    CronJob pods are gone before Prometheus could scrape them, so the gauge goes to a Pushgateway
    (OMNIFY_BACKUP_PUSHGATEWAY_URL) and/or a node-exporter textfile (``metrics_file``).
    """
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

    registry = CollectorRegistry()
    gauge = Gauge(
        "omnify_backup_last_success_timestamp_seconds",
        "Unix time of the last successful backup, by kind (base, wal, sqlite).",
        ["kind"],
        registry=registry,
    )
    gauge.labels(kind=kind).set((when or utc_now()).timestamp())
    gateway = os.environ.get("OMNIFY_BACKUP_PUSHGATEWAY_URL")
    if gateway:
        push_to_gateway(gateway, job="omnify-backup", registry=registry, grouping_key={"kind": kind})
    if metrics_file:
        write_to_textfile(str(metrics_file), registry)


def _emit(event: str, **fields: Any) -> None:
    """One JSON line per outcome: CronJob logs are shipped to Loki and parsed as JSON."""
    typer.echo(json.dumps({"event": event, **fields}, default=str, sort_keys=True))


# ------------------------------------------------------------------------- base backup model
@dataclass
class BaseBackupMeta:
    id: str
    start_time: datetime
    end_time: datetime
    timeline: int
    start_lsn: str
    end_lsn: str
    start_wal: str
    wal_segment_size: int
    server_version: str
    key_id: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        data["start_time"] = self.start_time.isoformat()
        data["end_time"] = self.end_time.isoformat()
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BaseBackupMeta:
        data = json.loads(text)
        data["start_time"] = datetime.fromisoformat(data["start_time"])
        data["end_time"] = datetime.fromisoformat(data["end_time"])
        return cls(**data)


def lsn_to_int(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def wal_segment_name(timeline: int, lsn: str, segment_size: int) -> str:
    segno = lsn_to_int(lsn) // segment_size
    per_xlogid = 0x100000000 // segment_size
    return f"{timeline:08X}{segno // per_xlogid:08X}{segno % per_xlogid:08X}"


def list_base_backups(store: BackupStore) -> list[BaseBackupMeta]:
    """Complete base backups (those with meta.json), oldest first."""
    found: list[BaseBackupMeta] = []
    for item in store.list("base/"):
        parts = item.key.split("/")
        if len(parts) == 3 and parts[2] == META:
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(tmp) / META
                store.get_file(item.key, local)
                found.append(BaseBackupMeta.from_json(local.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.end_time)


def choose_base_backup(
    backups: Sequence[BaseBackupMeta], target_time: datetime | None, wanted_id: str | None = None
) -> BaseBackupMeta:
    if wanted_id:
        for meta in backups:
            if meta.id == wanted_id:
                return meta
        raise BackupError(f"no complete base backup {wanted_id}")
    usable = [m for m in backups if target_time is None or m.end_time < target_time]
    if not usable:
        when = f" finished before {target_time.isoformat()}" if target_time else ""
        raise BackupError(f"no complete base backup{when}")
    return usable[-1]


# ------------------------------------------------------------------------------- freshness
class BackupStale(BackupError):
    """The newest backup of some kind is older than allowed (or there is none)."""


@dataclass(frozen=True)
class Freshness:
    kind: str  # base | wal | sqlite
    newest: datetime | None
    max_age: timedelta

    def stale(self, now: datetime) -> bool:
        return self.newest is None or now - self.newest > self.max_age

    def describe(self, now: datetime) -> str:
        if self.newest is None:
            return f"no {self.kind} backup at all"
        return f"newest {self.kind} backup is {(now - self.newest).total_seconds() / 3600:.1f} h old " \
               f"(limit {self.max_age.total_seconds() / 3600:.1f} h)"


def freshness(store: BackupStore, *, sqlite: bool, max_age: timedelta, wal_max_age: timedelta) -> list[Freshness]:
    """When each kind of backup last completed, from the store itself (not from the jobs
    that claim to have written it): a base or SQLite backup counts once its ``meta.json``
    exists (written last), WAL by its newest archived segment."""
    def newest(prefix: str, keep: Callable[[str], bool]) -> datetime | None:
        times = [item.modified for item in store.list(prefix) if keep(item.key)]
        return max(times) if times else None

    if sqlite:
        return [Freshness("sqlite", newest("sqlite/", lambda k: k.endswith("/" + META)), max_age)]
    wal_segment = lambda k: bool(WAL_NAME.match(k.removeprefix("wal/").removesuffix(".enc")))  # noqa: E731
    return [Freshness("base", newest("base/", lambda k: k.endswith("/" + META)), max_age),
            Freshness("wal", newest("wal/", wal_segment), wal_max_age)]


def check_freshness(store: BackupStore, *, sqlite: bool, max_age: timedelta, wal_max_age: timedelta,
                    now: datetime | None = None) -> list[Freshness]:
    """The hourly ``omnify.backup.check``: publish what was found, raise :class:`BackupStale`
    when anything is too old (the task then fails and is dead-lettered, which pages through
    OmnifyJobFailures even where no backup metric reaches Prometheus)."""
    now = now or utc_now()
    found = freshness(store, sqlite=sqlite, max_age=max_age, wal_max_age=wal_max_age)
    for item in found:
        if item.newest is not None and os.environ.get("OMNIFY_BACKUP_PUSHGATEWAY_URL"):
            record_success(item.kind, item.newest)
    stale = [item.describe(now) for item in found if item.stale(now)]
    if stale:
        raise BackupStale(f"backups in {store.url} are stale: " + "; ".join(stale))
    return found


# ---------------------------------------------------------------------------- PostgreSQL: take
def take_base_backup(
    store: BackupStore,
    dsn: str,
    keys: KeyRing,
    *,
    pg_bin: Path = DEFAULT_PG_BIN,
    now: datetime | None = None,
) -> BaseBackupMeta:
    """pg_basebackup (tar, gzip, WAL streamed into the backup so it is self-consistent), then
    encrypt and upload each file; meta.json last."""
    import psycopg

    with psycopg.connect(dsn, connect_timeout=10) as conn:
        row = conn.execute("SELECT current_setting('wal_segment_size'), current_setting('server_version')").fetchone()
        assert row is not None
        seg_text, version = str(row[0]), str(row[1])
    segment_size = _parse_size(seg_text)
    started = now or utc_now()
    ident = backup_id(started)
    with tempfile.TemporaryDirectory(prefix="omnify-basebackup-") as tmp:
        out = Path(tmp) / "pg"
        _run(
            [
                str(pg_bin / "pg_basebackup"),
                "--dbname",
                dsn,
                "--pgdata",
                str(out),
                "--format=tar",
                "--gzip",
                "--wal-method=stream",
                "--checkpoint=fast",
                "--manifest-checksums=SHA256",
                "--label",
                f"omnify-{ident}",
                "--no-password",
            ]
        )
        ended = utc_now()
        manifest = json.loads((out / "backup_manifest").read_text(encoding="utf-8"))
        wal_range = manifest["WAL-Ranges"][0]
        meta = BaseBackupMeta(
            id=ident,
            start_time=started,
            end_time=ended,
            timeline=int(wal_range["Timeline"]),
            start_lsn=wal_range["Start-LSN"],
            end_lsn=wal_range["End-LSN"],
            start_wal=wal_segment_name(int(wal_range["Timeline"]), wal_range["Start-LSN"], segment_size),
            wal_segment_size=segment_size,
            server_version=version,
            key_id=keys.active.key_id,
        )
        for name in ("base.tar.gz", "pg_wal.tar.gz", "backup_manifest"):
            plain = out / name
            sealed = Path(tmp) / f"{name}.enc"
            encrypt_file(plain, sealed, keys)
            meta.files[name] = {"size": plain.stat().st_size, "sha256": _sha256(plain)}
            if not store.put_file(f"base/{ident}/{name}.enc", sealed):
                raise BackupError(f"base/{ident}/{name}.enc already exists in {store.url}")
            sealed.unlink()
        meta_path = Path(tmp) / META
        meta_path.write_text(meta.to_json(), encoding="utf-8")
        store.put_file(f"base/{ident}/{META}", meta_path)
    return meta


def _parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+)\s*(B|kB|MB|GB)?", text.strip())
    if not match:
        raise BackupError(f"cannot parse size {text!r}")
    return int(match.group(1)) * {"B": 1, None: 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3}[match.group(2)]


def wal_push(store: BackupStore, path: Path, name: str, keys: KeyRing) -> str:
    """archive_command: store one WAL file. Idempotent: an identical file already archived is a
    success; a different file under the same name is an error (PostgreSQL's archiving contract)."""
    key = f"wal/{name}.enc"
    with tempfile.TemporaryDirectory(prefix="omnify-wal-") as tmp:
        sealed = Path(tmp) / "seg.enc"
        encrypt_file(path, sealed, keys)
        if store.put_file(key, sealed):
            return "archived"
        existing = Path(tmp) / "existing"
        store.get_file(key, Path(tmp) / "existing.enc")
        decrypt_file(Path(tmp) / "existing.enc", existing, keys)
        if _sha256(existing) == _sha256(path):
            return "already-archived"
    raise BackupError(f"{key} exists in {store.url} with different content; refusing to overwrite")


def wal_fetch(store: BackupStore, name: str, target: Path, keys: KeyRing) -> bool:
    """restore_command: False when the archive lacks the file (normal at the end of WAL)."""
    key = f"wal/{name}.enc"
    if not store.exists(key):
        return False
    with tempfile.TemporaryDirectory(prefix="omnify-walfetch-") as tmp:
        sealed = Path(tmp) / "seg.enc"
        store.get_file(key, sealed)
        decrypt_file(sealed, target, keys)
    return True


# ------------------------------------------------------------------------- PostgreSQL: restore
def _conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def python_command() -> str:
    """The interpreter PostgreSQL runs for archive/restore commands, as a shell fragment.

    Defaults to this interpreter. OMNIFY_BACKUP_PYTHON overrides it where the database server's
    OS user cannot execute ours (e.g. a venv whose base interpreter lives under /root).
    """
    return os.environ.get("OMNIFY_BACKUP_PYTHON") or shlex.quote(sys.executable)


def archive_command_for(store: BackupStore) -> str:
    """The archive_command line for postgresql.conf (the key comes from the server's environment)."""
    return f"{python_command()} -m omnify.ops.backup backup wal-push %p %f --store {shlex.quote(store.url)}"


def restore_command_for(store: BackupStore) -> str:
    return f"{python_command()} -m omnify.ops.backup restore wal-fetch %f %p --store {shlex.quote(store.url)}"


def restore_base_backup(
    store: BackupStore,
    target_dir: Path,
    keys: KeyRing,
    *,
    target_time: datetime | None = None,
    wanted_id: str | None = None,
    archive_off: bool = True,
    extra_conf: dict[str, str] | None = None,
) -> BaseBackupMeta:
    """Unpack a base backup into ``target_dir`` and configure recovery from the WAL archive.

    With ``target_time`` recovery stops before the first commit after it and promotes; without,
    it replays the whole archive. ``archive_off`` keeps a restored copy (drill, staging clone) from
    archiving its new timeline into the production archive.
    """
    meta = choose_base_backup(list_base_backups(store), target_time, wanted_id)
    if target_dir.exists() and any(target_dir.iterdir()):
        raise BackupError(f"restore target {target_dir} is not empty")
    target_dir.mkdir(parents=True, exist_ok=True)
    target_dir.chmod(0o700)
    with tempfile.TemporaryDirectory(prefix="omnify-restore-") as tmp:
        for name, dest in (("base.tar.gz", target_dir), ("pg_wal.tar.gz", target_dir / "pg_wal")):
            sealed = Path(tmp) / f"{name}.enc"
            plain = Path(tmp) / name
            store.get_file(f"base/{meta.id}/{name}.enc", sealed)
            decrypt_file(sealed, plain, keys)
            sealed.unlink()
            expected = meta.files.get(name, {}).get("sha256")
            if expected and _sha256(plain) != expected:
                raise BackupError(f"{name} of base backup {meta.id} does not match its recorded checksum")
            dest.mkdir(parents=True, exist_ok=True)
            with tarfile.open(plain, "r:gz") as archive:
                archive.extractall(dest, filter="data")
            plain.unlink()
    target_dir.chmod(0o700)
    settings: dict[str, str] = {
        "restore_command": restore_command_for(store),
        "recovery_target_timeline": "latest",
    }
    if target_time is not None:
        settings["recovery_target_time"] = target_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        settings["recovery_target_action"] = "promote"
        settings["recovery_target_inclusive"] = "off"
    if archive_off:
        settings["archive_mode"] = "off"
    settings.update(extra_conf or {})
    with (target_dir / "postgresql.auto.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n# --- added by omnify restore pg-base ---\n")
        for key, value in settings.items():
            conf.write(f"{key} = {_conf_quote(value)}\n")
    (target_dir / "recovery.signal").touch()
    return meta


# --------------------------------------------------------------------------------- retention
@dataclass
class PruneResult:
    kept_base: list[str]
    deleted_base: list[str]
    deleted_wal: int
    deleted_sqlite: list[str]


def prune(store: BackupStore, retention_days: int = DEFAULT_RETENTION_DAYS, now: datetime | None = None) -> PruneResult:
    """Delete what the retention window no longer needs, never what it does.

    Kept: every base backup that finished inside the window, plus the newest one before it (the
    start of the window must stay restorable), plus always the newest. WAL older than the oldest
    kept base backup's start segment is deleted (timeline-independent comparison, as
    pg_archivecleanup does); timeline history files are kept.
    """
    now = now or utc_now()
    cutoff = now - timedelta(days=retention_days)
    backups = list_base_backups(store)
    inside = [m for m in backups if m.end_time >= cutoff]
    before = [m for m in backups if m.end_time < cutoff]
    keep = inside + before[-1:]
    if not keep and backups:
        keep = backups[-1:]
    keep_ids = {m.id for m in keep}
    deleted: list[str] = []
    complete_ids = {m.id for m in backups}
    for item in store.list("base/"):
        ident = item.key.split("/")[1]
        incomplete_and_old = ident not in complete_ids and item.modified < now - timedelta(days=1)
        if (ident in complete_ids and ident not in keep_ids) or incomplete_and_old:
            store.delete(item.key)
            if ident not in deleted:
                deleted.append(ident)
    deleted_wal = 0
    if keep:
        oldest_needed = min(keep, key=lambda m: m.start_wal).start_wal[8:]
        for item in store.list("wal/"):
            name = item.key.removeprefix("wal/").removesuffix(".enc")
            base_name = name.split(".")[0]
            is_segment = WAL_NAME.match(name) or name.endswith(".backup")
            if is_segment and len(base_name) == 24 and base_name[8:] < oldest_needed:
                store.delete(item.key)
                deleted_wal += 1
    deleted_sqlite = _prune_sqlite(store, cutoff)
    return PruneResult(sorted(keep_ids), deleted, deleted_wal, deleted_sqlite)


def _prune_sqlite(store: BackupStore, cutoff: datetime) -> list[str]:
    ids = sorted({item.key.split("/")[1] for item in store.list("sqlite/")})
    if not ids:
        return []
    newest = ids[-1]
    deleted: list[str] = []
    for ident in ids:
        when = datetime.strptime(ident, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if ident != newest and when < cutoff:
            for item in store.list(f"sqlite/{ident}/"):
                store.delete(item.key)
            deleted.append(ident)
    return deleted


# ------------------------------------------------------------------------------------ SQLite
def sqlite_path_from_settings() -> Path:
    from omnify.settings import get_settings

    settings = get_settings()
    url = settings.resolved_database_url
    if not url.startswith("sqlite"):
        raise BackupError("the configured database is not SQLite; use `omnify backup pg-base`")
    return Path(url.split(":///", 1)[1])


def _sqlite_count_sql(table_name: str) -> str:
    """``SELECT count(*)`` of one table, the name quoted by SQLAlchemy's SQLite dialect: table
    names come from the snapshot's catalog, so they are data, never pasted into SQL by hand."""
    from sqlalchemy import func, select, table
    from sqlalchemy.dialects import sqlite

    return str(select(func.count()).select_from(table(table_name)).compile(dialect=sqlite.dialect()))


def backup_sqlite(store: BackupStore, db_path: Path, keys: KeyRing, now: datetime | None = None) -> dict[str, Any]:
    """Consistent snapshot through sqlite3's online backup API, integrity-checked before upload."""
    if not db_path.is_file():
        raise BackupError(f"SQLite database {db_path} does not exist")
    ident = backup_id(now)
    with tempfile.TemporaryDirectory(prefix="omnify-sqlite-") as tmp:
        snapshot = Path(tmp) / "omnify.db"
        src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        dst = sqlite3.connect(snapshot)
        try:
            with dst:
                src.backup(dst, pages=1024)
            check = dst.execute("PRAGMA integrity_check").fetchone()
            tables = [r[0] for r in dst.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            counts = {t: dst.execute(_sqlite_count_sql(t)).fetchone()[0] for t in tables}
        finally:
            src.close()
            dst.close()
        if not check or check[0] != "ok":
            raise BackupError(f"integrity_check of the snapshot failed: {check}")
        packed = Path(tmp) / "omnify.db.gz"
        with snapshot.open("rb") as fin, gzip.open(packed, "wb", compresslevel=6) as fout:
            shutil.copyfileobj(fin, fout, 1024 * 1024)
        sealed = Path(tmp) / "omnify.db.gz.enc"
        encrypt_file(packed, sealed, keys)
        meta = {
            "id": ident,
            "source": str(db_path),
            "size": snapshot.stat().st_size,
            "sha256": _sha256(snapshot),
            "row_counts": counts,
            "key_id": keys.active.key_id,
        }
        if not store.put_file(f"sqlite/{ident}/omnify.db.gz.enc", sealed):
            raise BackupError(f"sqlite/{ident} already exists in {store.url}")
        meta_path = Path(tmp) / META
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        store.put_file(f"sqlite/{ident}/{META}", meta_path)
    return meta


def restore_sqlite(
    store: BackupStore, target: Path, keys: KeyRing, wanted_id: str | None = None, force: bool = False
) -> dict[str, Any]:
    ids = sorted({item.key.split("/")[1] for item in store.list("sqlite/") if item.key.endswith(META)})
    if not ids:
        raise BackupError(f"no SQLite backup in {store.url}")
    ident = wanted_id or ids[-1]
    if ident not in ids:
        raise BackupError(f"no SQLite backup {ident}")
    if target.exists() and not force:
        raise BackupError(f"{target} exists; pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="omnify-sqlite-restore-", dir=target.parent) as tmp:
        meta_path = Path(tmp) / META
        store.get_file(f"sqlite/{ident}/{META}", meta_path)
        meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        sealed = Path(tmp) / "db.gz.enc"
        packed = Path(tmp) / "db.gz"
        restored = Path(tmp) / "omnify.db"
        store.get_file(f"sqlite/{ident}/omnify.db.gz.enc", sealed)
        decrypt_file(sealed, packed, keys)
        with gzip.open(packed, "rb") as fin, restored.open("wb") as fout:
            shutil.copyfileobj(fin, fout, 1024 * 1024)
        if _sha256(restored) != meta["sha256"]:
            raise BackupError(f"SQLite backup {ident} does not match its recorded checksum")
        conn = sqlite3.connect(restored)
        try:
            check = conn.execute("PRAGMA integrity_check").fetchone()
        finally:
            conn.close()
        if not check or check[0] != "ok":
            raise BackupError(f"restored SQLite database fails integrity_check: {check}")
        restored.replace(target)
    return meta


# -------------------------------------------------------------------------------------- drill
@dataclass
class DrillReport:
    backup_id: str
    target_time: datetime | None
    rto_seconds: float
    rpo_seconds: float | None
    last_transaction_time: datetime | None
    row_counts: dict[str, int]
    checks: dict[str, str]
    port: int
    data_dir: Path

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data["data_dir"] = str(self.data_dir)
        return data


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_LAST_TX = re.compile(r"last completed transaction was at log time (?P<ts>[0-9:\-. +]+)")


def _parse_pg_time(text: str) -> datetime:
    text = text.strip()
    # PostgreSQL prints "2026-11-25 09:41:02.123456+00"; fromisoformat wants "+00:00".
    text = re.sub(r"([+-]\d\d)$", r"\1:00", text)
    return datetime.fromisoformat(text).astimezone(UTC)


class ScratchCluster:
    """A PostgreSQL data directory run on a free loopback port, owned by ``run_as`` (when root).

    ``superuser`` is the database role to connect as: for a restored copy, the source cluster's
    superuser (the restored catalog decides which roles exist).
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        pg_bin: Path = DEFAULT_PG_BIN,
        run_as: str | None = "postgres",
        superuser: str = "postgres",
    ):
        self.data_dir = data_dir
        self.port = port
        self.pg_bin = pg_bin
        self.run_as = run_as
        self.superuser = superuser
        self.log = data_dir.parent / f"{data_dir.name}.log"
        self.extra_options: list[str] = []

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/postgres"

    def isolate(self) -> None:
        """Make a restored copy of a production cluster start safely on this host.

        Production's pg_hba.conf (passwords, remote networks) is replaced by trust on loopback
        only, since the scratch server listens on 127.0.0.1 alone; Debian-style clusters keep their
        config outside the data directory, so empty config files are created when missing. Hot
        standby is off: it would refuse to start when this host's max_connections & co. are lower
        than the primary's, and nothing needs to read the copy before promotion. Shared buffers are
        capped so a drill pod need not be as large as the primary.
        """
        (self.data_dir / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n", encoding="utf-8"
        )
        for name in ("postgresql.conf", "pg_ident.conf"):
            (self.data_dir / name).touch()
        self.extra_options = [
            f"-c hba_file={self.data_dir / 'pg_hba.conf'}",
            f"-c ident_file={self.data_dir / 'pg_ident.conf'}",
            "-c hot_standby=off",
            "-c shared_buffers=128MB",
        ]

    def start(self, env: dict[str, str] | None = None, timeout: int = 4 * 3600) -> None:
        if self.run_as and os.geteuid() == 0:
            _run(["chown", "-R", f"{self.run_as}:", str(self.data_dir)])
            self.log.touch()
            _run(["chown", f"{self.run_as}:", str(self.log)])
        opts = " ".join([f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir}", *self.extra_options])
        cmd = [str(self.pg_bin / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log), "-o", opts]
        cmd += ["-w", "-t", str(timeout), "start"]
        _run(as_user(cmd, self.run_as), env=env)

    def stop(self) -> None:
        with contextlib.suppress(BackupError):
            _run(
                as_user(
                    [str(self.pg_bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"], self.run_as
                )
            )

    def wait_promoted(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.dsn, connect_timeout=5) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    if row is not None and row[0] is False:
                        return
            except psycopg.Error as exc:
                last_error = str(exc)
            time.sleep(0.2)
        raise BackupError(f"restored cluster still in recovery after {timeout}s {last_error}".strip())

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""


def verify_cluster(cluster: ScratchCluster, dbname: str) -> tuple[dict[str, int], dict[str, str]]:
    """Integrity checks on the restored cluster: B-tree and heap checks (pg_amcheck), exact row
    counts of every user table, and the audit hash chain when Omnify's schema is present."""
    import psycopg
    from psycopg import sql

    checks: dict[str, str] = {}
    user_dsn = cluster.dsn.rsplit("/", 1)[0] + f"/{dbname}"
    amcheck = [
        str(cluster.pg_bin / "pg_amcheck"),
        "--install-missing",
        "--heapallindexed",
        "-h",
        "127.0.0.1",
        "-p",
        str(cluster.port),
        "-U",
        cluster.superuser,
        dbname,
    ]
    _run(as_user(amcheck, cluster.run_as))
    checks["pg_amcheck"] = "ok"
    counts: dict[str, int] = {}
    with psycopg.connect(user_dsn, connect_timeout=10) as conn:
        tables = conn.execute(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename), schemaname, tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
        ).fetchall()
        for label, schema, name in tables:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(str(schema), str(name)))
            row = conn.execute(query).fetchone()
            counts[str(label)] = int(row[0]) if row else 0
        has_audit = conn.execute("SELECT to_regclass('public.audit_log') IS NOT NULL").fetchone()
    if has_audit and has_audit[0]:
        url = f"postgresql+asyncpg://{user_dsn.split('//', 1)[1]}"
        env = {**os.environ, "OMNIFY_DATABASE_URL": url, "OMNIFY_MIGRATION_DATABASE_URL": url}
        out = _run([sys.executable, "-m", "omnify.cli", "audit", "verify"], env=env)
        checks["audit_chain"] = out.strip().splitlines()[-1] if out.strip() else "ok"
    else:
        checks["audit_chain"] = "skipped (no audit_log table)"
    return counts, checks


def run_drill(
    store: BackupStore,
    keys: KeyRing,
    workdir: Path,
    *,
    target_time: datetime | None = None,
    dbname: str = "postgres",
    pg_bin: Path = DEFAULT_PG_BIN,
    run_as: str | None = "postgres",
    superuser: str = "postgres",
    keep_running: bool = False,
    timeout: float = 4 * 3600,
) -> tuple[DrillReport, ScratchCluster]:
    """Restore (to ``target_time`` or the end of the archive) into a scratch cluster, verify it,
    and measure RTO (restore start -> promoted and verified) and RPO (target, or drill start when
    restoring to the end, minus the last transaction actually recovered)."""
    started_wall = utc_now()
    t0 = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    if run_as and os.geteuid() == 0:
        _run(["chown", f"{run_as}:", str(workdir)])
    data_dir = workdir / "data"
    meta = restore_base_backup(store, data_dir, keys, target_time=target_time)
    cluster = ScratchCluster(data_dir, free_port(), pg_bin, run_as, superuser)
    cluster.isolate()
    env = {**os.environ}
    try:
        cluster.start(env=env, timeout=int(timeout))
        cluster.wait_promoted(timeout)
        counts, checks = verify_cluster(cluster, dbname)
        rto = time.monotonic() - t0
        matches = list(_LAST_TX.finditer(cluster.log_text()))
        last_tx = _parse_pg_time(matches[-1].group("ts")) if matches else None
        reference = target_time or started_wall
        rpo = max(0.0, (reference - last_tx).total_seconds()) if last_tx else None
        report = DrillReport(meta.id, target_time, rto, rpo, last_tx, counts, checks, cluster.port, data_dir)
    except BaseException:
        tail = "\n".join(cluster.log_text().splitlines()[-30:])
        cluster.stop()
        if tail:
            sys.stderr.write(f"--- restored cluster log (tail) ---\n{tail}\n")
        raise
    if not keep_running:
        cluster.stop()
    return report, cluster


# ---------------------------------------------------------------------------------- commands
def _keys() -> KeyRing:
    try:
        return KeyRing.from_env()
    except BackupCryptoError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1) from exc


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise typer.BadParameter("give the time with a UTC offset, e.g. 2026-01-31T14:05:00+00:00")
    return parsed.astimezone(UTC)


@backup_app.command("pg-base")
def cmd_pg_base(
    store: StoreOpt,
    dsn: Annotated[
        str | None,
        typer.Option(
            envvar="OMNIFY_BACKUP_PG_DSN", help="libpq URL of a role with REPLICATION; default: migration URL"
        ),
    ] = None,
    retention_days: Annotated[int, typer.Option(min=1)] = DEFAULT_RETENTION_DAYS,
    no_prune: Annotated[bool, typer.Option("--no-prune")] = False,
    metrics_file: Annotated[Path | None, typer.Option(help="node-exporter textfile to update")] = None,
    pg_bin: Annotated[Path, typer.Option(envvar="OMNIFY_PG_BIN")] = DEFAULT_PG_BIN,
) -> None:
    """Take a PostgreSQL base backup (daily), then apply retention."""
    from omnify.settings import get_settings

    keys = _keys()
    try:
        target = open_store(store)
        conninfo = dsn or libpq_dsn(get_settings().resolved_migration_database_url)
        meta = take_base_backup(target, conninfo, keys, pg_bin=pg_bin)
        record_success("base", meta.end_time, metrics_file)
        _emit(
            "backup_base_complete",
            id=meta.id,
            store=target.url,
            start_wal=meta.start_wal,
            seconds=(meta.end_time - meta.start_time).total_seconds(),
        )
        if not no_prune:
            _emit("backup_pruned", **asdict(prune(target, retention_days)))
    except (BackupError, StoreError, BackupCryptoError, OSError) as exc:
        _fail(exc)


@backup_app.command("wal-push")
def cmd_wal_push(
    path: Annotated[Path, typer.Argument(help="%p: path of the WAL file")],
    name: Annotated[str, typer.Argument(help="%f: file name")],
    store: StoreOpt,
) -> None:
    """PostgreSQL archive_command: `omnify backup wal-push %p %f`."""
    keys = _keys()
    try:
        outcome = wal_push(open_store(store), path, name, keys)
    except (BackupError, StoreError, BackupCryptoError, OSError) as exc:
        _fail(exc)
    else:
        if os.environ.get("OMNIFY_BACKUP_PUSHGATEWAY_URL"):
            with contextlib.suppress(OSError):
                record_success("wal")
        _emit("wal_push", name=name, outcome=outcome)


@backup_app.command("sqlite")
def cmd_sqlite(
    store: StoreOpt,
    db: Annotated[Path | None, typer.Option(help="SQLite file; default: the configured database")] = None,
    retention_days: Annotated[int, typer.Option(min=1)] = DEFAULT_RETENTION_DAYS,
    metrics_file: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Online backup of the embedded SQLite database (safe while Omnify runs)."""
    keys = _keys()
    try:
        target = open_store(store)
        meta = backup_sqlite(target, db or sqlite_path_from_settings(), keys)
        record_success("sqlite", metrics_file=metrics_file)
        _emit("backup_sqlite_complete", id=meta["id"], store=target.url, size=meta["size"])
        _emit("backup_pruned", deleted_sqlite=_prune_sqlite(target, utc_now() - timedelta(days=retention_days)))
    except (BackupError, StoreError, BackupCryptoError, OSError, sqlite3.Error) as exc:
        _fail(exc)


@backup_app.command("prune")
def cmd_prune(store: StoreOpt, retention_days: Annotated[int, typer.Option(min=1)] = DEFAULT_RETENTION_DAYS) -> None:
    """Apply retention: base backups, WAL and SQLite backups older than the window."""
    try:
        _emit("backup_pruned", **asdict(prune(open_store(store), retention_days)))
    except (BackupError, StoreError, OSError) as exc:
        _fail(exc)


@backup_app.command("list")
def cmd_list(store: StoreOpt) -> None:
    """Base backups (with their restorable-from time) and the WAL archive's extent."""
    try:
        target = open_store(store)
        for meta in list_base_backups(target):
            typer.echo(f"base {meta.id}  restorable from {meta.end_time.isoformat()}  start_wal {meta.start_wal}")
        wal = [i for i in target.list("wal/") if WAL_NAME.match(i.key.removeprefix("wal/").removesuffix(".enc"))]
        if wal:
            typer.echo(f"wal  {len(wal)} segments, newest {wal[-1].key} at {max(i.modified for i in wal).isoformat()}")
    except (BackupError, StoreError, OSError) as exc:
        _fail(exc)


@backup_app.command("wal-status")
def cmd_wal_status(
    store: StoreOpt,
    max_age_minutes: Annotated[int, typer.Option(min=1)] = 60,
    metrics_file: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Hourly check: the newest archived WAL must be younger than the RPO (default 60 min)."""
    try:
        target = open_store(store)
        wal = target.list("wal/")
        if not wal:
            _fail(BackupError(f"no WAL archived in {target.url}"))
        newest = max(i.modified for i in wal)
        record_success("wal", newest, metrics_file)
        age = (utc_now() - newest).total_seconds()
        _emit("wal_status", newest=newest, age_seconds=age)
        if age > max_age_minutes * 60:
            _fail(BackupError(f"newest archived WAL is {age / 60:.0f} min old (limit {max_age_minutes})"))
    except (StoreError, OSError) as exc:
        _fail(exc)


@backup_app.command("drill")
def cmd_drill(
    store: StoreOpt,
    workdir: Annotated[Path | None, typer.Option(help="scratch directory (default: a temp dir)")] = None,
    target_time: Annotated[str | None, typer.Option(help="ISO time with offset; default: end of archive")] = None,
    dbname: Annotated[str, typer.Option(help="database to verify")] = "omnify",
    run_as: Annotated[str, typer.Option(help="OS user for the scratch server when run as root")] = "postgres",
    superuser: Annotated[str, typer.Option(help="database superuser of the backed-up cluster")] = "postgres",
    pg_bin: Annotated[Path, typer.Option(envvar="OMNIFY_PG_BIN")] = DEFAULT_PG_BIN,
    max_rpo_seconds: Annotated[float, typer.Option()] = 3600,
    max_rto_seconds: Annotated[float, typer.Option()] = 4 * 3600,
    keep: Annotated[bool, typer.Option(help="leave the scratch cluster running")] = False,
) -> None:
    """Restore the newest backup into a scratch cluster, verify it, print RPO/RTO (exit 1 if unmet)."""
    keys = _keys()
    scratch = workdir or Path(tempfile.mkdtemp(prefix="omnify-drill-"))
    scratch.mkdir(parents=True, exist_ok=True)
    scratch.chmod(0o755)  # the server's OS user (run_as) must be able to enter it
    try:
        report, _ = run_drill(
            open_store(store),
            keys,
            scratch,
            target_time=_parse_time(target_time),
            dbname=dbname,
            pg_bin=pg_bin,
            run_as=run_as,
            superuser=superuser,
            keep_running=keep,
        )
    except (BackupError, StoreError, BackupCryptoError, OSError) as exc:
        _fail(exc)
    else:
        _emit("restore_drill", **report.summary())
        typer.echo(
            f"RPO {report.rpo_seconds if report.rpo_seconds is not None else 'unknown'} s, "
            f"RTO {report.rto_seconds:.1f} s"
        )
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
        if report.rto_seconds > max_rto_seconds or (report.rpo_seconds or 0) > max_rpo_seconds:
            _fail(BackupError(f"objectives missed: RPO {report.rpo_seconds}s / RTO {report.rto_seconds:.0f}s"))


@restore_app.command("wal-fetch")
def cmd_wal_fetch(
    name: Annotated[str, typer.Argument(help="%f")],
    path: Annotated[Path, typer.Argument(help="%p")],
    store: StoreOpt,
) -> None:
    """PostgreSQL restore_command: exit 1 when the archive has no such file (end of WAL)."""
    keys = _keys()
    try:
        found = wal_fetch(open_store(store), name, path, keys)
    except (BackupError, StoreError, BackupCryptoError, OSError) as exc:
        _fail(exc)
    else:
        if not found:
            raise typer.Exit(1)


@restore_app.command("pg-base")
def cmd_restore_pg(
    target_dir: Annotated[Path, typer.Argument(help="empty directory to become PGDATA")],
    store: StoreOpt,
    target_time: Annotated[str | None, typer.Option(help="ISO time with offset; default: end of archive")] = None,
    backup: Annotated[str | None, typer.Option(help="base backup id; default: newest usable")] = None,
    keep_archiving: Annotated[bool, typer.Option(help="leave archive_mode as in the backup")] = False,
) -> None:
    """Restore a base backup and configure point-in-time recovery; then start PostgreSQL on it."""
    keys = _keys()
    try:
        meta = restore_base_backup(
            open_store(store),
            target_dir,
            keys,
            target_time=_parse_time(target_time),
            wanted_id=backup,
            archive_off=not keep_archiving,
        )
    except (BackupError, StoreError, BackupCryptoError, OSError) as exc:
        _fail(exc)
    else:
        _emit("restore_prepared", id=meta.id, target_dir=target_dir, target_time=target_time)
        typer.echo(
            f"start it with: pg_ctl -D {target_dir} start  (the server's environment needs "
            "OMNIFY_BACKUP_ENCRYPTION_KEY for restore_command)"
        )


@restore_app.command("sqlite")
def cmd_restore_sqlite(
    target: Annotated[Path, typer.Argument(help="where to write the database file")],
    store: StoreOpt,
    backup: Annotated[str | None, typer.Option(help="backup id; default: newest")] = None,
    force: Annotated[bool, typer.Option(help="replace an existing file (stop Omnify first)")] = False,
) -> None:
    """Restore the SQLite database from its newest (or a chosen) backup."""
    keys = _keys()
    try:
        meta = restore_sqlite(open_store(store), target, keys, backup, force)
    except (BackupError, StoreError, BackupCryptoError, OSError, sqlite3.Error) as exc:
        _fail(exc)
    else:
        _emit("restore_sqlite_complete", id=meta["id"], target=target)


def _standalone() -> typer.Typer:
    """`python -m omnify.ops.backup backup|restore ...`: same command lines as `omnify backup|restore`,
    without importing the whole CLI (archive_command runs for every WAL segment)."""
    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
    app.add_typer(backup_app, name="backup")
    app.add_typer(restore_app, name="restore")
    return app


if __name__ == "__main__":
    _standalone()()
