"""A prefork child holds its next job in its pipe while it runs one (tq/worker/handoff.py):
that job must still be revocable, must never run twice or be lost when the child dies or is
recycled, and must not wait behind a long task while another child is idle."""

from __future__ import annotations

import os
import signal
from uuid import uuid4

import pytest

from tests.conftest import ledger_lines, wait_until
from tq import states
from tq.errors import TaskRevokedError, TimeLimitExceeded, WorkerLostError

pytestmark = pytest.mark.timeout(90)


def node_name() -> str:
    return f"handoff-{uuid4().hex[:8]}@localhost"


def inspect(tasks, node: str, what: str) -> list[dict]:
    replies = getattr(tasks.app.control.inspect(destination=[node], timeout=2.0), what)() or {}
    return replies.get(node) or []


def test_short_tasks_do_not_wait_behind_a_long_one(broker, start_worker, tasks):
    start_worker("-c", "2")
    long = tasks.sleep_then.delay(6, "long")
    shorts = [tasks.mark.delay(f"s{i}-{uuid4().hex[:6]}") for i in range(6)]
    for short in shorts:
        short.get(timeout=20)
    # Every short task ran on the other child while the long one still ran: none sat in the
    # long task's pipe until it finished.
    assert not long.ready()
    assert long.get(timeout=20) == "long"


def test_a_job_waiting_in_a_child_can_be_revoked_and_terminated(redis_broker, start_worker, tasks):
    node = node_name()
    start_worker("-c", "1", name=node)
    long = tasks.sleep_then.delay(3, "long")
    first, second = f"q1-{uuid4().hex[:6]}", f"q2-{uuid4().hex[:6]}"
    waiting = [tasks.mark.delay(first), tasks.mark.delay(second)]
    assert wait_until(lambda: [item["id"] for item in inspect(tasks, node, "active")] == [long.id])
    reserved = inspect(tasks, node, "reserved")
    assert {item["id"] for item in reserved} == {one.id for one in waiting}
    assert all(item["worker_pid"] is None for item in reserved)
    # The first waits in the pool process's pipe, the second in the parent: both are revoked,
    # neither runs, and terminating a waiting job does not kill the task that runs.
    tasks.app.control.revoke(waiting[0].id, terminate=True, signal="KILL")
    tasks.app.control.revoke(waiting[1].id)
    for one in waiting:
        with pytest.raises(TaskRevokedError):
            one.get(timeout=10)
        assert one.state == states.REVOKED
    assert long.get(timeout=10) == "long"
    assert tasks.add.delay(2, 2).get(timeout=10) == 4
    assert first not in ledger_lines(redis_broker) and second not in ledger_lines(redis_broker)


def test_the_job_behind_a_killed_child_runs_once_elsewhere(redis_broker, start_worker, tasks):
    node = node_name()
    start_worker("-c", "1", name=node)
    long = tasks.sleep_then.delay(30, "never")
    name = f"after-kill-{uuid4().hex[:6]}"
    behind = tasks.mark.delay(name)
    assert wait_until(lambda: bool(inspect(tasks, node, "active")))
    [running] = inspect(tasks, node, "active")
    os.kill(running["worker_pid"], signal.SIGKILL)
    with pytest.raises(WorkerLostError):
        long.get(timeout=15)
    assert behind.get(timeout=15) == name
    assert ledger_lines(redis_broker).count(name) == 1


def test_the_job_behind_a_timed_out_task_runs_once(redis_broker, start_worker, tasks):
    start_worker("-c", "1")
    long = tasks.sleep_then.apply_async((30, "never"), time_limit=1)
    name = f"after-limit-{uuid4().hex[:6]}"
    behind = tasks.mark.delay(name)
    with pytest.raises(TimeLimitExceeded):
        long.get(timeout=15)
    assert behind.get(timeout=15) == name
    assert ledger_lines(redis_broker).count(name) == 1


def test_recycled_children_hand_back_what_waited_in_their_pipe(redis_broker, start_worker, tasks):
    start_worker("-c", "1", "--max-tasks-per-child", "1")
    names = [f"recycled-{i}-{uuid4().hex[:6]}" for i in range(6)]
    results = [tasks.mark.delay(name) for name in names]
    assert [result.get(timeout=30) for result in results] == names
    lines = ledger_lines(redis_broker)
    assert all(lines.count(name) == 1 for name in names)


def test_pool_processes_are_forked_with_the_transport_already_imported(broker, start_worker, tasks):
    # The first task does not pay for importing the broker's client library (redis-py: ~80 ms),
    # and the pool processes share those pages with the main process.
    modules = {
        "redis": "tq.transports.redis",
        "amqp": "kombu.transport.pyamqp",
        "embedded": "tq.transports.sqlite",
    }
    start_worker("-c", "1")
    wanted = modules[broker.kind]
    assert tasks.loaded.delay(wanted).get(timeout=15) == [wanted]


def test_a_job_behind_a_long_task_moves_while_other_work_keeps_coming(
    redis_broker, start_worker, tasks
):
    node = node_name()
    start_worker("-c", "2", "--prefetch-multiplier", "8", name=node)
    tag = uuid4().hex[:6]
    long = tasks.late_sleeper.delay(f"long-{tag}", 8)
    assert wait_until(lambda: f"long-{tag}" in ledger_lines(redis_broker))
    tasks.late_sleeper.delay(f"first-{tag}", 0.3)  # the other process: both busy now
    assert wait_until(lambda: f"first-{tag}" in ledger_lines(redis_broker))
    waiting = tasks.late_sleeper.delay(f"waiting-{tag}", 0)  # behind one of the two
    stream = [tasks.late_sleeper.delay(f"s{i}-{tag}", 0.05) for i in range(30)]
    assert waiting.get(timeout=20) == f"waiting-{tag}"
    for one in stream:
        one.get(timeout=30)
    # Even if it was handed to the long task's process, it did not wait for the 30 newer
    # tasks that kept the other process busy (nor for the long task).
    started = [line for line in ledger_lines(redis_broker) if line.endswith(tag)]
    assert started.index(f"waiting-{tag}") < started.index(f"s10-{tag}"), started
    assert not long.ready()
