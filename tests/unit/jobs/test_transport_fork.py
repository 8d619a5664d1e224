"""A process forked while another thread is inside an embedded-broker transaction.

SQLite keeps the locks a process holds in that process's memory; a child forked mid-
transaction inherited the parent's write lock on the WAL index and could never write to the
broker (each publish waited out the busy timeout and failed). Prefork forks replacement pool
children from a supervisor thread while the main thread consumes, so this hit a pool child
replaced after a crash: the webhook sweep it ran hung (tests/integration/webhooks/
test_webhook_worker_crash.py, in CI). The transport's fork gate makes the fork wait for the
statement in flight.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import pytest
from kombu import Connection

from omnify.jobs import transport
from omnify.jobs.transport import register as register_transport

#: The child's busy timeout: a poisoned child fails after this long, a healthy one writes at once.
BUSY_MS = 2000


def _connection(url: str) -> Connection:
    return Connection(url, transport_options={"busy_timeout_ms": BUSY_MS, "polling_interval": 0.05})


def _hold_a_write(url: str, held: threading.Event, seconds: float) -> threading.Thread:
    """Another thread of this process inside a broker write transaction for ``seconds``,
    on the transport's own (watched) engine, as the consumer's leased fetch is."""

    def run() -> None:
        with _connection(url) as conn:
            engine = conn.default_channel._engine
            with engine.connect() as c:
                c.exec_driver_sql("BEGIN IMMEDIATE")
                c.exec_driver_sql("INSERT INTO kombu_queue (name) VALUES ('held-by-parent')")
                held.set()
                time.sleep(seconds)
                c.commit()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert held.wait(10)
    return thread


def _fork_and_publish(url: str, queue: str) -> tuple[int, float]:
    """Fork; the child publishes one message. Returns (child exit code, seconds the fork took)."""
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            with _connection(url) as conn:
                t0 = time.monotonic()
                conn.SimpleQueue(queue).put({"from": "child"})
                code = 0 if time.monotonic() - t0 < BUSY_MS / 1000 / 2 else 2
        finally:
            os._exit(code)
    forked_in = time.monotonic() - started
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), forked_in
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the child hung publishing to the broker")


@pytest.fixture
def broker_url(tmp_path: Path) -> str:
    register_transport()
    url = f"omnify-sqla+sqlite:///{tmp_path / 'broker.db'}"
    with _connection(url) as conn:
        conn.SimpleQueue("warm-up").put({"n": 0})  # tables and WAL in place
    return url


def test_a_child_forked_mid_transaction_can_publish(broker_url: str) -> None:
    queue = f"unit-{uuid.uuid4().hex[:6]}"
    held = threading.Event()
    holder = _hold_a_write(broker_url, held, seconds=0.3)
    code, forked_in = _fork_and_publish(broker_url, queue)
    holder.join(5)
    # Exit code 1 or 2: the child could not publish, or only after waiting on a lock that
    # nobody in it held (it failed so before the gate: "database is locked" after BUSY_MS).
    assert code == 0, code
    assert forked_in >= 0.2  # the fork waited for the transaction in flight
    with _connection(broker_url) as conn:
        got = conn.SimpleQueue(queue).get(timeout=5)
        assert got.payload == {"from": "child"}
        got.ack()


def test_a_stuck_transaction_delays_the_fork_only_by_the_grace(
    broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport._FORK_GATE, "GRACE_SECONDS", 0.3)
    held = threading.Event()
    holder = _hold_a_write(broker_url, held, seconds=2.0)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    forked_in = time.monotonic() - started
    os.waitpid(pid, 0)
    holder.join(5)
    assert 0.25 <= forked_in < 1.5, forked_in
    assert transport._FORK_GATE.busy == 0  # every checkout was checked in again
