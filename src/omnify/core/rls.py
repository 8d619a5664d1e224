"""PostgreSQL row-level security and privileges, used by migrations.

The application role owns nothing and has no BYPASSRLS, so every tenant table is filtered
by ``org_id = current_setting('app.org_id')``: a query that forgets its scope returns no
rows instead of another tenant's. Migrations run as the owner role, which bypasses RLS
(policies are not FORCEd) for maintenance.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

ORG_MATCH = "org_id::text = current_setting('app.org_id', true)"


def enable_rls_sql(table: str, extra: str | None = None) -> list[str]:
    using = f"({ORG_MATCH})" + (f" OR ({extra})" if extra else "")
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS tenant_isolation ON {table}",
        # Reads may use the extra clause (e.g. own memberships); writes must match the org.
        f"CREATE POLICY tenant_isolation ON {table} USING ({using}) WITH CHECK ({ORG_MATCH})",
    ]


def disable_rls_sql(table: str) -> list[str]:
    return [f"DROP POLICY IF EXISTS tenant_isolation ON {table}", f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY"]


AUDIT_TRIGGER_SQL = [
    """
    CREATE OR REPLACE FUNCTION omnify_audit_immutable() RETURNS trigger AS $$
    BEGIN
      IF TG_OP = 'DELETE' AND current_setting('omnify.audit_purge', true) = 'on' THEN
        RETURN OLD;  -- retention purge, run by the owner role only (see `omnify audit purge`)
      END IF;
      RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
    END;
    $$ LANGUAGE plpgsql
    """,
    "DROP TRIGGER IF EXISTS audit_log_immutable ON audit_log",
    """CREATE TRIGGER audit_log_immutable BEFORE UPDATE OR DELETE ON audit_log
       FOR EACH ROW EXECUTE FUNCTION omnify_audit_immutable()""",
]


def grant_app_role(connection: Connection, role: str) -> None:
    """Give the application role DML on every table (idempotent; no-op if the role is absent)."""
    if connection.dialect.name != "postgresql":
        return
    exists = connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).scalar()
    if not exists:
        return
    quoted = connection.dialect.identifier_preparer.quote(role)
    connection.execute(text(f"GRANT USAGE ON SCHEMA public TO {quoted}"))
    connection.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}"))
    connection.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}"))
    # The audit log is append-only for the application, whatever the trigger says.
    if connection.execute(text("SELECT to_regclass('public.audit_log')")).scalar() is not None:
        connection.execute(text(f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {quoted}"))
    connection.execute(text(f"REVOKE TRUNCATE ON ALL TABLES IN SCHEMA public FROM {quoted}"))
