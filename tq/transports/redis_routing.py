"""The base of tq's Redis channel: long-lived clients and cached routing for publishing.

kombu's Redis channel builds a new redis-py client for every command it sends outside the
consumer (each copying redis-py's table of response callbacks); this one keeps one per
channel. It also keeps the binding table of a direct exchange for ``binding_cache_ttl``
seconds, so that publishing to a named exchange is one LPUSH instead of SMEMBERS + LPUSH: the
cache is dropped at once when this process binds, unbinds or deletes, and read again for a
routing key it does not list (such as a remote-control client's reply queue bound a moment ago
by another process). What the cache can miss, for up to the TTL, is a second queue bound by
another process under a routing key the table already has.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis

#: How long a direct exchange's binding table read from Redis is used before reading it again.
DEFAULT_BINDING_CACHE_TTL_S = 1.0


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
        super().__init__(*args, **kwargs)

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
        super()._disconnect_pools()

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
