"""The pool's pipes: pickled messages in multiprocessing's framing (a Connection's send_bytes
and recv_bytes), written with one system call and read in chunks by the parent."""

from __future__ import annotations

import os
import pickle
import struct
from multiprocessing.connection import Connection
from typing import Any

#: Bytes one read takes from a result pipe (a pipe's buffer on Linux).
READ_CHUNK_BYTES = 65536
_SIZE = struct.Struct("!i")
_LARGE_SIZE = struct.Struct("!Q")


def send_pickled(connection: Connection, payload: Any) -> None:
    """Send payload over a pool pipe, read by the other end's recv() as Connection.send's is.

    Plain pickle skips the ForkingPickler that send() builds for every call: jobs and outcomes
    hold no file descriptors or sockets."""
    connection.send_bytes(pickle.dumps(payload, pickle.HIGHEST_PROTOCOL))


class _Messages:
    """What was read from a pool pipe so far, cut into messages as they complete."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = 0

    def add(self, chunk: bytes) -> None:
        # Appending in place keeps a large message's reads linear (a job may be megabytes, read
        # 64 KiB at a time); what was cut out already goes first, leaving at most one partial.
        if self._start:
            del self._data[: self._start]
            self._start = 0
        self._data += chunk

    def next(self) -> Any:
        """The next complete message, or INCOMPLETE (a message may be None: "stop")."""
        frame = _frame_at(self._data, self._start)
        if frame is None:
            return INCOMPLETE
        body_start, end = frame
        self._start = end
        return pickle.loads(self._data[body_start:end])


#: What _Messages.next returns until a whole message is there.
INCOMPLETE = object()


class PipeReader:
    """Reads the messages a child sent with send_pickled, as many as one read brings.

    Connection.recv makes two reads per message (its size, then its bytes) and the parent
    asked the pipe whether another one waits before each: four system calls per result. Here
    one read takes whatever the pipe holds (the hub calls again while more is there), and a
    message split across reads waits for its end.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self._messages = _Messages()
        self._ended = False

    def read(self) -> list[Any]:
        """The messages complete now, oldest first; EOFError once the writer has gone and
        every message it sent was returned."""
        while not self._ended:
            try:
                chunk = os.read(self.fd, READ_CHUNK_BYTES)
            except BlockingIOError:
                break
            self._ended = not chunk
            self._messages.add(chunk)
            if len(chunk) < READ_CHUNK_BYTES:
                break  # the pipe is empty now: no read that would only say so
        messages = []
        while (message := self._messages.next()) is not INCOMPLETE:
            messages.append(message)
        if self._ended and not messages:
            raise EOFError("the pool process closed its result pipe")
        return messages


class JobReader:
    """A pool process's end of its job pipe: Connection.recv's messages, in fewer reads.

    recv makes two reads per job (its size, then its bytes); here one read takes whatever the
    pipe holds, which is often the job after this one too (the parent keeps one waiting).
    Whether a job was read still means whether recv returned it: the parent's take-back
    (pool.PreforkPool.take_back) goes by what the child says it read, not by the pipe.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._messages = _Messages()

    def recv(self) -> Any:
        """The next job, waiting for it; EOFError once the parent closed the pipe."""
        while (message := self._messages.next()) is INCOMPLETE:
            chunk = os.read(self.fd, READ_CHUNK_BYTES)
            if not chunk:
                raise EOFError("the parent closed the job pipe")
            self._messages.add(chunk)
        return message


def _frame_at(data: bytes | bytearray, start: int) -> tuple[int, int] | None:
    """(body start, end) of the message at start if data holds all of it, else None."""
    if len(data) - start < _SIZE.size:
        return None
    size = _SIZE.unpack_from(data, start)[0]
    body_start = start + _SIZE.size
    if size == -1:  # multiprocessing's header for a message of 2 GiB or more
        if len(data) - body_start < _LARGE_SIZE.size:
            return None
        size = _LARGE_SIZE.unpack_from(data, body_start)[0]
        body_start += _LARGE_SIZE.size
    end = body_start + size
    return (body_start, end) if len(data) >= end else None
