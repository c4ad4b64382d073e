"""ClusterState: the cluster as folded from event messages, in bounded memory."""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from . import states

#: How many tasks are kept (least recently updated forgotten first), as `celery events` keeps.
MAX_TASKS = 10_000
#: Argument, result and traceback texts are cut to this many characters in memory.
MAX_VALUE_CHARS = 1024
#: A worker without a heartbeat for freq * this factor is shown offline (Celery's 200 %).
HEARTBEAT_EXPIRE_FACTOR = 2.0
#: Rates are kept per second for this many seconds.
RATE_WINDOW_S = 300

_EVENT_STATES = {
    "task-sent": states.PENDING,
    "task-received": states.RECEIVED,
    "task-started": states.STARTED,
    "task-succeeded": states.SUCCESS,
    "task-failed": states.FAILURE,
    "task-retried": states.RETRY,
    "task-revoked": states.REVOKED,
    "task-rejected": states.REJECTED,
}
#: Fields a lower-precedence event may still fill in (e.g. a late task-received).
_MERGE_FIELDS = ("name", "args", "kwargs", "parent_id", "root_id", "retries", "eta", "expires")
_TASK_FIELDS = _MERGE_FIELDS + ("result", "exception", "traceback", "runtime", "worker")


def _cut(value: Any, limit: int) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 3] + "..."
    return value


@dataclass
class TaskState:
    """What is known of one task."""

    uuid: str
    name: str | None = None
    state: str = states.PENDING
    args: str | None = None
    kwargs: str | None = None
    result: str | None = None
    exception: str | None = None
    traceback: str | None = None
    runtime: float | None = None
    worker: str | None = None
    retries: int | None = None
    eta: str | None = None
    expires: str | None = None
    root_id: str | None = None
    parent_id: str | None = None
    clock: int = 0
    timeline: list[tuple[str, float]] = field(default_factory=list)

    def at(self, state: str) -> float | None:
        """Time this task entered `state`, if seen."""
        for name, moment in self.timeline:
            if name == state:
                return moment
        return None


@dataclass
class WorkerState:
    """What is known of one worker node."""

    hostname: str
    pid: int | None = None
    freq: float = 60.0
    active: int = 0
    processed: int = 0
    loadavg: list[float] = field(default_factory=list)
    sw_ident: str | None = None
    sw_ver: str | None = None
    sw_sys: str | None = None
    last_heartbeat: float | None = None
    offline: bool = False

    def alive(self, now: float | None = None) -> bool:
        """Online while a heartbeat came within freq * 2 seconds and it did not say goodbye."""
        if self.offline or self.last_heartbeat is None:
            return False
        now = time.time() if now is None else now
        return now < self.last_heartbeat + self.freq * HEARTBEAT_EXPIRE_FACTOR


class ClusterState:
    """Folds events into workers, tasks and rates; memory bounded by task count and text size."""

    def __init__(
        self, *, max_tasks: int = MAX_TASKS, max_value_chars: int = MAX_VALUE_CHARS
    ) -> None:
        self.max_tasks = max_tasks
        self.max_value_chars = max_value_chars
        self.tasks: OrderedDict[str, TaskState] = OrderedDict()
        self.workers: dict[str, WorkerState] = {}
        self.event_count = 0
        self.task_event_count = 0
        self._rates: OrderedDict[int, Counter[str]] = OrderedDict()

    def fold(self, event: dict[str, Any]) -> TaskState | WorkerState | None:
        """Apply one event; return the task or worker it changed."""
        self.event_count += 1
        kind = str(event.get("type", ""))
        if kind.startswith("worker-"):
            return self._fold_worker(kind, event)
        if kind.startswith("task-"):
            self.task_event_count += 1
            return self._fold_task(kind, event)
        return None

    def _fold_worker(self, kind: str, event: dict[str, Any]) -> WorkerState:
        hostname = str(event.get("hostname"))
        worker = self.workers.get(hostname) or self.workers.setdefault(
            hostname, WorkerState(hostname)
        )
        for name in (
            "pid",
            "freq",
            "active",
            "processed",
            "loadavg",
            "sw_ident",
            "sw_ver",
            "sw_sys",
        ):
            if event.get(name) is not None:
                setattr(worker, name, event[name])
        if kind == "worker-offline":
            worker.offline = True
        else:
            worker.offline = False
            worker.last_heartbeat = float(
                event.get("local_received") or event.get("timestamp") or time.time()
            )
        return worker

    def _fold_task(self, kind: str, event: dict[str, Any]) -> TaskState | None:
        task_id = event.get("uuid")
        if not task_id:
            return None
        task = self.tasks.get(task_id)
        if task is None:
            task = self.tasks[task_id] = TaskState(uuid=task_id)
            while len(self.tasks) > self.max_tasks:
                self.tasks.popitem(last=False)
        else:
            self.tasks.move_to_end(task_id)
        moment = float(event.get("timestamp") or time.time())
        new_state = _EVENT_STATES.get(kind, kind[len("task-") :].upper())
        task.timeline.append((new_state, moment))
        if len(task.timeline) > 32:
            del task.timeline[:-32]
        if kind != "task-sent":
            task.worker = event.get("hostname") or task.worker
        clock = int(event.get("clock") or 0)
        # An event whose state logically happens before the current one only fills in fields,
        # so a late task-received never turns SUCCESS back; RETRY moves either way (a retried
        # task starts again), as in Celery's monitors.
        if (
            new_state == states.RETRY
            or task.state == states.RETRY
            or states.precedence(new_state) <= states.precedence(task.state)
        ):
            task.state = new_state
            task.clock = max(task.clock, clock)
            names: tuple[str, ...] = _TASK_FIELDS
        else:
            names = _MERGE_FIELDS
        for name in names:
            if name in event and event[name] is not None and name != "worker":
                setattr(task, name, _cut(event[name], self.max_value_chars))
        if new_state in (states.SUCCESS, states.FAILURE):
            self._count(new_state, moment)
        return task

    def _count(self, state: str, moment: float) -> None:
        second = int(moment)
        bucket = self._rates.get(second)
        if bucket is None:
            bucket = self._rates[second] = Counter()
            while self._rates and next(iter(self._rates)) < second - RATE_WINDOW_S:
                self._rates.popitem(last=False)
        bucket[state] += 1

    def rate(self, state: str, window_s: float = 10.0, now: float | None = None) -> float:
        """Tasks per second that reached `state` over the last `window_s` seconds."""
        now = time.time() if now is None else now
        start = int(now - window_s)
        total = sum(bucket[state] for second, bucket in self._rates.items() if second >= start)
        return total / window_s

    def alive_workers(self, now: float | None = None) -> list[WorkerState]:
        return [worker for worker in self.workers.values() if worker.alive(now)]

    def tasks_by_time(self, limit: int | None = None) -> list[TaskState]:
        """Most recently updated first."""
        tasks = list(reversed(self.tasks.values()))
        return tasks[:limit] if limit is not None else tasks
