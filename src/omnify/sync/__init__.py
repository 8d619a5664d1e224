"""Platform data sync: normalized tables, incremental runs by cursor, idempotent upserts."""
