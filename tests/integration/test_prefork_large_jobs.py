"""Large jobs in the prefork pool: a pool process reads a job of megabytes in time linear in its
size (a 32 MiB job, which the broker allows, took seconds when each 64 KiB read copied all that
came before), and a job too large to wait in a busy pool process's pipe (64 KiB) waits in the
parent instead, so that the parent's loop never blocks on the write while a task runs: time
limits, remote control and the other pool processes carry on."""

from __future__ import annotations

import multiprocessing
import os
import time
from uuid import uuid4

import pytest

from tq.errors import TimeLimitExceeded
from tq.worker.pipes import JobReader, send_pickled

pytestmark = pytest.mark.timeout(120)

SIZE = 32 << 20


def _timed_read(read) -> float:
    reader, writer = multiprocessing.Pipe(duplex=False)
    payload = (1, b"x" * SIZE)
    pid = os.fork()
    if pid == 0:
        try:
            reader.close()
            send_pickled(writer, payload)
        finally:
            os._exit(0)
    writer.close()
    try:
        started = time.perf_counter()
        got = read(reader)
        took = time.perf_counter() - started
        assert got == payload
        return took
    finally:
        os.waitpid(pid, 0)
        reader.close()


def test_a_large_job_is_read_about_as_fast_as_connection_recv() -> None:
    baseline = _timed_read(lambda conn: conn.recv())
    chunked = _timed_read(lambda conn: JobReader(conn.fileno()).recv())
    assert chunked < 1.0 + 5 * baseline, (
        f"JobReader {chunked:.2f}s, Connection.recv {baseline:.2f}s"
    )


def test_a_large_job_does_not_stall_the_worker_for_seconds(redis_broker, start_worker, tasks):
    # Two pool processes: while one takes in a 40 MiB job, the other should run a small task
    # at once. The parent's send of the big job lasts as long as the child's quadratic read,
    # and the parent's loop does nothing else meanwhile.
    start_worker("-c", "2")
    assert tasks.add.delay(1, 1).get(timeout=10) == 2
    tasks.loaded.apply_async(("z" * (40 << 20),), ignore_result=True)
    time.sleep(0.5)  # the worker has the big message (Redis hands it over in well under that)
    started = time.monotonic()
    assert tasks.add.delay(2, 2).get(timeout=60) == 4
    took = time.monotonic() - started
    assert took < 3, f"a small task on an idle pool process took {took:.1f}s behind a 40 MiB job"


def test_a_large_job_behind_a_running_task_does_not_stall_the_time_limit(
    redis_broker, start_worker, tasks
):
    start_worker("-c", "1")
    started = time.monotonic()
    long = tasks.sleep_then.apply_async((25, "never"), time_limit=1)
    time.sleep(0.3)  # the long task is running in the only pool process
    big = tasks.mark.delay("x" * (1 << 20) + uuid4().hex)  # 1 MiB argument
    with pytest.raises(TimeLimitExceeded):
        long.get(timeout=40)
    took = time.monotonic() - started
    assert big.get(timeout=30).startswith("x")
    # The hard limit (1 s) is checked by the worker's housekeeping (about once a second).
    assert took < 8, f"the 1 s hard time limit fired after {took:.1f} s"


def test_a_large_job_behind_a_running_task_does_not_stop_the_worker_answering(
    redis_broker, start_worker, tasks
):
    node = f"bigjob-{uuid4().hex[:8]}@localhost"
    start_worker("-c", "1", name=node)
    long = tasks.sleep_then.delay(5, "long")
    time.sleep(0.3)
    assert tasks.app.control.ping(destination=[node], timeout=3.0), "no pong before the big job"
    big = tasks.mark.delay("y" * (1 << 20))
    time.sleep(0.5)
    replies = tasks.app.control.ping(destination=[node], timeout=3.0)
    assert long.get(timeout=30) == "long"
    assert big.get(timeout=30).startswith("y")
    assert replies, "the worker did not answer ping while a 1 MiB job waited for its pool process"
