"""kombu's Redis transport, with a channel that can be closed after its transport was.

Why: a worker on the Redis broker died ("Unrecoverable error: AttributeError: 'NoneType'
object has no attribute 'hostname'") when Redis went away while it held an unacknowledged
message (tests/integration/reliability/test_fault_broker_restart.py). On a connection loss
Celery's consumer first calls ``Connection.collect()``, which closes the transport (its
``client`` becomes None), then ``Connection.close()``, which closes the default channel
again; that close restores the held messages, and building a Redis client for it read the
URL from the closed transport. The AttributeError is not a connection error, so Celery's
``ignore_errors`` let it through and the worker exited instead of reconnecting.

Here a channel whose transport is closed answers with a Redis ``ConnectionError``, which
kombu and Celery treat as the connection being gone (as it is): ignored during the cleanup,
then the consumer reconnects. Messages the worker held stay in Redis' unacknowledged set
and come back after the visibility timeout (or, when Redis lost them, the outbox sweeps
find their rows). Registered for ``redis://`` and ``rediss://`` by :func:`register`.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

SCHEMES = ("redis", "rediss")


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection is closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]
        return params


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel


def register() -> None:
    """Resolve ``redis://`` and ``rediss://`` broker URLs to this transport."""
    for scheme in SCHEMES:
        TRANSPORT_ALIASES[scheme] = "omnify.jobs.redis_transport:Transport"
