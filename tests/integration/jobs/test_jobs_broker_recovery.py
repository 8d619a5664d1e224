"""The embedded (SQLite) broker under concurrent writers: several processes publish to a
fresh broker file at once (the ``omnify up`` start: API, worker and beat opening it together,
which failed with "locking protocol" when every connection switched the journal mode), and
every message arrives; the file ends in WAL mode."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.servers import clean_env, stop_process

pytestmark = [pytest.mark.slow]

_PUBLISHER = """
import sys
from kombu import Connection
from omnify.jobs import transport
transport.register()
with Connection(sys.argv[1]) as conn:
    q = conn.SimpleQueue("recovery-q")
    for i in range(int(sys.argv[2])):
        q.put({"n": i}, retry=True)
    q.close()
"""


def test_concurrent_publishers_on_a_fresh_embedded_broker_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "broker.db"
    url = f"omnify-sqla+sqlite:///{db}"
    procs = [
        subprocess.Popen([sys.executable, "-c", _PUBLISHER, url, "40"], stderr=subprocess.PIPE, text=True)
        for _ in range(5)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 5, errors
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM kombu_message").fetchone()[0] == 200




def test_the_beat_embedded_in_a_worker_publishes_on_the_embedded_broker(tmp_path: Path) -> None:
    """``omnify worker --beat`` forks its beat after the worker's queue-depth poller opened the
    broker file. The poller's channel kept a SQLite connection checked out, the fork carried
    it into the beat, and every publish of the beat failed with "locking protocol" for as long
    as it lived (issue 14: under ``omnify up`` no scheduled task ever ran). The beat's entries
    go to a queue nobody consumes, so the rows it published can be counted."""
    env = clean_env()
    env.update(OMNIFY_DATA_DIR=str(tmp_path), OMNIFY_LOG_LEVEL="WARNING", OMNIFY_JOBS_QUEUE_DEPTH_INTERVAL="0.2",
               OMNIFY_JOBS_BEAT_SCHEDULE=json.dumps({"omnify.jobs.purge": {"every": 1, "queue": "beat-probe"}}))
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "omnify.cli", "worker", "--beat", "--pool=solo",
                                 "--metrics-port=0"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        published = 0
        while time.monotonic() < deadline and published < 3:
            time.sleep(1)
            try:
                with sqlite3.connect(tmp_path / "broker.db", timeout=5) as conn:
                    published = conn.execute(
                        "SELECT count(*) FROM kombu_message m JOIN kombu_queue q ON m.queue_id = q.id"
                        " WHERE q.name = 'beat-probe'").fetchone()[0]
            except sqlite3.OperationalError:  # tables not there yet
                continue
    finally:
        stop_process(proc)
    output = log.read_text(errors="replace")
    assert published >= 3, output[-3000:]
    assert "locking protocol" not in output



def test_a_queue_another_process_declared_meanwhile_is_used_not_a_failed_publish(tmp_path: Path) -> None:
    """The race behind a CI failure of the test above (1 of 5 publishers, IntegrityError): a
    publisher finds no queue row, another process inserts it, the publisher's own insert hits
    the unique name. Made deterministic: the other process's insert (a plain sqlite3
    connection) runs just before this publisher's INSERT reaches SQLite."""
    from kombu import Connection
    from sqlalchemy import event

    from omnify.jobs import transport

    transport.register()
    db = tmp_path / "broker.db"
    with Connection(f"omnify-sqla+sqlite:///{db}") as conn:
        channel: Any = conn.channel()  # omnify.jobs.transport.Channel (kombu is untyped)
        raced: list[str] = []

        @event.listens_for(channel._engine, "before_cursor_execute")
        def another_process_wins(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
            if statement.startswith("INSERT INTO kombu_queue") and not raced:
                raced.append(statement)
                with sqlite3.connect(db, timeout=10) as other:
                    other.execute("INSERT INTO kombu_queue (name) VALUES (?)", ("race-q",))

        queue = conn.SimpleQueue("race-q", channel=channel)
        queue.put({"n": 1})
        queue.close()
    assert raced, "the race was not staged"
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT count(*) FROM kombu_queue WHERE name = 'race-q'").fetchone()[0] == 1
        assert check.execute("SELECT count(*) FROM kombu_message").fetchone()[0] == 1
