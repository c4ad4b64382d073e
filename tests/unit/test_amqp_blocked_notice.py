"""A connection.blocked the broker sent is handled before tq's next publish
(a local fake AMQP server; RabbitMQ's memory alarm is not touched)."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from amqp import spec
from amqp.serialization import dumps
from kombu import Connection

from tq.transports.amqp import Transport

pytestmark = pytest.mark.timeout(30)


def frame(type_: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", type_, channel, len(payload)) + payload + b"\xce"


def method(channel: int, sig, fmt: str = "", args=()) -> bytes:
    return frame(1, channel, struct.pack(">HH", *sig) + (dumps(fmt, args) if fmt else b""))


def read_frame(conn: socket.socket) -> tuple[int, int, bytes]:
    head = b""
    while len(head) < 7:
        head += conn.recv(7 - len(head))
    type_, channel, size = struct.unpack(">BHI", head)
    payload = b""
    while len(payload) < size + 1:
        payload += conn.recv(size + 1 - len(payload))
    return type_, channel, payload[:-1]


class FakeBroker(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.send_blocked = threading.Event()
        self.blocked_sent = threading.Event()
        self.received: list[tuple[int, int, bytes]] = []
        self.conn: socket.socket | None = None

    def run(self) -> None:
        self.listener.settimeout(10)
        conn, _ = self.listener.accept()
        self.conn = conn
        conn.settimeout(10)
        conn.recv(8)  # AMQP header
        conn.sendall(method(0, spec.Connection.Start, "ooFSS",
                            (0, 9, {"capabilities": {"connection.blocked": True}}, "AMQPLAIN PLAIN",
                             "en_US")))  # fmt: skip
        read_frame(conn)  # start-ok
        conn.sendall(method(0, spec.Connection.Tune, "BlB", (2047, 4096, 0)))
        read_frame(conn)  # tune-ok
        read_frame(conn)  # open
        conn.sendall(method(0, spec.Connection.OpenOk, "s", ("",)))
        _t, channel, _p = read_frame(conn)  # channel.open
        conn.sendall(method(channel, spec.Channel.OpenOk, "S", ("",)))
        self.send_blocked.wait(10)
        conn.sendall(method(0, spec.Connection.Blocked, "s", ("low on memory",)))
        self.blocked_sent.set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(self.received) < 3:
            try:
                self.received.append(read_frame(conn))
            except OSError:
                return


def test_a_blocked_notification_is_handled_before_the_next_publish() -> None:
    broker = FakeBroker()
    broker.start()
    events: list[str] = []
    with Connection(f"amqp://guest:guest@127.0.0.1:{broker.port}//", transport=Transport,
                    transport_options={"on_blocked": lambda reason: events.append(reason)},
                    connect_timeout=5) as connection:  # fmt: skip
        amqp_connection = connection.connection
        amqp_connection.on_blocked = lambda reason: events.append(f"blocked: {reason}")
        assert amqp_connection.frame_max == 4096
        channel = connection.default_channel
        broker.send_blocked.set()
        assert broker.blocked_sent.wait(10)
        time.sleep(0.2)  # the frame is in the client's socket
        channel.basic_publish(channel.prepare_message(b"x"), exchange="", routing_key="q")
        events.append("published")
        assert events[:2] == ["blocked: connection blocked, see broker logs", "published"]
        broker.join(10)
        assert [f[0] for f in broker.received[:3]] == [1, 2, 3]
        if broker.conn is not None:
            broker.conn.close()
