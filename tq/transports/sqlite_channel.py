"""The embedded broker's kombu channel: queues, bindings and unacked messages kept in the store.

Claims and acks are what a consumer pays per message, so both are batched: a consumer claims
every free slot of its prefetch window in one transaction (the extra messages wait in the
channel, already unacked under this process, so a crash still gives them back), and under a hub
loop an ack is written by the loop's next transaction instead of one of its own (HubPoller runs
that transaction before the loop sleeps again): one transaction per poll, not two per message.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Empty
from typing import TYPE_CHECKING, Any

from kombu.exceptions import ChannelError
from kombu.transport import virtual
from kombu.transport.base import to_rabbitmq_queue_arguments
from kombu.utils.json import dumps

from ..jsontext import loads
from .sqlite_qos import QoS
from .sqlite_schema import NewMessage
from .sqlite_store import BrokerStore

if TYPE_CHECKING:
    from .sqlite import Transport

#: Most messages one claim transaction takes for a consumer without a prefetch limit.
CLAIM_BATCH_MAX = 16
#: While less than half the prefetch window is free, a claim waits this long after the last one
#: for more acks to free slots, so that one transaction takes several messages.
CLAIM_COALESCE_S = 0.004
#: While another queue of the channel delivers, a queue found empty is read again after this
#: long, not at every turn of kombu's round robin (a worker's control queue is empty nearly
#: always: reading it after every task cost ~5 % of a drain). With nothing delivered since, it
#: is read at every poll, so an idle worker sees a new message at once.
EMPTY_RECHECK_S = 0.001
#: AMQP delivery_mode of a message the broker need not keep across a power loss.
TRANSIENT_DELIVERY_MODE = 1


class Channel(virtual.Channel):
    """A virtual channel whose queues, unacked messages and bindings live in the store."""

    QoS = QoS
    supports_fanout = True
    connection: Transport
    #: The messages publishing_in_bulk keeps until its block ends, with their durability.
    _bulk_puts: list[tuple[NewMessage, bool]] | None = None

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        # kombu forgets the transport when the channel closes; a restore that failed then
        # (tried again after a reconnection) still needs its store.
        self._transport = connection
        # no_ack consumers must not leave rows in the unacked table that nobody will ack.
        self._no_ack_queues: set[str] = set()
        # Claimed in a batch, not yet handed to the consumer: payloads per queue.
        self._claimed: dict[str, deque[dict]] = {}
        self._last_claim_at = 0.0
        # Messages _get returned, and per queue when a claim last found it empty and how many
        # had been returned then.
        self._deliveries = 0
        self._found_empty: dict[str, tuple[float, int]] = {}

    @property
    def store(self) -> BrokerStore:
        """The transport's store (one SQLite connection per kombu Connection)."""
        return self._transport.store

    def on_capacity_freed(self) -> None:
        """Tell the hub poller a prefetch slot may be free again."""
        if self.connection is not None:
            self.connection.on_capacity_freed()

    def prepare_queue_arguments(self, arguments: dict, **kwargs: Any) -> dict:
        """Turn kombu's Queue(message_ttl=..., expires=...) into x-arguments, as for AMQP."""
        return to_rabbitmq_queue_arguments(arguments, **kwargs)

    # -- batched claims ----------------------------------------------------------------------

    def free_slots(self) -> int:
        """Free slots of the prefetch window (CLAIM_BATCH_MAX without a prefetch limit)."""
        prefetch = self.qos.prefetch_count
        if not prefetch:
            return CLAIM_BATCH_MAX
        held = len(self.qos._delivered) - len(self.qos._dirty)
        return max(prefetch - held - sum(len(claimed) for claimed in self._claimed.values()), 0)

    def claim_wait_s(self) -> float:
        """How long to wait before claiming again: 0 now, inf until an ack frees a slot.

        With half the window free, claim at once. With less, wait CLAIM_COALESCE_S after the last
        claim for more acks to join one transaction; never for an ack that may not come (an
        acks_late window with a prefetch multiplier of 1 is the pool itself: a pool slot would
        stay idle while a message waits).
        """
        return self._claim_wait_s(self.free_slots())

    def _claim_wait_s(self, free: int) -> float:
        if free <= 0:
            return float("inf")
        if free >= max(1, (self.qos.prefetch_count or 0) // 2):
            return 0.0
        return max(0.0, self._last_claim_at + CLAIM_COALESCE_S - time.monotonic())

    def claim_count(self) -> int:
        """How many messages to claim now: the free slots, or none while claims coalesce."""
        free = self.free_slots()
        return free if self._claim_wait_s(free) == 0.0 else 0

    def poll_wait_s(self) -> float | None:
        """None if this channel can take messages now, else how long until it can (inf: an ack)."""
        if not self._consumers or any(self._claimed.values()):
            return None
        if not self.qos.can_consume():
            return float("inf")
        wait_s = self.claim_wait_s()
        return wait_s if wait_s > 0 else None

    def claimed_tags(self) -> list[str]:
        """The tags of the claimed, undelivered messages."""
        return [
            payload["properties"]["delivery_tag"]
            for claimed in self._claimed.values()
            for payload in claimed
            if "delivery_tag" in payload["properties"]
        ]

    def take_claimed_tags(self) -> list[str]:
        """Forget the claimed, undelivered messages; return their tags (to restore them)."""
        tags = self.claimed_tags()
        self._claimed.clear()
        return tags

    def drop_sockets(self) -> None:
        """Close the handle on the broker file that a restore after the connection was closed
        opened again (closing the connection closes it otherwise, writing what it can)."""
        store = self._transport._store
        if self.connection is None and store is not None:  # kombu closed this channel
            store.close()

    def _claim(self, queue: str, *, count: int, no_ack: bool) -> list[dict]:
        rows = self.store.claim(
            queue,
            count=count,
            keep_unacked=not no_ack,
            holder=self.connection.holder,
            now=time.time(),
        )
        payloads = []
        for tag, text in rows:
            payload = loads(text)
            if tag is not None:
                payload["properties"]["delivery_tag"] = tag
            payloads.append(payload)
        return payloads

    # -- queue hooks of kombu's virtual channel ------------------------------------------

    def _new_queue(self, queue: str, arguments: dict | None = None, **kwargs: Any) -> None:
        # x-message-ttl (ms) is kept; x-expires and auto_delete are accepted and ignored.
        ttl_ms = (arguments or {}).get("x-message-ttl")
        self.store.declare_queue(queue, message_ttl_s=None if ttl_ms is None else ttl_ms / 1000)

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return self.store.has_queue(queue)

    def _size(self, queue: str) -> int:
        return self.store.size(queue)

    def _purge(self, queue: str) -> int:
        return self.store.purge(queue)

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        self._claimed.pop(queue, None)
        self.store.delete_queue(queue)

    def _put(self, queue: str, message: dict, **kwargs: Any) -> None:
        self._put_many([queue], message)

    def _put_fanout(self, exchange: str, message: dict, routing_key: str, **kwargs: Any) -> None:
        self._put_many(self._lookup(exchange, routing_key), message)

    def _put_many(self, queues: Any, message: dict) -> None:
        queues = [queue for queue in queues if queue]
        if not queues:
            return  # unroutable: dropped, as an AMQP broker drops it
        properties = message["properties"]
        durable = properties.get("delivery_mode") != TRANSIENT_DELIVERY_MODE
        now = time.time()
        # AMQP's per-message expiration: milliseconds, as a string.
        expiration_ms = properties.get("expiration")
        expires_at = None if expiration_ms is None else now + float(expiration_ms) / 1000
        new = (queues, self._get_message_priority(message), dumps(message), now, expires_at)
        if self._bulk_puts is not None:
            self._bulk_puts.append((new, durable))
        else:
            self.store.put([new], durable=durable)

    @contextmanager
    def publishing_in_bulk(self) -> Iterator[None]:
        """Keep the messages published in the block; write them in one transaction when it ends."""
        puts: list[tuple[NewMessage, bool]] = []
        self._bulk_puts = puts
        try:
            yield
        finally:
            self._bulk_puts = None
        if puts:
            self.store.put([new for new, _ in puts], durable=any(durable for _, durable in puts))

    def _get(self, queue: str, timeout: float | None = None) -> dict:
        claimed = self._claimed.get(queue)
        if claimed:
            self._deliveries += 1
            return claimed.popleft()
        now = time.monotonic()
        found_empty = self._found_empty.get(queue)
        if (
            found_empty is not None
            and self._deliveries > found_empty[1]
            and now - found_empty[0] < EMPTY_RECHECK_S
        ):
            raise Empty()  # read again soon; the other queues deliver meanwhile
        no_ack = queue in self._no_ack_queues
        count = 1 if no_ack else self.claim_count()
        payloads = self._claim(queue, count=count, no_ack=no_ack) if count else []
        if payloads and not no_ack:
            # Only a claim that took messages starts the coalescing wait: one that found its
            # queue empty wrote nothing (no transaction, so no deferred acks either), and must
            # neither hold back the next queue's claim nor stand for a claim that is coming.
            self._last_claim_at = now
        if not payloads:
            if count:
                self._found_empty[queue] = (now, self._deliveries)
            raise Empty()
        self._found_empty.pop(queue, None)
        if len(payloads) > 1:
            self._claimed[queue] = deque(payloads[1:])
        self._deliveries += 1
        return payloads[0]

    # -- AMQP methods whose state must be shared between processes -----------------------

    def basic_publish(self, message: dict, exchange: str, routing_key: str, **kwargs: Any) -> None:
        """Publish to every queue the exchange routes to, in one transaction."""
        self._inplace_augment_message(message, exchange, routing_key)
        self._put_many(self._lookup(exchange, routing_key), message)

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        """Consume from queue, remembering whether its messages need acks."""
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> None:
        """Stop a consumer; messages claimed for it and not yet delivered go back."""
        queue = self._tag_to_queue.get(consumer_tag)
        super().basic_cancel(consumer_tag)
        self._no_ack_queues &= set(self._tag_to_queue.values())
        if queue is not None and queue not in self._tag_to_queue.values():
            claimed = self._claimed.pop(queue, None) or ()
            tags = [payload["properties"]["delivery_tag"] for payload in claimed]
            if tags:
                self.store.restore(tags)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        """Return the head message of queue, or None if it is empty."""
        payloads = self._claim(queue, count=1, no_ack=no_ack)
        if not payloads:
            return None
        message = self.Message(payloads[0], channel=self)
        if not no_ack:
            self.qos.append(message, message.delivery_tag)
        return message

    def exchange_declare(
        self,
        exchange: str | None = None,
        type: str = "direct",
        durable: bool = False,
        auto_delete: bool = False,
        arguments: dict | None = None,
        nowait: bool = False,
        passive: bool = False,
    ) -> None:
        """Declare an exchange in the store; refuse a second declaration of another type."""
        type = type or "direct"
        exchange = exchange or f"amq.{type}"
        if passive:
            if self.store.exchange_type(exchange) is None:
                raise ChannelError(
                    f"NOT_FOUND - no exchange {exchange!r} in {self.store.path}",
                    (50, 10),
                    "Channel.exchange_declare",
                    "404",
                )
            return
        stored = self.store.declare_exchange(exchange, type)
        if stored != type:
            raise virtual.NotEquivalentError(
                f"exchange {exchange!r} is declared as {stored!r} in {self.store.path}, "
                f"not {type!r}: delete it (channel.exchange_delete) or use another name"
            )

    def exchange_delete(self, exchange: str, if_unused: bool = False, nowait: bool = False) -> None:
        """Delete an exchange and its bindings (bound queues are kept, as in AMQP)."""
        self.store.delete_exchange(exchange)

    def queue_bind(
        self,
        queue: str,
        exchange: str | None = None,
        routing_key: str = "",
        arguments: dict | None = None,
        **kwargs: Any,
    ) -> None:
        """Bind queue to exchange in the store, where every process sees it."""
        exchange = exchange or "amq.direct"
        exchange_type = self.store.exchange_type(exchange)
        if exchange_type is None:
            raise ChannelError(
                f"NOT_FOUND - no exchange {exchange!r} to bind {queue!r} to",
                (50, 10),
                "Channel.queue_bind",
                "404",
            )
        kind: Any = self.exchange_types[exchange_type]  # instances, though typed as classes
        routing_key, pattern, queue = kind.prepare_bind(
            queue,
            exchange,
            routing_key,
            arguments,
        )
        self.store.bind(exchange, exchange_type, routing_key, pattern, queue)

    def queue_unbind(
        self,
        queue: str,
        exchange: str | None = None,
        routing_key: str = "",
        arguments: dict | None = None,
        **kwargs: Any,
    ) -> None:
        """Remove one binding of queue."""
        self.store.unbind(exchange or "amq.direct", routing_key, queue)

    def queue_delete(
        self, queue: str, if_unused: bool = False, if_empty: bool = False, **kwargs: Any
    ) -> int | None:
        """Delete queue, its messages and its bindings."""
        if if_empty and self._size(queue):
            return None
        self._delete(queue)
        return None

    def typeof(self, exchange: str, default: str = "direct") -> Any:
        """Return kombu's exchange-type object for exchange, as declared in the store."""
        return self.exchange_types[self.store.exchange_type(exchange) or default]

    def get_table(self, exchange: str) -> list[tuple[str, str | None, str]]:
        """Return exchange's bindings as kombu's (routing_key, pattern, queue) rows."""
        return self.store.bindings(exchange)

    def list_bindings(self) -> Any:
        """Return every binding as (queue, exchange, routing_key)."""
        return iter(self.store.all_bindings())
