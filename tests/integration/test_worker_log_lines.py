"""A worker's log file: each task's "received" line (main process) comes before its end line
(written by the pool process that ran it), and after logrotate and SIGHUP every process writes
its task lines to the new file."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from tests.conftest import wait_until

#: Tasks queued before the worker starts: enough for a pool process to finish one while the
#: main process is still in the same turn of its loop.
N = 3000
pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("kind", ["redis", "embedded", "amqp"])
def test_each_task_s_received_line_comes_before_its_end_line(
    kind, tmp_path, monkeypatch, start_worker, tasks
):
    from tests.conftest import delete_queues, make_broker_env, require_broker

    require_broker(kind)
    broker = make_broker_env(kind, tmp_path, monkeypatch)
    try:
        _check_order(start_worker, tasks)
    finally:
        delete_queues(broker)


def _check_order(start_worker, tasks):
    # Queued before the worker starts: it takes in many per turn of its loop.
    results = [tasks.noop.apply_async(ignore_result=True) for i in range(N)]
    worker = start_worker("-c", "2", "--prefetch-multiplier", "50")
    ids = {result.id for result in results}
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and worker.log().count("succeeded in") < N:
        time.sleep(0.05)
    time.sleep(1.5)  # the main process writes its held lines once per turn of its loop
    first_seen: dict[tuple[str, str], int] = {}
    pattern = re.compile(r"\[([0-9a-f-]{36})\] (received|succeeded in)")
    for number, line in enumerate(worker.log().splitlines()):
        match = pattern.search(line)
        if match and match.group(1) in ids:
            first_seen.setdefault((match.group(1), match.group(2)), number)
    inverted = [
        task_id
        for task_id in ids
        if first_seen.get((task_id, "succeeded in"), 10**9)
        < first_seen.get((task_id, "received"), -1)
    ]
    missing = [task_id for task_id in ids if (task_id, "received") not in first_seen]
    assert not missing, f"{len(missing)} tasks without a received line"
    assert not inverted, (
        f"{len(inverted)} of {N} tasks logged 'succeeded in' before 'received', e.g.\n"
        + "\n".join(line for line in worker.log().splitlines() if inverted[0] in line)
    )


def test_task_lines_follow_a_rotated_log_file(redis_broker, start_worker, tasks):
    worker = start_worker("-c", "2")
    first = [tasks.add.delay(i, 1) for i in range(4)]
    assert [r.get(timeout=10) for r in first] == [i + 1 for i in range(4)]
    assert wait_until(lambda: worker.log().count("succeeded in") >= 4)
    rotated = worker.logfile.with_suffix(".1")
    os.rename(worker.logfile, rotated)
    os.kill(worker.pid, signal.SIGHUP)
    time.sleep(1.0)
    later = [tasks.add.delay(i, 2) for i in range(6)]
    assert [r.get(timeout=10) for r in later] == [i + 2 for i in range(6)]
    time.sleep(1.5)
    new = worker.log()
    old = rotated.read_text()
    for result in later:
        assert f"[{result.id}] received" in new, new
        assert f"[{result.id}] succeeded in" in new, (new, old[-2000:])
        assert result.id not in old


def test_a_warm_stop_right_after_a_task_restores_nothing_on_redis(
    redis_broker, start_worker, tasks
):
    # The task's ack may still wait to be written when TERM comes: it is written, and the
    # acked message is neither counted nor restored ("Restoring 1 unacknowledged message(s)"
    # used to appear after every quick stop, with nothing to restore).
    import redis

    worker = start_worker("-c", "1")
    for done in range(1, 6):
        tasks.noop.apply_async(ignore_result=True)
        assert wait_until(lambda n=done: worker.log().count("succeeded in") >= n, timeout=10)
    assert worker.stop() == 0
    assert "Restoring" not in worker.log(), worker.log()
    client = redis.Redis.from_url(redis_broker.env["TQ_BROKER_URL"])
    try:
        assert client.llen(redis_broker.queue) == 0
    finally:
        client.close()
