"""A connected shop whose webhooks really leave the Shopify sandbox over HTTP.

Omnify registers its webhook address (``public_base_url`` + the source path) with the
sandbox when the shop connects. ``public_base_url`` points at a relay: a real HTTP
server that records each signed delivery exactly as the sandbox sent it (raw body,
headers); the tests then hand those bytes to the app's receiver routes unchanged. So
the signature the receiver checks is the sandbox's own, over the sandbox's own bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from omnify.app import create_app
from omnify.core.db import Database
from omnify.settings import Settings
from tests.conftest import DatabaseUrls, make_settings
from tests.integration.connections.conn_support import (  # noqa: F401
    Env,
    Sandboxes,
    boxes,
    enqueued,
    fast_factory,
    settings_for,
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
    shop_settings = settings_for(boxes, make_settings(settings.data_dir, db_urls), public_base_url=relay.url(""))
    app = create_app(shop_settings, database)
    app.state.connector_factory = fast_factory(shop_settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as api:
        yield Env(api=api, app=app, settings=shop_settings, boxes=boxes, db=database, owner_db=owner_database)
