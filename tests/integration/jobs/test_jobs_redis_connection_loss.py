"""The Redis broker going away while a consumer holds an unacknowledged message: the cleanup
Celery's worker runs on a connection loss must end in a connection error it ignores, not an
AttributeError that stops the worker (see omnify.jobs.redis_transport). Redis is a scratch
server this test stops."""

from __future__ import annotations

from pathlib import Path

from kombu import Connection, Exchange, Message, Queue
from kombu.common import ignore_errors

from omnify.jobs import transport
from tests.scratch_services import scratch_redis


def test_closing_after_losing_redis_with_a_held_message_is_a_connection_error(tmp_path: Path) -> None:
    transport.register()
    queue = Queue("loss-probe", Exchange("loss-probe"), routing_key="loss-probe")
    held: list[Message] = []
    with scratch_redis(tmp_path) as redis:
        conn = Connection(redis.url)
        with conn.Producer() as producer:
            producer.publish({"n": 1}, exchange=queue.exchange, routing_key="loss-probe", declare=[queue])
        consumer = conn.Consumer([queue], callbacks=[lambda _body, message: held.append(message)])
        consumer.consume()
        conn.drain_events(timeout=10)
        assert len(held) == 1  # delivered, not acknowledged: a late-ack task running
        redis.stop()
    # Celery's consumer on a connection loss (on_connection_error_after_connected) runs
    # ``Connection.collect()`` under a short socket timeout, then ``Connection.close()``.
    # When the channel close inside ``collect()`` is cut off by that timeout (swallowed
    # there), ``collect()`` still closes the transport: that state, reproduced directly.
    conn._do_close_transport()
    ignore_errors(conn, conn.close)  # raised AttributeError ('NoneType' ... 'hostname'): the worker exited
