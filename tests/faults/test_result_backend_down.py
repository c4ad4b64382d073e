"""Fault: the Redis result backend (a server of the test's own) is down while tasks finish.

The worker keeps retrying each result write, does not crash, and every client's get()
returns once the backend is back: no task's outcome is lost to the outage.
"""

from __future__ import annotations

import threading
import time

import pytest

from .conftest import make_fault_env
from .ledger import FaultRow

pytestmark = pytest.mark.timeout(120)

SENT = 8
#: Each task's run: with 2 pool processes the 8 finish over about 2 s, all inside the outage.
TASK_S = 0.5
OUTAGE_S = 4.0
RESULT_TIMEOUT_S = 60.0


def test_result_backend_down_while_tasks_finish(
    redis_broker, own_redis, monkeypatch, start_worker, fault_row
):
    from . import faultapp

    monkeypatch.setenv("TQ_RESULT_BACKEND", f"{own_redis.url}/0")
    env = make_fault_env(redis_broker, monkeypatch, start_worker)
    worker = env.worker("-c", "2")
    keys = [f"r{i}" for i in range(SENT)]
    results = [faultapp.hold_early.delay(key, TASK_S) for key in keys]
    env.ledger.wait_until(lambda led: led.starts(), RESULT_TIMEOUT_S, "a task started")
    own_redis.stop()
    down_at = time.time()
    back = threading.Event()
    back_at: list[float] = []

    def restart() -> None:
        own_redis.start()
        back_at.append(time.time())
        back.set()

    timer = threading.Timer(OUTAGE_S, restart)
    timer.start()
    try:
        # The client waits through the outage too: get() is called while the backend is down.
        values = [result.get(timeout=RESULT_TIMEOUT_S) for result in results]
        assert back.is_set()
        returned_at = time.time()
    finally:
        timer.join()
    assert values == keys
    assert worker.process.poll() is None, worker.log()
    ended_in_outage = [run for run in env.ledger.runs("end") if down_at < run.at < back_at[0]]
    fault_row(
        FaultRow(
            f"result backend down {OUTAGE_S:.0f} s while tasks finish",
            "redis",
            sent=SENT,
            executed=sum(env.ledger.starts().values()),
            succeeded=len(values),
            failed=0,
            duplicated=env.ledger.duplicated(),
            lost=SENT - len(values),
            resume_s=returned_at - back_at[0],
        )
    )
    # Tasks really finished while their results could not be written, and none ran twice.
    assert ended_in_outage, "no task finished during the outage: make TASK_S shorter"
    assert env.ledger.duplicated() == 0 and len(env.ledger.ends()) == SENT
    assert "result of state" not in worker.log()  # no result given up
