"""Queue depth on the broker: how many messages wait in each named queue, on every transport."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kombu import Connection

    from .app import App

#: Transports whose queues vanish when empty (a Redis list is deleted with its last item),
#: so "no such queue" there means "0 messages", not "not declared".
EMPTY_MEANS_ABSENT = frozenset({"redis"})
#: Transports that count a queue's consumers themselves (kombu's virtual ones always say 0).
COUNTS_CONSUMERS = frozenset({"amqp"})


@dataclass(frozen=True)
class QueueDepth:
    """One queue as the broker sees it: messages ready, and its consumers where it knows."""

    name: str
    #: Messages waiting (not yet delivered); None when the broker has no such queue.
    messages: int | None
    #: Consumers attached, as the broker counts them; None where the transport cannot say.
    consumers: int | None = None

    @property
    def missing(self) -> bool:
        return self.messages is None


def queue_depths(connection: Connection, names: Iterable[str]) -> list[QueueDepth]:
    """Ask the broker for each queue's depth with a passive declare (never creates a queue)."""
    driver = connection.transport.driver_type
    channel_errors = tuple(connection.channel_errors)
    depths: list[QueueDepth] = []
    channel: Any = None
    try:
        for name in dict.fromkeys(names):
            if channel is None:
                channel = connection.channel()
            try:
                declared = channel.queue_declare(queue=name, passive=True)
            except channel_errors:
                # AMQP closes the channel on NOT_FOUND: the next queue gets a fresh one.
                _close_quietly(channel, channel_errors)
                channel = None
                messages = 0 if driver in EMPTY_MEANS_ABSENT else None
                depths.append(QueueDepth(name, messages))
                continue
            consumers = declared.consumer_count if driver in COUNTS_CONSUMERS else None
            depths.append(QueueDepth(name, declared.message_count, consumers))
    finally:
        if channel is not None:
            _close_quietly(channel, channel_errors)
    return depths


def _close_quietly(channel: Any, errors: tuple[type[BaseException], ...]) -> None:
    try:
        channel.close()
    except (OSError, *errors):  # type: ignore[misc] # mypy cannot type a starred tuple here
        pass  # a channel the broker already closed


def configured_queues(app: App) -> list[str]:
    """The task queues an app names: the default queue, task_queues and static task_routes."""
    conf = app.conf
    names = [str(conf.task_default_queue)]
    names += [queue.name for queue in conf.task_queues or ()]
    routes = conf.task_routes
    for table in routes if isinstance(routes, list | tuple) else [routes]:
        if not isinstance(table, dict):
            continue  # a router function: its queues show once tasks are routed there
        for target in table.values():
            queue = target.get("queue") if isinstance(target, dict) else target
            if isinstance(queue, str):
                names.append(queue)
            elif queue is not None and getattr(queue, "name", None):
                names.append(queue.name)
    return list(dict.fromkeys(names))


def routed_queue(app: App, task_name: str) -> str | None:
    """The queue the app's routes send `task_name` to when no queue is given (None if unsure)."""
    from .routing import route_task

    try:
        route = route_task(app.routers, task_name, (), {}, {"queue": None})
    except Exception:  # noqa: BLE001 - a user router that cannot take (name, (), {}) says nothing
        return None
    queue = route.get("queue") or app.conf.task_default_queue
    return queue if isinstance(queue, str) else getattr(queue, "name", None)
