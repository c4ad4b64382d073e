"""ClusterState: the cluster as folded from event messages, in bounded memory.

Task states never stick: an event only moves a task forward (by state precedence) or later
(by the order of events: the sender's Lamport clock between events of one process, wall time
between processes, so a restarted worker's reset clock cannot reorder history), finished tasks
stay finished, and the STARTED tasks of a node seen to die show as LOST until seen again.

Memory is bounded like Flower's (max_tasks, max_workers): at most MAX_TASKS tasks (the least
recently updated forgotten first), MAX_WORKERS workers (the longest silent forgotten first),
each task's texts cut to MAX_VALUE_CHARS and its timeline to MAX_TIMELINE entries, rates for
RATE_WINDOW_S seconds. A task costs about 1 KB as workers usually describe them and at most
about 6 KB (five texts of MAX_VALUE_CHARS), so a full state holds 10-60 MB
(benchmarks/cluster_fold.py measures it). Folding costs ~3 us an event.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from . import states

#: How many tasks are kept (least recently updated forgotten first), as `celery events` keeps.
MAX_TASKS = 10_000
#: How many workers are kept (the longest silent forgotten first), as Flower's max_workers.
MAX_WORKERS = 5_000
#: Argument, result and traceback texts are cut to this many characters in memory.
MAX_VALUE_CHARS = 1024
#: A worker without a heartbeat for freq * this factor is shown offline (Celery's 200 %).
HEARTBEAT_EXPIRE_FACTOR = 2.0
#: Rates are kept per second for this many seconds.
RATE_WINDOW_S = 300
#: A task's timeline keeps this many state changes.
MAX_TIMELINE = 32
#: Wall clocks of two machines may differ by this much: closer events are ordered by state.
MAX_CLOCK_SKEW_S = 1.0
#: Folding looks for workers whose heartbeats expired at most this often (event time).
EXPIRY_CHECK_S = 1.0

#: Shown (not sent by workers) for a task that was running on a node seen to die: it will be
#: redelivered (acks_late, or never acked) or is gone; the next event about it replaces this.
LOST = "LOST"
#: Supervisor events that say a node's process is gone.
NODE_GONE_EVENTS = frozenset({"node-exited", "node-fatal", "node-stopped"})

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
    #: The event that set `state`: its sender (hostname:pid), Lamport clock and wall time.
    sender: str | None = None
    clock: int = 0
    stamp: float = 0.0
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
    #: The sender's wall time of the last event from this worker.
    last_event_at: float | None = None
    offline: bool = False
    #: Its STARTED tasks were already shown LOST for the current absence.
    lost_marked: bool = False

    def alive(self, now: float | None = None) -> bool:
        """Online while a heartbeat came within freq * 2 seconds and it did not say goodbye."""
        if self.offline or self.last_heartbeat is None:
            return False
        now = time.time() if now is None else now
        return now < self.last_heartbeat + self.freq * HEARTBEAT_EXPIRE_FACTOR


class ClusterState:
    """Folds events into workers, tasks and rates; memory bounded by task count and text size."""

    def __init__(
        self,
        *,
        max_tasks: int = MAX_TASKS,
        max_value_chars: int = MAX_VALUE_CHARS,
        max_workers: int = MAX_WORKERS,
    ) -> None:
        self.max_tasks = max_tasks
        self.max_value_chars = max_value_chars
        self.max_workers = max_workers
        self.tasks: OrderedDict[str, TaskState] = OrderedDict()
        self.workers: dict[str, WorkerState] = {}
        self.event_count = 0
        self.task_event_count = 0
        self._rates: OrderedDict[int, Counter[str]] = OrderedDict()
        self._inferred: set[str] = set()
        self._expiry_checked_at = 0.0

    def fold(self, event: dict[str, Any]) -> TaskState | WorkerState | None:
        """Apply one event; return the task or worker it changed."""
        self.event_count += 1
        kind = str(event.get("type", ""))
        now = float(event.get("local_received") or event.get("timestamp") or time.time())
        if now - self._expiry_checked_at >= EXPIRY_CHECK_S:
            self.expire_workers(now)
        if kind.startswith("worker-"):
            return self._fold_worker(kind, event)
        if kind.startswith("task-"):
            self.task_event_count += 1
            return self._fold_task(kind, event)
        if kind in NODE_GONE_EVENTS:
            return self._fold_node_gone(event)
        return None

    def take_inferred(self) -> set[str]:
        """Ids of tasks changed by inference (LOST) rather than by their own event, since last asked."""
        inferred, self._inferred = self._inferred, set()
        return inferred

    def _fold_worker(self, kind: str, event: dict[str, Any]) -> WorkerState:
        hostname = str(event.get("hostname"))
        worker = self.workers.get(hostname)
        if worker is None:
            worker = self.workers[hostname] = WorkerState(hostname)
            if len(self.workers) > self.max_workers:
                self._forget_silent_worker(keep=hostname)
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
        worker.last_event_at = _stamp(event)
        if kind == "worker-offline":
            worker.offline = True
            self._mark_lost(worker, _stamp(event), _sender(event))
        else:
            worker.offline = False
            worker.lost_marked = False
            worker.last_heartbeat = float(
                event.get("local_received") or event.get("timestamp") or time.time()
            )
        return worker

    def _forget_silent_worker(self, keep: str) -> None:
        """Forget the worker heard from longest ago (new workers are rare: a scan is fine)."""
        silent = min(
            (worker for name, worker in self.workers.items() if name != keep),
            key=lambda worker: worker.last_event_at or 0.0,
        )
        del self.workers[silent.hostname]

    def _fold_node_gone(self, event: dict[str, Any]) -> WorkerState | None:
        """The supervisor saw a node's process end: its running tasks are lost for now."""
        worker = self.workers.get(str(event.get("node")))
        if worker is None:
            return None  # never heard of: it ran nothing we know
        worker.offline = True
        self._mark_lost(worker, _stamp(event), _sender(event))
        return worker

    def expire_workers(self, now: float) -> list[str]:
        """Show the STARTED tasks of workers whose heartbeats expired as LOST; return their ids."""
        self._expiry_checked_at = now
        lost: list[str] = []
        for worker in self.workers.values():
            if worker.lost_marked or worker.last_heartbeat is None or worker.alive(now):
                continue
            lost += self._mark_lost(worker, worker.last_event_at or 0.0, "heartbeat-expiry")
        return lost

    def _mark_lost(self, worker: WorkerState, stamp: float, sender: str) -> list[str]:
        worker.lost_marked = True
        lost: list[str] = []
        for task in self.tasks.values():
            if task.state != states.STARTED or task.worker != worker.hostname:
                continue
            task.state, task.sender, task.clock = LOST, sender, 0
            # Later than anything the dead node said: its in-flight events cannot undo this.
            task.stamp = max(task.stamp, stamp)
            _add_to_timeline(task, LOST, task.stamp)
            lost.append(task.uuid)
        self._inferred.update(lost)
        if len(self._inferred) > self.max_tasks:
            self._inferred &= self.tasks.keys()
        return lost

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
        if kind != "task-sent":
            self._note_worker_alive(event)
        moment = _stamp(event)
        new_state = _EVENT_STATES.get(kind, kind[len("task-") :].upper())
        _add_to_timeline(task, new_state, moment)
        sender, clock = _sender(event), int(event.get("clock") or 0)
        if _moves_to(task, new_state, _is_later(task, sender, clock, moment)):
            if new_state in (states.SUCCESS, states.FAILURE) and task.state != new_state:
                self._count(new_state, moment)
            task.state, task.sender, task.clock, task.stamp = new_state, sender, clock, moment
            if kind != "task-sent":
                task.worker = event.get("hostname") or task.worker
            names: tuple[str, ...] = _TASK_FIELDS
        else:
            names = _MERGE_FIELDS
        for name in names:
            if name in event and event[name] is not None and name != "worker":
                setattr(task, name, _cut(event[name], self.max_value_chars))
        return task

    def _note_worker_alive(self, event: dict[str, Any]) -> None:
        """A task event from a known worker is a sign of life, as a heartbeat is."""
        worker = self.workers.get(str(event.get("hostname")))
        if worker is None or worker.offline:
            return
        worker.last_event_at = max(worker.last_event_at or 0.0, _stamp(event))
        received = float(event.get("local_received") or event.get("timestamp") or 0.0)
        if received > (worker.last_heartbeat or 0.0):
            worker.last_heartbeat = received
            worker.lost_marked = False

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


def _stamp(event: dict[str, Any]) -> float:
    """The sender's wall time of an event."""
    return float(event.get("timestamp") or event.get("local_received") or 0.0)


def _sender(event: dict[str, Any]) -> str:
    """Which process sent an event: its Lamport clock orders only that process's events."""
    return f"{event.get('hostname')}:{event.get('pid')}"


def _is_later(task: TaskState, sender: str, clock: int, stamp: float) -> bool | None:
    """Did an event happen after the one that set the task's state? None: cannot tell."""
    if task.sender is None:
        return True
    if sender == task.sender and clock and task.clock and clock != task.clock:
        return clock > task.clock  # one process: its Lamport clock is exact
    # Another process, maybe the same worker restarted (its clock began again at 0): wall time
    # decides, on one machine always, between machines only beyond their possible skew.
    if _machine(sender) != _machine(task.sender) and abs(stamp - task.stamp) <= MAX_CLOCK_SKEW_S:
        return None
    if stamp != task.stamp:
        return stamp > task.stamp
    return clock >= task.clock


def _machine(sender: str) -> str:
    """'w1@host-a:123' -> 'host-a'."""
    return sender.rpartition(":")[0].partition("@")[2]


def _moves_to(task: TaskState, new_state: str, later: bool | None) -> bool:
    """Whether an event's state replaces the task's (else it only fills in fields)."""
    current = task.state
    if new_state in states.READY_STATES:  # finished is final; SUCCESS beats FAILURE beats REVOKED
        return current not in states.READY_STATES or (
            states.precedence(new_state) <= states.precedence(current)
        )
    if current in states.READY_STATES:  # a late started or received never reopens a task
        return False
    if current == states.PENDING or new_state == states.PENDING:
        return current == states.PENDING  # task-sent comes before anything a worker says
    if later is None:  # e.g. two machines' events within their clock skew: only move forward
        return states.precedence(new_state) < states.precedence(current)
    return later  # retries, redeliveries and LOST cycle: the later event wins


def _add_to_timeline(task: TaskState, state: str, moment: float) -> None:
    bisect.insort(task.timeline, (state, moment), key=lambda entry: entry[1])
    if len(task.timeline) > MAX_TIMELINE:
        del task.timeline[:-MAX_TIMELINE]
