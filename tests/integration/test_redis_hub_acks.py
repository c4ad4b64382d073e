"""tq's Redis channel under a kombu hub: an ack that no claim will carry is written within a few
ms, and a slot freed while the rest of the prefetch window stays held is filled soon, not when
half the window is free (long tasks, or a prefetch multiplier of 1, would leave a pool process
idle while a message waits)."""

from __future__ import annotations

import time

import pytest

from .test_redis_transport import (  # noqa: F401
    connect,
    direct_queue,
    held_consumer,
    publish,
    raw_client,
    redis_url,
)

pytestmark = pytest.mark.timeout(60)

#: How long the loop runs after the ack: ACK_HOLD_S / CLAIM_HOLD_S are a few ms.
SETTLE_S = 1.0


def test_an_ack_is_written_soon_when_no_claim_is_coming(redis_url, redis_broker):  # noqa: F811
    queue = direct_queue(redis_broker.q("acks"))
    client = raw_client(redis_url)
    unacked_key = f"{redis_url[1]}unacked"
    with connect(redis_url) as connection:
        publish(connection, queue, range(4))
        pending: list = []
        hub, loop = held_consumer(connection, queue, pending, prefetch=4, count=4)
        try:
            assert client.hlen(unacked_key) == 4
            pending[0].ack()  # one task finished; three still run, and the queue is empty
            acked_at = time.monotonic()
            while client.hlen(unacked_key) > 3 and time.monotonic() - acked_at < SETTLE_S:
                next(loop)
            assert client.hlen(unacked_key) == 3, "the ack was not written"
        finally:
            hub.close()


def test_a_slot_freed_while_the_window_is_held_is_filled_soon(redis_url, redis_broker):  # noqa: F811
    queue = direct_queue(redis_broker.q("refill"))
    with connect(redis_url) as connection:
        publish(connection, queue, range(3))
        pending: list = []
        # Three long tasks run; one slot of four is free.
        hub, loop = held_consumer(connection, queue, pending, prefetch=4, count=3)
        try:
            publish(connection, queue, [3])
            published_at = time.monotonic()
            while len(pending) < 4 and time.monotonic() - published_at < SETTLE_S:
                next(loop)
            assert len(pending) == 4, "the free slot stayed empty while a message waited"
        finally:
            hub.close()
