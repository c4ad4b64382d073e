"""Sending a held task message back to its queue as a copy that counts, then acking it.

A broker cannot change a message it redelivers, so a count that must follow a task from worker
to worker (how often its pool process died in it; how often a far ETA task was handed back)
travels in a header of a copy: the worker publishes the message again as it came, with the
count raised, to the queue it came from through the default exchange (routed by the queue's
name, so that nothing else bound to its exchange gets one), then acks the one it held. A crash
between the two leaves both, so the task may run twice: at-least-once, as everywhere. A
delivery whose queue cannot be told (a topic or fanout exchange) is not copied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .consumer import Worker
    from .request import Held

#: Message properties a copy carries besides its body, headers, type and encoding.
COPIED_PROPERTIES = ("correlation_id", "reply_to", "delivery_mode", "expiration", "message_id")


def counted(headers: Any, counter: str) -> int:
    """The count a message carries in its `counter` header (0 if none)."""
    value = headers.get(counter) if isinstance(headers, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def send_back(worker: Worker, held: Held, *, counter: str) -> str:
    """Publish a copy of the held message with `counter` raised by one, then ack the original;
    return the queue it went to. Raises LookupError if that queue cannot be told, or the
    publish error."""
    consumer = worker.task_consumer
    if consumer is None:
        raise LookupError("not consuming")
    queue = queue_of(list(consumer.queues or []), held.message.delivery_info)
    if queue is None:
        raise LookupError("its queue cannot be told from its delivery")
    publish_copy(consumer.channel, held.message, queue, counter=counter)
    held.ack()
    return queue


def queue_of(queues: list[Any], delivery_info: dict[str, Any]) -> str | None:
    """The consumed queue a delivery came from, where its exchange and key name exactly one."""
    exchange = delivery_info.get("exchange") or ""
    key = delivery_info.get("routing_key")
    names = {queue.name for queue in queues}
    if not exchange:
        return key if key in names else None  # the default exchange routes by queue name
    matches = [
        queue.name
        for queue in queues
        if queue.exchange is not None
        and queue.exchange.name == exchange
        and queue.exchange.type == "direct"
        and queue.routing_key == key
    ]
    return matches[0] if len(matches) == 1 else None


def publish_copy(channel: Any, message: Any, queue: str, *, counter: str) -> None:
    """Publish the message again, as it came but for `counter` raised by one, to `queue`
    through the default exchange."""
    properties = message.properties or {}
    copied = {name: properties[name] for name in COPIED_PROPERTIES if properties.get(name)}
    headers = dict(message.headers or {})
    headers[counter] = counted(headers, counter) + 1
    copy = channel.prepare_message(
        message.body,
        properties.get("priority") or 0,
        message.content_type,
        message.content_encoding,
        headers,
        copied,
    )
    channel.basic_publish(copy, exchange="", routing_key=queue)
