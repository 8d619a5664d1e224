"""Backup and restore drill against real PostgreSQL 15 clusters this test starts itself.

Source cluster (WAL archived by `omnify backup wal-push`, encrypted, to a file store) -> write rows
-> base backup -> write rows -> note the target time -> write rows -> restore into a second
scratch cluster with recovery_target_time. Rows written before the target must be there, rows
written after it must not. A second restore to the end of the archive must have everything. The
drill prints RPO and RTO and they must meet 1 h / 4 h.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from omnify.ops.backup import (
    DEFAULT_PG_BIN,
    ScratchCluster,
    archive_command_for,
    as_user,
    free_port,
    run_drill,
    take_base_backup,
)
from omnify.ops.crypto import KEY_ENV, BackupKey, KeyRing
from omnify.ops.store import LocalStore
from tests.reliability import write_figures
from tests.scratch_services import initdb, postgres_run_as, run_checked, server_workdir, skip_or_fail

# server_clock: recovery targets and RPO compare this process's clock with the scratch servers'
# commit timestamps; the clock-ahead runs move Python's clock only, so they leave the drill out.
pytestmark = [pytest.mark.slow, pytest.mark.server_clock]

RPO_OBJECTIVE_S = 3600
RTO_OBJECTIVE_S = 4 * 3600
# Rows written before the base backup; raise it (e.g. 2000000) to measure restore throughput.
BASE_ROWS = int(os.environ.get("OMNIFY_DRILL_ROWS", "100"))


@pytest.fixture(scope="module")
def run_as() -> str | None:
    if os.environ.get("OMNIFY_DATABASE_URL", "unset") == "":
        # scripts/test.sh runs the suite twice (SQLite, then PostgreSQL); this drill uses its own
        # clusters, so it runs once, in the PostgreSQL pass.
        pytest.skip("restore drill runs in the PostgreSQL pass of scripts/test.sh")
    return postgres_run_as("pg_basebackup")


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    run_checked(cmd, env)


def _interpreter_for(user: str) -> str:
    """An interpreter ``user`` can run, of this one's version (the copied extension modules are
    built for it): this venv's base interpreter, else the system's (e.g. when the base lives in a
    private pyenv under /root)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in dict.fromkeys([os.path.realpath(sys.executable), "/usr/bin/python3"]):
        probe = subprocess.run(
            as_user([candidate, "-c", "import sys; print(f'{sys.version_info.major}.{sys.version_info.minor}')"], user),
            capture_output=True, text=True, check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    skip_or_fail(f"the server's user {user!r} can run no Python {version} ({sys.executable} is out of its reach)")
    raise AssertionError("unreachable")


def _imported_packages(probe_dir: Path) -> set[str]:
    """Top-level third-party modules that the archive and restore commands import, lazy imports
    included: a real wal-push and wal-fetch run here under ``-X importtime``, which lists each one."""
    segment = probe_dir / "000000010000000000000001"
    segment.write_bytes(os.urandom(4096))
    store = LocalStore(probe_dir / "store").url
    names: set[str] = set()
    for args in (
        ["backup", "wal-push", str(segment), segment.name, "--store", store],
        ["restore", "wal-fetch", segment.name, str(probe_dir / "fetched"), "--store", store],
    ):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "omnify.ops.backup", *args],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        names |= {line.rsplit("|", 1)[1].strip().partition(".")[0]
                  for line in proc.stderr.splitlines()[1:] if line.startswith("import time:")}
    return names - set(sys.stdlib_module_names) - set(sys.builtin_module_names) - {"__main__"}


def stage_backup_runtime(dest: Path, user: str) -> str:
    """Copy what the archive/restore commands import into ``dest`` (which ``user`` can read) and
    return the shell fragment that runs them (for OMNIFY_BACKUP_PYTHON).

    PostgreSQL runs archive_command as its own OS user. A checkout (and its venv) in a private
    folder (a ``mktemp -d`` folder, a home directory) is out of that user's reach, so the server
    gets its own copy of the packages those commands import (omnify, typer, cryptography, ...),
    run by an interpreter of this one's version.
    """
    interpreter = _interpreter_for(user)
    dest.mkdir()
    with tempfile.TemporaryDirectory(prefix="omnify-probe-") as probe:
        packages = _imported_packages(Path(probe))
    for name in sorted(packages):
        spec = importlib.util.find_spec(name)
        if spec is None:  # an optional import that failed (importtime lists attempts too)
            continue
        if spec.submodule_search_locations:
            source = Path(next(iter(spec.submodule_search_locations)))
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            assert spec.origin, name
            shutil.copy2(spec.origin, dest / Path(spec.origin).name)
    _run(["chmod", "-R", "a+rX", str(dest)])
    return f"PYTHONPATH={shlex.quote(str(dest))} {shlex.quote(interpreter)}"


@pytest.fixture
def workspace(run_as: str | None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with server_workdir("omnify-pitr-", run_as) as root:
        monkeypatch.setenv(KEY_ENV, BackupKey.generate().encoded())
        if run_as:
            monkeypatch.setenv("OMNIFY_BACKUP_PYTHON", stage_backup_runtime(root / "runtime", run_as))
        yield root


class SourceCluster(ScratchCluster):
    """The 'production' cluster: initdb'd here, archiving WAL through `omnify backup wal-push`."""

    def init(self, store: LocalStore) -> None:
        initdb(self, "wal_level = replica\narchive_mode = on\n"
                     f"archive_command = '{archive_command_for(store)}'\n"
                     "archive_timeout = 60\nmax_wal_senders = 4\nfsync = off")


def _insert(cluster: ScratchCluster, phase: str, n: int) -> None:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{cluster.port}/omnify", autocommit=True) as conn:
        conn.execute("INSERT INTO events (phase) SELECT %s FROM generate_series(1, %s)", (phase, n))


def _archive_everything(cluster: ScratchCluster, timeout: float = 60) -> None:
    """Close the current WAL segment and wait until archive_command has stored it."""
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres", autocommit=True) as conn:
        row = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
        assert row is not None
        segment = str(row[0])
        conn.execute("SELECT pg_switch_wal()")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stat = conn.execute(
                "SELECT last_archived_wal, failed_count, last_failed_wal FROM pg_stat_archiver"
            ).fetchone()
            assert stat is not None
            if stat[0] and str(stat[0]) >= segment:
                return
            time.sleep(0.2)
    pytest.fail(f"WAL {segment} not archived in {timeout}s (archiver: {stat}); log:\n{cluster.log_text()[-3000:]}")


def _phase_counts(cluster: ScratchCluster) -> dict[str, int]:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{cluster.port}/omnify") as conn:
        return {str(p): int(n) for p, n in conn.execute("SELECT phase, count(*) FROM events GROUP BY phase")}


def test_pitr_restore_drill(workspace: Path, run_as: str | None) -> None:
    import psycopg

    keys = KeyRing.from_env()
    store_dir = workspace / "store"
    store_dir.mkdir()
    if run_as:
        _run(["chown", f"{run_as}:", str(store_dir)])
    store = LocalStore(store_dir)

    source = SourceCluster(workspace / "source", free_port(), DEFAULT_PG_BIN, run_as)
    source.init(store)
    source.start(env=dict(os.environ), timeout=60)
    try:
        with psycopg.connect(source.dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE omnify")
        with psycopg.connect(source.dsn.rsplit("/", 1)[0] + "/omnify", autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE events (id bigserial PRIMARY KEY, phase text NOT NULL,"
                " created_at timestamptz NOT NULL DEFAULT clock_timestamp())"
            )
            conn.execute("CREATE INDEX events_phase ON events (phase)")
        _insert(source, "before_base", BASE_ROWS)

        meta = take_base_backup(store, source.dsn, keys)
        assert (store_dir / "base" / meta.id / "meta.json").exists()
        # Encrypted at rest: the archive is not a gzip stream anymore.
        assert (store_dir / "base" / meta.id / "base.tar.gz.enc").read_bytes()[:8] == b"OMNIBAK1"

        _insert(source, "after_base", 50)
        time.sleep(1.0)
        target = datetime.now(UTC)
        time.sleep(1.0)
        _insert(source, "after_target", 25)
        _archive_everything(source)
        wal_files = list((store_dir / "wal").glob("*.enc"))
        assert wal_files, "archive_command stored no WAL"
    finally:
        source.stop()

    # Point-in-time restore into a second cluster.
    report, restored = run_drill(
        store,
        keys,
        workspace / "drill-pitr",
        target_time=target,
        dbname="omnify",
        run_as=run_as,
        keep_running=True,
        timeout=600,
    )
    try:
        counts = _phase_counts(restored)
    finally:
        restored.stop()
    print(
        f"\nPITR drill: RPO {report.rpo_seconds:.2f} s, RTO {report.rto_seconds:.2f} s "
        f"(base backup {report.backup_id}, target {target.isoformat()})"
    )
    assert counts.get("before_base") == BASE_ROWS
    assert counts.get("after_base") == 50, "data written after the base backup and before the target is missing"
    assert "after_target" not in counts, "data written after the recovery target was restored"
    assert report.row_counts["public.events"] == BASE_ROWS + 50
    assert report.checks["pg_amcheck"] == "ok"
    assert report.last_transaction_time is not None and report.last_transaction_time <= target
    assert report.rpo_seconds is not None and report.rpo_seconds < RPO_OBJECTIVE_S
    assert report.rto_seconds < RTO_OBJECTIVE_S

    # Disaster recovery to the end of the archive, through the command the weekly CronJob runs.
    workdir = workspace / "drill-latest"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "omnify.ops.backup",
            "backup",
            "drill",
            "--store",
            store.url,
            "--workdir",
            str(workdir),
            "--dbname",
            "omnify",
            "--keep",
            *(["--run-as", run_as] if run_as else []),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    event = next(json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{"))
    latest = ScratchCluster(workdir / "data", int(event["port"]), DEFAULT_PG_BIN, run_as)
    try:
        counts = _phase_counts(latest)
    finally:
        latest.stop()
    print(f"end-of-archive drill (CLI): RPO {event['rpo_seconds']:.2f} s, RTO {event['rto_seconds']:.2f} s")
    assert "RPO" in proc.stdout and "RTO" in proc.stdout
    assert counts == {"before_base": BASE_ROWS, "after_base": 50, "after_target": 25}
    assert event["row_counts"]["public.events"] == BASE_ROWS + 75
    assert event["rto_seconds"] < RTO_OBJECTIVE_S and event["rpo_seconds"] < RPO_OBJECTIVE_S
    write_figures("restore-drill", {
        "fault": "database lost: restore from base backup + encrypted WAL archive into a new cluster",
        "database": "postgresql",
        "rows": BASE_ROWS + 75,
        "pitr_rpo_seconds": round(report.rpo_seconds, 2),
        "pitr_rto_seconds": round(report.rto_seconds, 2),
        "latest_rpo_seconds": round(float(event["rpo_seconds"]), 2),
        "latest_rto_seconds": round(float(event["rto_seconds"]), 2),
        "rows_expected_vs_found": f"{BASE_ROWS + 75} / {sum(counts.values())}",
    })
