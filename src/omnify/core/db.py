"""Engine, sessions, the declarative base and the tenant context.

Tenant isolation has two locks. The first is in the repositories: every query of a
tenant table takes the organization as a required argument. The second lives in
PostgreSQL: each tenant table has a row-level-security policy keyed on the
transaction-local setting ``app.org_id``. :func:`_apply_tenant_settings` sets it at the
start of *every* transaction of a session whose ``info`` carries a tenant, so a service
that commits half-way through a request keeps its scope.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, MetaData, String, TypeDecorator, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, SessionTransaction, declared_attr, mapped_column

from omnify.core.logging import get_logger
from omnify.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Session.info keys carried into PostgreSQL as transaction-local settings.
TENANT_SETTING_KEYS = ("org_id", "user_id", "api_key_hash", "invitation_hash")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on both databases (SQLite forgets the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType, list[Any]: JSONType}


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TenantMixin:
    """A row owned by one organization. RLS policies are created for these tables."""

    @declared_attr
    def org_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)


def short_str(length: int = 255) -> String:
    return String(length)


# ----------------------------------------------------------------------------------- engine
def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    url = url or settings.resolved_database_url
    kwargs: dict[str, Any] = {"echo": settings.db_echo, "future": True}
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout,
            pool_recycle=settings.db_pool_recycle,
            pool_pre_ping=settings.db_pool_pre_ping,
        )
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()


class RetryingSession(AsyncSession):
    """An AsyncSession that survives a dropped pooled connection.

    The pool does not ping a connection on checkout (that would cost a round trip per
    request); connections are recycled after ``db_pool_recycle`` seconds instead, and when
    the *first* statement of a transaction finds its connection dead (the server restarted,
    a proxy cut it), SQLAlchemy invalidates the pool and this session runs the statement
    once more on a fresh connection. Only the first statement is retried: nothing of the
    transaction can have happened yet, so the retry cannot double an effect.
    """

    async def _first_retried(self, call: Callable[[], Awaitable[Any]]) -> Any:
        fresh = not self.in_transaction()
        try:
            return await call()
        except DBAPIError as exc:
            if not (fresh and exc.connection_invalidated):
                raise
            await self.rollback()
            return await call()

    async def execute(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        return await self._first_retried(lambda: AsyncSession.execute(self, statement, params, **kw))

    async def scalar(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        return await self._first_retried(lambda: AsyncSession.scalar(self, statement, params, **kw))

    async def connection(self, *args: Any, **kw: Any) -> Any:
        return await self._first_retried(lambda: AsyncSession.connection(self, *args, **kw))


async def close_session(session: AsyncSession) -> None:
    """Close a request's session; a connection whose rollback fails is invalidated, not raised.

    The close runs after the response has been sent (FastAPI exits ``yield`` dependencies
    then). When PostgreSQL went away mid-query, the rollback of the half-used connection can
    fail with an error SQLAlchemy does not recognise as a disconnect (asyncpg's "cannot switch
    to state ...; another operation is in progress"). Raised there, it reached uvicorn, which
    closed the client's keep-alive connection. Nothing uncommitted can be lost by dropping the
    connection instead: the server rolls back a transaction whose connection is gone.
    """
    try:
        await session.close()
    except DBAPIError as exc:
        get_logger(__name__).warning("db.session_close_failed", error_type=type(exc.orig or exc).__name__)
        await session.invalidate()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=RetryingSession, expire_on_commit=False, autoflush=False)


# ----------------------------------------------------------------------------- tenant context
def set_tenant(session: AsyncSession, org_id: uuid.UUID | None, **extra: str | None) -> None:
    """Bind the session to one organization (and optional auth facts for RLS look-ups).

    Takes effect at the next transaction start; call it before the first query, or
    :func:`apply_tenant_now` to push it into the transaction already open.
    """
    session.info["org_id"] = str(org_id) if org_id else None
    for key, value in extra.items():
        if key not in TENANT_SETTING_KEYS:
            raise ValueError(f"unknown tenant setting {key!r}")
        session.info[key] = value


async def apply_tenant_now(session: AsyncSession) -> None:
    """Push the session's tenant settings into the already-open transaction."""
    if session.in_transaction():
        await session.run_sync(lambda s: _write_settings(s, s.connection(), clear=True))


def _write_settings(session: Session, connection: Connection, *, clear: bool) -> None:
    """All tenant settings in **one** ``SELECT set_config(...), ...`` statement (one round trip).

    At the start of a transaction only the non-empty ones are written: transaction-local
    settings start out empty anyway. Mid-transaction (``clear``) every key is written, so a
    key dropped from the session since the transaction began is emptied too. A transaction
    that already carries exactly these values is left alone.
    """
    if connection.dialect.name != "postgresql":
        return
    values = tuple(session.info.get(k) or "" for k in TENANT_SETTING_KEYS)
    transaction = session.get_transaction()
    applied = session.info.get(_APPLIED_KEY)
    if applied is not None and applied[0]() is transaction and applied[1] == values:
        return
    keys = [k for k, v in zip(TENANT_SETTING_KEYS, values, strict=True) if clear or v]
    if keys:
        sql = "SELECT " + ", ".join(f"set_config('app.{k}', :{k}, true)" for k in keys)
        connection.execute(text(sql), {k: session.info.get(k) or "" for k in keys})
    if transaction is not None:
        session.info[_APPLIED_KEY] = (weakref.ref(transaction), values)


#: Session.info key: (weak ref to the transaction, the tenant values written into it).
_APPLIED_KEY = "_tenant_applied"


@event.listens_for(Session, "after_begin")
def _apply_tenant_settings(session: Session, _tx: SessionTransaction, connection: Connection) -> None:
    if any(session.info.get(k) for k in TENANT_SETTING_KEYS):
        _write_settings(session, connection, clear=False)


class Database:
    """Owns the engine and session factory of one process."""

    def __init__(self, settings: Settings, url: str | None = None) -> None:
        self.settings = settings
        self.engine = create_engine(settings, url)
        self.sessionmaker = create_sessionmaker(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


async def bind_tenant(session: AsyncSession, org_id: uuid.UUID | None, **extra: str | None) -> None:
    """Bind the tenant and apply it to the open transaction, if any, at once."""
    set_tenant(session, org_id, **extra)
    await apply_tenant_now(session)


async def open_sweep(session: AsyncSession, *tables: str) -> None:
    """Let this transaction read ``tables`` across organizations (PostgreSQL RLS).

    A sweep (the beat jobs that find due or interrupted rows of every tenant) names the
    tables whose policies carry the ``app.sweep`` read clause; on SQLite there is no RLS.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT set_config('app.sweep', :t, true)"), {"t": ",".join(tables)})


async def insert_once(session: AsyncSession, model: Any, values: dict[str, Any], keys: list[str]) -> bool:
    """INSERT ... ON CONFLICT (keys) DO NOTHING on either database; ``True`` if a row was
    inserted. The unique constraint decides, so concurrent callers cannot both win."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(model).values(**values).on_conflict_do_nothing(index_elements=keys)
    result = await session.execute(stmt)
    return bool(getattr(result, "rowcount", 0))
