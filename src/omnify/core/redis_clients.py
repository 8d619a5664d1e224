"""One ``redis.asyncio`` client per event loop.

Async Redis connections belong to the event loop that opened them, and Celery runs each
job in a fresh loop: a module-level client would be used from a loop it does not belong
to. The clients go with their loop (weak keys).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import redis.asyncio as aioredis


class PerLoopRedis:
    def __init__(self, url: str, **options: Any) -> None:
        self.url = url
        self.options = options
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = aioredis.Redis.from_url(self.url, **self.options)
        return client

    async def aclose(self) -> None:
        """Close this loop's client, if any."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()
