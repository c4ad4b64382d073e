"""Queue depth from the broker itself (tq/queues.py), on RabbitMQ, Redis and the embedded broker."""

from __future__ import annotations

import time

import pytest

from tq.queues import configured_queues, queue_depths, routed_queue


@pytest.mark.broker
@pytest.mark.timeout(60)
def test_depth_counts_waiting_messages_and_tells_a_missing_queue(broker) -> None:
    from tqtest.tq import app

    for number in range(3):
        app.send_task("tqtest.tasks.add", (number, number))
    missing = f"{broker.queue}.never-declared"
    with app.broker_connection() as connection:
        # RabbitMQ counts a message once it has routed it, a moment after the publish returned.
        deadline = time.monotonic() + 10
        while True:
            depths = {d.name: d for d in queue_depths(connection, [broker.queue, missing])}
            if depths[broker.queue].messages == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert depths[broker.queue].messages == 3
        if broker.kind == "redis":
            # Redis deletes an empty list: an unknown queue and an empty one look the same
            assert depths[missing].messages == 0
        else:
            assert depths[missing].missing
        # asking never creates the queue
        assert queue_depths(connection, [missing])[0].messages == depths[missing].messages
        if broker.kind == "amqp":
            assert depths[broker.queue].consumers == 0
            from kombu import Consumer

            with connection.clone() as listener:
                with Consumer(listener, [app.queue_by_name(broker.queue)], accept=["json"]):
                    counted = queue_depths(connection, [broker.queue])[0]
            assert counted.consumers == 1
        else:
            assert depths[broker.queue].consumers is None  # the transport cannot count them
        app.queue_by_name(broker.queue)(connection.default_channel).purge()


def test_configured_queues_and_routes_name_the_queues_an_app_sends_to(monkeypatch) -> None:
    from tqtest.tq import app

    monkeypatch.setattr(app.conf, "task_default_queue", "tqt-default")
    assert configured_queues(app) == ["tqt-default", "hipri", "globbed"]
    assert routed_queue(app, "tqtest.tasks.routed_exact") == "hipri"
    assert routed_queue(app, "tqtest.tasks.glob_one") == "globbed"
    assert routed_queue(app, "tqtest.tasks.add") == "tqt-default"
