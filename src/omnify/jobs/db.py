"""A synchronous SQLAlchemy engine for worker processes.

Celery workers are synchronous: a task that needs the database (the dead-letter store,
the idempotency claims, a domain effect) uses a plain ``Session`` rather than driving an
event loop per task. The URL is the application's own (``OMNIFY_DATABASE_URL``) with the
async driver swapped for its synchronous sibling, so the worker and the API always see
the same database. The lead may move this module to ``omnify.core`` later.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from omnify.settings import Settings, get_settings

#: async driver -> synchronous driver used by workers and the CLI.
_SYNC_DRIVERS = {
    "sqlite+aiosqlite": "sqlite+pysqlite",
    "sqlite": "sqlite+pysqlite",
    "postgresql+asyncpg": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg_async": "postgresql+psycopg",
}


def sync_database_url(url: str) -> str:
    """Map an application (async) database URL to one a synchronous engine can open."""
    parsed = make_url(url)
    driver = _SYNC_DRIVERS.get(parsed.drivername, parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def create_sync_engine(settings: Settings, url: str | None = None) -> Engine:
    """Build an engine with the same SQLite pragmas and pool limits as the async one."""
    target = sync_database_url(url or settings.resolved_database_url)
    kwargs: dict[str, Any] = {"echo": settings.db_echo}
    is_sqlite = target.startswith("sqlite")
    if is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        # A worker process runs one task at a time: a small pool is plenty, and many
        # worker processes times a large pool would exhaust PostgreSQL's connections.
        kwargs.update(
            pool_size=2,
            max_overflow=2,
            pool_timeout=settings.db_pool_timeout,
            pool_recycle=settings.db_pool_recycle,
            pool_pre_ping=settings.db_pool_pre_ping,
        )
    engine = create_engine(target, **kwargs)
    if is_sqlite:

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return engine


class _EngineCache:
    """One engine per process and URL, rebuilt after ``fork``.

    Prefork pool children inherit the parent's pooled connections; sharing a socket or
    SQLite handle across processes corrupts both, so a child drops them (without closing
    the parent's) the first time it runs.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: dict[str, tuple[Engine, sessionmaker[Session]]] = {}
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        for engine, _ in self._engines.values():
            engine.dispose(close=False)

    def get(self, settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
        key = sync_database_url(settings.resolved_database_url)
        with self._lock:
            found = self._engines.get(key)
            if found is None:
                engine = create_sync_engine(settings)
                found = (engine, sessionmaker(engine, expire_on_commit=False, autoflush=False))
                self._engines[key] = found
            return found

    def dispose_all(self) -> None:
        with self._lock:
            for engine, _ in self._engines.values():
                engine.dispose()
            self._engines.clear()


_cache = _EngineCache()


def get_sync_engine(settings: Settings | None = None) -> Engine:
    return _cache.get(settings or get_settings())[0]


@contextmanager
def sync_session(settings: Settings | None = None) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error."""
    factory = _cache.get(settings or get_settings())[1]
    with factory() as session, session.begin():
        yield session


def dispose_sync_engines() -> None:
    _cache.dispose_all()
