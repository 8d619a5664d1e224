"""`omnify up` on a bare data directory: serves, is ready, and runs jobs end to end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select

from tests.conftest import is_postgres

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(is_postgres(), reason="`omnify up` is the embedded (SQLite) default; run once"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_up_serves_seeds_and_runs_jobs(tmp_path: Path) -> None:
    from omnify.jobs.testing_tasks import effects, test_metadata

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIFY_")}
    env.update(OMNIFY_DATA_DIR=str(tmp_path), OMNIFY_JOBS_TEST_TASKS="1", OMNIFY_LOG_LEVEL="WARNING")
    log = (tmp_path / "up.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "omnify.cli", "up", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(ready, 90, "/readyz")
        creds = json.loads((tmp_path / "demo-credentials.json").read_text())
        login = httpx.post(f"http://127.0.0.1:{port}/api/v1/auth/login", json=creds, timeout=10)
        assert login.status_code == 200, login.text
        # The demo organization shows connected sandbox accounts and synced numbers.
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        base = f"http://127.0.0.1:{port}/api/v1"
        org_id = httpx.get(f"{base}/me", headers=auth, timeout=10).json()["memberships"][0]["org_id"]
        clients = httpx.get(f"{base}/orgs/{org_id}/clients", headers=auth, timeout=10).json()["items"]
        assert len(clients) >= 2
        spend = 0
        for c in clients:
            report = httpx.get(f"{base}/orgs/{org_id}/clients/{c['id']}/analytics?granularity=total",
                               headers=auth, timeout=30).json()
            spend += sum(cur["totals"]["spend_minor"] for cur in report.get("currencies", []))
        assert spend > 0

        engine = create_engine(f"sqlite:///{tmp_path / 'omnify.db'}")
        test_metadata.create_all(engine)
        sent = subprocess.run(
            [sys.executable, "-c", "from omnify.jobs.celery_app import celery_app as c; "
             "print(c.send_task('omnify.jobs.testing.record_effect', args=['up-e2e']).id)"],
            env=env, capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr

        def effect_done() -> bool:
            with engine.connect() as conn:
                return conn.execute(select(effects.c.key).where(effects.c.key == "up-e2e")).first() is not None

        _wait(effect_done, 90, "the worker started by `omnify up` to run the task")
        engine.dispose()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    output = (tmp_path / "up.log").read_text(errors="replace")
    assert "Worker:" in output and "password=" in output
    assert "7 sandbox connections" in output, output[-2000:]
