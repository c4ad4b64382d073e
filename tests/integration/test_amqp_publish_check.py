"""Before each publish tq looks for frames the broker sent (as py-amqp does, for
connection.blocked and channel errors) without a read when there are none."""

from __future__ import annotations

import time
import uuid

import pytest
from kombu import Connection

from tests.conftest import require_broker
from tq.transports.amqp import ReadAheadTransport, Transport

pytestmark = pytest.mark.timeout(30)

URL = "amqp://guest:guest@127.0.0.1:5672//"


def test_frames_from_the_broker_are_seen_and_handled_before_the_next_publish() -> None:
    require_broker("amqp")
    returned: list[str] = []
    with Connection(URL, transport=Transport) as connection:
        channel = connection.default_channel
        channel.events["basic_return"].add(
            lambda exc, exchange, routing_key, message: returned.append(routing_key)
        )
        transport = connection.connection.transport
        assert isinstance(transport, ReadAheadTransport)
        assert not transport.may_have_frames()  # nothing came: no read before a publish
        nowhere = f"tq-nowhere-{uuid.uuid4().hex}"
        message = channel.prepare_message(b"x")
        channel.basic_publish(message, exchange="", routing_key=nowhere, mandatory=True)
        deadline = time.monotonic() + 10
        while not transport.may_have_frames():  # the broker returns the unroutable message
            assert time.monotonic() < deadline, "no basic.return came"
            time.sleep(0.01)
        # The next publish reads it first, as py-amqp's connection.blocked check does.
        channel.basic_publish(channel.prepare_message(b"y"), exchange="", routing_key=nowhere)
        assert returned == [nowhere]
        assert not transport.may_have_frames()
