"""What RabbitMQ delivers from tq's own publish frames equals what it delivers from py-amqp's, for
headers of every type, every property, bodies around frame_max and non-ASCII names."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import amqp
import pytest

from tests.conftest import require_broker
from tq.transports.amqp import Message as TqMessage
from tq.transports.amqp_publish import FrameWriter

pytestmark = pytest.mark.timeout(60)

HEADERS = {
    "none": None, "t": True, "f": False, "zero": 0, "neg": -5, "big": 2**31, "neg_big": -2**31,
    "huge": 2**63 - 1, "float": 1.25, "dec": Decimal("-12.345"), "empty": "", "text": "héllo ✓",
    "long": "x" * 400, "raw": b"\x00\xff", "when": datetime(2024, 5, 6, 7, 8, 9),
    "list": [1, "a", None, [2.5, {"k": "v"}]], "tuple": (1, 2), "nested": {"a": {"b": {"c": []}}},
    "é-key": "v",
}
PROPS = dict(content_type="application/x-tq-test", content_encoding="utf-8", delivery_mode=2,
             priority=255, correlation_id="c" * 255, reply_to="rép", expiration="60000",
             message_id="m-1", timestamp=1700000000, type="t", app_id="app", cluster_id="cl")  # fmt: skip
BODIES = [b"", b"b" * (131072 - 49), b"b" * (131072 - 48), b"b" * (131072 - 7), b"z" * 300000,
          "é body ✓"]  # fmt: skip


def publish_all(connection: amqp.Connection, exchange: str, key: str) -> None:
    channel = connection.channel()
    for body in BODIES:
        message = TqMessage(body, application_headers=dict(HEADERS), **PROPS)
        channel.basic_publish(message, exchange=exchange, routing_key=key)
    channel.close()


def collect(connection: amqp.Connection, queue: str) -> list[tuple]:
    channel = connection.channel()
    got = []
    for _ in range(len(BODIES)):
        message = channel.basic_get(queue, no_ack=True)
        assert message is not None
        got.append((message.body, message.properties, message.delivery_info["routing_key"],
                    message.delivery_info["exchange"]))  # fmt: skip
    assert channel.basic_get(queue, no_ack=True) is None
    channel.close()
    return got


def test_rabbitmq_delivers_the_same_from_tq_and_py_amqp() -> None:
    require_broker("amqp")
    tag = uuid.uuid4().hex
    exchange, key, queue = f"tq-test-ëx-{tag}", f"rk-ключ-{tag}", f"tq-test-roundtrip-{tag}"
    plain = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    plain.connect()
    from kombu import Connection as KombuConnection

    from tq.transports.amqp import Transport

    tq = KombuConnection("amqp://guest:guest@127.0.0.1:5672//", transport=Transport)
    tq.connect()
    assert isinstance(tq.connection.frame_writer, FrameWriter)

    setup = plain.channel()
    setup.exchange_declare(exchange, "direct", auto_delete=False)
    setup.queue_declare(queue, auto_delete=False)
    setup.queue_bind(queue, exchange, key)
    try:
        publish_all(plain, exchange, key)
        expected = collect(plain, queue)
        # tq's channel publish path on a py-amqp connection whose writer is tq's
        channel = tq.channel()
        for body in BODIES:
            message = TqMessage(body, application_headers=dict(HEADERS), **PROPS)
            channel.basic_publish(message, exchange=exchange, routing_key=key)
        got = collect(plain, queue)
        assert got == expected
    finally:
        setup.queue_delete(queue)
        setup.exchange_delete(exchange)
        plain.close()
        tq.close()
