"""`omnify serve` is honest at start-up (issue 14 item 7).

On an un-migrated database it says how to fix it and ``/readyz`` answers 503 "migrations
pending" (it answered 200 while every login failed with 500) until ``omnify migrate up`` ran;
with a secrets backend it cannot read, it does not start, and says why.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import is_postgres
from tests.servers import LOOPBACK, clean_env, free_port, omnify_command, stop_up, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(is_postgres(), reason="serves a scratch SQLite database; the check itself runs on both"),
]


def test_serve_on_an_unmigrated_database_says_so_until_migrated(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(OMNIFY_DATA_DIR=str(tmp_path / "data"), OMNIFY_LOG_LEVEL="WARNING")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*omnify_command(), "serve", "--port", str(port)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    origin = f"http://{LOOPBACK}:{port}"
    try:
        answers: list[httpx.Response] = []

        def answering() -> bool:
            try:
                answers.append(httpx.get(f"{origin}/readyz", timeout=5))
            except httpx.HTTPError:
                return False
            return True

        wait_for(answering, 120, "`omnify serve` to answer", proc=proc, log=log)
        ready = answers[-1]
        assert ready.status_code == 503
        assert ready.headers["content-type"] == "application/problem+json"
        assert ready.json()["failing"] == ["migrations"]
        assert "migrations pending" in ready.json()["detail"].lower()
        assert "`omnify migrate up`" in log.read_text()

        migrated = subprocess.run([*omnify_command(), "migrate", "up"], env=env, capture_output=True, text=True,
                                  timeout=300)
        assert migrated.returncode == 0, migrated.stderr[-2000:]
        wait_for(lambda: httpx.get(f"{origin}/readyz", timeout=5).status_code == 200, 30,
                 "/readyz 200 once migrated", proc=proc, log=log)
    finally:
        stop_up(proc)


def test_serve_refuses_to_start_without_its_master_keys(tmp_path: Path) -> None:
    env = clean_env(OMNIFY_DATA_DIR=str(tmp_path), OMNIFY_SECRETS_BACKEND="vault",
                    OMNIFY_VAULT_URL=f"http://{LOOPBACK}:{free_port()}", OMNIFY_VAULT_TOKEN="not-a-token")
    done = subprocess.run([*omnify_command(), "serve", "--port", str(free_port())], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert "cannot load the master keys from the 'vault' secrets backend" in done.stderr, done.stderr[-2000:]
