"""Scratch PostgreSQL clusters and Redis servers that a test owns, so it may stop and start them.

The suite runs on the machine's shared PostgreSQL (5432) and Redis (6379); a test that takes a
server down (fault injection) or replays WAL into it (restore drills) must never touch those. This
module starts private ones on free loopback ports instead:

- PostgreSQL refuses to run as root, so when the tests run as root (CI) the server tools run as
  the ``postgres`` OS user (``runuser``), in a folder that user can reach: a test's ``tmp_path``
  lives under a private root-owned folder, hence :func:`server_workdir`.
- A missing binary skips outside CI and fails in CI (CI must not go green by skipping).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnify.ops.backup import DEFAULT_PG_BIN, ScratchCluster, as_user, free_port

LOOPBACK = "127.0.0.1"


def skip_or_fail(reason: str) -> None:
    """Skip outside CI; in CI (CI=true) a missing prerequisite is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI requires this test: {reason}")
    pytest.skip(reason)


def run_checked(cmd: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, f"{cmd[0]}: {proc.stderr}{proc.stdout}"


def postgres_run_as(*tools: str) -> str | None:
    """The OS user to run PostgreSQL server tools as: ``postgres`` when we are root, else None
    (ourselves). Skips (fails in CI) when the PostgreSQL 15 binaries ``tools`` are missing."""
    for tool in ("initdb", "pg_ctl", *tools):
        if not (DEFAULT_PG_BIN / tool).exists():
            skip_or_fail(f"PostgreSQL 15 server binary {tool} not found in {DEFAULT_PG_BIN}")
    if os.geteuid() != 0:
        return None
    if shutil.which("runuser") is None:
        skip_or_fail("running as root needs runuser to start PostgreSQL as the postgres user")
    return "postgres"


def can_access(user: str, test_flag: str, path: Path | str) -> bool:
    return subprocess.run(as_user(["test", test_flag, str(path)], user), check=False).returncode == 0


@contextlib.contextmanager
def server_workdir(prefix: str, run_as: str | None) -> Iterator[Path]:
    """A fresh folder that ``run_as`` owns and can reach (removed afterwards)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    try:
        if run_as:
            run_checked(["chown", f"{run_as}:", str(root)])
            if not can_access(run_as, "-w", root):
                skip_or_fail(f"{run_as} cannot reach {root} (a parent folder is private): point TMPDIR elsewhere")
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def initdb(cluster: ScratchCluster, conf: str = "") -> None:
    """Create ``cluster``'s data directory (trust auth, superuser ``postgres``) and append ``conf``
    to its postgresql.conf."""
    run_checked(as_user([str(cluster.pg_bin / "initdb"), "-D", str(cluster.data_dir), "-A", "trust",
                         "-U", "postgres", "--no-sync"], cluster.run_as))
    if conf:
        with (cluster.data_dir / "postgresql.conf").open("a", encoding="utf-8") as out:
            out.write("\n" + conf + "\n")


@contextlib.contextmanager
def scratch_postgres(root: Path, run_as: str | None, conf: str = "fsync = off") -> Iterator[ScratchCluster]:
    """A PostgreSQL 15 cluster initialised under ``root`` and started on a free port; stopped after."""
    cluster = ScratchCluster(root / "pgdata", free_port(), DEFAULT_PG_BIN, run_as)
    initdb(cluster, conf)
    cluster.start(env=dict(os.environ), timeout=60)
    try:
        yield cluster
    finally:
        cluster.stop()


class ScratchRedis:
    """A ``redis-server`` without persistence on a fixed free port, which a test may stop and
    start again at the same address (what clients see when Redis restarts)."""

    def __init__(self, log_dir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            skip_or_fail("redis-server is not installed (Debian package redis-server)")
            raise AssertionError("unreachable")
        self.binary = binary
        self.port = free_port()
        self.log = log_dir / f"redis-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host=LOOPBACK, port=self.port, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def start(self, timeout: float = 15.0) -> None:
        cmd = [self.binary, "--port", str(self.port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start:\n{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def scratch_redis(log_dir: Path) -> Iterator[ScratchRedis]:
    server = ScratchRedis(log_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
