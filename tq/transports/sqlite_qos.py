"""The embedded broker's QoS: prefetch accounting, and acks, rejects and restores written to the
unacked table. A restore the broker file refuses (locked past busy_timeout, a full disk) keeps
what it held, for the worker to try again after reconnecting."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kombu.transport import virtual

from . import restore_due

if TYPE_CHECKING:
    from .sqlite_channel import Channel

logger = logging.getLogger("tq.transports.sqlite")


class QoS(virtual.QoS):
    """Prefetch accounting plus acks, rejects and restores written to the unacked table."""

    channel: Channel
    _delivered: Any  # kombu declares it None at class level; an OrderedDict per instance

    def ack(self, delivery_tag: str) -> None:
        """Delete the acked message for good (now, or with the hub loop's next transaction)."""
        transport = self.channel.connection
        if transport is None or not transport.defer_ack(delivery_tag):
            self.channel.store.ack([delivery_tag])
        super().ack(delivery_tag)
        self.channel.on_capacity_freed()

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        """Drop the message, or put it back at the head of its queue if requeue."""
        if requeue:
            self.channel.store.restore([delivery_tag])
        else:
            self.channel.store.ack([delivery_tag])
        self._quick_ack(delivery_tag)
        self.channel.on_capacity_freed()

    def restore_unacked(self) -> list[tuple[BaseException, Any]]:
        """Put every message this channel holds (delivered or claimed) back at its queue's head.

        If the store refuses (locked past busy_timeout, a full disk), the messages stay held
        here, for restore_unacked_once to try again; the errors are returned, as kombu expects.
        """
        self._flush()
        tags = list(self._delivered) + self.channel.claimed_tags()
        try:
            if tags:
                self.channel.store.restore(tags)  # its transaction writes pending acks first
            else:
                self.channel.store.flush_acks()  # acks the dropped connection could not write
        except Exception as exc:
            return [(exc, message) for message in self._delivered.values()] or [(exc, None)]
        self._delivered.clear()
        self.channel.take_claimed_tags()
        return []

    def restore_unacked_once(self, stderr: Any = None) -> bool:
        """Restore everything held once; if the store refuses, keep it held for a retry and
        return False.

        kombu marks the channel restored even when the restore failed: the messages would stay
        unacked under this process, which lives on (the worker reconnects), until it exits.
        tq's worker calls this again once it has reconnected (restore_orphans).
        """
        if not restore_due(self):
            return True
        state = self._delivered
        held = len(state) + len(self.channel.claimed_tags())
        if held:
            logger.info("Restoring %d unacknowledged message(s)", held)
        errors = self.restore_unacked()
        if errors:
            logger.warning(
                "could not requeue %d unacknowledged message(s) yet (%r): kept for a retry "
                "after reconnecting, else they go back when this process exits",
                held,
                errors[0][0],
            )
            return False
        state.restored = True
        return True

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        """Restore messages of dead holders and past the visibility timeout."""
        transport = self.channel.connection
        if transport is not None:
            transport.restore_orphans()
