"""Fixtures shared by the integration tests of several domains."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.jobs.jobs_testlib import WorkerProcess


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Celery worker processes a test starts (appends); killed at the end whatever happened,
    so a crash test that SIGKILLs one leaves no survivor behind."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop(graceful=False)
