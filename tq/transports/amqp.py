"""tq's AMQP transport: kombu's py-amqp transport, reading the socket in large chunks.

py-amqp reads each frame with three exact-size ``recv`` calls (header, payload, end byte), so
a task message (method, header and body frames) costs nine system calls, and a worker's
event loop wakes once per frame. This transport reads whatever the socket holds, up to
READ_CHUNK_BYTES, and cuts frames out of that buffer: one ``recv`` for many frames.

Bytes in a user-space buffer are invisible to the event loop's ``epoll``, so the loop's reader
(``Transport._make_reader``) handles every complete frame buffered before it returns; what is
left is at most part of a frame whose rest is still to arrive on the socket, which wakes the
loop. A frame leaves the buffer only once it is complete, so a timeout never loses bytes.

TLS connections (``amqps://``, ``broker_use_ssl``) keep py-amqp's own reads. Wire format,
channels and everything above the socket are py-amqp's and kombu's, unchanged.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

from amqp.exceptions import RecoverableConnectionError, UnexpectedFrame
from amqp.transport import TCPTransport
from kombu.transport import pyamqp

#: The most one recv takes (RabbitMQ's default frame_max is 128 KiB; bigger frames take more).
READ_CHUNK_BYTES = 65536
#: An AMQP frame: type (octet), channel (short), payload size (long); payload; end octet 0xCE.
FRAME_HEADER = struct.Struct(">BHI")
FRAME_END = 0xCE
#: Errors of a non-blocking read that only mean "nothing yet" (py-amqp's list).
NOTHING_YET = {errno.EAGAIN, errno.EINTR, errno.ENOENT, errno.EWOULDBLOCK}


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

    def buffered_frame(self) -> tuple[int, int, bytes] | None:
        """Cut the next complete frame out of the buffer, or return None (no system call)."""
        received, start = self._received, self._start
        if len(received) - start < FRAME_HEADER.size:
            return None
        frame_type, channel, size = FRAME_HEADER.unpack_from(received, start)
        end = start + FRAME_HEADER.size + size
        if len(received) <= end:
            return None
        if received[end] != FRAME_END:
            self.connected = False
            raise UnexpectedFrame(f"Received frame_end {received[end]:#04x} while expecting 0xce")
        payload = received[start + FRAME_HEADER.size : end]
        self._start = end + 1
        return frame_type, channel, payload

    def has_buffered_frame(self) -> bool:
        """Whether a complete frame waits in the buffer."""
        received, start = self._received, self._start
        if len(received) - start < FRAME_HEADER.size:
            return False
        size = FRAME_HEADER.unpack_from(received, start)[2]
        return len(received) > start + FRAME_HEADER.size + size

    def read_frame(self, unpack: Any = None, *, now: bool = False) -> tuple[int, int, bytes]:
        """Return the next frame, reading the socket as needed (`now`: without waiting)."""
        while True:
            frame = self.buffered_frame()
            if frame is not None:
                return frame
            unframed = len(self._received) - self._start
            needed = FRAME_HEADER.size
            if unframed >= needed:
                size = FRAME_HEADER.unpack_from(self._received, self._start)[2]
                needed += size + 1
            self._fill(needed, now=now)

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


class Connection(pyamqp.Connection):
    """kombu's py-amqp connection on a ReadAheadTransport (TLS: py-amqp's own transport)."""

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
        drain_events = connection.drain_events
        transport = connection.transport

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

        if not isinstance(transport, ReadAheadTransport):
            return super()._make_reader(connection)
        return read
