from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.web.web_support import WebSession, new_web


@pytest.fixture
async def web(app: Any) -> AsyncIterator[WebSession]:
    session = new_web(app)
    yield session
    await session.aclose()


@pytest.fixture
async def other_web(app: Any) -> AsyncIterator[WebSession]:
    session = new_web(app)
    yield session
    await session.aclose()
