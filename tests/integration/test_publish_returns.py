"""A task message RabbitMQ cannot route (its queue deleted under a running client) or refuses
is never lost in silence: with publisher confirms `delay()` raises PublishError, without them
the client logs an error naming the task as soon as it reads the broker's return."""

from __future__ import annotations

import logging
import os
import time
import uuid

import pytest
from kombu import Connection, Queue

from tq import App
from tq.errors import PublishError

pytestmark = pytest.mark.timeout(60)


def _app(*, confirms: bool, queues: list[Queue] | None = None) -> App:
    app = App(
        "returns",
        broker=os.environ["TQ_BROKER_URL"],
        broker_transport_options={"confirm_publish": True} if confirms else {},
    )
    if queues is not None:
        app.conf.task_queues = queues

    @app.task(name="returns.noop")
    def noop() -> None:
        return None

    return app


def _delete_queue(name: str) -> None:
    with Connection(os.environ["TQ_BROKER_URL"]) as connection:
        connection.default_channel.queue_delete(name)


def _waiting(name: str) -> int | None:
    """Messages in the queue, or None when there is no such queue."""
    with Connection(os.environ["TQ_BROKER_URL"]) as connection:
        try:
            return connection.default_channel.queue_declare(name, passive=True).message_count
        except connection.channel_errors:
            return None


def test_with_confirms_a_task_whose_queue_is_gone_raises(amqp_broker):
    queue = f"tqt-gone-{uuid.uuid4().hex[:8]}"
    app = _app(confirms=True)
    noop = app.tasks["returns.noop"]
    noop.apply_async(queue=queue)  # declares the queue: this one is queued
    assert _waiting(queue) == 1
    _delete_queue(queue)
    with pytest.raises(PublishError, match=f"routing key '{queue}' on the default exchange"):
        noop.apply_async(queue=queue)
    assert _waiting(queue) is None
    # The channel is still good: a task for a queue that exists goes out as before.
    noop.apply_async(queue=amqp_broker.queue)
    assert _waiting(amqp_broker.queue) == 1
    app.close()


def test_without_confirms_the_client_logs_the_returned_task(amqp_broker, caplog):
    queue = f"tqt-gone-{uuid.uuid4().hex[:8]}"
    app = _app(confirms=False)
    noop = app.tasks["returns.noop"]
    noop.apply_async(queue=queue)
    _delete_queue(queue)
    lost = noop.apply_async(queue=queue)  # nothing waits for the broker: no error here
    caplog.set_level(logging.ERROR, logger="tq.client")
    for _ in range(50):  # the return is read before the next publish
        noop.apply_async(queue=amqp_broker.queue)
        if lost.id in caplog.text:
            break
        time.sleep(0.05)
    assert f"returns.noop[{lost.id}] was not queued: RabbitMQ returned it" in caplog.text
    assert f"routing key '{queue}'" in caplog.text
    app.close()


def test_with_confirms_a_task_the_broker_refuses_raises(amqp_broker):
    name = f"tqt-full-{uuid.uuid4().hex[:8]}"
    full = Queue(name, queue_arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    app = _app(confirms=True, queues=[full])
    noop = app.tasks["returns.noop"]
    noop.apply_async(queue=name)
    with pytest.raises(PublishError, match="RabbitMQ refused it"):
        noop.apply_async(queue=name)
    assert _waiting(name) == 1
    _delete_queue(name)
    app.close()
