"""After a claim reply the Redis channel looks for wake-ups in redis-py's buffer only."""

from __future__ import annotations

import select
import time

import pytest

from tests.conftest import require_broker

redis = pytest.importorskip("redis")

from tq.transports.redis_wakeups import _holds_bytes  # noqa: E402

pytestmark = pytest.mark.timeout(30)


def test_bytes_in_the_buffer_are_seen_without_reading_the_socket() -> None:
    require_broker("redis")
    connection = redis.Connection(host="127.0.0.1", port=6379, protocol=3)
    try:
        connection.connect()
        connection.send_command("PING")
        connection.send_command("ECHO", "second")
        select.select([connection._sock], [], [], 5)
        time.sleep(0.05)  # both replies in the socket, none read
        # Nothing in redis-py's buffer yet: only a socket read finds the replies.
        assert not _holds_bytes(connection, buffered_only=True)
        assert _holds_bytes(connection, buffered_only=False)
        assert connection.read_response() in (b"PONG", "PONG")
        # One read took both replies: the second waits in the buffer, seen without the socket.
        assert _holds_bytes(connection, buffered_only=True)
        assert connection.read_response() in (b"second", "second")
        assert not _holds_bytes(connection, buffered_only=True)
        assert not _holds_bytes(connection, buffered_only=False)
    finally:
        connection.disconnect()


class NoBuffer:
    """A parser that keeps no SocketBuffer (as hiredis's)."""


class AskedConnection:
    def __init__(self) -> None:
        self._parser = NoBuffer()
        self.asked = 0

    def can_read(self, timeout: float = 0) -> bool:
        self.asked += 1
        return True


def test_a_parser_without_a_buffer_to_look_at_is_asked_as_before() -> None:
    connection = AskedConnection()
    assert _holds_bytes(connection, buffered_only=True) and connection.asked == 1
