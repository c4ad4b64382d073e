"""Fault: TERM (warm shutdown) a node with 20 running and 100 prefetched acks_late tasks.

The running ones finish on it and are acked; the prefetched ones go back to the queue
unexecuted; a second node runs those; no task runs twice.
"""

from __future__ import annotations

import signal
import time

import pytest

from .conftest import POOL_REFILL_TIMEOUT_S, make_fault_env
from .ledger import FaultRow

pytestmark = pytest.mark.timeout(120)

RUNNING, PREFETCH_MULTIPLIER = 20, 6
SENT = RUNNING * PREFETCH_MULTIPLIER  # the node holds them all: 20 running, 100 prefetched
#: How long a task sleeps on the node being stopped (long enough to TERM it mid-run), elsewhere.
SLOW_S, FAST_S = 3.0, 0.0
RESULT_TIMEOUT_S = 60.0


@pytest.fixture
def warm_env(broker, monkeypatch, start_worker):
    return make_fault_env(broker, monkeypatch, start_worker)


def received_by(worker) -> int:
    """How many task messages a worker has taken from the broker, as its log says."""
    return worker.log().count("] received")


def test_warm_shutdown_finishes_running_requeues_prefetched(warm_env, fault_row):
    from . import faultapp

    ledger = warm_env.ledger
    node_a = f"fault-warm-a-{warm_env.tag}@faults"
    keys = [f"w{i}" for i in range(SENT)]
    # Everything is queued before the node starts, so that it takes all 120 at once (the
    # embedded broker claims in batches of half the prefetch window).
    for key in keys:  # counted in the ledger: no result writes to slow 20 processes down
        faultapp.late_on.apply_async((key, node_a, SLOW_S, FAST_S), ignore_result=True)
    # Prefork with 20 pool processes: heavy for 2 cores, but they only sleep.
    a = warm_env.worker(
        "-c", str(RUNNING), "--prefetch-multiplier", str(PREFETCH_MULTIPLIER), name=node_a
    )
    ledger.wait_until(lambda led: len(led.runs("start")) == RUNNING, RESULT_TIMEOUT_S, "20 running")
    deadline = time.monotonic() + POOL_REFILL_TIMEOUT_S
    while received_by(a) < SENT and time.monotonic() < deadline:
        time.sleep(0.05)
    # All 120 taken, 20 of them running in the 20 pool processes: 100 wait prefetched.
    assert received_by(a) == SENT, f"the node took {received_by(a)} tasks, not {SENT}"
    assert not ledger.runs("end"), "a task ended before TERM: make SLOW_S longer"
    a.process.send_signal(signal.SIGTERM)
    assert a.process.wait(timeout=RESULT_TIMEOUT_S) == 0
    ran_on_a = {run.key for run in ledger.runs("end") if run.node == node_a}
    assert len(ran_on_a) == RUNNING
    assert {run.key for run in ledger.runs("start")} == ran_on_a  # nothing more started on A

    b = warm_env.worker("-c", "4", name=f"fault-warm-b-{warm_env.tag}@faults")
    ledger.wait_until(
        lambda led: set(led.ends()) >= set(keys), RESULT_TIMEOUT_S, "every task ended"
    )
    # A task that A ran but failed to ack would be back in the queue ahead of this probe.
    faultapp.quick.delay("probe").get(timeout=RESULT_TIMEOUT_S)
    starts, ends = ledger.starts(), ledger.ends()
    fault_row(
        FaultRow(
            f"warm shutdown (TERM), {RUNNING} running + {SENT - RUNNING} prefetched",
            warm_env.broker.kind,
            sent=SENT,
            executed=sum(starts[key] for key in keys),
            succeeded=len([key for key in keys if ends[key]]),
            failed=0,
            duplicated=ledger.duplicated(),
            lost=len([key for key in keys if ends[key] == 0]),
        )
    )
    assert all(starts[key] == 1 and ends[key] == 1 for key in keys), (starts, ends)
    on_b = {run.key for run in ledger.runs("end") if run.node != node_a} - {"probe"}
    assert on_b == set(keys) - ran_on_a
    b.stop()
