"""Waiting for results Redis pushes: one long-lived pub/sub connection per thread.

redis-py disconnects a PubSub when it is closed, so a client that made one per ``get()`` paid
a TCP connect and the connection handshake (HELLO, CLIENT SETINFO, SELECT: four round trips)
on every wait. Here each thread keeps its connection and only subscribes to the channels of
the results it waits for, and unsubscribes after. The subscription is confirmed before the
caller reads the stored results, so a result stored in between is pushed, never missed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from redis.exceptions import TimeoutError as RedisTimeoutError

#: Channels subscribed per SUBSCRIBE command.
SUBSCRIBE_BATCH = 500
#: Longest wait for Redis to confirm a subscription before the connection is given up.
CONFIRM_TIMEOUT_S = 10.0


class Subscription:
    """Channels subscribed on this thread's connection; pushes that came early are kept."""

    def __init__(self, pubsub: Any, channels: set[bytes]) -> None:
        self.pubsub = pubsub
        self.channels = channels
        self.early: list[dict[str, Any]] = []

    def next_message(self, timeout_s: float) -> dict[str, Any] | None:
        """The next message pushed on one of our channels within timeout_s, or None."""
        if self.early:
            return self.early.pop(0)
        deadline = time.monotonic() + timeout_s
        while True:
            message = self.pubsub.get_message(False, max(deadline - time.monotonic(), 0))
            if message is None:
                return None
            if message.get("type") == "message" and message.get("channel") in self.channels:
                return message
            if time.monotonic() >= deadline:
                return None


class ResultChannels:
    """Each thread's pub/sub connection to the result backend's Redis."""

    def __init__(self, make_pubsub: Callable[[], Any]) -> None:
        self._make_pubsub = make_pubsub
        self._local = threading.local()

    def _pubsub(self) -> Any:
        local = self._local
        if getattr(local, "pid", None) != os.getpid() or local.pubsub is None:
            local.pid = os.getpid()
            local.pubsub = self._make_pubsub()
        return local.pubsub

    def drop(self) -> None:
        """Close this thread's connection (the next wait opens a new one)."""
        pubsub = getattr(self._local, "pubsub", None)
        self._local.pubsub = None
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:
                pass

    @contextmanager
    def subscribed(self, channels: list[str]) -> Iterator[Subscription]:
        """Subscribe to channels (confirmed), yield them, then unsubscribe."""
        pubsub = self._pubsub()
        wanted = {channel.encode() for channel in channels}
        subscription = Subscription(pubsub, wanted)
        try:
            for start in range(0, len(channels), SUBSCRIBE_BATCH):
                pubsub.subscribe(*channels[start : start + SUBSCRIBE_BATCH])
            _confirm(subscription)
            yield subscription
        except BaseException:
            # Whatever state the connection is in, the next wait must not inherit it.
            self.drop()
            raise
        try:
            pubsub.unsubscribe(*channels)  # confirmations are skipped by the next wait
        except Exception:
            self.drop()


def _confirm(subscription: Subscription) -> None:
    """Read until Redis confirmed every channel; keep our pushes that overtook the confirmations."""
    pending = set(subscription.channels)
    deadline = time.monotonic() + CONFIRM_TIMEOUT_S
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RedisTimeoutError("Redis did not confirm the result subscriptions in time")
        message = subscription.pubsub.get_message(False, remaining)
        if message is None:
            continue
        kind, channel = message.get("type"), message.get("channel")
        if kind == "subscribe":
            pending.discard(channel)
        elif kind == "message" and channel in subscription.channels:
            subscription.early.append(message)
