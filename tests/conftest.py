"""Shared fixtures: the same suite runs on SQLite or PostgreSQL.

``OMNIFY_DATABASE_URL`` picks the server. On PostgreSQL each test session creates a fresh
database, migrates it as the owner, and connects the app as ``omnify_app`` (no
BYPASSRLS), exactly like production, so row-level security is exercised by every test.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import text
from sqlalchemy.engine import make_url

from omnify.app import create_app
from omnify.core import migrate
from omnify.core import security as _security
from omnify.core.db import Database
from omnify.settings import Settings

# Test speed, same algorithm and code paths: argon2id at its smallest cost in the test process
# (production's argon2-cffi defaults cost ~0.5 s of CPU per hash, and the suite registers and logs
# in thousands of users). Apps the tests start as subprocesses keep the production parameters;
# test_production_password_hasher_parameters checks them.
PRODUCTION_PASSWORD_HASHER = _security._hasher
_security._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
_security._DUMMY_HASH = _security._hasher.hash("omnify-dummy-password-for-timing")

APP_ROLE = "omnify_app"
TEST_SECRET = "test-secret-key-0123456789abcdef-0123456789"
#: The scrape token of test apps: /metrics on the API port answers only with it.
METRICS_TOKEN = "test-metrics-scrape-token"
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def _server_url() -> str | None:
    url = os.environ.get("OMNIFY_DATABASE_URL")
    return url if url and url.startswith("postgresql") else None


def is_postgres() -> bool:
    return _server_url() is not None


def redis_or_skip(url: str) -> None:
    """Skip (fail in CI) when the Redis at ``url`` does not answer."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"Redis not reachable at {url}")


requires_postgres = pytest.mark.skipif(not is_postgres(), reason="PostgreSQL-only behaviour (RLS, triggers)")


@dataclass
class DatabaseUrls:
    owner: str
    app: str
    dialect: str
    cleanup: list[Any] = field(default_factory=list)


def create_pg_database(server_url: str, prefix: str = "omnify_test") -> tuple[str, str]:
    """Create a fresh database and the app role; return (owner_url, app_url)."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    base = make_url(server_url)
    admin = create_sync_engine(migrate.sync_url(base.set(database="postgres").render_as_string(False)),
                               isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE}).scalar()
        if not exists:
            conn.execute(text(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_ROLE}' NOSUPERUSER NOBYPASSRLS"))
    admin.dispose()
    owner = base.set(database=name).render_as_string(False)
    app = base.set(database=name, username=APP_ROLE, password=APP_ROLE).render_as_string(False)
    return owner, app


def drop_pg_database(server_url: str, owner_url: str) -> None:
    name = make_url(owner_url).database
    base = make_url(server_url)
    admin = create_sync_engine(migrate.sync_url(base.set(database="postgres").render_as_string(False)),
                               isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def make_settings(tmp: Path, urls: DatabaseUrls, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        env="test",
        data_dir=tmp,
        database_url=urls.app,
        migration_database_url=urls.owner,
        db_app_role=APP_ROLE,
        secret_key=TEST_SECRET,
        rate_limit_auth="100000/minute",
        rate_limit_user="100000/minute",
        rate_limit_api_key="100000/minute",
        rate_limit_org="100000/minute",
        db_pool_size=5,
        db_max_overflow=5,
        log_level="WARNING",
        metrics_token=METRICS_TOKEN,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def db_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseUrls]:
    server = _server_url()
    if server:
        owner, app = create_pg_database(server)
        yield DatabaseUrls(owner=owner, app=app, dialect="postgresql")
        drop_pg_database(server, owner)
    else:
        path = tmp_path_factory.mktemp("db") / "omnify.db"
        url = f"sqlite+aiosqlite:///{path}"
        yield DatabaseUrls(owner=url, app=url, dialect="sqlite")


@pytest.fixture(scope="session")
def settings(db_urls: DatabaseUrls, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    s = make_settings(tmp_path_factory.mktemp("data"), db_urls)
    migrate.upgrade(s)
    return s


@pytest.fixture(scope="session")
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = Database(settings)
    yield db
    await db.dispose()


@pytest.fixture(scope="session")
async def owner_database(settings: Settings) -> AsyncIterator[Database]:
    """Connected as the migration owner: bypasses RLS, for assertions about raw rows."""
    db = Database(settings, settings.resolved_migration_database_url)
    yield db
    await db.dispose()


@pytest.fixture(scope="session")
def app(settings: Settings, database: Database) -> Any:
    return create_app(settings, database)


@pytest.fixture(scope="session")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


from tests.factories import Account, register  # noqa: E402


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> Account:
    return await register(client)


@pytest.fixture
async def outsider(client: httpx.AsyncClient) -> Account:
    return await register(client)
