"""A worker's events: online, heartbeat every 2 s, offline, and the task-* events when enabled."""

from __future__ import annotations

import logging
import os
import platform
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..events import HEARTBEAT_INTERVAL_S, SW_IDENT, EventDispatcher

if TYPE_CHECKING:
    from .consumer import Worker

logger = logging.getLogger("tq.worker")


class WorkerEvents:
    """Sends a worker's events on its broker connection; a failure is logged (the heartbeat's
    connection errors excepted, see heartbeat())."""

    def __init__(self, worker: Worker, *, task_events: bool) -> None:
        self.worker = worker
        self.task_events = task_events
        self.dispatcher: EventDispatcher | None = None
        self._warned = False

    def connect(self, connection: Any) -> None:
        """Start sending on a (new) connection."""
        groups = {"worker", "task"} if self.task_events else {"worker"}
        self.dispatcher = EventDispatcher(
            connection,
            hostname=self.worker.hostname,
            clock=self.worker.clock,
            exchange_name=self.worker.app.conf.event_exchange,
            enabled_groups=groups,
        )

    def disconnect(self) -> None:
        self.dispatcher = None

    def _send(self, event_type: str, *, probe: bool = False, **fields: Any) -> None:
        dispatcher = self.dispatcher
        if dispatcher is None or not dispatcher.enabled(event_type):
            return
        try:
            dispatcher.send(event_type, **fields)
            self._warned = False
        except Exception as exc:  # monitoring must never stop the work
            if probe and isinstance(exc, dispatcher.connection.connection_errors):
                raise  # the loop drops the connection and reconnects
            if not self._warned:
                logger.warning("could not send %s event: %r", event_type, exc)
                self._warned = True

    def task(self, event_type: str, **fields: Any) -> None:
        """Send a task-* event if task events are on."""
        if self.task_events:
            self._send(event_type, **fields)

    def set_task_events(self, enabled: bool) -> bool:
        """Switch task events; return whether anything changed."""
        changed = enabled != self.task_events
        self.task_events = enabled
        if self.dispatcher is not None:
            if enabled:
                self.dispatcher.enable("task")
            else:
                self.dispatcher.disable("task")
        return changed

    def worker_fields(self) -> dict[str, Any]:
        worker = self.worker
        return {
            "freq": HEARTBEAT_INTERVAL_S,
            "active": len(worker.active),
            "processed": sum(worker.processed.values()),
            "loadavg": [round(load, 2) for load in os.getloadavg()],
            "sw_ident": SW_IDENT,
            "sw_ver": __version__,
            "sw_sys": platform.system(),
        }

    def online(self) -> None:
        self._send("worker-online", **self.worker_fields())

    def heartbeat(self) -> None:
        """Send worker-heartbeat, the loop's probe of its connection: a connection error is
        raised (the worker reconnects) where other events only log it. On Redis that is how a
        broker gone silent is noticed: the publish times out (its socket_timeout)."""
        self._send("worker-heartbeat", probe=True, **self.worker_fields())

    def offline(self) -> None:
        self._send("worker-offline", **self.worker_fields())
