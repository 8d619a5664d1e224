-- The application connects as omnify_app, which owns nothing and cannot bypass row-level security:
-- RLS policies keyed on app.org_id are the second tenancy lock (docs/security.md). Migrations run
-- as the owner role (omnify), which the compose file uses only for the `migrate` service.
-- Local-only password; production roles are provisioned by the platform team with secrets from
-- the secret store.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'omnify_app') THEN
    CREATE ROLE omnify_app LOGIN PASSWORD 'omnify_app' NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
  END IF;
END
$$;
GRANT CONNECT ON DATABASE omnify TO omnify_app;
GRANT USAGE ON SCHEMA public TO omnify_app;
ALTER DEFAULT PRIVILEGES FOR ROLE omnify IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO omnify_app;
ALTER DEFAULT PRIVILEGES FOR ROLE omnify IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO omnify_app;
