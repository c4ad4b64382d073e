"""A publish whose socket write fails half-way (what sendall gives when the broker stops
reading and write_timeout / SO_SNDTIMEO expires: part of the frames sent, then EAGAIN).

kombu's Producer.publish(retry=True) runs the first attempt inside connection.ensure, so the
error drops the connection and the retry goes out on a new one. tq's Publisher makes its first
attempt outside ensure; it must drop the connection itself before retrying, or the retry's frames
would follow the half-written ones on the same socket (and tq's transport shuts a socket down
after a failed write, for every other writer).
"""

from __future__ import annotations

import errno
import struct
import time
import uuid

import amqp
import pytest
from kombu import Connection, Producer, Queue

from tests.conftest import require_broker
from tq.broker import Publisher
from tq.config import Settings
from tq.protocol import build_task_message

pytestmark = pytest.mark.timeout(60)

URL = "amqp://guest:guest@127.0.0.1:5672//"


def break_next_write(transport, shift: int = 0) -> list[int]:
    """The next socket write sends about half its bytes (inside a frame), then fails as
    SO_SNDTIMEO makes it fail."""
    own = transport._write
    cut: list[int] = []

    def half_then_eagain(data):
        if cut:
            return own(data)
        data = bytes(data)
        cut.append(len(data) // 2 + shift)
        own(data[: cut[0]])
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    transport._write = half_then_eagain
    return cut


def queued_bodies(queue: str) -> list[bytes]:
    """What the queue holds, read with plain py-amqp."""
    with amqp.Connection("127.0.0.1:5672", userid="guest", password="guest") as connection:
        channel = connection.channel()
        bodies = []
        for _ in range(10):
            message = channel.basic_get(queue, no_ack=True)
            if message is None:
                break
            bodies.append(
                message.body if isinstance(message.body, bytes) else message.body.encode()
            )
        return bodies


def declare(queue: str) -> None:
    with amqp.Connection("127.0.0.1:5672", userid="guest", password="guest") as connection:
        connection.channel().queue_declare(queue, auto_delete=False)


def delete(queue: str) -> None:
    with amqp.Connection("127.0.0.1:5672", userid="guest", password="guest") as connection:
        connection.channel().queue_delete(queue)


def test_kombu_producer_retries_a_half_written_publish_on_a_new_connection() -> None:
    """Baseline: kombu (the same tq transport underneath) delivers the message once."""
    require_broker("amqp")
    queue = f"tq-test-partial-write-{uuid.uuid4().hex}"
    declare(queue)
    try:
        with Connection(URL, transport="tq.transports.amqp:Transport") as connection:
            producer = Producer(connection, auto_declare=False)
            connection.connect()
            producer.channel  # noqa: B018 - opened before the fault
            cut = break_next_write(connection.connection.transport)
            producer.publish(b"payload", exchange="", routing_key=queue, retry=True,
                             retry_policy={"max_retries": 3, "interval_start": 0})  # fmt: skip
            assert cut
        time.sleep(0.5)
        assert queued_bodies(queue) == [b"payload"]
    finally:
        delete(queue)


def test_tq_publisher_does_not_lose_a_half_written_publish() -> None:
    require_broker("amqp")
    queue_name = f"tq-test-partial-write-{uuid.uuid4().hex}"
    declare(queue_name)
    conf = Settings({"broker_url": URL})
    publisher = Publisher(conf)
    try:
        queue = Queue(queue_name, durable=False, auto_delete=False)
        # A first publish opens the connection and declares the queue.
        publisher.publish(build_task_message(task_id="first", name="t.a", args=[], kwargs={}),
                          queue=queue, exchange="", routing_key=queue_name)  # fmt: skip
        transport = publisher.connection.connection.transport
        cut = break_next_write(transport)
        publisher.publish(build_task_message(task_id="second", name="t.a", args=[], kwargs={}),
                          queue=queue, exchange="", routing_key=queue_name)  # fmt: skip
        assert cut, "the fault was not hit"
        time.sleep(0.5)
        bodies = queued_bodies(queue_name)
        # publish() returned without an error: both task messages must be in the queue.
        assert len(bodies) == 2, bodies
    finally:
        publisher.close()
        delete(queue_name)


def test_tq_publisher_does_not_lose_a_half_written_batch() -> None:
    """The same in a batch: one socket write for the chunk (amqp_writes), cut half-way."""
    require_broker("amqp")
    queue_name = f"tq-test-partial-write-{uuid.uuid4().hex}"
    declare(queue_name)
    publisher = Publisher(Settings({"broker_url": URL}))
    try:
        queue = Queue(queue_name, durable=False, auto_delete=False)
        publisher.publish(build_task_message(task_id="first", name="t.a", args=[], kwargs={}),
                          queue=queue, exchange="", routing_key=queue_name)  # fmt: skip
        # The chunk is 4 messages of the same size: half-way is between two of them, so cut
        # 100 bytes later, inside the third.
        cut = break_next_write(publisher.connection.connection.transport, shift=100)
        with publisher.batch():
            for n in range(4):
                publisher.publish(
                    build_task_message(task_id=f"b{n}", name="t.a", args=[n], kwargs={}),
                    queue=queue, exchange="", routing_key=queue_name,
                )  # fmt: skip
        assert cut, "the fault was not hit"
        time.sleep(0.5)
        bodies = queued_bodies(queue_name)
        # "first" and each of the batch's 4 at least once (a resent chunk may duplicate some)
        for n in range(4):
            assert any(body.startswith(f"[[{n}]".encode()) for body in bodies), bodies
    finally:
        publisher.close()
        delete(queue_name)


def test_tq_publisher_never_delivers_a_spliced_message() -> None:
    """Where the cut falls decides what the broker makes of the two writes: cut so that the
    body still missing is one byte shorter than the retry's method frame, and the broker takes
    the retry's method frame as the rest of the body, its 0xCE as the frame end, and delivers
    the message with a body that was never published."""
    require_broker("amqp")
    queue_name = f"tq-test-partial-write-{uuid.uuid4().hex}"
    declare(queue_name)
    publisher = Publisher(Settings({"broker_url": URL}))
    try:
        queue = Queue(queue_name, durable=False, auto_delete=False)
        publisher.publish(build_task_message(task_id="first", name="t.a", args=[], kwargs={}),
                          queue=queue, exchange="", routing_key=queue_name)  # fmt: skip
        transport = publisher.connection.connection.transport
        own = transport._write
        sent: list[bytes] = []

        def splice(data):
            if sent:
                return own(data)
            data = bytes(data)
            sent.append(data)
            size = lambda at: 7 + struct.unpack_from(">I", data, at + 3)[0] + 1  # noqa: E731
            method = size(0)
            header = size(method)
            body = size(method + header) - 8
            assert body >= method - 1
            own(data[: method + header + 7 + body - (method - 1)])
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

        transport._write = splice
        args = ["a" * 60]
        publisher.publish(build_task_message(task_id="second", name="t.a", args=args, kwargs={}),
                          queue=queue, exchange="", routing_key=queue_name)  # fmt: skip
        assert sent, "the fault was not hit"
        time.sleep(0.5)
        bodies = queued_bodies(queue_name)
        published = [b'[[], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]',
                     b'[["' + b"a" * 60 + b'"], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]']  # fmt: skip
        assert all(body in published for body in bodies), bodies
    finally:
        publisher.close()
        delete(queue_name)
