"""ClusterState folds events into workers and tasks, in order-independent and bounded ways."""

from __future__ import annotations

import resource
import time

from tq import states
from tq.cli.events import format_event
from tq.cluster import ClusterState


def event(kind: str, uuid: str = "t1", clock: int = 1, **fields):
    return {
        "type": kind,
        "uuid": uuid,
        "hostname": "w1@h",
        "timestamp": time.time(),
        "clock": clock,
        "utcoffset": 0.0,
        "pid": 1,
        **fields,
    }


def test_task_timeline_and_fields():
    state = ClusterState()
    state.fold(event("task-received", name="proj.add", args="(2, 2)", kwargs="{}", clock=1))
    state.fold(event("task-started", clock=2))
    state.fold(event("task-succeeded", result="4", runtime=0.01, clock=3))
    task = state.tasks["t1"]
    assert task.state == states.SUCCESS and task.result == "4" and task.name == "proj.add"
    assert [name for name, _ in task.timeline] == [states.RECEIVED, states.STARTED, states.SUCCESS]
    assert task.worker == "w1@h"


def test_late_events_never_move_a_task_back_but_fill_fields():
    state = ClusterState()
    state.fold(event("task-succeeded", result="4", clock=5))
    state.fold(event("task-received", name="proj.add", args="(2, 2)", clock=1))
    task = state.tasks["t1"]
    assert task.state == states.SUCCESS
    assert task.name == "proj.add" and task.args == "(2, 2)"


def test_a_retried_task_can_start_again():
    state = ClusterState()
    for kind in ("task-received", "task-started", "task-retried", "task-started", "task-succeeded"):
        state.fold(event(kind))
    assert state.tasks["t1"].state == states.SUCCESS
    state.fold(event("task-retried", uuid="t2"))
    state.fold(event("task-started", uuid="t2"))
    assert state.tasks["t2"].state == states.STARTED


def test_workers_go_offline_by_heartbeat_expiry_or_goodbye():
    state = ClusterState()
    now = time.time()
    state.fold(
        {
            "type": "worker-heartbeat",
            "hostname": "w1@h",
            "freq": 2.0,
            "local_received": now,
            "active": 1,
            "processed": 10,
        }
    )
    worker = state.workers["w1@h"]
    assert worker.alive(now + 3.9) and not worker.alive(now + 4.1)
    assert worker.processed == 10
    state.fold({"type": "worker-offline", "hostname": "w1@h"})
    assert not worker.alive(now)


def test_memory_is_bounded_by_task_count_and_value_size():
    state = ClusterState(max_tasks=1000, max_value_chars=64)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(100_000):
        state.fold(event("task-received", uuid=f"id{i}", name="proj.add", args="x" * 500, clock=i))
        state.fold(event("task-succeeded", uuid=f"id{i}", result="y" * 500, clock=i))
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert len(state.tasks) == 1000
    assert all(len(task.args or "") <= 64 for task in state.tasks.values())
    assert "id99999" in state.tasks and "id0" not in state.tasks
    assert state.event_count == 200_000
    assert grown_kib < 50_000, f"folding 100,000 tasks grew RSS by {grown_kib} KiB"


def test_rates_count_recent_completions():
    state = ClusterState()
    now = time.time()
    for i in range(20):
        state.fold({**event("task-succeeded", uuid=f"s{i}"), "timestamp": now})
    state.fold({**event("task-failed", uuid="f"), "timestamp": now})
    assert state.rate(states.SUCCESS, window_s=10, now=now) == 2.0
    assert state.rate(states.FAILURE, window_s=10, now=now) == 0.1


def test_dump_line_matches_celery_layout():
    state = ClusterState()
    received = event("task-received", name="proj.add", args="(2, 3)", kwargs="{}")
    state.fold(received)
    succeeded = event("task-succeeded", result="5", runtime=0.01, clock=2)
    state.fold(succeeded)
    human, line = format_event(succeeded, state)
    assert human == "task succeeded"
    assert line.startswith("w1@h [")
    assert (
        "] task succeeded: proj.add(t1) args=(2, 3) kwargs={} clock=2, pid=1, result=5, runtime=0.01"
        in line
    )
    human, line = format_event(
        {
            "type": "worker-heartbeat",
            "hostname": "w1@h",
            "timestamp": time.time(),
            "freq": 2.0,
            "active": 0,
        },
        state,
    )
    assert human == "heartbeat" and line.endswith("heartbeat: active=0, freq=2.0")
