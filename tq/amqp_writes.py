"""One socket write for many AMQP publishes on a py-amqp channel (a bulk send's hot spot).

py-amqp writes each published message (method, header and body frames) with its own
sendall: on a loaded two-core machine that system call and the broker's wake-up cost as much
as encoding the message. In a bulk send the frames are kept and written together.

Only a channel whose publishes wait for nothing can be held back this way: with publisher
confirms (transport option confirm_publish) each publish waits for the broker's ack, so the
frames must go at once. Anything that waits for a reply (declaring a queue) has to happen
before the block. A failure inside the block writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def one_write_context(channel: Any) -> Callable[[], Any] | None:
    """Return a context manager that holds the channel's writes, or None if it cannot."""
    connection = getattr(channel, "connection", None)
    transport = getattr(connection, "transport", None)
    if (
        transport is None
        or getattr(connection, "confirm_publish", True)  # not py-amqp, or confirms on
        or not callable(getattr(transport, "_write", None))
        or not callable(getattr(transport, "write", None))
    ):
        return None
    return lambda: _one_write(transport)


@contextmanager
def _one_write(transport: Any) -> Iterator[None]:
    frames: list[bytes] = []
    own = transport.__dict__.get("_write")  # TCP: the socket's sendall; SSL: the class method

    def keep(data: Any) -> None:
        frames.append(bytes(data))  # py-amqp reuses its frame buffer: copy

    transport._write = keep
    try:
        yield
    finally:
        if own is None:
            del transport._write
        else:
            transport._write = own
    if frames:
        transport.write(b"".join(frames))  # marks the transport disconnected on an OSError
