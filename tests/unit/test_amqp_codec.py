"""amqp_codec writes the bytes py-amqp writes and reads what py-amqp reads."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from amqp.basic_message import Message as AmqpMessage
from amqp.exceptions import FrameSyntaxError
from amqp.serialization import decode_properties_basic

from tq.transports.amqp_codec import decode_basic_properties, encode_basic_properties

# What a Celery 5 / tq task message carries, and every kind of value a table can hold.
CELERY_HEADERS = {
    "lang": "py",
    "task": "proj.tasks.add",
    "id": "0cb04043-d997-4636-83a8-1bf71a82727a",
    "shadow": None,
    "eta": None,
    "expires": "2026-11-25T01:00:00+00:00",
    "group": None,
    "group_index": None,
    "retries": 0,
    "timelimit": [None, 30],
    "root_id": "0cb04043-d997-4636-83a8-1bf71a82727a",
    "parent_id": None,
    "argsrepr": "(2, 2)",
    "kwargsrepr": "{}",
    "origin": "gen123@host",
    "ignore_result": False,
    "replaced_task_nesting": 0,
    "stamped_headers": None,
    "stamps": {},
}
EVERY_KIND = {
    "text": "héllo ✓",
    "raw": b"\xff\xfe not utf-8",
    "small": -2147483647,
    "edge": -2147483648,
    "big": 2**40,
    "negative big": -(2**40),
    "float": 1.5,
    "true": True,
    "false": False,
    "none": None,
    "nested": {"a": [1, "two", {"three": 3.0}], "b": ()},
    "decimal": Decimal("-12.345"),
    "moment": datetime(2026, 11, 25, 1, 2, 3),
    "empty": "",
}
PROPERTIES = {
    "content_type": "application/json",
    "content_encoding": "utf-8",
    "application_headers": {**CELERY_HEADERS, **EVERY_KIND},
    "delivery_mode": 2,
    "priority": 0,
    "correlation_id": "0cb04043-d997-4636-83a8-1bf71a82727a",
    "reply_to": "f0e1d2c3-reply",
    "expiration": "60000",
    "message_id": "m-1",
    "timestamp": 1764032523,
    "type": "task",
    "user_id": "guest",
    "app_id": "tq",
    "cluster_id": "",
}


def py_amqp_bytes(properties):
    return AmqpMessage(**properties)._serialize_properties()


@pytest.mark.parametrize(
    "properties",
    [
        PROPERTIES,
        {"content_type": "application/json", "application_headers": CELERY_HEADERS},
        {"delivery_mode": 1},
        {},
    ],
    ids=["every property and kind", "a task message", "one octet", "nothing"],
)
def test_writes_the_bytes_py_amqp_writes(properties):
    assert encode_basic_properties(properties) == py_amqp_bytes(properties)


def test_reads_what_py_amqp_reads_with_the_same_offset():
    raw = b"prefix" + py_amqp_bytes(PROPERTIES) + b"body follows"
    ours, our_end = decode_basic_properties(raw, 6)
    theirs, their_end = decode_properties_basic(raw, 6)
    assert ours == theirs and our_end == their_end == len(raw) - len(b"body follows")
    assert ours["application_headers"]["raw"] == b"\xff\xfe not utf-8"  # kept as bytes
    assert ours["application_headers"]["nested"]["b"] == []


def test_reads_the_letters_other_clients_write():
    # RabbitMQ's signed 16 ("s") and 64 ("l"), bytes ("x"), unsigned ints, a float and a
    # timestamp, hand-written as pika or the management UI would send them.
    items = (
        b"\x01as\xff\xfe"
        + b"\x01bl\xff\xff\xff\xff\xff\xff\xff\xfe"
        + b"\x01cx\x00\x00\x00\x02\x00\x01"
        + b"\x01dB\xfa"
        + b"\x01eu\xff\xff"
        + b"\x01fi\xff\xff\xff\xff"
        + b"\x01gf\x3f\xc0\x00\x00"
        + b"\x01hb\xfe"
        + b"\x01iU\xff\xfe"
    )
    table = len(items).to_bytes(4, "big") + items
    raw = (0x2000).to_bytes(2, "big") + table
    ours, _ = decode_basic_properties(raw, 0)
    theirs, _ = decode_properties_basic(raw, 0)
    assert ours == theirs
    assert ours["application_headers"] == {
        "a": -2, "b": -2, "c": b"\x00\x01", "d": 250, "e": 65535, "f": 2**32 - 1,
        "g": 1.5, "h": -2, "i": -2,
    }  # fmt: skip


def test_refuses_what_py_amqp_refuses():
    with pytest.raises(FrameSyntaxError, match="not handled by amqp"):
        encode_basic_properties({"application_headers": {"thing": object()}})
    bad = (0x2000).to_bytes(2, "big") + (3).to_bytes(4, "big") + b"\x01a?"
    with pytest.raises(FrameSyntaxError, match="Unknown value in table"):
        decode_basic_properties(bad, 0)
