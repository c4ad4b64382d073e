"""The base of tq's Redis channel: long-lived clients and cached routing for publishing.

kombu's Redis channel builds a new redis-py client for every command it sends outside the
consumer (each copying redis-py's table of response callbacks); this one keeps one per
channel, and publishes on a connection of its own (see _publish_command). It also keeps the binding table of a direct exchange for ``binding_cache_ttl``
seconds, so that publishing to a named exchange is one LPUSH instead of SMEMBERS + LPUSH: the
cache is dropped at once when this process binds, unbinds or deletes, and read again for a
routing key it does not list (such as a remote-control client's reply queue bound a moment ago
by another process). What the cache can miss, for up to the TTL, is a second queue bound by
another process under a routing key the table already has.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.json import JSONEncoder

from ..protocol import new_task_id

#: How long a direct exchange's binding table read from Redis is used before reading it again.
DEFAULT_BINDING_CACHE_TTL_S = 1.0

#: kombu's JSON encoder, made once (kombu's dumps makes one per message): the same text.
_JSON = JSONEncoder()


def dumps(message: Any) -> str:
    """A message as kombu's Redis transport writes it."""
    return _JSON.encode(message)


class RoutingChannel(kombu_redis.Channel):
    """kombu's Redis channel with one client per channel and a binding-table cache."""

    binding_cache_ttl = DEFAULT_BINDING_CACHE_TTL_S
    from_transport_options: Any = (
        *kombu_redis.Channel.from_transport_options,
        "binding_cache_ttl",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._tables: dict[str, tuple[float, list[tuple[str, str, str]]]] = {}
        self._clients: dict[str, Any] = {}
        self._publisher: tuple[int, Any] | None = None
        # (list key, payload) of the queue puts kept by publishing_in_bulk, else None.
        self._bulk_puts: list[tuple[str, str]] | None = None
        super().__init__(*args, **kwargs)

    def _next_delivery_tag(self) -> str:
        """A random UUID, as kombu's (tq's formatting takes half the time)."""
        return new_task_id()

    # -- clients -----------------------------------------------------------------------------

    def _cached_client(self, kind: str) -> Any:
        """This channel's client: "prefixed" adds global_keyprefix to keys, "raw" does not."""
        client = self._clients.get(kind)
        if client is None:
            if kind == "raw":  # key names given in full: the global prefix is added already
                client = kombu_redis.redis.Redis(connection_pool=self.pool)
            else:
                client = self._create_client()
            self._clients[kind] = client
        return client

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """Yield client, or this channel's command client (kombu makes a new one each time)."""
        yield client if client is not None else self._cached_client("prefixed")

    def _disconnect_pools(self) -> None:
        self._clients.clear()
        self._publisher = None  # its connection is the pool's: disconnected with it
        super()._disconnect_pools()

    def _publishing_connection(self) -> Any:
        """The publishing thread's own connection, or None in another thread."""
        thread = threading.get_ident()
        if self._publisher is None or self._publisher[0] != thread:
            if self._publisher is not None:  # another thread: leave that one its connection
                return None
            self._publisher = (thread, self.pool.get_connection())
        return self._publisher[1]

    def _publish_command(self, *args: Any) -> Any:
        """Send one command on the publishing thread's own connection and read the reply.

        A redis-py client would take a connection from the pool, poll it for stale data,
        wrap the call in its retry and observability layers and give the connection back:
        about as long as the round trip itself. kombu's publish retry policy still applies.
        """
        connection = self._publishing_connection()
        if connection is None:
            return self._cached_client("raw").execute_command(*args)
        try:
            connection.send_command(*args)
            return connection.read_response()
        except self.connection_errors:
            connection.disconnect()
            raise

    def _publish_pipelined(self, commands: list[tuple[Any, ...]]) -> None:
        """Send the commands in one write and read their replies (no MULTI: one round trip)."""
        connection = self._publishing_connection()
        if connection is None:
            pipeline = self._cached_client("raw").pipeline(transaction=False)
            for command in commands:
                pipeline.execute_command(*command)
            pipeline.execute()
            return
        try:
            connection.send_packed_command(connection.pack_commands(commands))
            for _ in commands:
                connection.read_response()
        except BaseException:
            # Replies may be left unread (an error reply raises): the connection is spent.
            connection.disconnect()
            raise

    @contextmanager
    def publishing_in_bulk(self) -> Iterator[None]:
        """Keep the queue puts made in the block; send them as one pipeline when it ends.

        Consecutive messages for the same list go in one LPUSH (Redis adds the values in
        order, as separate LPUSHes would). Fanout and expiring queues are sent at once.
        """
        puts: list[tuple[str, str]] = []
        self._bulk_puts = puts
        try:
            yield
        finally:
            self._bulk_puts = None
        commands: list[tuple[Any, ...]] = []
        for key, payload in puts:
            if commands and commands[-1][1] == key:
                commands[-1] = (*commands[-1], payload)
            else:
                commands.append(("LPUSH", key, payload))
        if commands:
            self._publish_pipelined(commands)

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        """LPUSH the message on its priority's list: one round trip."""
        if kwargs.get("_publish_batch") is not None or queue in self._expires:
            return super()._put(queue, message, **kwargs)  # batches and expiring queues
        key = self.global_keyprefix + self._q_for_pri(
            queue, self._get_message_priority(message, reverse=False)
        )
        if self._bulk_puts is not None:
            self._bulk_puts.append((key, dumps(message)))
        else:
            self._publish_command("LPUSH", key, dumps(message))

    def _put_fanout(self, exchange: str, message: Any, routing_key: str, **kwargs: Any) -> None:
        """PUBLISH the message on the exchange's topic(s), as kombu names them."""
        if kwargs.get("_publish_batch") is not None:
            return super()._put_fanout(exchange, message, routing_key, **kwargs)
        payload = dumps(message)
        for topic in self._get_publish_topics(exchange, routing_key):
            self._publish_command("PUBLISH", self.global_keyprefix + topic, payload)

    # -- routing --------------------------------------------------------------------------

    def get_table(self, exchange: str) -> Any:
        """A direct exchange's bindings, cached for binding_cache_ttl seconds."""
        if not self.binding_cache_ttl or self.typeof(exchange).type != "direct":
            return super().get_table(exchange)
        now = time.monotonic()
        cached = self._tables.get(exchange)
        if cached is not None and cached[0] > now:
            return cached[1]
        table = super().get_table(exchange)
        if table:  # an exchange nobody bound yet is read again next time
            self._tables[exchange] = (now + float(self.binding_cache_ttl), table)
        return table

    def _lookup(self, exchange: str, routing_key: str, default: Any = None) -> Any:
        cached = self._tables.get(exchange)
        if cached is not None and not any(key == routing_key for key, _, _ in cached[1]):
            # A routing key the cache has not seen, such as a remote-control client's reply
            # queue bound a moment ago by another process: read the bindings again.
            del self._tables[exchange]
        return super()._lookup(exchange, routing_key, default)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        self._tables.pop(exchange, None)
        super()._queue_bind(exchange, routing_key, pattern, queue)

    def _delete(self, queue: str, exchange: str, *args: Any, **kwargs: Any) -> None:
        self._tables.pop(exchange, None)
        super()._delete(queue, exchange, *args, **kwargs)

    def exchange_delete(self, exchange: str, if_unused: bool = False, nowait: bool = False) -> None:
        """Delete the exchange and forget its cached bindings."""
        self._tables.pop(exchange, None)
        super().exchange_delete(exchange, if_unused=if_unused, nowait=nowait)
