"""QueueFlow and QueueBoard: per-queue task counts from events, joined with broker depths (no UI)."""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..cluster import MAX_TASKS
from ..queues import QueueDepth

#: Seconds over which a queue's received and done rates are averaged.
FLOW_WINDOW_S = 10.0
#: Flow samples kept (one a second, so a little more than the window).
FLOW_SAMPLES = 12

#: (task name, worker hostname) -> the queue the task most likely came from, or None.
QueueResolver = Callable[[str | None, str | None], str | None]
_DONE = frozenset({"task-succeeded", "task-failed"})


def _no_queue(name: str | None, hostname: str | None) -> str | None:
    return None


class QueueFlow:
    """Tasks received from and finished per queue, counted from task events.

    Celery's task-received carries no queue: the queue comes from the event when it has one
    (task-sent, or a worker that adds it), else from what the task was seen with before, else
    from `resolve` (the worker's only queue, or the app's route for the task name).
    """

    def __init__(self, max_tasks: int = MAX_TASKS) -> None:
        self.received: Counter[str] = Counter()
        self.done: Counter[str] = Counter()
        self.resolve: QueueResolver = _no_queue
        self.max_tasks = max_tasks
        self._queue_of: OrderedDict[str, str] = OrderedDict()

    def observe(self, event: dict[str, Any], name: str | None) -> None:
        """Count one task event (`name` is the task's name as known so far)."""
        kind = event.get("type")
        task_id = event.get("uuid")
        if not task_id or kind not in ("task-sent", "task-received", *_DONE):
            return
        queue = event.get("queue") or event.get("routing_key") or self._queue_of.get(task_id)
        if queue is None and kind != "task-sent":
            queue = self.resolve(name, event.get("hostname"))
        if not queue:
            return
        self._remember(task_id, queue)
        if kind == "task-received":
            self.received[queue] += 1
        elif kind in _DONE:
            self.done[queue] += 1

    def queue_of(self, task_id: str) -> str | None:
        """The queue a task was counted in, if any."""
        return self._queue_of.get(task_id)

    def _remember(self, task_id: str, queue: str) -> None:
        self._queue_of[task_id] = queue
        self._queue_of.move_to_end(task_id)
        while len(self._queue_of) > self.max_tasks:
            self._queue_of.popitem(last=False)


@dataclass(frozen=True)
class QueueRow:
    """One queue as the queues view shows it."""

    name: str
    messages: int | None
    broker_consumers: int | None
    nodes: tuple[str, ...]
    received_per_s: float
    done_per_s: float
    #: False when the queue was asked for and the broker does not have it.
    exists: bool = True


def consumers_by_queue(replies: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Turn `inspect active_queues` replies ({node: [queue dicts]}) into {queue: nodes}."""
    nodes: dict[str, list[str]] = {}
    for node, queues in sorted(replies.items()):
        for queue in queues if isinstance(queues, list) else ():
            name = queue.get("name") if isinstance(queue, dict) else None
            if isinstance(name, str):
                nodes.setdefault(name, []).append(node)
    return {name: tuple(members) for name, members in nodes.items()}


class QueueBoard:
    """What the queues view shows: broker depths, consumers and flow rates, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depths: dict[str, QueueDepth] = {}
        self.consumers: dict[str, tuple[str, ...]] = {}
        #: Why the last depth query failed (None when it worked or never ran).
        self.error: str | None = None
        self.changed = False
        self._samples: deque[tuple[float, Counter[str], Counter[str]]] = deque(maxlen=FLOW_SAMPLES)

    def set_depths(self, depths: Iterable[QueueDepth], error: str | None = None) -> None:
        """Store a depth query's answer (any thread)."""
        with self.lock:
            if error is None:
                self.depths = {depth.name: depth for depth in depths}
            self.error = error
            self.changed = True

    def set_consumers(self, consumers: dict[str, tuple[str, ...]]) -> None:
        """Store who consumes which queue (any thread)."""
        with self.lock:
            self.consumers = consumers
            self.changed = True

    def queues_of(self, node: str) -> list[str]:
        """The queues a node consumes, as it last said."""
        consumers = self.consumers
        return [queue for queue, nodes in consumers.items() if node in nodes]

    def sample(self, now: float, flow: QueueFlow) -> None:
        """Copy the flow counters (call once a second, holding the feed's lock)."""
        with self.lock:
            self._samples.append((now, Counter(flow.received), Counter(flow.done)))
            self.changed = True

    def _rates(self) -> tuple[dict[str, float], dict[str, float]]:
        if len(self._samples) < 2:
            return {}, {}
        newest = self._samples[-1]
        oldest = next(s for s in self._samples if newest[0] - s[0] <= FLOW_WINDOW_S + 0.5)
        elapsed = newest[0] - oldest[0]
        if elapsed <= 0:
            return {}, {}
        received = {q: (n - oldest[1][q]) / elapsed for q, n in newest[1].items()}
        done = {q: (n - oldest[2][q]) / elapsed for q, n in newest[2].items()}
        return received, done

    def names(self, extra: Iterable[str] = ()) -> list[str]:
        """Every queue worth asking the broker about, sorted."""
        with self.lock:
            seen = set(self.depths) | set(self.consumers)
            if self._samples:
                seen |= set(self._samples[-1][1]) | set(self._samples[-1][2])
        return sorted(seen | set(extra))

    def rows(self, extra: Iterable[str] = ()) -> list[QueueRow]:
        """One row per known queue, by name."""
        names = self.names(extra)
        with self.lock:
            received, done = self._rates()
            rows = []
            for name in names:
                depth = self.depths.get(name)
                rows.append(
                    QueueRow(
                        name=name,
                        messages=None if depth is None else depth.messages,
                        broker_consumers=None if depth is None else depth.consumers,
                        nodes=self.consumers.get(name, ()),
                        received_per_s=max(0.0, received.get(name, 0.0)),
                        done_per_s=max(0.0, done.get(name, 0.0)),
                        exists=depth is None or not depth.missing,
                    )
                )
        return rows

    def queued_total(self) -> int | None:
        """Messages waiting in every known queue (None before the broker answered)."""
        with self.lock:
            counts = [d.messages for d in self.depths.values() if d.messages is not None]
            return sum(counts) if counts and self.error is None else None

    def take_changed(self) -> bool:
        """Whether anything changed since the last call."""
        with self.lock:
            changed, self.changed = self.changed, False
        return changed
