"""Every exchange, queue and routing-key name tq uses, in one place."""

from __future__ import annotations

from kombu import Exchange, Queue

#: The nameless default exchange: a message goes to the queue named by its routing key.
DEFAULT_EXCHANGE = ""

#: Event exchange (topic; fanout on Redis) and remote-control exchanges.
EVENT_EXCHANGE = "celeryev"
PIDBOX_EXCHANGE_SUFFIX = ".pidbox"
REPLY_PIDBOX_PREFIX = "reply."


def task_queue(
    name: str,
    *,
    exchange: str | None = None,
    exchange_type: str = "direct",
    routing_key: str | None = None,
    max_priority: int | None = None,
) -> Queue:
    """Return the durable task queue `name`, bound to its direct exchange as Celery declares it."""
    arguments = {"x-max-priority": max_priority} if max_priority else None
    return Queue(
        name,
        Exchange(exchange or name, exchange_type, durable=True),
        routing_key=routing_key or name,
        durable=True,
        queue_arguments=arguments,
    )


def rpc_reply_queue(oid: str, *, expires_s: float | None) -> Queue:
    """Return a client's rpc result queue: named by its oid, auto-deleted."""
    arguments = {"x-expires": int(expires_s * 1000)} if expires_s else None
    return Queue(
        oid,
        Exchange(DEFAULT_EXCHANGE, "direct"),
        routing_key=oid,
        durable=False,
        auto_delete=True,
        queue_arguments=arguments,
    )


def describe_queue(queue: Queue) -> str:
    """Return the banner line for a queue: name, exchange(type), key."""
    exchange = queue.exchange
    return f"{queue.name:<16} exchange={exchange.name}({exchange.type}) key={queue.routing_key}"
