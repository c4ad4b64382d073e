"""Prefetch accounting and acks for tq's Redis channel: kombu's unacked keys, written in batches.

The claim script has already recorded a delivered message as unacked, so delivery costs no
round trip here. Under a kombu Hub an ack (or a reject without requeue) joins the channel's
next script call, sent with the hub loop's next tick; without a hub it is written at once.
Restores keep kombu's semantics (``restore_by_tag``), except that a restore which cannot
reach Redis leaves the messages held, so that the worker can restore them once it has
reconnected instead of leaving them to the visibility timeout.

Leases: every consumer restores the unacked messages claimed more than ``visibility_timeout``
ago, taking them to be a dead consumer's. kombu never updates a claim's time, so a task that
runs (or an ETA that waits) longer than that ran twice. Under a hub, tq's channel marks the
messages it holds as claimed again every quarter of the timeout (``renew_leases``): only a
consumer that stopped (died, or hung) leaves its messages to be restored.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from . import restore_due

if TYPE_CHECKING:
    from .redis_channel import Channel

logger = logging.getLogger("tq.transports.redis")


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS without the per-message pipelines."""

    channel: Channel
    _delivered: Any  # an OrderedDict per instance (None at class level in kombu)
    _dirty: Any

    def append(self, message: Any, delivery_tag: str) -> None:
        """Hold a delivered message; the claim script recorded it as unacked already."""
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        """Forget the message in Redis (with the next script call under a hub)."""
        self.channel.forget([delivery_tag])
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        """Requeue the message at the back of its queue (kombu's choice), or drop it."""
        if requeue:
            self.restore_by_tag(delivery_tag, leftmost=True)
        else:
            self.channel.forget([delivery_tag])
        virtual.QoS.ack(self, delivery_tag)

    def give_back(self, delivery_tag: str) -> None:
        """Requeue a message unrun at the head of its queue (its consumer stops)."""
        self.restore_by_tag(delivery_tag, leftmost=False)
        virtual.QoS.ack(self, delivery_tag)

    def renew_leases(self) -> int:
        """Mark every message held here as claimed now (only those still unacked in Redis)."""
        tags = list(self._delivered)
        if not tags:
            return 0
        score = float(self.channel._next_score())
        with self.channel.conn_or_acquire() as client:
            # XX: a message acked meanwhile (or restored by another consumer) is not added back.
            client.zadd(self.channel.unacked_index_key, dict.fromkeys(tags, score), xx=True)
        return len(tags)

    def restore_unacked(self, client: Any = None) -> None:
        """Write pending acks, give back a claim whose reply was lost, requeue the rest."""
        self._flush()
        self.channel.abandon_call()
        self.channel.flush_acks()
        self.channel.recover_lost_claims()
        with self.channel.conn_or_acquire(client) as connected:
            for tag in list(self._delivered):
                self.restore_by_tag(tag, client=connected)
                del self._delivered[tag]

    def restore_unacked_once(self, stderr: Any = None) -> bool:
        """Restore everything held once; if Redis is unreachable, keep it held for a retry
        (and return False).

        kombu marks the channel restored even when the restore failed, which leaves the
        messages to the visibility timeout (an hour by default); tq's worker calls this again
        once it has reconnected (tq.worker.connection.restore_orphans).
        """
        if not restore_due(self):
            return True
        state = self._delivered
        try:
            if state or self.channel.holds_unacked_work():
                logger.info("Restoring %d unacknowledged message(s)", len(state))
            self.restore_unacked()
        except self.channel.connection_errors as exc:
            logger.warning(
                "could not requeue %d unacknowledged message(s) yet (%r): kept for a retry "
                "after reconnecting, else the visibility timeout returns them",
                len(state),
                exc,
            )
            return False
        state.restored = True
        return True
