"""Drive a polling kombu transport (one with no socket to watch) from a kombu Hub."""

from __future__ import annotations

import os
from typing import Any, Protocol

#: First sleep after an empty poll; doubles up to the transport's polling_interval.
MIN_POLL_BACKOFF_S = 0.001
#: Messages delivered per hub callback before the hub's timers and other fds get a turn.
HUB_DRAIN_BATCH_MAX = 32


class PolledTransport(Protocol):
    """What HubPoller needs from a transport."""

    polling_interval: float

    def drain_nowait(self, limit: int) -> int:
        """Deliver up to limit ready messages; return how many."""

    def maybe_restore_orphans(self) -> None:
        """Do periodic housekeeping (rate-limited by the transport)."""

    def consumers_wait_s(self) -> float | None:
        """None if a consumer can take a message now, else seconds until one can (inf: an ack)."""


class HubPoller:
    """Polls a transport from a kombu Hub, at once while messages flow, backing off when idle.

    The hub has no fd to watch for a database file, so the poller owns a pipe: a byte in it
    makes the hub's poll return at once and call the poller, which drains a batch. While
    messages keep coming the byte stays; when a poll finds none, the byte is read out and a
    hub timer writes it again after a backoff (1 ms doubling to polling_interval). When
    prefetch is full, an ack or reject rewrites it at once.
    """

    def __init__(self, transport: PolledTransport, hub: Any) -> None:
        self.transport = transport
        self.hub = hub
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._armed = False
        self._waiting_for_capacity = False
        self._backoff_s = MIN_POLL_BACKOFF_S
        self._timer: Any = None
        self._closed = False
        hub.add_reader(self._read_fd, self._on_readable)
        hub.on_close.add(self.close)
        self.arm()

    def arm(self) -> None:
        """Make the hub call the poller on its next iteration (safe from any thread)."""
        if self._armed or self._closed:
            return
        self._armed = True
        try:
            os.write(self._write_fd, b"\0")
        except (BlockingIOError, OSError):
            pass

    def on_capacity_freed(self) -> None:
        """Poll again now if the last poll stopped on a full prefetch window."""
        if self._waiting_for_capacity:
            self._waiting_for_capacity = False
            self.arm()

    def _disarm(self) -> None:
        # Cleared before reading, so an arm() from another thread meanwhile writes again.
        self._armed = False
        try:
            os.read(self._read_fd, 4096)
        except (BlockingIOError, OSError):
            pass

    def _on_readable(self) -> None:
        if self._closed:
            return
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self.transport
        transport.maybe_restore_orphans()
        if transport.drain_nowait(HUB_DRAIN_BATCH_MAX):
            self._backoff_s = MIN_POLL_BACKOFF_S
            self.arm()
            return
        wait_s = transport.consumers_wait_s()
        if wait_s is not None:
            # An ack re-arms; the timer is the fallback for a channel we are not told about.
            self._waiting_for_capacity = True
            delay_s = min(wait_s, transport.polling_interval)
        else:
            delay_s = self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, transport.polling_interval)
        self._timer = self.hub.call_later(delay_s, self.arm)

    def close(self, *args: Any) -> None:
        """Stop polling and release the pipe."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.hub.on_close.discard(self.close)
        try:
            self.hub.remove(self._read_fd)
        except Exception:
            pass  # the hub may be closed already
        os.close(self._read_fd)
        os.close(self._write_fd)
