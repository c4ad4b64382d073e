"""A call in flight when kombu's health check drops the silent consuming connection (a half-open
TCP connection) is lost: the acks it carried are sent again and its claim is given back. They
used to be forgotten when the next call took its place: the acked message stayed unacked and ran
again after visibility_timeout."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from kombu import Connection, Exchange, Queue

from tq.transports import TQ_REDIS_TRANSPORT

from .test_redis_transport import held_consumer

pytestmark = pytest.mark.timeout(90)


def test_acks_riding_a_call_dropped_by_the_health_check_are_written(redis_broker, freezable_proxy):
    import redis

    proxy = freezable_proxy(("127.0.0.1", 6379))
    prefix = f"tq-test-{uuid.uuid4().hex[:8]}:"
    raw = redis.Redis.from_url("redis://127.0.0.1:6379/3")
    name = "inflight"
    queue = Queue(name, Exchange(name, "direct"), routing_key=name)
    url = f"redis://127.0.0.1:{proxy.port}/3"
    options = {"global_keyprefix": prefix, "health_check_interval": 1}
    try:
        with Connection(url, transport=TQ_REDIS_TRANSPORT, transport_options=options) as conn:
            producer = conn.Producer()
            for n in range(2):
                producer.publish(
                    {"n": n}, exchange=queue.exchange, routing_key=name, declare=[queue]
                )
            held: list = []
            hub, loop = held_consumer(conn, queue, held, prefetch=2, count=2)
            try:
                assert raw.hlen(prefix + "unacked") == 2
                acked_tag = held[0].delivery_tag
                # The consuming connection goes silent (a half-open TCP connection); new
                # connections pass.
                proxy.freeze()
                time.sleep(0.5)  # the proxy's pumps (0.2 s recv timeout) see the freeze
                held[0].ack()  # rides the next script call, which never gets an answer
                # kombu drops the silent consuming connection after ~2 s; a second later the
                # silent connections are gone for good (what they held never reached Redis),
                # and new ones pass.
                threading.Timer(3.0, proxy.drop_frozen).start()
                deadline = time.monotonic() + 12
                while time.monotonic() < deadline:
                    try:
                        next(loop)
                    except conn.connection_errors:  # a dead connection met: go round again
                        loop = hub.create_loop()
                # The channel is consuming again on a new connection, idle; the ack was
                # made >10 s ago.
                assert raw.hexists(prefix + "unacked", acked_tag) is False, (
                    "the ack is lost: the acked message stays unacked and is redelivered "
                    "after visibility_timeout"
                )
            finally:
                hub.close()
    finally:
        doomed = list(raw.scan_iter(match=f"{prefix}*", count=1000))
        if doomed:
            raw.delete(*doomed)
        raw.close()
