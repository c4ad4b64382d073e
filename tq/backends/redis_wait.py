"""Waiting for results Redis pushes: one long-lived subscriber connection per thread.

redis-py disconnects a PubSub when it is closed, so a client that made one per ``get()`` paid
a TCP connect and the connection handshake (HELLO, CLIENT SETINFO, SELECT: four round trips)
on every wait, then SUBSCRIBE and a GET. Here each thread keeps one connection; a wait sends
SUBSCRIBE for its result channels and, on the same connection, MGET of the stored results
(RESP3 allows commands on a subscribed connection): Redis runs them in that order, so a result
stored before the subscription is in the MGET reply and one stored after is pushed, and the
whole set-up is one round trip. A Redis that speaks only RESP2 gets the subscription confirmed
first and the MGET on the backend's own client: two round trips, the same guarantee.
After the wait the channels are unsubscribed; what arrives for them later is skipped.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: Channels subscribed (and keys read) per command.
SUBSCRIBE_BATCH = 500
#: Longest wait for Redis to answer the set-up of a wait before the connection is given up.
SETUP_TIMEOUT_S = 10.0


class Subscription:
    """Result channels subscribed on this thread's connection, and their stored values."""

    def __init__(self, connection: Any, channels: list[str]) -> None:
        self.connection = connection
        self.channels = {channel.encode() for channel in channels}
        #: What the results' keys held once the subscriptions were in place (MGET order).
        self.values: list[bytes | None] = []
        self._early: list[bytes] = []

    def next_message(self, timeout_s: float) -> bytes | None:
        """The next result pushed on one of our channels within timeout_s, or None."""
        if self._early:
            return self._early.pop(0)
        deadline = time.monotonic() + timeout_s
        while True:
            frame = _read_frame(self.connection, max(deadline - time.monotonic(), 0))
            if isinstance(frame, list) and self._is_ours(frame):
                return frame[2]
            if frame is None and time.monotonic() >= deadline:
                return None

    def _is_ours(self, frame: list) -> bool:
        return len(frame) == 3 and frame[0] == b"message" and frame[1] in self.channels

    def _set_up(self, keys: list[str], read_elsewhere: Callable[[list[str]], list] | None) -> None:
        """Read until every subscription is confirmed and, unless read_elsewhere, the MGET."""
        pending = set(self.channels)
        replies: list[list] = []
        expected = 0 if read_elsewhere else -(-len(keys) // SUBSCRIBE_BATCH)
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        while pending or len(replies) < expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RedisTimeoutError("Redis did not answer the result subscription in time")
            frame = _read_frame(self.connection, remaining)
            if frame is None:
                continue
            if isinstance(frame, list) and frame and frame[0] in _PUSH_KINDS:
                if frame[0] == b"subscribe":
                    pending.discard(frame[1])
                elif self._is_ours(frame):
                    self._early.append(frame[2])
            else:
                replies.append(frame)  # an MGET reply: a list of values, never a push
        if read_elsewhere is not None:
            self.values = read_elsewhere(keys)
        else:
            self.values = [value for reply in replies for value in reply]


_PUSH_KINDS = frozenset({b"subscribe", b"unsubscribe", b"message", b"pong"})


def _read_frame(connection: Any, timeout_s: float) -> Any:
    """The next frame on the connection within timeout_s, or None."""
    if not connection.can_read(timeout=timeout_s):
        return None
    return connection.read_response(push_request=True)


class ResultChannels:
    """Each thread's subscriber connection to the result backend's Redis."""

    def __init__(self, make_connection: Callable[[], Any]) -> None:
        self._make_connection = make_connection
        self._local = threading.local()

    def _connection(self) -> Any:
        local = self._local
        connection = getattr(local, "connection", None)
        if connection is None or getattr(local, "pid", None) != os.getpid():
            connection = self._make_connection()
            connection.connect()
            local.pid, local.connection = os.getpid(), connection
        return connection

    def drop(self) -> None:
        """Close this thread's connection (the next wait opens a new one)."""
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            try:
                connection.disconnect()
            except Exception:
                pass

    @contextmanager
    def subscribed(
        self, keys: list[str], *, read_elsewhere: Callable[[list[str]], list]
    ) -> Iterator[Subscription]:
        """Subscribe to the channels named like keys and read the keys; yield; unsubscribe.

        read_elsewhere(keys) reads the keys on another connection, once the subscriptions
        are confirmed, when this one cannot run commands while subscribed (RESP2).
        """
        connection = self._connection()
        subscription = Subscription(connection, keys)
        resp3 = str(connection.protocol) == "3"
        try:
            commands = []
            for start in range(0, len(keys), SUBSCRIBE_BATCH):
                batch = keys[start : start + SUBSCRIBE_BATCH]
                commands.append(("SUBSCRIBE", *batch))
                if resp3:
                    commands.append(("MGET", *batch))
            connection.send_packed_command(connection.pack_commands(commands))
            subscription._set_up(keys, None if resp3 else read_elsewhere)
        except BaseException:
            # Whatever state the connection is in, the next wait must not inherit it.
            self.drop()
            raise
        try:
            yield subscription
        except Exception as exc:
            # A Redis error (perhaps wrapped by the caller) leaves the connection suspect; a
            # timeout or a bad payload does not.
            if isinstance(exc, RedisError) or isinstance(exc.__cause__, RedisError):
                self.drop()
            raise
        finally:
            # Also after a timeout: the connection is fine, our channels are not wanted.
            if self._local.connection is connection:
                try:
                    connection.send_command("UNSUBSCRIBE", *keys)
                except Exception:
                    self.drop()


def subscriber_factory(client: Any) -> Callable[[], Any]:
    """Make connections like client's, speaking RESP3 where the server does (Redis 6+)."""
    pool = client.connection_pool

    # No health-check PING (a subscribed RESP2 connection answers it with a push), and none of
    # the pool's maintenance-notification handlers: this connection is not the pool's.
    options = {
        key: value
        for key, value in pool.connection_kwargs.items()
        if not key.startswith("maint_notifications")
    }
    options["health_check_interval"] = 0

    def make() -> Any:
        connection = pool.connection_class(**{**options, "protocol": 3})
        try:
            connection.connect()
        except ResponseError:  # no HELLO before Redis 6: RESP2
            connection = pool.connection_class(**{**options, "protocol": 2})
        return connection

    return make
