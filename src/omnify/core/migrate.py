"""Run Alembic from code (CLI, `omnify up`, tests) without an alembic.ini on disk."""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine as create_sync_engine

from omnify.settings import Settings


def alembic_config(settings: Settings, url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "omnify:migrations")
    cfg.set_main_option("sqlalchemy.url", (url or settings.resolved_migration_database_url).replace("%", "%%"))
    cfg.attributes["app_role"] = settings.db_app_role
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return cfg


def _in_thread(fn: Any, *args: Any) -> None:
    """env.py calls asyncio.run(); run it off any loop the caller already has running."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)
        finally:
            # The async engine leaves greenlets behind in this thread. Collected after the
            # thread is gone, greenlet hands their clean-up to the main thread, which was seen
            # twice to spin there for good (under coverage's greenlet tracing): collect them
            # here, in the thread that owns them.
            gc.collect()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn(*args)
        return
    t = threading.Thread(target=target)
    t.start()
    t.join()
    if errors:
        raise errors[0]


def upgrade(settings: Settings, revision: str = "heads", url: str | None = None) -> None:
    _in_thread(command.upgrade, alembic_config(settings, url), revision)


def downgrade(settings: Settings, revision: str = "-1", url: str | None = None) -> None:
    _in_thread(command.downgrade, alembic_config(settings, url), revision)


def sync_url(url: str) -> str:
    return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


def current(settings: Settings, url: str | None = None) -> str | None:
    engine = create_sync_engine(sync_url(url or settings.resolved_migration_database_url))
    try:
        with engine.connect() as conn:
            heads = MigrationContext.configure(conn).get_current_heads()
            return ",".join(sorted(heads)) or None
    finally:
        engine.dispose()
