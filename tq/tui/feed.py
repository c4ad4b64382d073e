"""EventFeed: hands events from a consumer thread to the UI, which takes changes in batches."""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..cluster import ClusterState, TaskState, WorkerState
from .queue_board import QueueFlow

if TYPE_CHECKING:
    from ..app import App

#: Lines of the raw event stream kept for the events view.
MAX_EVENT_LINES = 500
#: Workers are judged by heartbeat expiry only once connected this long (a heartbeat is due).
EXPIRY_GRACE_S = 5.0

#: Turns (event, state) into (human type, line), as `tq events --dump` prints it.
EventFormatter = Callable[[dict[str, Any], ClusterState], tuple[str, str]]


@dataclass
class FeedChanges:
    """What changed since the UI last looked."""

    task_ids: set[str] = field(default_factory=set)
    workers_changed: bool = False
    event_lines: list[tuple[str, str]] = field(default_factory=list)
    #: time.monotonic() when the first of these changes was folded (None when there are none).
    since: float | None = None

    def __bool__(self) -> bool:
        return bool(self.task_ids or self.workers_changed or self.event_lines)


class EventFeed:
    """A ClusterState folded under a lock, with the set of changes the UI has not seen."""

    def __init__(self, formatter: EventFormatter, state: ClusterState | None = None) -> None:
        self.state = state or ClusterState()
        self.formatter = formatter
        self.lock = threading.Lock()
        #: None until the consumer's first connection attempt ends.
        self.connected: bool | None = None
        self.lines: deque[tuple[str, str]] = deque(maxlen=MAX_EVENT_LINES)
        #: Events folded so far, by type (the header samples these once a second).
        self.counts: Counter[str] = Counter()
        #: Tasks received and finished per queue, for the queues view.
        self.queue_flow = QueueFlow(max_tasks=self.state.max_tasks)
        self._changes = FeedChanges()
        self._connected_at = 0.0

    def fold(self, event: dict[str, Any]) -> None:
        """Fold one event (any thread) and remember what it changed."""
        with self.lock:
            changed = self.state.fold(event)
            self.counts[str(event.get("type"))] += 1
            if self._changes.since is None:
                self._changes.since = time.monotonic()
            if isinstance(changed, TaskState):
                task_ids = self._changes.task_ids
                task_ids.add(changed.uuid)
                if len(task_ids) > 2 * self.state.max_tasks:  # the UI stalled: forget the evicted
                    task_ids.intersection_update(self.state.tasks)
                self.queue_flow.observe(event, changed.name)
            elif isinstance(changed, WorkerState):
                self._changes.workers_changed = True
            line = self.formatter(event, self.state)
            self.lines.append(line)
            self._changes.event_lines.append(line)
            if len(self._changes.event_lines) > MAX_EVENT_LINES:
                del self._changes.event_lines[:-MAX_EVENT_LINES]

    def reset(self) -> None:
        """Forget everything folded (a replay that seeks back folds again from the start)."""
        with self.lock:
            state = self.state
            self.state = ClusterState(
                max_tasks=state.max_tasks,
                max_value_chars=state.max_value_chars,
                max_workers=state.max_workers,
            )
            self.lines.clear()
            self.counts.clear()
            resolve = self.queue_flow.resolve
            self.queue_flow = QueueFlow(max_tasks=state.max_tasks)
            self.queue_flow.resolve = resolve
            self._changes = FeedChanges()

    def take_changes(self) -> FeedChanges:
        """Return the changes since the last call and start a new set."""
        with self.lock:
            if self.connected and time.monotonic() - self._connected_at > EXPIRY_GRACE_S:
                self.state.expire_workers(time.time())  # live: a silent worker's heartbeats expire
            self._changes.task_ids |= self.state.take_inferred()  # tasks now shown LOST
            changes, self._changes = self._changes, FeedChanges()
        return changes

    def snapshot(self) -> tuple[list[TaskState], list[tuple[str, str]]]:
        """Copies of every task (oldest first) and the kept lines; forget pending changes."""
        with self.lock:
            self._changes = FeedChanges()
            tasks = [copy.copy(task) for task in self.state.tasks.values()]
            return tasks, list(self.lines)

    def set_connected(self, connected: bool | None) -> None:
        """Record whether the consumer currently holds a broker connection."""
        with self.lock:
            if connected != self.connected:
                self.connected = connected
                self._connected_at = time.monotonic()
                self._changes.workers_changed = True


def consume_events(app: App, feed: EventFeed, is_cancelled: Callable[[], bool]) -> None:
    """Consume the app's events into `feed` until cancelled, reconnecting with backoff."""
    from ..events import receive_events

    receive_events(app, feed.fold, is_cancelled=is_cancelled, on_connection=feed.set_connected)
    feed.set_connected(False)
