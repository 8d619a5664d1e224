"""Upgrade -> downgrade to base -> upgrade on a scratch database; models match migrations."""

from __future__ import annotations

import os
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from omnify.core import migrate
from omnify.models import Base, tenant_tables
from tests.conftest import DatabaseUrls, create_pg_database, drop_pg_database, make_settings


def _scratch(tmp_path: Path, db_urls: DatabaseUrls) -> tuple[DatabaseUrls, str | None]:
    if db_urls.dialect == "postgresql":
        server = os.environ["OMNIFY_DATABASE_URL"]
        owner, app = create_pg_database(server, prefix="omnify_migr")
        return DatabaseUrls(owner=owner, app=app, dialect="postgresql"), server
    url = f"sqlite+aiosqlite:///{tmp_path / 'scratch.db'}"
    return DatabaseUrls(owner=url, app=url, dialect="sqlite"), None


def test_upgrade_downgrade_upgrade_and_no_drift(tmp_path: Path, db_urls: DatabaseUrls) -> None:
    urls, server = _scratch(tmp_path, db_urls)
    settings = make_settings(tmp_path, urls)
    engine = create_engine(migrate.sync_url(urls.owner))
    try:
        migrate.upgrade(settings)
        assert migrate.current(settings) is not None
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables

        migrate.downgrade(settings, "base")
        assert migrate.current(settings) is None
        assert set(inspect(engine).get_table_names()) - {"alembic_version"} == set()

        migrate.upgrade(settings)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
        assert diff == [], f"models and migrations differ: {diff}"

        # every foreign key column is indexed
        insp = inspect(engine)
        for table in Base.metadata.tables:
            indexed = {next(iter(ix["column_names"])) for ix in insp.get_indexes(table)}
            indexed |= {next(iter(uc["column_names"])) for uc in insp.get_unique_constraints(table)}
            indexed |= {insp.get_pk_constraint(table)["constrained_columns"][0]}
            for fk in insp.get_foreign_keys(table):
                assert fk["constrained_columns"][0] in indexed, (table, fk["constrained_columns"])
    finally:
        engine.dispose()
        if server:
            drop_pg_database(server, urls.owner)


def test_every_tenant_table_is_known() -> None:
    assert {"memberships", "invitations", "api_keys", "org_quotas", "audit_log"} <= set(tenant_tables())
