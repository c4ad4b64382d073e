"""Acks on an AMQP channel that fall due in one loop tick leave in one frame where they can.

AMQP's `basic.ack(tag, multiple=True)` settles every outstanding message up to `tag`. The
worker registers each delivery in order; a flush (once per hub tick, before the loop waits
again) sends one multiple-ack for the oldest run of deliveries that are all due, and single
acks for the due ones behind a message still held (a running acks_late task, a reserved
one): a multiple-ack never covers a message the worker has not finished with. Rejects go out
at once. Used for py-amqp only: tq's Redis and embedded transports already settle in batches.
"""

from __future__ import annotations

from collections import deque
from typing import Any

#: Past this many registered deliveries, forget the settled ones kept behind a held message.
COMPACT_AFTER = 10_000


class BatchedAcks:
    """Wraps a py-amqp channel's basic_ack and basic_reject (see the module docstring)."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self._send_ack = channel.basic_ack
        self._send_reject = channel.basic_reject
        self._order: deque[int] = deque()
        self._open: set[int] = set()
        self._due: set[int] = set()
        channel.basic_ack = self.ack
        channel.basic_reject = self.reject

    def delivered(self, message: Any) -> None:
        """Register a delivery; call before anything can settle it."""
        tag = message.delivery_tag
        self._order.append(tag)
        self._open.add(tag)
        if len(self._order) > COMPACT_AFTER:
            self._order = deque(one for one in self._order if one in self._open)

    def ack(self, delivery_tag: int, multiple: bool = False, **kwargs: Any) -> Any:
        if multiple or delivery_tag not in self._open:
            self.flush()
            return self._send_ack(delivery_tag, multiple, **kwargs)
        self._due.add(delivery_tag)
        return None

    def reject(self, delivery_tag: int, requeue: bool = True, **kwargs: Any) -> Any:
        self._open.discard(delivery_tag)
        self._due.discard(delivery_tag)
        return self._send_reject(delivery_tag, requeue, **kwargs)

    def flush(self) -> None:
        """Send the acks that fell due since the last flush."""
        due = self._due
        if not due:
            return
        order, still_open = self._order, self._open
        last = None
        while order:
            tag = order[0]
            if tag in still_open and tag not in due:
                break  # held: a multiple-ack must stop before it
            order.popleft()
            if tag in due:
                due.discard(tag)
                still_open.discard(tag)
                last = tag
        if last is not None:
            self._send_ack(last, True)
        for tag in sorted(due):
            still_open.discard(tag)
            self._send_ack(tag, False)
        due.clear()

    @property
    def pending(self) -> int:
        """Acks due and not yet sent."""
        return len(self._due)
