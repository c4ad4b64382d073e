"""Publishing on tq's AMQP connection: a message's three frames built in one go.

py-amqp sends a Basic.Publish through its generic method path: a promise per call, the method
arguments packed by a format interpreter (12 us here), a context manager for the socket
timeout, then its frame writer. That was ~55 us of a ~250 us `delay()` on this machine, Celery's
and tq's alike. FrameWriter keeps py-amqp's writer for every frame and adds `publish`, which
packs the method, header and body frames of a message that fits one body frame with two
structs and writes them with one call, under the same lock as every other frame. The bytes
are py-amqp's (tests/unit/test_amqp_publish.py compares them); a larger message, or an
exchange or routing key too long for a short string, goes py-amqp's way.
"""

from __future__ import annotations

import struct
import threading
from typing import Any

from amqp import spec
from amqp.method_framing import frame_writer
from amqp.serialization import dumps

#: Frame type, channel, payload size; then Basic.Publish's class, method and reserved short.
_PUBLISH_HEAD = struct.Struct(">BHIHHH")
#: Frame type, channel, payload size; then the header's class, weight and body size.
_CONTENT_HEAD = struct.Struct(">BHIHHQ")
#: Frame type, channel, payload size.
_FRAME_HEAD = struct.Struct(">BHI")
_FRAME_END = b"\xce"
#: Bytes of frame overhead py-amqp counts when it decides a message needs several body frames.
_PY_AMQP_FRAME_OVERHEAD = 40
_METHOD_ARGS = "Bssbb"


class FrameWriter:
    """A connection's frame writer (py-amqp's, called the same way), plus publish()."""

    def __init__(self, connection: Any, transport: Any) -> None:
        self._connection = connection
        self._transport = transport
        self._generic = frame_writer(connection, transport)
        self._lock = threading.Lock()

    def __call__(self, type_: int, channel: int, method_sig: Any, args: Any, content: Any) -> Any:
        with self._lock:
            return self._generic(type_, channel, method_sig, args, content)

    def publish(
        self,
        channel: int,
        exchange: str,
        routing_key: str,
        mandatory: bool,
        immediate: bool,
        message: Any,
    ) -> None:
        """Write one Basic.Publish with its message, as py-amqp's send_method would."""
        body = message.body
        if isinstance(body, str):
            body = body.encode(message.properties.setdefault("content_encoding", "utf-8"))
        exchange_raw = _short_string(exchange)
        key_raw = _short_string(routing_key)
        properties = message._serialize_properties()
        method_size = 6 + 1 + len(exchange_raw) + 1 + len(key_raw) + 1
        too_big = (
            method_size + len(properties) + len(body) + _PY_AMQP_FRAME_OVERHEAD
            > self._connection.frame_max - 8
        )
        if too_big or len(exchange_raw) > 255 or len(key_raw) > 255:
            arguments = dumps(_METHOD_ARGS, (0, exchange, routing_key, mandatory, immediate))
            self(1, channel, spec.Basic.Publish, arguments, message)
            return
        class_id, method_id = spec.Basic.Publish
        parts = [
            _PUBLISH_HEAD.pack(1, channel, method_size, class_id, method_id, 0),
            bytes((len(exchange_raw),)),
            exchange_raw,
            bytes((len(key_raw),)),
            key_raw,
            bytes(((1 if mandatory else 0) | (2 if immediate else 0),)),
            _FRAME_END,
            _CONTENT_HEAD.pack(2, channel, 12 + len(properties), class_id, 0, len(body)),
            properties,
            _FRAME_END,
        ]
        if body:
            parts += [_FRAME_HEAD.pack(3, channel, len(body)), body, _FRAME_END]
        data = b"".join(parts)
        with self._lock:
            self._transport.write(data)
            self._connection.bytes_sent += 1


def _short_string(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if not value:  # py-amqp writes '' for None (and any false value)
        return b""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise TypeError(f"an exchange or routing key must be str or bytes, not {type(value).__name__}")
