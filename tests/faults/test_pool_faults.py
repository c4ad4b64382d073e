"""Faults inside one node's pool: a child SIGKILLed mid-task, a hard time limit, a leaking task.

One prefork worker per broker serves all three: each fault prints its own row.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tq import states
from tq.errors import TimeLimitExceeded, WorkerLostError

from .conftest import pool_children, wait_pool_size
from .ledger import FaultRow

pytestmark = pytest.mark.timeout(120)

POOL_SIZE = 2
#: --max-memory-per-child, KiB: above a fresh pool process (about 26 MB here), below one
#: that holds the 50 MB a leaking task keeps.
MAX_MEMORY_KIB = 50 * 1024
LEAK_MB = 50
#: How long a test waits for a result that must come.
RESULT_TIMEOUT_S = 30.0


def killed_start(fault_env, key: str):
    """Wait until task `key` runs, SIGKILL its pool process; return (the kill's time, its pid)."""
    ledger = fault_env.ledger
    ledger.wait_until(lambda led: led.starts()[key] >= 1, RESULT_TIMEOUT_S, f"{key} started")
    pid = next(run.pid for run in ledger.runs("start") if run.key == key)
    os.kill(pid, signal.SIGKILL)
    return time.time(), pid


def test_pool_faults_kill_time_limit_and_memory(fault_env, fault_row):
    from . import faultapp

    kind = fault_env.broker.kind
    ledger = fault_env.ledger
    worker = fault_env.worker("-c", str(POOL_SIZE), "--max-memory-per-child", str(MAX_MEMORY_KIB))
    wait_pool_size(worker, POOL_SIZE)

    # 1a. acks_late + reject_on_worker_lost: the killed task runs again, once, and succeeds;
    # a task beside it is untouched.
    beside = faultapp.hold_late.delay("beside", 1.0)
    result = faultapp.hold_late.delay("late", 60)
    killed_at, pid = killed_start(fault_env, "late")
    assert result.get(timeout=RESULT_TIMEOUT_S) == "late"
    assert beside.get(timeout=RESULT_TIMEOUT_S) == "beside"
    wait_pool_size(worker, POOL_SIZE, without=pid)
    starts = ledger.starts()
    assert starts == {"late": 2, "beside": 1}, starts
    assert ledger.ends() == {"late": 1, "beside": 1}
    rerun = [run for run in ledger.runs("start") if run.key == "late"][1]
    assert rerun.pid != pid and rerun.attempt == 0
    fault_row(
        FaultRow(
            "SIGKILL pool child, acks_late + reject_on_worker_lost",
            kind,
            sent=2,
            executed=sum(starts.values()),
            succeeded=2,
            failed=0,
            duplicated=ledger.duplicated(),
            lost=0,
            resume_s=rerun.at - killed_at,
        )
    )
    assert ledger.duplicated() == 1

    # 1b. The default (acked as it starts): the killed task is FAILURE with WorkerLostError.
    before = ledger.runs("start")
    result = faultapp.hold_early.delay("early", 60)
    _killed_at, pid = killed_start(fault_env, "early")
    with pytest.raises(WorkerLostError, match="signal 9"):
        result.get(timeout=RESULT_TIMEOUT_S)
    wait_pool_size(worker, POOL_SIZE, without=pid)
    after = faultapp.quick.delay("after-early").get(timeout=RESULT_TIMEOUT_S)
    assert after in pool_children(worker)
    starts = ledger.starts()
    assert starts["early"] == 1 and ledger.ends()["early"] == 0
    fault_row(
        FaultRow(
            "SIGKILL pool child, early ack (default)",
            kind,
            sent=2,
            executed=len(ledger.runs("start")) - len(before),
            succeeded=1,
            failed=1,
            duplicated=0,
            lost=0,
        )
    )

    # 6. Hard time limit: a task stuck in time.sleep is killed at its limit and its child replaced.
    before = ledger.runs("start")
    result = faultapp.stuck.delay("stuck")
    ledger.wait_until(lambda led: led.starts()["stuck"] == 1, RESULT_TIMEOUT_S, "stuck started")
    stuck_pid = next(run.pid for run in ledger.runs("start") if run.key == "stuck")
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=RESULT_TIMEOUT_S)
    assert result.state == states.FAILURE
    wait_pool_size(worker, POOL_SIZE, without=stuck_pid)
    after = faultapp.quick.delay("after-stuck").get(timeout=RESULT_TIMEOUT_S)
    assert after != stuck_pid
    assert ledger.ends()["stuck"] == 0
    fault_row(
        FaultRow(
            "hard time limit (1 s) on a task in time.sleep",
            kind,
            sent=2,
            executed=len(ledger.runs("start")) - len(before),
            succeeded=1,
            failed=1,
            duplicated=0,
            lost=0,
        )
    )

    # 7. Memory growth: the child that kept 50 MB is recycled after its task; work goes on.
    before = ledger.runs("start")
    leaky_pid = faultapp.hoard.delay("hoard", LEAK_MB).get(timeout=RESULT_TIMEOUT_S)
    wait_pool_size(worker, POOL_SIZE, without=leaky_pid)
    later = [faultapp.quick.delay(f"after-hoard-{i}") for i in range(4)]
    pids = {result.get(timeout=RESULT_TIMEOUT_S) for result in later}
    assert leaky_pid not in pids
    assert worker.log().count("recycled after") == 1  # the leaking child, and no other
    fault_row(
        FaultRow(
            "memory growth (50 MB kept) with --max-memory-per-child",
            kind,
            sent=5,
            executed=len(ledger.runs("start")) - len(before),
            succeeded=5,
            failed=0,
            duplicated=0,
            lost=0,
        )
    )
    assert ledger.duplicated() == 1  # still only the redelivery of 1a
