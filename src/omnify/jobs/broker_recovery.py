"""Recovery from broker errors for the producer side (API, beat) and the embedded broker.

Why this exists: on the embedded (SQLite) broker, the first publish of ``omnify up``'s beat
could fail with ``sqlite3.OperationalError: locking protocol`` (every new connection asked
for ``PRAGMA journal_mode=WAL`` while other processes were writing), and from then on every
publish failed with ``RecoverableConnectionError: channel disconnected``: beat's cached
producer stayed bound to the closed channel for as long as the process lived.

Here:

* :func:`ensure_wal` puts a SQLite broker file into WAL mode once per engine, retried with
  ``tenacity``'s exponential backoff (WAL is persistent in the file; connections only set
  their busy timeout afterwards, which needs no lock);
* :func:`note_broker_error` is the one concise log line (no traceback) and the Prometheus
  counter ``omnify_jobs_broker_errors_total{role}`` for every broker error;
* the beat scheduler (:mod:`omnify.jobs.schedule`) drops its producer and connection after
  a failed publish so the next tick reconnects through kombu's own retry policy
  (:data:`PUBLISH_RETRY_POLICY`).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy import Engine, MetaData
from sqlalchemy.exc import OperationalError
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

log = structlog.get_logger(__name__)

BROKER_ERRORS = Counter(
    "omnify_jobs_broker_errors_total",
    "Broker errors a producer or consumer recovered from (reconnecting with backoff).",
    ["role"],
)

#: kombu's retry policy for publishing (``Connection.ensure``): backoff 0.2 s, 0.4 s ... 2 s.
PUBLISH_RETRY_POLICY: dict[str, Any] = {
    "max_retries": 10,
    "interval_start": 0.2,
    "interval_step": 0.4,
    "interval_max": 2.0,
}

#: Milliseconds a SQLite connection waits on a lock held by another process before erroring.
SQLITE_BUSY_TIMEOUT_MS = 30000


def note_broker_error(role: str, exc: BaseException) -> None:
    """One log line and one counter increment per broker error (no traceback flood)."""
    BROKER_ERRORS.labels(role=role).inc()
    log.warning("jobs.broker_error", role=role, error=f"{type(exc).__name__}: {exc}"[:300], recovering=True)


@retry(
    retry=retry_if_exception_type((sqlite3.OperationalError, OperationalError)),
    wait=wait_exponential_jitter(initial=0.05, max=2.0),
    stop=stop_after_delay(60),
    reraise=True,
)
def ensure_wal(engine: Engine, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
    """Put the SQLite file behind ``engine`` in WAL mode (persistent: done once, retried)."""
    raw: Any = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            cur.execute("PRAGMA journal_mode=WAL")
        cur.close()
    finally:
        raw.close()


@retry(
    retry=retry_if_exception_type(OperationalError),
    wait=wait_exponential_jitter(initial=0.05, max=1.0),
    stop=stop_after_delay(30),
    reraise=True,
)
def create_tables(engine: Engine, metadata: MetaData) -> None:
    """``create_all`` that another process may be running at the same moment (retried)."""
    metadata.create_all(engine)


def sqlite_connect_pragmas(dbapi_conn: Any, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
    """Per-connection settings that take no lock (the journal mode is set once by ensure_wal)."""
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
