"""tq's Redis transport against a real Redis, beside kombu's own: same keys, same order, fewer trips."""

from __future__ import annotations

import json
import time

import pytest
from kombu import Connection, Consumer, Exchange, Queue
from kombu.asynchronous import Hub
from kombu.transport import redis as kombu_redis

from tq.transports import TQ_REDIS_TRANSPORT, redis_timing
from tq.transports.redis_scripts import CLAIM_SCRIPT, ClaimCall, claim_args, claim_keys

pytestmark = pytest.mark.timeout(60)

#: Longest wait for a message in these tests (they normally take milliseconds).
DELIVERY_TIMEOUT_S = 10.0


@pytest.fixture
def redis_url(redis_broker):
    """The test broker's URL; every key the test makes carries its global_keyprefix."""
    url = redis_broker.env["TQ_BROKER_URL"]
    prefix = f"{redis_broker.queue}:"
    yield url, prefix
    import redis

    client = redis.Redis.from_url(url)
    doomed = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if doomed:
        client.delete(*doomed)
    client.close()


def connect(url_prefix, *, kombu: bool = False, **options) -> Connection:
    """A connection with tq's transport (or kombu's) and the test's key prefix."""
    url, prefix = url_prefix
    return Connection(
        url,
        transport=None if kombu else TQ_REDIS_TRANSPORT,
        transport_options={"global_keyprefix": prefix, **options},
    )


def raw_client(url_prefix):
    import redis

    return redis.Redis.from_url(url_prefix[0])


def direct_queue(name: str) -> Queue:
    return Queue(name, Exchange(name, "direct"), routing_key=name)


def publish(
    connection: Connection, queue: Queue, numbers, priority: int = 0, declare: bool = True
) -> None:
    producer = connection.Producer()
    for number in numbers:
        producer.publish(
            {"n": number},
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue] if declare else [],
            priority=priority,
        )


def consume(connection: Connection, queues, count: int, *, prefetch: int, ack: bool = True):
    """Receive count messages (acking each unless ack is False); return their numbers."""
    received: list = []

    def on_message(body, message):
        received.append((body["n"], message))
        if ack:
            message.ack()

    with connection.Consumer(queues, callbacks=[on_message], accept=["json"]) as consumer:
        consumer.qos(prefetch_count=prefetch)
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while len(received) < count and time.monotonic() < deadline:
            try:
                connection.drain_events(timeout=0.5)
            except TimeoutError:
                pass
    return received


def held_consumer(connection, queue: Queue, held: list, *, prefetch: int, count: int):
    """Consume `queue` under a kombu Hub (prefetch `prefetch`), turning its loop until `count`
    messages were received into `held`; return the hub and its loop."""
    consumer = Consumer(
        connection.channel(), [queue], accept=["json"], callbacks=[lambda b, m: held.append(m)]
    )
    consumer.qos(prefetch_count=prefetch)
    consumer.consume()
    hub = Hub()
    connection.transport.register_with_event_loop(connection.connection, hub)
    loop = hub.create_loop()
    deadline = time.monotonic() + 10
    while len(held) < count and time.monotonic() < deadline:
        next(loop)
    assert len(held) == count
    return hub, loop


def test_claims_take_messages_in_kombus_order_across_queues_and_priorities(redis_url, redis_broker):
    queue_a, queue_b = direct_queue(redis_broker.q("a")), direct_queue(redis_broker.q("b"))

    def fill(connection):
        publish(connection, queue_a, [1, 2, 3])
        publish(connection, queue_b, [4, 5])
        publish(connection, queue_a, [6, 7], priority=6)
        publish(connection, queue_b, [8], priority=3)
        publish(connection, queue_a, [9], priority=9)

    with connect(redis_url, kombu=True) as connection:
        fill(connection)
        by_kombu = [n for n, _ in consume(connection, [queue_a, queue_b], 9, prefetch=1)]
    with connect(redis_url) as connection:
        fill(connection)
        by_tq = [n for n, _ in consume(connection, [queue_a, queue_b], 9, prefetch=4)]
    # Round robin between the queues within a priority step, lower steps first, as kombu does.
    assert by_tq == by_kombu == [1, 4, 2, 5, 3, 8, 6, 7, 9]


def test_a_claimed_message_is_recorded_as_unacked_exactly_as_kombu_records_it(
    redis_url, redis_broker
):
    queue = direct_queue(redis_broker.q("layout"))
    client = raw_client(redis_url)
    prefix = redis_url[1]
    entries = {}
    for name, use_kombu in (("kombu", True), ("tq", False)):
        with connect(redis_url, kombu=use_kombu) as connection:
            publish(connection, queue, [7])
            before = time.time()
            [(_, message)] = consume(connection, [queue], 1, prefetch=1, ack=False)
            tag = message.delivery_tag
            raw = client.hget(f"{prefix}unacked", tag)
            score = client.zscore(f"{prefix}unacked_index", tag)
            assert raw is not None and score is not None, name
            assert before - 1 <= score <= time.time() + 1
            payload, exchange, routing_key = json.loads(raw)
            assert payload["properties"].pop("delivery_tag") == tag
            entries[name] = (payload, exchange, routing_key)
            message.ack()
        # Acks are written by the time the connection is released.
        assert client.hget(f"{prefix}unacked", tag) is None
        assert client.zscore(f"{prefix}unacked_index", tag) is None
    assert entries["tq"] == entries["kombu"]
    assert entries["tq"][1:] == (queue.exchange.name, queue.routing_key)


def test_one_claim_takes_the_free_prefetch_slots_and_records_them(redis_url, redis_broker):
    queue = direct_queue(redis_broker.q("batch"))
    client = raw_client(redis_url)
    prefix = redis_url[1]
    with connect(redis_url) as connection:
        publish(connection, queue, range(10))
        received = consume(connection, [queue], 4, prefetch=4, ack=False)
        assert [n for n, _ in received] == [0, 1, 2, 3]
        assert client.hlen(f"{prefix}unacked") == 4
        assert client.llen(f"{prefix}{queue.name}") == 6
        for _, message in received:
            message.ack()
        assert client.hlen(f"{prefix}unacked") == 0


def test_a_no_ack_consumer_leaves_nothing_unacked(redis_url, redis_broker):
    queue = direct_queue(redis_broker.q("noack"))
    client = raw_client(redis_url)
    received = []
    with connect(redis_url) as connection:
        publish(connection, queue, [1, 2, 3])
        with connection.Consumer(
            [queue], callbacks=[lambda body, m: received.append(body["n"])], no_ack=True
        ):
            deadline = time.monotonic() + DELIVERY_TIMEOUT_S
            while len(received) < 3 and time.monotonic() < deadline:
                try:
                    connection.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
    assert received == [1, 2, 3]
    assert client.hlen(f"{redis_url[1]}unacked") == 0


def test_an_idle_consumer_is_woken_by_the_next_push(redis_url, redis_broker, monkeypatch):
    # No periodic claim within the test: only Redis's invalidation push can deliver.
    monkeypatch.setattr(redis_timing, "IDLE_RECHECK_S", 600.0)
    queue = direct_queue(redis_broker.q("idle"))
    received = []
    with connect(redis_url) as consumer_connection, connect(redis_url) as publisher:
        publish(publisher, queue, [])  # declares and binds the queue
        with consumer_connection.Consumer(
            [queue], callbacks=[lambda body, m: (received.append(body["n"]), m.ack())]
        ):
            with pytest.raises(TimeoutError):  # the queue is empty: the consumer idles
                consumer_connection.drain_events(timeout=0.3)
            publish(publisher, queue, [42])
            consumer_connection.drain_events(timeout=DELIVERY_TIMEOUT_S)
    assert received == [42]


def test_a_claim_whose_reply_never_came_is_given_back_on_restore(redis_url, redis_broker):
    queue = direct_queue(redis_broker.q("lost"))
    client = raw_client(redis_url)
    prefix = redis_url[1]
    with connect(redis_url) as connection:
        publish(connection, queue, [1, 2, 3])
        channel = connection.channel()
        # The claim runs in Redis, but its reply is lost with the connection.
        call = ClaimCall(acks=[], queues=[queue.name], count=3, score=repr(time.time()))
        keys = claim_keys(
            prefix=prefix,
            unacked="unacked",
            index="unacked_index",
            queue_keys=channel._queue_keys([queue.name]),
        )
        client.register_script(CLAIM_SCRIPT)(keys=keys, args=claim_args(call, [True]))
        assert client.llen(f"{prefix}{queue.name}") == 0
        assert client.hlen(f"{prefix}unacked") == 3
        channel._in_flight = call
        channel.qos.restore_unacked_once()
        assert client.hlen(f"{prefix}unacked") == 0
        received = consume(connection, [queue], 3, prefetch=3)
    assert sorted(n for n, _ in received) == [1, 2, 3]
    assert all(message.delivery_info.get("redelivered") for _, message in received)


def test_a_direct_exchanges_bindings_are_read_once_and_again_when_they_change(
    redis_url, redis_broker, monkeypatch
):
    reads = []
    original = kombu_redis.Channel.get_table

    def counting_get_table(self, exchange):
        reads.append(exchange)
        return original(self, exchange)

    monkeypatch.setattr(kombu_redis.Channel, "get_table", counting_get_table)
    exchange = Exchange(redis_broker.q("routes"), "direct")
    queue_a = Queue(redis_broker.q("ra"), exchange, routing_key="a")
    queue_b = Queue(redis_broker.q("rb"), exchange, routing_key="b")
    queue_c = Queue(redis_broker.q("rc"), exchange, routing_key="a")
    with connect(redis_url) as connection, connect(redis_url, kombu=True) as other:
        publish(connection, queue_a, [1, 2, 3])
        assert reads.count(exchange.name) == 1
        # Another process binds a new routing key: this one reads the bindings again for it.
        queue_b(other.default_channel).declare()
        publish(connection, queue_b, [4], declare=False)
        assert reads.count(exchange.name) == 2
        # A binding made by this process drops the cached table at once.
        publish(connection, queue_c, [5])
        assert reads.count(exchange.name) == 3
        queues = [queue_a, queue_b, queue_c]
        received = consume(connection, queues, 6, prefetch=10)
    assert sorted(n for n, _ in received) == [1, 2, 3, 4, 5, 5]


def test_redis_urls_use_tqs_transport_unless_the_app_asks_for_kombus(monkeypatch):
    from tq import App
    from tq.errors import ConfigError

    monkeypatch.delenv("TQ_BROKER_REDIS_TRANSPORT", raising=False)
    monkeypatch.delenv("TQ_BROKER_URL", raising=False)
    app = App("choice", broker="redis://:secret@127.0.0.1:6379/3")
    connection = app.broker_connection()
    assert connection.transport_cls == TQ_REDIS_TRANSPORT
    assert connection.as_uri() == "redis://:**@127.0.0.1:6379/3"
    app.conf.broker_redis_transport = "kombu"
    assert app.broker_connection().transport_cls == "redis"
    app.conf.broker_redis_transport = "fast"
    with pytest.raises(ConfigError, match="broker_redis_transport"):
        app.broker_connection()
