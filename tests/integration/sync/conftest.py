from collections.abc import Iterator
from pathlib import Path

import pytest

from omnify.integrations.base import Platform
from omnify.integrations.sandboxes import RunningSandboxes, start_all
from tests.integration.connections.conn_support import boxes, enqueued, env, team  # noqa: F401


@pytest.fixture(scope="session")
def running() -> Iterator[RunningSandboxes]:
    """The sandboxes as `omnify up` starts them, for every test of the demo organization
    (its connections hold tokens these sandboxes issued)."""
    sandboxes = start_all(ports=dict.fromkeys(Platform, 0))
    yield sandboxes
    sandboxes.stop()


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory for every test of the demo organization: the demo user is one
    row of the session's database, and its credentials are sealed with this directory's
    master key (as `omnify up` keeps one data directory)."""
    return tmp_path_factory.mktemp("demo-data")
