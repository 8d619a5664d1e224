"""The rules tests' world: the platform sandboxes, an app pointed at them (local receivers
allowed past the SSRF guard), and a team whose client is synced from the Meta sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from omnify.core.db import Database
from omnify.settings import Settings
from tests.conftest import DatabaseUrls
from tests.integration.connections.conn_support import Env, Sandboxes, boxes, enqueued, open_env  # noqa: F401
from tests.integration.rules.rules_support import HISTORY_DAYS, Synced, synced_team


@pytest.fixture(scope="module")
def env_overrides() -> dict[str, object]:
    """Extra settings of a module's app (a module overrides this fixture)."""
    return {}


@pytest.fixture(scope="module")
async def env(boxes: Sandboxes, settings: Settings, db_urls: DatabaseUrls, database: Database,  # noqa: F811
              owner_database: Database, env_overrides: dict[str, object]) -> AsyncIterator[Env]:
    async with open_env(boxes, settings, db_urls, database, owner_database, sync_backfill_days=HISTORY_DAYS,
                        webhook_allowed_hosts=["127.0.0.1"], **env_overrides) as opened:
        yield opened


@pytest.fixture(scope="module")
async def synced(env: Env) -> Synced:
    return await synced_team(env)
