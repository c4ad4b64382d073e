"""tq's AMQP transport: kombu's py-amqp transport, reading the socket in large chunks.

py-amqp reads each frame with three exact-size ``recv`` calls (header, payload, end byte), so
a task message (method, header and body frames) costs nine system calls, and a worker's
event loop wakes once per frame. This transport reads whatever the socket holds, up to
READ_CHUNK_BYTES, and cuts frames out of that buffer: one ``recv`` for many frames.

Bytes in a user-space buffer are invisible to the event loop's ``epoll``, so the loop's reader
(``Transport._make_reader``) handles every complete frame buffered before it returns; what is
left is at most part of a frame whose rest is still to arrive on the socket, which wakes the
loop. A frame leaves the buffer only once it is complete, so a timeout never loses bytes.

Message properties (a task message's ~20 headers) are read and written by amqp_codec, which
produces the same bytes as py-amqp in ~40 % less time.

TLS connections (``amqps://``, ``broker_use_ssl``) keep py-amqp's own reads. Wire format,
channels and everything above are py-amqp's and kombu's, unchanged.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

import amqp
from amqp import spec
from amqp.exceptions import RecoverableConnectionError, UnexpectedFrame
from amqp.transport import TCPTransport
from kombu.transport import pyamqp

from .amqp_codec import decode_basic_properties, encode_basic_properties
from .amqp_publish import FrameWriter

#: The most one recv takes (RabbitMQ's default frame_max is 128 KiB; bigger frames take more).
READ_CHUNK_BYTES = 65536
#: An AMQP frame: type (octet), channel (short), payload size (long); payload; end octet 0xCE.
FRAME_HEADER = struct.Struct(">BHI")
FRAME_END = 0xCE
#: Errors of a non-blocking read that only mean "nothing yet" (py-amqp's list).
NOTHING_YET = {errno.EAGAIN, errno.EINTR, errno.ENOENT, errno.EWOULDBLOCK}
#: Frame types: a method, a content header, a content body, a heartbeat.
METHOD, HEADER, BODY, HEARTBEAT = 1, 2, 3, 8
#: Methods followed by a content header and body frames (a message).
CONTENT_METHODS = frozenset({spec.Basic.Return, spec.Basic.Deliver, spec.Basic.GetOk})
METHOD_SIGNATURE = struct.Struct(">HH")


class Message(amqp.Message):
    """py-amqp's message, its properties read and written by amqp_codec."""

    def _load_properties(self, class_id: int, buf: bytes, offset: int) -> int:
        if class_id != spec.Basic.CLASS_ID:
            return int(super()._load_properties(class_id, buf, offset))
        self.properties, offset = decode_basic_properties(buf, offset)
        return offset

    def _serialize_properties(self) -> bytes:
        return encode_basic_properties(self.properties)


def frame_reader(connection: Any, on_method: Callable[..., Any]) -> Callable[[Any], bool]:
    """Assemble frames into methods and messages (py-amqp's frame_handler, with our Message).

    Returns the function py-amqp calls with each frame; it returns True once a method or a
    whole message has been handed to `on_method`.
    """
    expecting: dict[int, int] = {}  # channel -> the frame type due next (METHOD if absent)
    assembling: dict[int, Message] = {}  # channel -> the message whose frames are arriving

    def on_frame(frame: tuple[int, int, bytes]) -> bool:
        frame_type, channel, payload = frame
        connection.bytes_recv += 1
        due = expecting.get(channel, METHOD)
        if frame_type == HEARTBEAT:
            return False
        if frame_type != due:
            raise UnexpectedFrame(f"Received frame {frame_type} while expecting type: {due}")
        if frame_type == METHOD:
            signature = METHOD_SIGNATURE.unpack_from(payload, 0)
            if signature not in CONTENT_METHODS:
                on_method(channel, signature, payload, None)
                return True
            assembling[channel] = Message(frame_method=signature, frame_args=payload)
            expecting[channel] = HEADER
            return False
        message = assembling[channel]
        if frame_type == HEADER:
            message.inbound_header(payload)
        else:
            message.inbound_body(payload)
        if not message.ready:
            expecting[channel] = BODY
            return False
        expecting.pop(channel, None)
        del assembling[channel]
        on_method(channel, message.frame_method, message.frame_args, message)
        return True

    return on_frame


class ReadAheadTransport(TCPTransport):
    """py-amqp's TCP transport with buffered reads (see the module's docstring)."""

    def _connect(self, host: Any, port: Any, timeout: Any) -> None:
        # getaddrinfo encodes a str host name with the idna codec, which loads encodings.idna,
        # stringprep and unicodedata (~0.4 MB in every process that connects); an ASCII name
        # needs no encoding.
        if isinstance(host, str) and host.isascii():
            host = host.encode("ascii")
        super()._connect(host, port, timeout)

    def _setup_transport(self) -> None:
        super()._setup_transport()
        self._received = b""
        self._start = 0  # offset of the first byte not yet framed
        # A select.poll of the socket per thread, made when first asked: CPython refuses a
        # poll() on a poll object another thread is inside, and threads may share a connection.
        self._readable = threading.local()

    def write(self, s: Any) -> None:
        """Write bytes to the socket; after a write that fails the connection is unusable.

        py-amqp keeps a connection whose write timed out (or met EAGAIN), but sendall may
        have sent part of the bytes: the next frame written would follow half a frame, and
        the broker could read the two as one message with a body nobody published. The
        socket is shut down instead (kept, as py-amqp's timeouts expect one): the broker drops
        the half frame, and every later write or read fails as a lost connection.
        """
        try:
            super().write(s)
        except BaseException:
            self.connected = False
            if self.sock is not None:
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            raise

    def may_have_frames(self) -> bool:
        """Whether bytes wait, in the buffer or the socket (a zero-timeout poll: no read)."""
        if self._start < len(self._received):
            return True
        sock = self.sock
        if sock is None:
            return True  # let the read say what is wrong
        readable = getattr(self._readable, "poll", None)
        if readable is None:
            readable = self._readable.poll = select.poll()
            readable.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(readable.poll(0))

    def _frame_size(self) -> int | None:
        """Bytes of the next frame (header, payload, end octet), once its header is buffered."""
        if len(self._received) - self._start < FRAME_HEADER.size:
            return None
        payload = FRAME_HEADER.unpack_from(self._received, self._start)[2]
        return FRAME_HEADER.size + payload + 1

    def has_buffered_frame(self) -> bool:
        """Whether a complete frame waits in the buffer."""
        size = self._frame_size()
        return size is not None and len(self._received) - self._start >= size

    def buffered_frame(self) -> tuple[int, int, bytes] | None:
        """Cut the next complete frame out of the buffer, or return None (no system call)."""
        if not self.has_buffered_frame():
            return None
        received, start = self._received, self._start
        frame_type, channel, size = FRAME_HEADER.unpack_from(received, start)
        end = start + FRAME_HEADER.size + size
        if received[end] != FRAME_END:
            self.connected = False
            raise UnexpectedFrame(f"Received frame_end {received[end]:#04x} while expecting 0xce")
        self._start = end + 1
        return frame_type, channel, received[start + FRAME_HEADER.size : end]

    def read_frame(self, unpack: Any = None, *, now: bool = False) -> tuple[int, int, bytes]:
        """Return the next frame, reading the socket as needed (`now`: without waiting)."""
        while True:
            frame = self.buffered_frame()
            if frame is not None:
                return frame
            self._fill(self._frame_size() or FRAME_HEADER.size, now=now)

    def _read(self, n: int, initial: bool = False, _errnos: Any = None) -> bytes:
        """Return exactly n bytes (py-amqp's reader, for any caller besides read_frame)."""
        self._fill(n, now=False, initial=initial)
        data = self._received[self._start : self._start + n]
        self._start += n
        return data

    def _fill(self, needed: int, *, now: bool, initial: bool = True) -> None:
        """Read until `needed` unframed bytes are buffered; on any error keep what came.

        Raises socket.timeout when nothing came in time (at once when `now`), OSError when
        the connection is gone. Chunks are joined once, so a large frame is not copied over
        and over as it arrives.
        """
        parts = [self._received[self._start :]]
        have = len(parts[0])
        try:
            while have < needed:
                data = self._recv(max(READ_CHUNK_BYTES, needed - have), now=now,
                                  initial=initial and have == 0)  # fmt: skip
                parts.append(data)
                have += len(data)
        finally:
            self._received = parts[0] if len(parts) == 1 else b"".join(parts)
            self._start = 0

    def _recv(self, size: int, *, now: bool, initial: bool) -> bytes:
        flags = socket.MSG_DONTWAIT if now else 0
        sock = self.sock
        if sock is None:  # closed: what py-amqp's reader raises then too
            self.connected = False
            raise OSError(errno.EBADF, "Socket is closed")
        while True:
            try:
                data = sock.recv(size, flags)
            except TimeoutError:
                raise
            except OSError as exc:
                if exc.errno not in NOTHING_YET:
                    self.connected = False
                    raise
                # A non-blocking read found nothing: the caller comes back when there is more.
                if now or sock.gettimeout() == 0 or (initial and self.raise_on_initial_eintr):
                    raise TimeoutError() from None
                continue
            if not data:
                self.connected = False
                raise OSError("Server unexpectedly closed connection")
            return data


class Channel(pyamqp.Channel):
    """kombu's py-amqp channel whose outgoing messages use amqp_codec and are published by
    amqp_publish.FrameWriter."""

    def _basic_publish(  # type: ignore[override]
        self,
        msg: Any,
        exchange: str = "",
        routing_key: str = "",
        mandatory: bool = False,
        immediate: bool = False,
        timeout: Any = None,
        confirm_timeout: Any = None,
        argsig: str = "Bssbb",
    ) -> Any:
        """Publish as py-amqp does (the blocked check, a write timeout as a connection error);
        the frames are FrameWriter.publish's. py-amqp's confirm mode calls this too."""
        connection = self.connection
        writer = getattr(connection, "_frame_writer", None)
        if timeout is not None or not isinstance(writer, FrameWriter):
            return super()._basic_publish(
                msg, exchange, routing_key, mandatory, immediate, timeout, confirm_timeout, argsig
            )
        capabilities = connection.client_properties.get("capabilities", {})
        transport = connection.transport
        if capabilities.get("connection.blocked") and (
            not isinstance(transport, ReadAheadTransport) or transport.may_have_frames()
        ):
            try:  # a connection.blocked (or a channel error) the broker sent meanwhile
                connection.drain_events(timeout=0)
            except TimeoutError:
                pass
        try:
            writer.publish(self.channel_id, exchange, routing_key, mandatory, immediate, msg)
        except TimeoutError:
            raise RecoverableConnectionError("basic_publish: timed out") from None

    basic_publish = _basic_publish

    def prepare_message(  # type: ignore[override]
        self,
        body: Any,
        priority: Any = None,
        content_type: Any = None,
        content_encoding: Any = None,
        headers: Any = None,
        properties: Any = None,
        _Message: Any = Message,  # noqa: N803 - kombu's keyword
    ) -> Any:
        """Make an outgoing message as kombu does, of tq's Message class."""
        return super().prepare_message(
            body, priority, content_type, content_encoding, headers, properties, _Message=_Message
        )


class Connection(pyamqp.Connection):
    """kombu's py-amqp connection on a ReadAheadTransport (TLS: py-amqp's own transport),
    with tq's Message for what it sends and receives."""

    Channel = Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frame_handler_cls = frame_reader
        self.frame_writer_cls = FrameWriter

    def Transport(  # noqa: N802 - py-amqp's name for the transport factory
        self,
        host: str,
        connect_timeout: Any,
        ssl: Any = False,
        read_timeout: Any = None,
        write_timeout: Any = None,
        socket_settings: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Make the socket transport: buffered for TCP, py-amqp's for TLS."""
        if ssl:
            return super().Transport(
                host,
                connect_timeout,
                ssl=ssl,
                read_timeout=read_timeout,
                write_timeout=write_timeout,
                socket_settings=socket_settings,
                **kwargs,
            )
        return ReadAheadTransport(
            host,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            socket_settings=socket_settings,
            **kwargs,
        )

    def blocking_read(self, timeout: float | None = None) -> Any:
        """Handle one frame: from the buffer if one is there, else as py-amqp does.

        With timeout 0 on a blocking socket (a worker's event loop) the socket is read with
        MSG_DONTWAIT instead of being switched to non-blocking mode and back.
        """
        transport = self._transport
        if isinstance(transport, ReadAheadTransport):
            frame = transport.buffered_frame()
            sock = transport.sock
            if frame is None and timeout == 0 and sock is not None and sock.gettimeout() is None:
                frame = transport.read_frame(now=True)
            if frame is not None:
                return self.on_inbound_frame(frame)
        return super().blocking_read(timeout)


class Transport(pyamqp.Transport):
    """kombu's py-amqp transport with buffered socket reads."""

    Connection = Connection

    def _make_reader(
        self, connection: Any, timeout: Any = TimeoutError, error: Any = OSError, _unavail: Any = ()
    ) -> Any:
        """The event loop's reader: handle every complete frame buffered, then return."""
        transport = connection.transport
        if not isinstance(transport, ReadAheadTransport):
            return super()._make_reader(connection)
        drain_events = connection.drain_events

        def read(loop: Any) -> None:
            if not connection.connected:
                raise RecoverableConnectionError("Socket was disconnected")
            try:
                drain_events(timeout=0)
                while transport.has_buffered_frame():
                    drain_events(timeout=0)
            except timeout:
                return
            except OSError as exc:
                if exc.errno in NOTHING_YET:
                    return
                raise

        return read
