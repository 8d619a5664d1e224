"""Running the async services from Celery's synchronous task functions.

Each task run gets its own event loop (``asyncio.run``) and its own database engine,
disposed at the end: pooled asyncpg connections belong to the loop that opened them and
cannot be reused by the next run's loop. Creating an engine costs a connection
handshake per task, which is small next to an HTTP delivery or an SMTP conversation.
The lead may move this helper to ``omnify.jobs`` for every domain's tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from omnify.core.db import Database
from omnify.settings import Settings, get_settings

T = TypeVar("T")
_override: list[Settings] = []


@contextlib.contextmanager
def use_settings(settings: Settings) -> Iterator[None]:
    """Run tasks of this process against ``settings`` (tests, one-off tools)."""
    _override.append(settings)
    try:
        yield
    finally:
        _override.remove(settings)


def current_settings() -> Settings:
    return _override[-1] if _override else get_settings()


def run(work: Callable[[Database, Settings], Awaitable[T]], settings: Settings | None = None) -> T:
    settings = settings or current_settings()

    async def main() -> T:
        db = Database(settings)
        try:
            return await work(db, settings)
        finally:
            await db.dispose()

    return asyncio.run(main())
