"""PostgreSQL row-level security and privileges, used by migrations.

The application role owns nothing and has no BYPASSRLS, so every tenant table is filtered
by ``org_id = current_setting('app.org_id')::uuid``: a query that forgets its scope
returns no rows instead of another tenant's. Migrations run as the owner role, which
bypasses RLS (policies are not FORCEd) for maintenance.

Policies compare **typed** values: the setting is cast to the column's type, never the
column to text. ``current_setting`` is stable, so the planner evaluates the right-hand
side once and the comparison can use the ``(org_id, ...)`` indexes; ``org_id::text =
...`` could use none and cost a text conversion per row. ``NULLIF(.., '')`` because a
transaction-local setting reads as '' (not NULL) once any transaction of the connection
has set it, and ``''::uuid`` would be an error instead of "no rows".
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.engine import Connection


def setting_match(column: str, setting: str, cast: str = "uuid") -> str:
    """``column = <transaction setting app.<setting>, typed>``; no rows when it is unset."""
    return f"{column} = NULLIF(current_setting('app.{setting}', true), '')::{cast}"


ORG_MATCH = setting_match("org_id", "org_id")


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


#: ``(col)::text = current_setting('app.x'::text, true)`` as PostgreSQL prints a policy.
_UNTYPED = re.compile(r"\((\w+)\)::text = current_setting\('app\.(\w+)'::text, true\)")
#: ``col = (NULLIF(current_setting('app.x'::text, true), ''::text))::uuid``, printed.
_TYPED = re.compile(r"(\w+) = \(NULLIF\(current_setting\('app\.(\w+)'::text, true\), ''::text\)\)::uuid")


def retype_policies(connection: Connection, *, typed: bool = True) -> list[str]:
    """Rewrite every ``tenant_isolation`` policy to typed comparisons (or back, for a
    downgrade), whatever migration created it; returns the tables changed.

    Only comparisons of ``uuid`` columns are rewritten (``key_hash = current_setting(..)``
    is already typed: both sides are text).
    """
    if connection.dialect.name != "postgresql":
        return []
    rows = connection.execute(text(
        "SELECT tablename, qual, with_check FROM pg_policies "
        "WHERE schemaname = current_schema() AND policyname = 'tenant_isolation' ORDER BY tablename")).all()
    changed = []
    for table, qual, check in rows:
        uuid_columns = set(connection.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = :t AND data_type = 'uuid'"), {"t": table}).scalars())

        def rewrite(expr: str | None, uuid_columns: set[str] = uuid_columns) -> str | None:
            if expr is None:
                return None
            if typed:
                return _UNTYPED.sub(lambda m: setting_match(m[1], m[2]) if m[1] in uuid_columns else m[0], expr)
            return _TYPED.sub(lambda m: f"({m[1]})::text = current_setting('app.{m[2]}', true)", expr)

        new_qual, new_check = rewrite(qual), rewrite(check)
        if (new_qual, new_check) == (qual, check):
            continue
        clauses = (f" USING ({new_qual})" if new_qual else "") + (f" WITH CHECK ({new_check})" if new_check else "")
        quoted = connection.dialect.identifier_preparer.quote(table)
        connection.execute(text(f"ALTER POLICY tenant_isolation ON {quoted}{clauses}"))
        changed.append(table)
    return changed


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
