"""A request the worker cannot pickle for its pool process (an argument nested deeper than pickle's
recursion limit, or a pickle-serialised argument holding a lock) fails alone: FAILURE, acked,
logged; the worker carries on with the next task instead of crashing on it."""

from __future__ import annotations

import threading
import time
from uuid import uuid4

import pytest

pytestmark = pytest.mark.timeout(90)


class Sticky:
    """Pickles fine where it is made; once unpickled (in the worker) it holds a lock."""

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.lock = threading.Lock()


def test_a_request_that_cannot_be_pickled_for_the_pool_fails_alone(
    redis_broker, start_worker, tasks, monkeypatch
):
    monkeypatch.setenv("TQ_TEST_ACCEPT", "json,pickle")
    worker = start_worker("-c", "1", env={"TQ_TEST_ACCEPT": "json,pickle"})
    configured = tasks.app.conf.task_serializer
    tasks.app.conf.task_serializer = "pickle"
    try:
        sticky = Sticky()
        sticky.name = "sticky"  # a state to restore: __setstate__ runs
        bad = tasks.mark.delay(sticky)
    finally:
        tasks.app.conf.task_serializer = configured
    time.sleep(1.0)
    name = f"after-{uuid4().hex[:6]}"
    good = tasks.mark.delay(name)
    try:
        assert good.get(timeout=15) == name
    finally:
        alive = worker.process.poll() is None
        print("worker alive:", alive, "bad state:", bad.state)
        print(worker.log()[-3000:])
        print((worker.logfile.parent / "worker-0.err").read_text()[-3000:])
    assert alive


def _nested(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def test_a_deeply_nested_json_argument_does_not_kill_the_worker(redis_broker, start_worker, tasks):
    # Plain JSON, no pickle serializer: a list nested 700 deep decodes fine (json's limit is
    # far deeper) but pickle.dumps of the job for the pool process raises RecursionError in
    # the parent (pipes.send_pickled), which leaves the loop and ends the worker.
    worker = start_worker("-c", "1")
    tasks.xsum.delay(_nested(700))
    time.sleep(1.0)
    name = f"after-nested-{uuid4().hex[:6]}"
    good = tasks.mark.delay(name)
    try:
        assert good.get(timeout=15) == name
    finally:
        alive = worker.process.poll() is None
        print("worker alive:", alive)
        print((worker.logfile.parent / "worker-0.err").read_text()[-1500:])
    assert alive
