"""`omnify up` on a bare data directory: serves, is ready, and runs jobs end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select

from tests.conftest import is_postgres
from tests.servers import clean_env, omnify_up, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(is_postgres(), reason="`omnify up` is the embedded (SQLite) default; run once"),
]


def test_up_serves_seeds_and_runs_jobs(tmp_path: Path) -> None:
    from omnify.jobs.testing_tasks import effects, test_metadata

    env = {"OMNIFY_JOBS_TEST_TASKS": "1", "OMNIFY_LOG_LEVEL": "WARNING"}
    with omnify_up(tmp_path, env) as up:  # generous readiness wait: seeding under coverage on a busy runner
        # The demo organization shows connected sandbox accounts and synced numbers.
        auth = up.demo_login()
        base = up.api
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
            env=clean_env(OMNIFY_DATA_DIR=str(tmp_path), **env), capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr

        def effect_done() -> bool:
            with engine.connect() as conn:
                return conn.execute(select(effects.c.key).where(effects.c.key == "up-e2e")).first() is not None

        wait_for(effect_done, 90, "the worker started by `omnify up` to run the task", proc=up.proc, log=up.log)
        engine.dispose()
    output = up.output()
    assert "Worker:" in output and "password=" in output
    assert "8 sandbox connections" in output, output[-2000:]
