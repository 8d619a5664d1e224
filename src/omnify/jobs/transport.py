"""kombu's SQLAlchemy transport, made safe for ``acks_late`` work: leases and real acks.

The stock transport (``sqla+...``) marks a row invisible when it hands the message to a
consumer and never looks at it again: the "unacknowledged" state lives only in the
consumer's memory. A worker killed with SIGKILL therefore loses every message it held,
and acknowledged rows pile up forever. That breaks the promise of the embedded default
(``omnify up`` with nothing else installed) that a crashed task runs again.

This subclass keeps the table layout and adds what Redis' transport does with its
visibility timeout, plus lease renewal:

* delivering a message stamps it with a lease (the ``timestamp`` column, which the
  stock transport already touches on delivery);
* a message whose lease expired is deliverable again, to any consumer;
* while a consumer lives, a background thread renews the leases of the messages it
  holds, so a task longer than the lease is never handed out twice;
* acknowledging (or rejecting without requeue) deletes the row; requeueing makes it
  visible again in place instead of inserting a copy.

Selected by :func:`omnify.jobs.celery_app.broker_transport_url`, which rewrites
``sqla+``/``sqlalchemy+`` broker URLs to the ``omnify-sqla+`` scheme registered here.
"""

from __future__ import annotations

import datetime
import os
import threading
from json import dumps, loads
from pathlib import Path
from queue import Empty
from typing import Any

import structlog
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqla
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import Engine, create_engine, delete, event, or_, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import sessionmaker

from omnify.jobs import broker_recovery as recovery

log = structlog.get_logger(__name__)

SCHEME = "omnify-sqla"

#: Transport options that configure this transport rather than ``create_engine``.
_OWN_OPTIONS = frozenset(
    {
        "queue_tablename",
        "message_tablename",
        "callback",
        "errback",
        "max_retries",
        "interval_start",
        "interval_step",
        "interval_max",
        "retry_errors",
        "polling_interval",
        "visibility_timeout",
        "busy_timeout_ms",
    }
)

DEFAULT_LEASE_SECONDS = 60.0


def _now() -> datetime.datetime:
    # The stock model stores naive local time (``datetime.now``); stay consistent.
    return datetime.datetime.now()


class Channel(kombu_sqla.Channel):  # type: ignore[misc]
    """A channel whose deliveries are leased, renewed, and deleted on ack."""

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        options = connection.client.transport_options
        self.lease_seconds = float(options.get("visibility_timeout", DEFAULT_LEASE_SECONDS))
        self._leases: dict[str, int] = {}
        self._leases_lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._renewer_stop = threading.Event()
        super().__init__(connection, **kwargs)

    # ----------------------------------------------------------------- engine
    def _engine_from_config(self) -> Engine:
        conninfo: Any = self.connection.client
        engine_options = {k: v for k, v in conninfo.transport_options.items() if k not in _OWN_OPTIONS}
        url: str = str(conninfo.hostname)
        busy_ms = int(conninfo.transport_options.get("busy_timeout_ms", recovery.SQLITE_BUSY_TIMEOUT_MS))
        if url.startswith("sqlite"):
            engine_options.setdefault("connect_args", {"timeout": busy_ms / 1000})
            database = make_url(url).database
            if database and database != ":memory:":
                # The embedded default lives under OMNIFY_DATA_DIR, which may not exist yet.
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **engine_options)
        if url.startswith("sqlite"):
            _FORK_GATE.watch(engine)

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                # The busy timeout turns brief write contention into a wait. The journal
                # mode is not asked for here: switching it takes a lock, and several
                # processes doing so at once failed with "locking protocol" (issue 14).
                recovery.sqlite_connect_pragmas(dbapi_conn, busy_ms)

            # WAL lets the API publish while a worker holds a read; set once, retried.
            recovery.ensure_wal(engine, busy_ms)

        return engine

    def _open(self) -> tuple[Engine, Any]:
        """kombu's engine cache, with table creation that survives other processes racing it.

        Several processes opening a fresh broker file (``omnify up``: API, worker, beat) all
        run ``create_all``; the loser got "table ... already exists". Retried (tenacity),
        the second look finds the tables.
        """
        conninfo: Any = self.connection.client
        cached: tuple[Engine, Any] | None = self._engines.get(conninfo.hostname)
        if cached is not None:
            return cached
        with kombu_sqla._MUTEX:  # type: ignore[attr-defined]
            if conninfo.hostname not in self._engines:
                engine = self._engine_from_config()
                recovery.create_tables(engine, kombu_sqla.metadata)  # type: ignore[attr-defined]
                self._engines[conninfo.hostname] = engine, sessionmaker(bind=engine)
        result: tuple[Engine, Any] = self._engines[conninfo.hostname]
        return result

    @property
    def _engine(self) -> Engine:
        engine: Engine = self._open()[0]
        return engine

    # ---------------------------------------------------------------- session
    def _reset_session(self) -> None:
        """Forget a session an error left unusable; the next call opens a fresh one."""
        session = self._session
        self._session = None
        if session is not None:
            try:
                session.rollback()
                session.close()
            except Exception:  # the connection is already gone: nothing to release
                log.debug("jobs.broker_session_close_failed")

    def _get_or_create(self, queue: str) -> Any:
        """kombu's, safe across processes: its lock is a thread lock, so two processes
        declaring the same queue on a fresh broker both inserted it and the loser's publish
        failed on the unique name (IntegrityError; seen once in CI, 1 of 5 publishers).
        The loser now reads the winner's row."""
        try:
            return super()._get_or_create(queue)  # type: ignore[misc]  # kombu is untyped
        except IntegrityError:
            self.session.rollback()
            found = self.session.query(self.queue_cls).filter(self.queue_cls.name == queue).first()
            if found is None:
                raise
            return found

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        try:
            super()._put(queue, payload, **kwargs)
        except OperationalError:
            self._reset_session()
            raise

    def _size(self, queue: str) -> int:
        """Count ready messages, then end the read transaction.

        The stock version leaves the session's transaction open, so the channel kept a
        pooled connection checked out (and a WAL read snapshot) until it was used again;
        the worker's queue-depth poller opened a channel every 15 s and leaked one such
        connection each time, and a connection held open across ``fork()`` broke the child.
        """
        try:
            size: int = super()._size(queue)
            self.session.commit()
            return size
        except OperationalError:
            self._reset_session()
            raise

    # ---------------------------------------------------------------- consume
    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        try:
            return self._get_leased(queue)
        except OperationalError as exc:
            # One line and a counter; the consumer reconnects (kombu lists this error as a
            # connection error) with Celery's own backoff.
            recovery.note_broker_error("consumer", exc)
            self._reset_session()
            raise

    def _get_leased(self, queue: str) -> dict[str, Any]:
        obj = self._get_or_create(queue)  # type: ignore[attr-defined]
        session: Any = self.session
        if session.bind.name == "sqlite":
            session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        model = self.message_cls
        try:
            now = _now()
            expired = now - datetime.timedelta(seconds=self.lease_seconds)
            msg = (
                session.query(model)
                .with_for_update(skip_locked=True)
                .filter(model.queue_id == obj.id)
                .filter(or_(model.visible != False, model.sent_at < expired))  # noqa: E712
                .order_by(model.sent_at, model.id)
                .limit(1)
                .first()
            )
            if msg is None:
                raise Empty()
            redelivered = not msg.visible
            msg.visible = False
            msg.sent_at = now
            payload: dict[str, Any] = loads(bytes_to_str(msg.payload))
            row_id = int(msg.id)
        finally:
            session.commit()
        if redelivered:
            log.warning("jobs.lease_expired_redelivery", queue=queue, message_id=row_id)
            payload["redelivered"] = True
            payload["properties"].setdefault("delivery_info", {})["redelivered"] = True
        with self._leases_lock:
            self._leases[payload["properties"]["delivery_tag"]] = row_id
        self._ensure_renewer()
        return payload

    def _pop_lease(self, delivery_tag: str) -> int | None:
        with self._leases_lock:
            return self._leases.pop(delivery_tag, None)

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple=multiple)
        row_id = self._pop_lease(delivery_tag)
        if row_id is not None:
            with self._engine.begin() as conn:
                conn.execute(delete(self.message_cls.__table__).where(self.message_cls.id == row_id))

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        # With requeue=True the base class calls _restore_at_beginning(), below.
        super().basic_reject(delivery_tag, requeue=requeue)
        if not requeue:
            row_id = self._pop_lease(delivery_tag)
            if row_id is not None:
                with self._engine.begin() as conn:
                    conn.execute(delete(self.message_cls.__table__).where(self.message_cls.id == row_id))

    def _restore(self, message: Any) -> None:
        """Make a held message visible again in place (requeue, warm shutdown)."""
        row_id = self._pop_lease(message.delivery_tag)
        if row_id is None:
            super()._restore(message)
            return
        payload = message.serializable()
        payload["redelivered"] = True
        table = self.message_cls.__table__
        with self._engine.begin() as conn:
            conn.execute(
                update(table)
                .where(self.message_cls.id == row_id)
                .values(visible=True, payload=dumps(payload), timestamp=None)
            )

    def _restore_at_beginning(self, message: Any) -> None:
        self._restore(message)

    # ---------------------------------------------------------------- leases
    def _ensure_renewer(self) -> None:
        if self._renewer is not None and self._renewer.is_alive():
            return
        self._renewer_stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="omnify-sqla-lease", daemon=True)
        self._renewer.start()

    def renew_leases(self) -> int:
        """Push the lease of every held message forward; returns how many were renewed."""
        with self._leases_lock:
            ids = list(self._leases.values())
        if not ids:
            return 0
        table = self.message_cls.__table__
        with self._engine.begin() as conn:
            conn.execute(
                update(table)
                .where(self.message_cls.id.in_(ids), self.message_cls.visible == False)  # noqa: E712
                .values(timestamp=_now())
            )
        return len(ids)

    def _renew_loop(self) -> None:
        interval = max(self.lease_seconds / 3.0, 0.5)
        while not self._renewer_stop.wait(interval):
            try:
                self.renew_leases()
            except Exception as exc:  # a locked or briefly absent database: try again
                log.warning("jobs.lease_renewal_failed", error=str(exc))

    def close(self) -> None:
        self._renewer_stop.set()
        super().close()
        # kombu's channel never closes its session: its connection stayed checked out.
        self._reset_session()


class Transport(kombu_sqla.Transport):  # type: ignore[misc]
    Channel = Channel


def _sqlite_engines() -> list[Engine]:
    """The SQLite engines in kombu's process-wide cache (a snapshot: it may grow meanwhile)."""
    return [engine for engine, _ in list(kombu_sqla.Channel._engines.values()) if engine.dialect.name == "sqlite"]


class _ForkGate:
    """Holds ``fork()`` until no SQLite broker connection of this process is in use.

    Why: SQLite keeps the locks a process holds in per-process memory (the WAL index's lock
    bits of each open connection). A child forked while another thread of the parent is
    inside a broker transaction (the consumer's ``BEGIN IMMEDIATE`` fetch, a lease renewal,
    an ack) inherits that bookkeeping: its own writes see a write lock held "by this process"
    that nobody in it will ever release, and every publish waits out the busy timeout (30 s)
    and fails, for as long as the child lives. Prefork forks replacement children from its
    supervisor thread while the main thread consumes, so a pool child replaced after a crash
    or at ``worker_max_tasks_per_child`` could be born unable to publish (a webhook sweep
    hung in CI exactly so; ``tests/unit/jobs/test_transport_fork.py`` reproduces it).

    Checkouts and checkins of the broker's pooled connections are counted; the before-fork
    hook stops new checkouts and waits, bounded, for the count to reach zero, then the idle
    connections are closed; the parent resumes after the fork, the child starts afresh.
    """

    #: How long a fork waits for in-flight broker statements (each lasts milliseconds;
    #: past this something is stuck, and the fork goes ahead rather than hang the pool).
    GRACE_SECONDS = 5.0

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._busy = 0
        self._forking = False

    def watch(self, engine: Engine) -> None:
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "checkin", self._checkin)

    def _checkout(self, *_: Any) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._forking, timeout=self.GRACE_SECONDS)
            self._busy += 1

    def _checkin(self, *_: Any) -> None:
        with self._cond:
            self._busy = max(0, self._busy - 1)
            self._cond.notify_all()

    @property
    def busy(self) -> int:
        return self._busy

    def before_fork(self) -> None:
        with self._cond:
            self._forking = True
            if not self._cond.wait_for(lambda: self._busy == 0, timeout=self.GRACE_SECONDS):
                log.warning("jobs.broker_fork_while_busy", connections_in_use=self._busy)
        for engine in _sqlite_engines():
            # Idle connections closed too: the next statement in either process opens a
            # fresh one (a connection must never cross fork(); issue 14's beat).
            engine.dispose()

    def after_in_parent(self) -> None:
        with self._cond:
            self._forking = False
            self._cond.notify_all()

    def after_in_child(self) -> None:
        """Drop (without closing) whatever the parent still held; start counting afresh."""
        self._reset()
        for engine in _sqlite_engines():
            engine.dispose(close=False)


_FORK_GATE = _ForkGate()

# Registered at import, i.e. before omnify.jobs.metrics registers its fork guard: "before"
# hooks run in reverse order, so the guard is taken first (no queue-depth poll is starting)
# and this gate then waits for the statements in flight.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_FORK_GATE.before_fork, after_in_parent=_FORK_GATE.after_in_parent,
                        after_in_child=_FORK_GATE.after_in_child)


def register() -> None:
    """Make ``omnify-sqla+<sqlalchemy url>`` resolve to this transport, and ``redis://`` to
    the hardened Redis transport (:mod:`omnify.jobs.redis_transport`)."""
    from omnify.jobs import redis_transport

    TRANSPORT_ALIASES.setdefault(SCHEME, "omnify.jobs.transport:Transport")
    redis_transport.register()
