"""SCRIPT FLUSH (as after a Redis restart) while acks ride the next call, under a hub: the call is
sent again with its source, carrying the same acks and claim."""

from __future__ import annotations

import time

import pytest
from kombu import Connection, Exchange, Queue

from tq.transports import TQ_REDIS_TRANSPORT

from .test_redis_transport import held_consumer

pytestmark = pytest.mark.timeout(60)


def test_acks_and_claims_survive_a_script_flush(own_redis):
    import redis

    raw = redis.Redis(port=own_redis.port)
    name = "noscript"
    queue = Queue(name, Exchange(name, "direct"), routing_key=name)
    with Connection(f"redis://127.0.0.1:{own_redis.port}/0", transport=TQ_REDIS_TRANSPORT) as conn:
        producer = conn.Producer()
        for n in range(3):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=name, declare=[queue])
        held: list = []
        hub, loop = held_consumer(conn, queue, held, prefetch=2, count=2)
        try:
            raw.script_flush()
            held[0].ack()
            held[1].ack()
            deadline = time.monotonic() + 5
            while len(held) < 3 and time.monotonic() < deadline:
                next(loop)
            assert len(held) == 3
            held[2].ack()
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and raw.hlen("unacked"):
                next(loop)
            assert raw.hlen("unacked") == 0
            assert raw.zcard("unacked_index") == 0
            assert raw.llen(name) == 0
        finally:
            hub.close()
