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
import signal
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


RABBITMQ_SBIN = Path("/usr/lib/rabbitmq/bin")


class ScratchRabbitMQ:
    """A RabbitMQ node of the test's own (its own node name, ports, data, logs and Erlang cookie,
    no plugins) that a test may stop and start again at the same address, with its durable
    queues and persistent messages kept, as when a broker node restarts.

    The machine's shared node (5672, ``rabbit@localhost``) is never touched: Debian's
    ``/usr/sbin/rabbitmq-server`` wrapper is bypassed (it switches to the ``rabbitmq`` user and
    that node's files), the package's own script is run with every path in ``root``, and HOME
    points there so the node and its CLI tools share a fresh cookie. The node registers its
    name with the machine's ``epmd`` (a name registry, started by Erlang if none runs).
    """

    def __init__(self, root: Path) -> None:
        server = RABBITMQ_SBIN / "rabbitmq-server"
        if not server.exists() or shutil.which("erl") is None:
            skip_or_fail("rabbitmq-server is not installed (Debian package rabbitmq-server)")
        self.server = server
        self.root = root
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"omnify-fault-{self.port}@localhost"
        self.log = root / "rabbitmq-console.log"
        self.proc: subprocess.Popen[bytes] | None = None
        (root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {LOOPBACK}:{self.port}\n"
            # A nearly full test disk must not raise the alarm that blocks every publisher.
            "disk_free_limit.absolute = 10MB\n"
            "log.console = true\nlog.console.level = warning\nlog.file = false\n", encoding="utf-8")
        (root / "enabled_plugins").write_text("[].\n", encoding="utf-8")
        (root / "rabbitmq-env.conf").write_text("", encoding="utf-8")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{LOOPBACK}:{self.port}//"

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        return {**keep, "HOME": str(self.root), "RABBITMQ_NODENAME": self.node,
                "RABBITMQ_NODE_IP_ADDRESS": LOOPBACK, "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port), "ERL_EPMD_ADDRESS": LOOPBACK,
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
                "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
                "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
                "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.root / "plugins-expand"),
                "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"), "RABBITMQ_LOG_BASE": str(self.root / "log"),
                "RABBITMQ_PID_FILE": str(self.root / "rabbitmq.pid")}

    def ping(self) -> bool:
        """An AMQP login succeeds (the listener opens last in the node's boot)."""
        from kombu import Connection

        try:
            with Connection(self.url, connect_timeout=0.5) as conn:
                conn.ensure_connection(max_retries=0)
            return True
        except Exception:  # refused, reset mid-handshake, not yet accepting logins
            return False

    def start(self, timeout: float = 60.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([str(self.server)], stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env(), cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"RabbitMQ did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM (the node shuts down cleanly, as under systemd or Kubernetes), then wait for
        every process of its group (the node's port helpers) to go."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # helpers the node left behind, if any


@contextlib.contextmanager
def scratch_rabbitmq(root: Path) -> Iterator[ScratchRabbitMQ]:
    node = ScratchRabbitMQ(root)
    node.start()
    try:
        yield node
    finally:
        node.stop()
