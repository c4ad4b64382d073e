"""kombu transport for the embedded broker: one SQLite file shared by a machine's processes.

URLs: everything after ``sqlite://`` is the file path, taken literally (no %-decoding, no
query string), as in tq's result backend URL: ``sqlite:///abs/path/broker.db`` and
``sqlite:////abs/path/broker.db`` (SQLAlchemy's spelling) both name ``/abs/path/broker.db``;
``sqlite://relative/path.db`` is relative to the working directory; ``~`` is expanded.

Transport options: ``polling_interval`` (longest idle sleep between polls, s),
``visibility_timeout`` (s after delivery an unacked message is handed out again even if its
holder lives), ``orphan_check_interval`` (s between checks for unacked messages whose holder
process died), ``busy_timeout`` (s to wait for another process's write lock).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from queue import Empty
from typing import Any
from uuid import uuid4

import psutil
from kombu.exceptions import ChannelError
from kombu.transport import virtual
from kombu.transport.base import to_rabbitmq_queue_arguments
from kombu.utils.json import dumps, loads

from ..errors import DataDirError
from .hub_poller import MIN_POLL_BACKOFF_S, HubPoller
from .sqlite_store import DEFAULT_BUSY_TIMEOUT_S, BrokerStore, Holder

#: Longest sleep between polls of an idle consumer (transport option polling_interval).
DEFAULT_POLLING_INTERVAL_S = 0.05
#: An unacked message is redelivered this long after delivery even if its holder lives.
DEFAULT_VISIBILITY_TIMEOUT_S = 3600.0
#: How often a polling process looks for unacked messages of dead processes.
DEFAULT_ORPHAN_CHECK_INTERVAL_S = 1.0
#: Two create times closer than this are the same process (psutil rounds to clock ticks).
CREATE_TIME_TOLERANCE_S = 0.05
#: AMQP delivery_mode of a message the broker need not keep across a power loss.
TRANSIENT_DELIVERY_MODE = 1


def database_path(url: str) -> Path:
    """Return the broker file a sqlite:// URL names (see the module docstring)."""
    path = url.split("://", 1)[1] if "://" in url else url
    if path.startswith("//"):
        path = "/" + path.lstrip("/")  # sqlite:////abs/x.db, the SQLAlchemy spelling
    if not path.strip("/"):
        raise DataDirError(
            f"the broker URL {url!r} names no file: use sqlite:///absolute/path/broker.db"
        )
    return Path(path).expanduser()


def holder_is_alive(pid: int, started: float) -> bool:
    """Return whether process pid is still the one that was created at time started."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user: psutil can still read its create time
    try:
        process = psutil.Process(pid)
        # A SIGKILLed child its parent has not reaped yet still answers kill(pid, 0).
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(process.create_time() - started) < CREATE_TIME_TOLERANCE_S
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell: never hand out a message a live process may hold


class QoS(virtual.QoS):
    """Prefetch accounting plus acks, rejects and restores written to the unacked table."""

    channel: Channel
    _delivered: Any  # kombu declares it None at class level; an OrderedDict per instance

    def ack(self, delivery_tag: str) -> None:
        """Delete the acked message for good."""
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
        """Put every message this channel holds back at the head of its queue."""
        self._flush()
        held = list(self._delivered.items())
        self._delivered.clear()
        if not held:
            return []
        try:
            self.channel.store.restore([tag for tag, _message in held])
        except Exception as exc:
            return [(exc, message) for _tag, message in held]
        return []

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        """Restore messages of dead holders and past the visibility timeout."""
        transport = self.channel.connection
        if transport is not None:
            transport.restore_orphans()


class Channel(virtual.Channel):
    """A virtual channel whose queues, unacked messages and bindings live in the store."""

    QoS = QoS
    supports_fanout = True
    connection: Transport

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        # no_ack consumers must not leave rows in the unacked table that nobody will ack.
        self._no_ack_queues: set[str] = set()

    @property
    def store(self) -> BrokerStore:
        """The transport's store (one SQLite connection per kombu Connection)."""
        return self.connection.store

    def on_capacity_freed(self) -> None:
        """Tell the hub poller a prefetch slot may be free again."""
        if self.connection is not None:
            self.connection.on_capacity_freed()

    def prepare_queue_arguments(self, arguments: dict, **kwargs: Any) -> dict:
        """Turn kombu's Queue(message_ttl=..., expires=...) into x-arguments, as for AMQP."""
        return to_rabbitmq_queue_arguments(arguments, **kwargs)

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
        self.store.put(
            queues,
            self._get_message_priority(message),
            dumps(message),
            durable=durable,
            now=now,
            expires_at=expires_at,
        )

    def _get(self, queue: str, timeout: float | None = None) -> dict:
        payload = self._claim(queue, no_ack=queue in self._no_ack_queues)
        if payload is None:
            raise Empty()
        return payload

    def _claim(self, queue: str, *, no_ack: bool) -> dict | None:
        # A fresh tag per delivery: fanout copies share the publish-time tag.
        tag = None if no_ack else uuid4().hex
        text = self.store.claim(queue, tag=tag, holder=self.connection.holder, now=time.time())
        if text is None:
            return None
        payload = loads(text)
        if tag is not None:
            payload["properties"]["delivery_tag"] = tag
        return payload

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
        """Stop a consumer."""
        super().basic_cancel(consumer_tag)
        self._no_ack_queues &= set(self._tag_to_queue.values())

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        """Return the head message of queue, or None if it is empty."""
        payload = self._claim(queue, no_ack=no_ack)
        if payload is None:
            return None
        message = self.Message(payload, channel=self)
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


class Transport(virtual.Transport):
    """The embedded SQLite broker, usable blocking (drain_events) or under a kombu Hub."""

    Channel = Channel
    # kombu then keeps the whole URL in client.hostname, case and all, for database_path.
    can_parse_url = True
    polling_interval = DEFAULT_POLLING_INTERVAL_S
    driver_type = "sqlite"
    driver_name = "sqlite3"
    implements = virtual.Transport.implements.extend(
        asynchronous=True,
        exchange_type=frozenset(["direct", "topic", "fanout"]),
        heartbeats=False,
    )
    # A lock held past busy_timeout or a disk I/O error: worth reconnecting.
    connection_errors: Any = (*virtual.Transport.connection_errors, sqlite3.OperationalError)
    cycle: Any  # kombu's FairCycle over channels, set in __init__
    channels: Any  # list of this connection's channels, set in __init__

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        options = client.transport_options
        self.path = database_path(client.hostname or "")
        self.visibility_timeout_s = float(
            options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT_S)
        )
        self.orphan_check_interval_s = float(
            options.get("orphan_check_interval", DEFAULT_ORPHAN_CHECK_INTERVAL_S)
        )
        self.busy_timeout_s = float(options.get("busy_timeout", DEFAULT_BUSY_TIMEOUT_S))
        self._store: BrokerStore | None = None
        self._holder: Holder | None = None
        self._next_orphan_check = 0.0
        self._hub_poller: HubPoller | None = None

    @property
    def store(self) -> BrokerStore:
        """The open store; opened by establish_connection."""
        if self._store is None:
            self._store = BrokerStore(self.path, busy_timeout_s=self.busy_timeout_s)
        return self._store

    @property
    def holder(self) -> Holder:
        """(pid, create time) of this process, recorded on every message it holds."""
        pid = os.getpid()
        if self._holder is None or self._holder[0] != pid:
            self._holder = (pid, psutil.Process(pid).create_time())
        return self._holder

    def as_uri(self, uri: str, include_password: bool = False, mask: str = "**") -> str:
        """Show the URL as given: it holds no password."""
        return uri

    def driver_version(self) -> str:
        return sqlite3.sqlite_version

    def establish_connection(self) -> Transport:
        """Open and check the database file (DataDirError if unusable), then a channel."""
        _ = self.store
        return super().establish_connection()

    def close_connection(self, connection: Any) -> None:
        """Stop hub polling, close channels (restoring their unacked messages), close the file."""
        if self._hub_poller is not None:
            self._hub_poller.close()
            self._hub_poller = None
        super().close_connection(connection)
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- polling ---------------------------------------------------------------------------

    def restore_orphans(self) -> int:
        """Requeue unacked messages of dead processes and past the visibility timeout."""
        self._next_orphan_check = time.monotonic() + self.orphan_check_interval_s
        now = time.time()
        return self.store.sweep(
            own=self.holder,
            is_alive=holder_is_alive,
            visible_before=now - self.visibility_timeout_s,
            now=now,
        )

    def maybe_restore_orphans(self) -> None:
        """Run restore_orphans if orphan_check_interval has passed since the last run."""
        if time.monotonic() >= self._next_orphan_check:
            self.restore_orphans()

    def drain_nowait(self, limit: int) -> int:
        """Deliver up to limit ready messages to their consumers; return how many."""
        delivered = 0
        while delivered < limit:
            try:
                self.cycle.get(self._deliver, timeout=0)
            except Empty:
                break
            delivered += 1
        return delivered

    def consumers_blocked(self) -> bool:
        """Return whether some channel has consumers but no free prefetch slot."""
        return any(
            channel._consumers and not channel.qos.can_consume() for channel in self.channels
        )

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> None:
        """Deliver one message, sleeping 1 ms doubling to polling_interval while none come."""
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff_s = MIN_POLL_BACKOFF_S
        while True:
            self.maybe_restore_orphans()
            if self.drain_nowait(1):
                return
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError()  # socket.timeout, what kombu callers catch
            sleep_s = backoff_s if deadline is None else min(backoff_s, deadline - now)
            time.sleep(sleep_s)
            backoff_s = min(backoff_s * 2, self.polling_interval)

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        """Consume under a kombu Hub: see HubPoller."""
        if self._hub_poller is not None:
            self._hub_poller.close()
        self._hub_poller = HubPoller(self, loop)

    def on_capacity_freed(self) -> None:
        """Wake the hub poller if it stopped because prefetch was full."""
        if self._hub_poller is not None:
            self._hub_poller.on_capacity_freed()
