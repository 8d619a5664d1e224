"""Short-lived, process-local caches of hot facts, and their invalidation across processes.

Every API request needs the same few facts before it can do anything: who the caller is
(API key or user), their role in the organization, the organization's plan limits.
Reading them from the database costs several round trips per request, for values that
change a few times a month. So they are cached in each process, **briefly**
(``OMNIFY_AUTH_CACHE_TTL_SECONDS``, 15 s by default), and dropped at once when they change:

* a change is noticed where it is made, from the ORM: when a session commits new, changed
  or deleted rows of a *watched* model (an API key revoked, a user's session version
  bumped, a role changed, a plan switched), the keys that :func:`watch` derives from those
  rows are invalidated, in this process immediately;
* and in every other process through Redis pub/sub (channel ``omnify:invalidate``) when
  ``OMNIFY_REDIS_URL`` is set: each app process subscribes (:func:`start_listener`).

The TTL bounds the staleness if a message is lost (Redis away, a change made by a process
that does not publish). Without Redis there is one process (``omnify up``), and the local
invalidation is the whole story.

Keys are ``(namespace, key)`` pairs such as ``("api_key", <hash>)``, ``("user", <id>)``,
``("org", <id>)``; a cache registers the namespaces it answers to with :func:`register`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from cachetools import TTLCache
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.orm import Session

from omnify.core.logging import get_logger
from omnify.core.redis_clients import PerLoopRedis

log = get_logger(__name__)

CHANNEL = "omnify:invalidate"
DEFAULT_TTL_SECONDS = 15.0

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Target = tuple[str, str]  # (namespace, key)


class LocalCache(Generic[K, V]):
    """A thread-safe TTL map whose entries say which invalidation targets drop them.

    ``put(key, value, targets)``: the entry goes when any of ``targets`` is invalidated
    (e.g. a membership entry answers to its user *and* its organization).
    """

    def __init__(self, name: str, maxsize: int = 10_000, ttl: float = DEFAULT_TTL_SECONDS) -> None:
        self.name = name
        self._entries: TTLCache[K, tuple[V, frozenset[Target]]] = TTLCache(maxsize=maxsize, ttl=ttl)
        self._lock = threading.Lock()
        _registry.append(self)

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._entries.get(key)
        return None if found is None else found[0]

    def __contains__(self, key: K) -> bool:
        with self._lock:
            return key in self._entries

    def put(self, key: K, value: V, targets: Iterable[Target]) -> None:
        with self._lock:
            self._entries[key] = (value, frozenset(targets))

    def drop(self, targets: set[Target]) -> int:
        with self._lock:
            gone = [k for k, (_v, t) in self._entries.items() if t & targets]
            for k in gone:
                self._entries.pop(k, None)
        return len(gone)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def set_ttl(self, ttl: float) -> None:
        with self._lock:
            if self._entries.ttl != ttl:
                self._entries = TTLCache(maxsize=self._entries.maxsize, ttl=ttl)


_registry: list[LocalCache[Any, Any]] = []


def invalidate_local(targets: Iterable[Target]) -> int:
    wanted = set(targets)
    return sum(cache.drop(wanted) for cache in _registry) if wanted else 0


def clear_all() -> None:
    """Forget every cached fact (tests; an operator after a manual database change)."""
    for cache in _registry:
        cache.clear()


def set_ttl(ttl: float) -> None:
    for cache in _registry:
        cache.set_ttl(ttl)


# ----------------------------------------------------------------------------- publishing
@dataclass
class _Bus:
    redis_url: str | None = None
    clients: PerLoopRedis | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


_bus = _Bus()
_senders: dict[int, str] = {}


def _sender() -> str:
    """This process's name on the channel (per pid: a forked worker is another process)."""
    pid = os.getpid()
    if pid not in _senders:
        _senders[pid] = f"{pid}-{uuid.uuid4().hex[:12]}"
    return _senders[pid]


def configure(redis_url: str | None, ttl: float = DEFAULT_TTL_SECONDS) -> None:
    """Where to publish (None: this process only) and how long entries live."""
    if redis_url != _bus.redis_url or _bus.clients is None:
        _bus.clients = PerLoopRedis(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0) if redis_url else None
    _bus.redis_url = redis_url
    set_ttl(ttl)


def _client() -> aioredis.Redis | None:
    return _bus.clients.get() if _bus.clients is not None else None


async def publish(targets: Iterable[Target]) -> None:
    """Invalidate here at once, and in every subscribed process through Redis."""
    items = sorted(set(targets))
    if not items:
        return
    invalidate_local(items)
    try:
        client = _client()
        if client is not None:
            await client.publish(CHANNEL, json.dumps({"from": _sender(), "targets": items}))
    except (RedisError, OSError) as exc:  # the TTL bounds the staleness meanwhile
        log.warning("invalidation_publish_failed", error_type=type(exc).__name__)


def _publish_soon(targets: list[Target]) -> None:
    invalidate_local(targets)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # synchronous code (migrations, scripts): local invalidation only
    if not _bus.redis_url:
        return
    task = loop.create_task(publish(targets))
    _bus.tasks.add(task)
    task.add_done_callback(_bus.tasks.discard)


async def listen(redis_url: str, ready: asyncio.Event | None = None) -> None:
    """Apply invalidations published by other processes until cancelled; reconnects."""
    delay = 0.5
    while True:
        client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2.0)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CHANNEL)
            if ready is not None:
                ready.set()
            delay = 0.5
            async for message in pubsub.listen():
                try:
                    data = json.loads(message["data"])
                    if data.get("from") == _sender():
                        continue  # applied here already, before it was published
                    items = [(str(ns), str(key)) for ns, key in data["targets"]]
                except (ValueError, TypeError, KeyError, AttributeError):
                    continue
                invalidate_local(items)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            # Missed messages are possible while away: forget everything to be safe.
            clear_all()
            log.warning("invalidation_listener_reconnecting", error_type=type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await client.aclose()


async def start_listener(redis_url: str | None) -> asyncio.Task[None] | None:
    """Subscribe (waiting up to 2 s for the subscription) and return the listener task."""
    if not redis_url:
        return None
    ready = asyncio.Event()
    task = asyncio.get_running_loop().create_task(listen(redis_url, ready))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ready.wait(), 2.0)
    return task


async def stop_listener(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if _bus.clients is not None:
        with contextlib.suppress(Exception):
            await _bus.clients.aclose()


# ----------------------------------------------------------------------------- ORM watch
_watched: dict[type, Callable[[Any], Iterable[Target]]] = {}
_PENDING = "_invalidate_pending"


def watch(model: type, targets: Callable[[Any], Iterable[Target]]) -> None:
    """Invalidate ``targets(row)`` whenever a session commits a new, changed or deleted
    ``model`` row. Changes made with bulk ``update()``/``delete()`` statements are not
    seen: publish those with :func:`publish`."""
    _watched[model] = targets


@event.listens_for(Session, "after_flush")
def _collect(session: Session, _context: Any) -> None:
    if not _watched:
        return
    found: set[Target] = session.info.setdefault(_PENDING, set())
    for obj in (*session.new, *session.dirty, *session.deleted):
        fn = _watched.get(type(obj))
        if fn is not None:
            found.update(fn(obj))


@event.listens_for(Session, "after_commit")
def _commit(session: Session) -> None:
    found = session.info.pop(_PENDING, None)
    if found:
        _publish_soon(sorted(found))


@event.listens_for(Session, "after_soft_rollback")
def _rollback(session: Session, previous: Any) -> None:
    if previous.parent is None:  # the whole transaction is gone (a savepoint's rollback keeps the rest)
        session.info.pop(_PENDING, None)
