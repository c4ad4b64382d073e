"""tq's Basic.Publish frames are byte for byte py-amqp's."""

from __future__ import annotations

import pytest
from amqp import spec
from amqp.method_framing import frame_writer
from amqp.serialization import dumps

from tq.transports.amqp import Message
from tq.transports.amqp_publish import FrameWriter


class Wire:
    """A connection and transport that keep what is written."""

    def __init__(self, frame_max: int = 131072) -> None:
        self.frame_max = frame_max
        self.bytes_sent = 0
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))


def message(body: bytes | str, **properties: object) -> Message:
    return Message(body, **properties)


def py_amqp_bytes(wire_args: tuple, msg: Message, frame_max: int = 131072) -> tuple[bytes, int]:
    wire = Wire(frame_max)
    write = frame_writer(wire, wire)
    channel, exchange, routing_key, mandatory, immediate = wire_args
    arguments = dumps("Bssbb", (0, exchange, routing_key, mandatory, immediate))
    write(1, channel, spec.Basic.Publish, arguments, msg)
    return b"".join(wire.writes), wire.bytes_sent


def tq_bytes(wire_args: tuple, msg: Message, frame_max: int = 131072) -> tuple[bytes, int, int]:
    wire = Wire(frame_max)
    FrameWriter(wire, wire).publish(*wire_args, msg)
    return b"".join(wire.writes), wire.bytes_sent, len(wire.writes)


HEADERS = {"lang": "py", "task": "proj.add", "id": "8c1e", "retries": 0, "eta": None,
           "timelimit": [None, None], "stamps": {}, "ignore_result": False}  # fmt: skip


@pytest.mark.parametrize(
    ("wire_args", "make"),
    [
        ((1, "", "celery", True, False), lambda: message(
            b'[[2, 2], {}, {"callbacks": null}]', content_type="application/json",
            content_encoding="utf-8", application_headers=dict(HEADERS), delivery_mode=2,
            priority=0, correlation_id="8c1e", reply_to="")),
        ((7, "celeryev", "task.sent", False, False), lambda: message(
            "é text body", content_type="text/plain")),  # str body: encoded, encoding recorded
        ((2, "ex", "", False, True), lambda: message(b"")),  # no body frame
        ((3, None, None, False, False), lambda: message(b"x")),  # py-amqp's '' for None
    ],
)  # fmt: skip
def test_publish_frames_are_py_amqp_s(wire_args, make) -> None:
    expected, sent = py_amqp_bytes(wire_args, make())
    written, tq_sent, writes = tq_bytes(wire_args, make())
    assert written == expected
    assert tq_sent == sent == 1 and writes == 1  # one write, counted for heartbeats


def test_a_message_larger_than_a_frame_goes_py_amqp_s_way() -> None:
    wire_args = (1, "", "celery", False, False)
    body = b"x" * 5000
    expected, _sent = py_amqp_bytes(wire_args, message(body), frame_max=4096)
    written, _tq_sent, writes = tq_bytes(wire_args, message(body), frame_max=4096)
    assert written == expected and writes > 1  # split into body frames by py-amqp


def test_a_routing_key_too_long_fails_as_in_py_amqp() -> None:
    wire_args = (1, "", "k" * 300, False, False)
    with pytest.raises(Exception) as py_amqp_error:
        py_amqp_bytes(wire_args, message(b"x"))
    with pytest.raises(type(py_amqp_error.value)):
        tq_bytes(wire_args, message(b"x"))
