"""EventRecorder: the supervisor's thread that appends the cluster's events to the durable log."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TQError
from ..eventlog import DEFAULT_MAX_BYTES, DEFAULT_RETENTION_S, EventLogWriter
from ..events import receive_events

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger("tq.supervisor")

#: How long stopping waits for the recorder to flush and let go of the broker.
STOP_TIMEOUT_S = 5.0
#: How long starting waits for the recorder to listen, so the nodes' first events are recorded.
LISTEN_WAIT_S = 2.0


class EventRecorder:
    """Consumes the event exchange into an EventLogWriter in a background thread.

    It never stalls or stops the supervisor: a broker away is retried, a log it cannot write is
    logged once and recording ends. Without an app (no broker known) it does nothing.
    """

    def __init__(
        self,
        app: App | None,
        directory: Path,
        *,
        retention_s: float | None = DEFAULT_RETENTION_S,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
    ) -> None:
        self.app = app
        self.directory = directory
        self.retention_s = retention_s
        self.max_bytes = max_bytes
        self.recorded = 0
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin recording (if there is an app to listen to); wait a moment until it listens."""
        if self.app is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="tq-recorder", daemon=True)
        self._thread.start()
        self._listening.wait(LISTEN_WAIT_S)

    def stop(self) -> None:
        """Stop recording and close the log."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)

    def _run(self) -> None:
        assert self.app is not None
        try:
            writer = EventLogWriter(
                self.directory, retention_s=self.retention_s, max_bytes=self.max_bytes
            )
        except TQError as exc:
            logger.warning("not recording events: %s", exc)
            self._listening.set()
            return
        logger.info("recording events to %s", self.directory)

        def append(event: dict[str, Any]) -> None:
            try:
                writer.append(event)
                self.recorded += 1
            except OSError as exc:
                logger.warning("event recording stopped: cannot write %s: %s", self.directory, exc)
                self._stop.set()

        try:
            receive_events(
                self.app,
                append,
                is_cancelled=self._stop.is_set,
                on_connection=lambda up: self._listening.set(),
            )
        finally:
            writer.close()
