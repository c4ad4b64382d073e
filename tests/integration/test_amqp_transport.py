"""tq's AMQP transport (tq/transports/amqp.py) reads the socket in chunks: frames larger than
a chunk, and many messages in one chunk, arrive whole and in order through a real RabbitMQ."""

from __future__ import annotations

import signal
import time

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


def test_an_idle_worker_keeps_its_connection_with_heartbeats_on(amqp_broker, start_worker, tasks):
    worker = start_worker("-c", "1", env={"TQ_BROKER_HEARTBEAT": "2"})
    time.sleep(6)  # RabbitMQ closes a connection silent for two intervals (4 s here)
    assert tasks.add.delay(1, 1).get(timeout=15) == 2
    assert "Connection to broker lost" not in worker.log(), worker.log()


def test_a_worker_notices_a_silent_broker_by_its_heartbeats_and_reconnects(
    amqp_broker, start_worker, tasks, freezable_proxy
):
    proxy = freezable_proxy(("127.0.0.1", 5672))
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}//"
    env = {"TQ_BROKER_URL": url, "TQ_BROKER_HEARTBEAT": "1"}
    worker = start_worker("-c", "1", env=env)
    proxy.freeze()
    # Heartbeats of 1 s: two missed ones and the worker gives the connection up.
    worker.wait_for_reconnection(lost_within=15)
    assert tasks.add.delay(2, 3).get(timeout=20) == 5


def test_a_warm_shutdown_ends_when_the_broker_has_gone_silent(
    amqp_broker, start_worker, freezable_proxy
):
    proxy = freezable_proxy(("127.0.0.1", 5672))
    env = {"TQ_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{proxy.port}//"}
    worker = start_worker("-c", "1", env=env)
    proxy.freeze()
    # Cancelling the consumer and closing the connection each wait for the broker's answer:
    # at most SHUTDOWN_BROKER_WAIT_S (2 s) each, instead of for ever.
    started = time.monotonic()
    assert worker.stop(signal.SIGTERM, timeout=15) == 0
    assert time.monotonic() - started < 10
