"""tq's AMQP transport (tq/transports/amqp.py) reads the socket in chunks: frames larger than
a chunk, and many messages in one chunk, arrive whole and in order through a real RabbitMQ."""

from __future__ import annotations

import pytest

from tq import group

pytestmark = pytest.mark.timeout(90)


def test_a_message_of_many_frames_arrives_whole(amqp_broker, start_worker, tasks):
    start_worker("-c", "2")
    numbers = list(range(100_000))  # ~600 KB of JSON: five of RabbitMQ's 128 KiB body frames
    assert tasks.xsum.delay(numbers).get(timeout=30) == sum(numbers)


def test_many_messages_in_one_read_all_run(amqp_broker, start_worker, tasks):
    start_worker("-c", "2")
    # A group goes out in one socket write, so the worker reads many frames at a time.
    result = group(tasks.add.s(i, i) for i in range(500)).apply_async()
    assert result.get(timeout=60) == [i + i for i in range(500)]


def test_the_worker_still_works_on_kombus_transport(amqp_broker, start_worker, tasks):
    start_worker("-c", "1", env={"TQ_BROKER_AMQP_TRANSPORT": "kombu"})
    assert tasks.add.delay(20, 22).get(timeout=30) == 42
