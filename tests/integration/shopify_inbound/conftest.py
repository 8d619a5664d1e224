"""A connected shop whose webhooks really leave the Shopify sandbox over HTTP.

Omnify registers its webhook address (``public_base_url`` + the source path) with the
sandbox when the shop connects. ``public_base_url`` points at a relay: a real HTTP
server that records each signed delivery exactly as the sandbox sent it (raw body,
headers); the tests then hand those bytes to the app's receiver routes unchanged. So
the signature the receiver checks is the sandbox's own, over the sandbox's own bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from omnify.core.db import Database
from omnify.settings import Settings
from tests.conftest import DatabaseUrls
from tests.integration.connections.conn_support import (  # noqa: F401
    Env,
    Sandboxes,
    boxes,
    enqueued,
    open_env,
    team,
)
from tests.integration.webhooks.conftest import Receiver, _serve


@pytest.fixture(scope="module")
def relay() -> Iterator[Receiver]:
    yield from _serve(Receiver())


@pytest.fixture(autouse=True)
def _fresh_relay(relay: Receiver) -> None:
    relay.hits.clear()


@pytest.fixture(scope="module")
async def env(boxes: Sandboxes, relay: Receiver, settings: Settings, db_urls: DatabaseUrls,  # noqa: F811
              database: Database, owner_database: Database) -> AsyncIterator[Env]:
    async with open_env(boxes, settings, db_urls, database, owner_database,
                        public_base_url=relay.url("")) as opened:
        yield opened
