"""Node lifecycle events (node-started, -exited, -restarted, -fatal) on the event exchange."""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger("tq.supervisor")

#: Events waiting for the broker beyond this many are dropped (the supervisor must not grow).
MAX_PENDING = 1000
RETRY_DELAY_S = 5.0


class NodeNotices:
    """Publishes events from a background thread, so a slow broker never stalls the supervisor."""

    def __init__(self, app: App | None) -> None:
        self.app = app
        self.hostname = f"supervisor@{socket.gethostname()}"
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(MAX_PENDING)
        self._thread: threading.Thread | None = None

    def send(self, event_type: str, **fields: Any) -> None:
        if self.app is None:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tq-notices", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait((event_type, fields))
        except queue.Full:
            pass

    def _run(self) -> None:
        from ..events import EventDispatcher

        assert self.app is not None
        while True:
            event_type, fields = self._queue.get()
            try:
                with self.app.broker_connection() as connection:
                    dispatcher = EventDispatcher(
                        connection,
                        hostname=self.hostname,
                        exchange_name=self.app.conf.event_exchange,
                        enabled_groups=("node",),
                    )
                    dispatcher.send(event_type, **fields)
                    while True:  # keep the connection while events keep coming
                        event_type, fields = self._queue.get(timeout=30)
                        dispatcher.send(event_type, **fields)
            except queue.Empty:
                continue
            except Exception as exc:
                logger.info("node event %s not sent: %r", event_type, exc)
                time.sleep(RETRY_DELAY_S)
