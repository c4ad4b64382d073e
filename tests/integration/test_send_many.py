"""app.send_many and group publishing in bulk, on RabbitMQ, Redis and the embedded broker."""

from __future__ import annotations

import time

import pytest
from kombu import Connection
from kombu.exceptions import EncodeError

from tests.conftest import ledger_lines
from tq import App, group
from tq.amqp_writes import one_write_context
from tq.broker import BULK_CHUNK_MESSAGES

pytestmark = pytest.mark.timeout(60)

RESULT_TIMEOUT_S = 20


def queued(app, names: list[str], *, expect: int = 0) -> dict[str, list[str]]:
    """Take every message off each queue (no worker running); return their task ids in order.

    With expect, wait (bounded) until that many messages in all were taken.
    """
    taken: dict[str, list[str]] = {name: [] for name in names}
    deadline = time.monotonic() + 5
    with Connection(app.broker_url) as connection:
        while True:
            for name in names:
                channel = connection.channel()  # a failed passive declare closes an AMQP channel
                try:
                    channel.queue_declare(name, passive=True)
                except Exception:
                    continue  # never declared (or an empty Redis list): nothing in it
                for _ in range(10 * BULK_CHUNK_MESSAGES):  # bounded: more than any test sends
                    message = channel.basic_get(name, no_ack=True)
                    if message is None:
                        break
                    taken[name].append(message.headers["id"])
            if sum(map(len, taken.values())) >= expect or time.monotonic() > deadline:
                return taken
            time.sleep(0.05)


def test_send_many_delivers_each_call_once_and_every_result_arrives(broker, start_worker, tasks):
    count = BULK_CHUNK_MESSAGES + 100  # more than one chunk: two pipelines or transactions
    calls = [tasks.mark.s(f"m{i}") for i in range(count)]
    calls += [("tqtest.tasks.mul", (i, 3), {}) for i in range(10)]
    results = tasks.app.send_many(calls)
    start_worker("-c", "2")
    marks = [result.get(timeout=RESULT_TIMEOUT_S) for result in results[:count]]
    assert marks == [f"m{i}" for i in range(count)]
    assert [result.get(timeout=RESULT_TIMEOUT_S) for result in results[count:]] == [
        i * 3 for i in range(10)
    ]
    ledger = ledger_lines(broker)
    assert sorted(ledger) == sorted(f"m{i}" for i in range(count))  # each ran once


def test_send_many_sends_each_call_to_its_own_queue_in_order(broker, tasks):
    app = tasks.app
    first, second = broker.q("first"), broker.q("second")
    calls = [
        tasks.add.s(1, 1),
        tasks.add.s(2, 2).set(queue=first),
        ("tqtest.tasks.add", (3, 3), {}),
        tasks.add.s(4, 4).set(queue=second),
        tasks.add.s(5, 5).set(queue=first),
    ]
    results = app.send_many(calls)
    taken = queued(app, [broker.queue, first, second])
    ids = [result.id for result in results]
    assert taken == {broker.queue: [ids[0], ids[2]], first: [ids[1], ids[4]], second: [ids[3]]}
    options = app.send_many([tasks.add.s(6, 6), tasks.add.s(7, 7)], queue=second)
    assert queued(app, [second]) == {second: [result.id for result in options]}


def test_a_bad_call_raises_naming_it_and_none_of_the_calls_is_sent(broker, tasks):
    app = tasks.app
    with pytest.raises(TypeError) as raised:
        app.send_many([tasks.add.s(1, 1), tasks.add.s(1), tasks.add.s(2, 2)])
    assert any("send_many: call 1 (tqtest.tasks.add(1))" in note for note in raised.value.__notes__)
    assert any("no call of this send_many was sent" in note for note in raised.value.__notes__)
    with pytest.raises(EncodeError):
        app.send_many([tasks.add.s(1, 1), tasks.add.s(object(), 1)])
    with pytest.raises(TypeError):  # a group is all or nothing too
        group(tasks.add.s(1, 1), tasks.add.s(1, 2, 3)).apply_async()
    assert queued(app, [broker.queue]) == {broker.queue: []}


def test_a_connection_lost_mid_send_resumes_at_the_first_unsent_message(broker, tasks):
    app = tasks.app
    tasks.add.delay(0, 0)  # connect and declare the queue first
    producer, _declared = app.publisher._producer()
    channel = producer.channel
    publish, published = channel.basic_publish, []
    connection_lost = producer.connection.recoverable_connection_errors[0]  # the transport's own

    def lose_the_connection_once(message, *args, **kwargs):
        if len(published) == 3:
            channel.basic_publish = publish
            raise connection_lost("connection lost (injected by the test)")
        published.append(1)
        return publish(message, *args, **kwargs)

    channel.basic_publish = lose_the_connection_once
    results = app.send_many([tasks.add.s(i, i) for i in range(8)])
    assert len(published) == 3  # the failure happened in the middle of the send
    taken = queued(app, [broker.queue], expect=9)[broker.queue]
    # Each once (on RabbitMQ the messages before and after the new connection may interleave).
    assert sorted(taken[1:]) == sorted(result.id for result in results)
    assert len(taken) == 9


def test_with_publisher_confirms_each_message_is_confirmed_not_held_back(amqp_broker, tasks):
    held = tasks.app.publisher._producer()[0].channel
    assert one_write_context(held) is not None  # the bulk path of the tests above
    app = App("confirms", broker_transport_options={"confirm_publish": True})
    try:
        confirmed = app.publisher._producer()[0].channel
        assert one_write_context(confirmed) is None
        results = app.send_many([("tqtest.tasks.add", (i, i), {}) for i in range(5)])
        assert queued(app, [amqp_broker.queue]) == {
            amqp_broker.queue: [result.id for result in results]
        }
    finally:
        app.publisher.close()
