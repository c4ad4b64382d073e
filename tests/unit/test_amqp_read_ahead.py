"""tq's AMQP transport (tq/transports/amqp.py): frames cut from large reads, nothing lost."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
from amqp.exceptions import UnexpectedFrame

from tests.conftest import fresh_python_output
from tq.broker import make_connection
from tq.config import Settings
from tq.errors import ConfigError
from tq.transports import TQ_AMQP_TRANSPORT, transport_for_url
from tq.transports.amqp import READ_CHUNK_BYTES, ReadAheadTransport


def frame(channel: int, payload: bytes, *, kind: int = 1, end: int = 0xCE) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + bytes([end])


@pytest.fixture
def wire():
    """A ReadAheadTransport on one end of a socket pair; the test writes the other end."""
    ours, theirs = socket.socketpair()
    transport = ReadAheadTransport("127.0.0.1:5672", connect_timeout=1)
    transport.sock = ours
    transport.connected = True
    transport._setup_transport()
    yield transport, theirs
    ours.close()
    theirs.close()


def test_many_frames_in_one_read_come_out_one_by_one_in_order(wire):
    transport, peer = wire
    payloads = [f"frame {i}".encode() for i in range(50)]
    peer.sendall(b"".join(frame(1, payload) for payload in payloads))
    assert [transport.read_frame()[2] for _ in payloads] == payloads
    assert transport.buffered_frame() is None


def test_a_frame_sent_byte_by_byte_is_not_returned_before_it_is_whole(wire):
    transport, peer = wire
    data = frame(7, b"body of the message")
    for byte in data[:-1]:
        peer.sendall(bytes([byte]))
        with pytest.raises(TimeoutError):
            transport.read_frame(now=True)  # incomplete: nothing consumed, nothing lost
    peer.sendall(data[-1:])
    assert transport.read_frame(now=True) == (1, 7, b"body of the message")


def test_a_frame_larger_than_one_read_arrives_whole(wire):
    transport, peer = wire
    payload = bytes(range(256)) * (3 * READ_CHUNK_BYTES // 256 + 7)
    sender = threading.Thread(target=peer.sendall, args=(frame(2, payload),), daemon=True)
    sender.start()
    transport.sock.settimeout(10)
    assert transport.read_frame() == (1, 2, payload)
    sender.join(10)


def test_a_bad_frame_end_is_refused(wire):
    transport, peer = wire
    peer.sendall(frame(1, b"x", end=0x00))
    with pytest.raises(UnexpectedFrame):
        transport.read_frame()


def test_a_closed_connection_is_an_error_not_a_timeout(wire):
    transport, peer = wire
    peer.sendall(frame(1, b"partial")[:5])
    peer.close()
    with pytest.raises(OSError, match="closed"):
        transport.read_frame()
    assert not transport.connected


def test_amqp_urls_get_tqs_transport_unless_the_setting_says_kombu():
    assert transport_for_url("amqp://guest@127.0.0.1//", Settings()) == TQ_AMQP_TRANSPORT
    assert transport_for_url("pyamqp://127.0.0.1//", Settings()) == TQ_AMQP_TRANSPORT
    settings = Settings()
    settings["broker_amqp_transport"] = "kombu"
    assert transport_for_url("amqp://127.0.0.1//", settings) is None
    settings["broker_amqp_transport"] = "fast"
    with pytest.raises(ConfigError, match="broker_amqp_transport must be 'tq'"):
        transport_for_url("amqp://127.0.0.1//", settings)


def test_the_broker_url_is_shown_with_its_own_scheme():
    connection = make_connection(Settings(), "amqp://guest:secret@127.0.0.1:5672//")
    assert connection.as_uri() == "amqp://guest:**@127.0.0.1:5672//"


def test_reading_a_closed_transport_is_a_connection_error(wire):
    transport, _peer = wire
    transport.sock = None  # what py-amqp's close() leaves
    with pytest.raises(OSError, match="closed"):
        transport.read_frame()


def test_connecting_by_an_ascii_host_name_loads_no_idna_codec(tmp_path):
    # encodings.idna, stringprep and unicodedata cost ~0.4 MB in every connecting process.
    code = (
        "import socket, sys\n"
        "from tq.transports.amqp import ReadAheadTransport\n"
        "server = socket.create_server(('127.0.0.1', 0))\n"
        "transport = ReadAheadTransport('127.0.0.1:%d' % server.getsockname()[1], connect_timeout=5)\n"
        "transport._connect('127.0.0.1', server.getsockname()[1], 5)\n"
        "print(transport.sock is not None, 'encodings.idna' in sys.modules)\n"
    )
    assert fresh_python_output(code) == ["True", "False"]


def test_frames_assemble_into_methods_and_whole_messages():
    from amqp import spec
    from amqp.basic_message import Message as AmqpMessage

    from tq.transports.amqp import frame_reader

    class Counting:
        bytes_recv = 0

    handed: list[tuple[int, tuple[int, int], bytes | None]] = []
    on_frame = frame_reader(
        Counting(), lambda channel, sig, args, message: handed.append((channel, sig, message))
    )
    ack = struct.pack(">HH", *spec.Basic.Ack) + b"args"
    deliver = struct.pack(">HH", *spec.Basic.Deliver) + b"args"
    properties = AmqpMessage(content_type="application/json")._serialize_properties()
    header = struct.pack(">HHQ", 60, 0, 10) + properties  # class, weight, body size
    assert on_frame((1, 1, ack)) is True
    assert on_frame((1, 2, deliver)) is False
    assert on_frame((8, 0, b"")) is False  # a heartbeat between frames changes nothing
    assert on_frame((2, 2, header)) is False
    assert on_frame((3, 2, b"01234")) is False
    assert on_frame((3, 2, b"56789")) is True
    assert [(channel, sig) for channel, sig, _ in handed] == [
        (1, spec.Basic.Ack),
        (2, spec.Basic.Deliver),
    ]
    message = handed[1][2]
    assert message.body == b"0123456789"
    assert message.properties == {"content_type": "application/json"}
    with pytest.raises(UnexpectedFrame, match="expecting type: 1"):
        on_frame((3, 2, b"stray body"))
