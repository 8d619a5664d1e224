from tests.integration.connections.conn_support import boxes, enqueued, env, team  # noqa: F401
