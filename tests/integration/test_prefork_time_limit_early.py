"""A hard time limit that comes due while the pool process is still reading (unpickling) its job
is not dropped: it is tried again until the process runs the job, then kills it. The job's time
runs from its hand-off, and a pool process takes no signal for a job before it runs it."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.timeout(120)


def test_a_hard_time_limit_reached_while_the_child_unpickles_the_job_still_kills_it(
    redis_broker, start_worker, tasks
):
    worker = start_worker("-c", "1")
    numbers = [[i] for i in range(1_000_000)]
    # slow_add(x, y, seconds): x + y after `seconds`; no result stored (not needed here).
    result = tasks.slow_add.apply_async((numbers, [], 8.0), time_limit=0.6, ignore_result=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        log = worker.log()
        if f"[{result.id}] succeeded in" in log or "Hard time limit" in log:
            break
        time.sleep(0.2)
    log = worker.log()
    assert "Hard time limit (0.6s) exceeded" in log, (
        "a task with a 0.6 s hard time limit ran to its end:\n" + log[-1500:]
    )
