"""Event messages: send them (worker, client), receive them (monitors), in Celery's format."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.clocks import LamportClock

from . import topology

if TYPE_CHECKING:
    from .app import App

#: Default seconds between worker-heartbeat events (Celery's).
HEARTBEAT_INTERVAL_S = 2.0
#: A monitor's queue drops events older than this and disappears this long after the monitor.
EVENT_QUEUE_TTL_S = 5.0
EVENT_QUEUE_EXPIRES_S = 60.0

#: Software identity sent with worker events; Flower shows it.
SW_IDENT = "py-celery"

TASK_EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "task-sent": (
        "uuid",
        "name",
        "args",
        "kwargs",
        "retries",
        "eta",
        "expires",
        "root_id",
        "parent_id",
        "queue",
        "exchange",
        "routing_key",
    ),
    "task-received": (
        "uuid",
        "name",
        "args",
        "kwargs",
        "root_id",
        "parent_id",
        "retries",
        "eta",
        "expires",
    ),
    "task-started": ("uuid",),
    "task-succeeded": ("uuid", "result", "runtime"),
    "task-failed": ("uuid", "exception", "traceback"),
    "task-rejected": ("uuid", "requeue"),
    "task-revoked": ("uuid", "terminated", "signum", "expired"),
    "task-retried": ("uuid", "exception", "traceback"),
}


def utcoffset_hours() -> float:
    """Hours *west* of UTC, as Celery sends it (UTC+2 is -2.0)."""
    seconds_west = time.altzone if time.localtime().tm_isdst else time.timezone
    return seconds_west / 3600


def event_exchange(connection: Connection, name: str = topology.EVENT_EXCHANGE) -> Exchange:
    """Return the event exchange: topic, except on Redis where it must be fanout (PUBSUB)."""
    kind = "fanout" if connection.transport.driver_type in ("redis", "gcpubsub") else "topic"
    return Exchange(name, type=kind)


def routing_key_for(event_type: str) -> str:
    """task-succeeded -> task.succeeded."""
    return event_type.replace("-", ".")


class EventDispatcher:
    """Sends events from one node; disabled groups cost nothing."""

    def __init__(
        self,
        connection: Connection,
        *,
        hostname: str,
        clock: LamportClock | None = None,
        exchange_name: str = topology.EVENT_EXCHANGE,
        enabled_groups: Iterable[str] = ("worker",),
    ) -> None:
        self.connection = connection
        self.hostname = hostname
        self.clock = clock or LamportClock()
        self.exchange = event_exchange(connection, exchange_name)
        self.groups = set(enabled_groups)
        self.pid = os.getpid()
        self._producer: Producer | None = None

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self.connection.channel(), auto_declare=False)
            self.exchange(self._producer.channel).declare()
        return self._producer

    def enable(self, group: str) -> bool:
        """Turn on a group of events (task, worker); return False if it was on."""
        if group in self.groups:
            return False
        self.groups.add(group)
        return True

    def disable(self, group: str) -> bool:
        if group not in self.groups:
            return False
        self.groups.discard(group)
        return True

    def enabled(self, event_type: str) -> bool:
        return event_type.split("-", 1)[0] in self.groups

    def build(self, event_type: str, **fields: Any) -> dict[str, Any]:
        """Return an event dict with the common fields every monitor expects."""
        return {
            "hostname": self.hostname,
            "utcoffset": utcoffset_hours(),
            "pid": self.pid,
            "clock": self.clock.forward(),
            **fields,
            "type": event_type,
            "timestamp": time.time(),
        }

    def send(self, event_type: str, **fields: Any) -> None:
        """Publish one event if its group is enabled."""
        if not self.enabled(event_type):
            return
        event = self.build(event_type, **fields)
        self.producer.publish(
            event,
            exchange=self.exchange.name,
            routing_key=routing_key_for(event_type),
            serializer="json",
            delivery_mode=1,
            headers={"hostname": self.hostname},
            retry=False,
        )

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.channel.close()
            except Exception:
                pass
            self._producer = None


def task_sent_fields(
    *,
    task_id: str,
    name: str,
    argsrepr: str,
    kwargsrepr: str,
    retries: int,
    eta: str | None,
    expires: str | None,
    root_id: str | None,
    parent_id: str | None,
    queue: str,
    exchange: str,
    routing_key: str,
) -> dict[str, Any]:
    """Return the fields of a task-sent event."""
    return {
        "uuid": task_id,
        "name": name,
        "args": argsrepr,
        "kwargs": kwargsrepr,
        "retries": retries,
        "eta": eta,
        "expires": expires,
        "root_id": root_id,
        "parent_id": parent_id,
        "queue": queue,
        "exchange": exchange,
        "routing_key": routing_key,
    }


def monitor_queue(
    connection: Connection,
    *,
    exchange_name: str = topology.EVENT_EXCHANGE,
    node_id: str | None = None,
) -> Queue:
    """Return a monitor's own queue: bound with '#', auto-deleted, short-lived messages."""
    return Queue(
        f"celeryev.{node_id or uuid.uuid4()}",
        exchange=event_exchange(connection, exchange_name),
        routing_key="#",
        auto_delete=True,
        durable=False,
        message_ttl=EVENT_QUEUE_TTL_S,
        expires=EVENT_QUEUE_EXPIRES_S,
    )


class EventReceiver:
    """Consumes events for a monitor; calls `handler(event)` with each one, lists flattened."""

    def __init__(
        self,
        connection: Connection,
        handler: Callable[[dict[str, Any]], None],
        *,
        exchange_name: str = topology.EVENT_EXCHANGE,
        clock: LamportClock | None = None,
    ) -> None:
        self.connection = connection
        self.handler = handler
        self.clock = clock or LamportClock()
        self.queue = monitor_queue(connection, exchange_name=exchange_name)
        self._consumer: Consumer | None = None

    def _on_message(self, body: Any, message: Any) -> None:
        for event in body if isinstance(body, list) else [body]:
            if not isinstance(event, dict) or "type" not in event:
                continue
            event["local_received"] = time.time()
            self.clock.adjust(event.get("clock") or 0)
            self.handler(event)

    def consume(self) -> None:
        """Start consuming (declares the monitor queue)."""
        self._consumer = Consumer(
            self.connection.channel(),
            queues=[self.queue],
            callbacks=[self._on_message],
            accept=["json"],
            no_ack=True,
        )
        self._consumer.consume()

    def drain(self, timeout: float | None = None) -> None:
        """Wait up to `timeout` seconds for events (returns after one batch or the timeout)."""
        if self._consumer is None:
            self.consume()
        try:
            self.connection.drain_events(timeout=timeout)
        except TimeoutError:
            pass

    def close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.cancel()
            except Exception:
                pass
            self._consumer = None


#: Reconnect delays after the broker goes away: first, then doubled up to the cap.
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 10.0
#: Seconds one drain waits, so a cancelled consumer notices within this time.
DRAIN_TIMEOUT_S = 0.5


def receive_events(
    app: App,
    handler: Callable[[dict[str, Any]], None],
    *,
    is_cancelled: Callable[[], bool],
    on_connection: Callable[[bool], None] = lambda connected: None,
) -> None:
    """Feed the app's events to `handler` until cancelled, reconnecting with back-off."""
    delay = RECONNECT_FIRST_S
    while not is_cancelled():
        connection = app.broker_connection()
        try:
            receiver = EventReceiver(connection, handler, exchange_name=app.conf.event_exchange)
            receiver.consume()
            on_connection(True)
            delay = RECONNECT_FIRST_S
            while not is_cancelled():
                receiver.drain(timeout=DRAIN_TIMEOUT_S)
            receiver.close()
        except Exception:  # noqa: BLE001 - any broker failure means: report it, wait, retry
            on_connection(False)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not is_cancelled():
                time.sleep(0.1)
            delay = min(delay * 2, RECONNECT_MAX_S)
        finally:
            try:
                connection.release()
            except Exception:  # noqa: BLE001 - a dead connection may fail to close
                pass
