"""ClusterState folds events into workers and tasks, in order-independent and bounded ways."""

from __future__ import annotations

import resource
import time

from tq import states
from tq.cli.events import format_event
from tq.cluster import LOST, ClusterState


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


def test_workers_are_bounded_and_the_longest_silent_is_forgotten_first():
    state = ClusterState(max_workers=3)
    for index, name in enumerate(["a@h", "b@h", "c@h"]):
        state.fold({"type": "worker-heartbeat", "hostname": name, "timestamp": 100.0 + index})
    state.fold({"type": "worker-heartbeat", "hostname": "a@h", "timestamp": 200.0})
    state.fold({"type": "worker-online", "hostname": "d@h", "timestamp": 201.0})
    assert sorted(state.workers) == ["a@h", "c@h", "d@h"]  # b was silent longest


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


def worker_event(kind: str, at: float, host: str = "w1@a", pid: int = 100, **fields):
    return {"type": kind, "hostname": host, "pid": pid, "timestamp": at, "freq": 2.0, **fields}


def task_at(kind: str, at: float, host: str = "w1@a", pid: int = 100, clock: int = 0, **fields):
    """A task event of task t1 from process `pid` of node `host`, sent at `at`."""
    return {
        "type": kind,
        "uuid": "t1",
        "hostname": host,
        "pid": pid,
        "clock": clock,
        "timestamp": at,
        **fields,
    }


def test_a_task_seen_succeeded_without_started_is_complete_and_stays_so():
    state = ClusterState()
    state.fold(task_at("task-succeeded", 10.0, clock=7, result="4", runtime=0.5))
    assert state.tasks["t1"].state == states.SUCCESS
    for late in (
        task_at("task-started", 9.5, clock=6),
        task_at("task-received", 9.0, clock=5, name="proj.add", args="(2, 2)"),
        task_at("task-started", 11.0, host="w2@b", pid=7, clock=1),  # even from elsewhere, later
    ):
        state.fold(late)
    task = state.tasks["t1"]
    assert task.state == states.SUCCESS and task.worker == "w1@a" and task.result == "4"
    assert task.name == "proj.add" and task.args == "(2, 2)"
    assert [name for name, _ in task.timeline] == [
        states.RECEIVED,
        states.STARTED,
        states.SUCCESS,
        states.STARTED,
    ]


def test_order_survives_a_worker_restart_that_resets_its_lamport_clock():
    state = ClusterState()
    # First life of w1 (pid 100, clock in the hundreds): the task starts, then retries.
    state.fold(task_at("task-received", 10.0, clock=300))
    state.fold(task_at("task-started", 10.1, clock=301))
    # w1 restarts (pid 200, clock from 0) and runs the retry; its retried event arrives late.
    state.fold(task_at("task-received", 20.0, pid=200, clock=3))
    state.fold(task_at("task-started", 20.1, pid=200, clock=4))
    state.fold(task_at("task-retried", 10.2, clock=302, exception="Retry in 5s"))
    task = state.tasks["t1"]
    assert task.state == states.STARTED, "a clock of 302 is not later than a restart's clock 4"
    state.fold(task_at("task-retried", 20.2, pid=200, clock=5))
    assert state.tasks["t1"].state == states.RETRY
    state.fold(task_at("task-started", 20.15, pid=200, clock=4))  # a duplicate, late
    assert state.tasks["t1"].state == states.RETRY
    state.fold(task_at("task-started", 25.0, pid=200, clock=9))
    assert state.tasks["t1"].state == states.STARTED


def test_a_redelivered_task_follows_the_new_delivery_not_the_old_one():
    state = ClusterState()
    state.fold(task_at("task-started", 10.0, clock=50))
    state.fold(task_at("task-received", 30.0, host="w2@b", pid=9, clock=2))
    assert state.tasks["t1"].state == states.RECEIVED
    assert state.tasks["t1"].worker == "w2@b"
    state.fold(task_at("task-started", 10.5, clock=51))  # the old delivery, in flight
    assert state.tasks["t1"].worker == "w2@b" and state.tasks["t1"].state == states.RECEIVED


def test_the_started_tasks_of_a_node_the_supervisor_saw_die_are_lost_until_seen_again():
    state = ClusterState()
    state.fold(worker_event("worker-online", 1.0))
    state.fold(task_at("task-received", 2.0, clock=1))
    state.fold(task_at("task-started", 2.1, clock=2))
    state.fold({**task_at("task-received", 2.2, clock=3), "uuid": "t2"})  # prefetched only
    state.fold({**task_at("task-started", 2.3, host="w3@a", pid=5, clock=1), "uuid": "t3"})
    gone = {"type": "node-exited", "hostname": "supervisor@a", "pid": 1, "timestamp": 3.0}
    assert state.fold({**gone, "node": "w1@a", "how": "killed by SIGKILL"}) is state.workers["w1@a"]
    assert state.tasks["t1"].state == LOST
    assert state.tasks["t2"].state == states.RECEIVED and state.tasks["t3"].state == states.STARTED
    assert state.take_inferred() == {"t1"} and state.take_inferred() == set()
    assert not state.workers["w1@a"].alive(3.0)
    state.fold(task_at("task-started", 2.9, clock=4))  # said before it died, heard after
    assert state.tasks["t1"].state == LOST
    state.fold(task_at("task-received", 5.0, host="w2@b", pid=8, clock=1))
    assert state.tasks["t1"].state == states.RECEIVED and state.tasks["t1"].worker == "w2@b"
    state.fold(task_at("task-succeeded", 6.0, host="w2@b", pid=8, clock=3))
    assert state.tasks["t1"].state == states.SUCCESS
    assert [name for name, _ in state.tasks["t1"].timeline][-3:] == [
        LOST,
        states.RECEIVED,
        states.SUCCESS,
    ]


def test_a_lost_task_that_then_fails_shows_the_failure():
    state = ClusterState()
    state.fold(worker_event("worker-online", 1.0))
    state.fold(task_at("task-started", 2.0, clock=1))
    state.fold(worker_event("worker-offline", 3.0))  # a cold shutdown left it running
    assert state.tasks["t1"].state == LOST
    state.fold(task_at("task-failed", 9.0, host="w2@b", pid=8, exception="WorkerLostError()"))
    assert state.tasks["t1"].state == states.FAILURE


def test_a_worker_silent_past_its_heartbeat_expiry_loses_its_started_tasks():
    state = ClusterState()
    state.fold(worker_event("worker-online", 100.0, local_received=100.0))
    state.fold(task_at("task-started", 101.0, clock=1, local_received=101.0))
    assert state.expire_workers(104.0) == []  # freq 2 s: alive until 101 + 4
    # another worker's heartbeat is enough to notice the silence while folding
    state.fold(worker_event("worker-heartbeat", 106.0, host="w2@b", local_received=106.0))
    assert state.tasks["t1"].state == LOST and state.take_inferred() == {"t1"}
    assert state.expire_workers(107.0) == []  # marked once per absence
    state.fold(worker_event("worker-heartbeat", 108.0, local_received=108.0))
    state.fold(task_at("task-started", 108.5, pid=100, clock=7, local_received=108.5))
    assert state.tasks["t1"].state == states.STARTED  # it was only slow: seen again


def test_events_of_two_machines_within_their_clock_skew_only_move_forward():
    state = ClusterState()
    state.fold(task_at("task-retried", 10.0, clock=5))
    state.fold(task_at("task-received", 9.8, host="w2@b", pid=3, clock=1))  # b is 0.3 s behind
    assert state.tasks["t1"].state == states.RECEIVED
    state.fold(task_at("task-retried", 10.0, clock=5))  # repeated: not later, not forward
    assert state.tasks["t1"].state == states.RECEIVED
