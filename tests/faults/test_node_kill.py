"""Fault: SIGKILL a whole node holding running and prefetched acks_late tasks; another node runs them.

RabbitMQ returns a dead connection's unacked messages at once; the embedded broker as soon as
a polling process sees that their holder is dead; Redis (kombu's transport) after the
visibility timeout, set short here through broker_transport_options.
"""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from .conftest import make_fault_env
from .ledger import FaultRow

pytestmark = pytest.mark.timeout(120)

#: Node A: 2 pool processes running, 2 * 3 - 2 = 4 messages prefetched behind them.
A_CONCURRENCY, A_PREFETCH = 2, 3
SENT = 10
#: Redis: an unacked message comes back this long after its delivery (kombu's default: 1 h).
#: It must stay above the time node B holds a message (FAST_S), or B's own work comes back.
VISIBILITY_TIMEOUT_S = 3
#: How long a task sleeps on node A (never ends: A is killed) and on node B.
SLOW_S, FAST_S = 60.0, 0.2
RESULT_TIMEOUT_S = 60.0
#: How long node A may take to fill its prefetch window.
PREFETCH_TIMEOUT_S = 20.0


@pytest.fixture
def node_env(broker, monkeypatch, start_worker):
    transport = {}
    if broker.kind == "redis":
        transport = {
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            "unacked_restore_interval": 1,  # look for expired messages every second
            "unacked_restore_throttle": 1,
        }
    return make_fault_env(broker, monkeypatch, start_worker, **transport)


def received_by(worker) -> int:
    """How many task messages a worker has taken from the broker, as its log says."""
    return worker.log().count("] received")


def test_sigkill_node_every_unacked_task_runs_on_another(node_env, fault_row):
    from . import faultapp

    ledger = node_env.ledger
    node_a = f"fault-a-{node_env.tag}@faults"
    node_b = f"fault-b-{node_env.tag}@faults"
    keys = [f"t{i}" for i in range(SENT)]
    # Queued before A starts: A takes its whole prefetch window at once.
    results = [faultapp.late_on.delay(key, node_a, SLOW_S, FAST_S) for key in keys]
    a = node_env.worker(
        "-c", str(A_CONCURRENCY), "--prefetch-multiplier", str(A_PREFETCH), name=node_a
    )
    ledger.wait_until(
        lambda led: len(led.runs("start")) == A_CONCURRENCY, RESULT_TIMEOUT_S, "A running"
    )
    window = A_CONCURRENCY * A_PREFETCH
    held = window - A_CONCURRENCY
    deadline = time.monotonic() + PREFETCH_TIMEOUT_S
    while received_by(a) < window and time.monotonic() < deadline:
        time.sleep(0.05)
    assert received_by(a) == window, f"node A took {received_by(a)} tasks, not {window}"
    # Node B is up first, so the time to resume is the broker's redelivery, not B's start-up.
    node_env.worker("-c", "4", "--prefetch-multiplier", "1", name=node_b)
    children = [child.pid for child in psutil.Process(a.pid).children()]
    a.process.send_signal(signal.SIGKILL)
    a.process.wait(timeout=10)
    killed_at = time.time()
    # Its pool processes die with it (PR_SET_PDEATHSIG): nothing runs on in the dark.
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in children if psutil.pid_exists(pid)], "orphaned pool processes"
    started_on_a = {run.key for run in ledger.runs("start") if run.node == node_a}
    assert len(started_on_a) == A_CONCURRENCY
    assert not [run for run in ledger.runs("end") if run.node == node_a]

    values = [result.get(timeout=RESULT_TIMEOUT_S) for result in results]
    assert values == keys
    starts, ends = ledger.starts(), ledger.ends()
    lost = [key for key in keys if ends[key] == 0]
    redelivered = [
        run.at for run in ledger.runs("start") if run.node == node_b and run.key in started_on_a
    ]
    fault_row(
        FaultRow(
            f"SIGKILL node ({A_CONCURRENCY} running + {held} prefetched, acks_late)",
            node_env.broker.kind,
            sent=SENT,
            executed=sum(starts.values()),
            succeeded=len(values),
            failed=0,
            duplicated=ledger.duplicated(),
            lost=len(lost),
            resume_s=min(redelivered) - killed_at,
        )
    )
    assert not lost
    # Exactly the tasks that were running on A ran twice; every other one ran once, on B.
    assert {key for key, count in starts.items() if count == 2} == started_on_a
    assert set(starts.values()) == {1, 2} and ledger.duplicated() == A_CONCURRENCY
    assert all(ends[key] == 1 for key in keys)
    assert {run.node for run in ledger.runs("end")} == {node_b}
