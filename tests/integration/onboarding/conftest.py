from __future__ import annotations

import httpx
import pytest

from tests.factories import add_member, register
from tests.integration.onboarding.onboarding_support import Team, new_client


async def _team(client: httpx.AsyncClient) -> Team:
    owner = await register(client)
    viewer = await add_member(client, owner, "viewer")
    outsider = await register(client)
    return Team(owner=owner, viewer=viewer, outsider=outsider)


@pytest.fixture
async def team(client: httpx.AsyncClient) -> Team:
    """A fresh organization (owner + viewer) and an outsider, for tests that change state."""
    return await _team(client)


@pytest.fixture(scope="module")
async def shared(client: httpx.AsyncClient) -> Team:
    """One organization per module for tests whose requests are refused (validation, auth)."""
    return await _team(client)


@pytest.fixture(scope="module")
async def shared_client_id(client: httpx.AsyncClient, shared: Team) -> str:
    return str((await new_client(client, shared.owner))["id"])
