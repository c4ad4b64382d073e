"""Result handling: expiry, forget, ignore_result, errbacks, pickle opt-in, publish failures."""

from __future__ import annotations

import signal
import time

import pytest

from tests.conftest import ledger_lines
from tq import App, states
from tq.errors import BrokerUnavailable

pytestmark = pytest.mark.timeout(90)


def wait_for_ledger(broker, line, timeout=10.0):
    deadline = time.monotonic() + timeout
    while line not in ledger_lines(broker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return line in ledger_lines(broker)


def test_forget_deletes_the_result(broker, start_worker, tasks):
    if broker.kind == "amqp":
        pytest.skip("rpc results are messages: forget() only drops the local copy")
    start_worker("-c", "1")
    result = tasks.add.delay(1, 2)
    assert result.get(timeout=10) == 3
    result.forget()
    assert tasks.app.AsyncResult(result.id).state == states.PENDING


def test_ignore_result_stores_nothing(broker, start_worker, tasks):
    start_worker("-c", "1")
    ignored = tasks.mark.apply_async(("ignored",), ignore_result=True)
    assert wait_for_ledger(broker, "ignored")
    assert tasks.add.delay(1, 1).get(timeout=10) == 2  # the ignored one ran before this
    assert tasks.app.AsyncResult(ignored.id).state == states.PENDING


def test_result_expires_is_honoured(broker, start_worker, tasks):
    if broker.kind == "amqp":
        pytest.skip("rpc results expire with their reply queue")
    tasks.app.conf.result_expires = 1
    try:
        start_worker("-c", "1", env={"TQ_TEST_RESULT_EXPIRES": "1"})
        result = tasks.add.delay(2, 2)
        assert result.get(timeout=10) == 4
        time.sleep(2.2)
        assert tasks.app.AsyncResult(result.id).state == states.PENDING
    finally:
        tasks.app.conf.result_expires = 3600


def test_link_error_calls_old_and_new_style_errbacks(broker, start_worker, tasks):
    start_worker("-c", "2")
    result = tasks.boom.apply_async(link_error=[tasks.on_error.s(), tasks.on_error_new_style.s()])
    with pytest.raises(ValueError):
        result.get(timeout=10)
    assert wait_for_ledger(broker, f"errback:{result.id}")
    assert wait_for_ledger(broker, f"new-errback:{result.id}:ValueError")


def test_link_runs_the_callback_with_the_result(broker, start_worker, tasks):
    start_worker("-c", "2")
    callback = tasks.mark.s()
    result = tasks.add.apply_async(("li", "nk"), link=callback)
    assert result.get(timeout=10) == "link"
    assert wait_for_ledger(broker, "link")


def test_pickle_is_refused_unless_opted_in(redis_broker, start_worker, tasks):
    broker = redis_broker
    worker = start_worker("-c", "1")
    tasks.app.conf.task_serializer = "pickle"
    try:
        refused = tasks.mark.delay("pickled")
        worker.wait_for_log("cannot be decoded")
        assert refused.state == states.PENDING and "pickled" not in ledger_lines(broker)
    finally:
        tasks.app.conf.task_serializer = "json"
    assert tasks.add.delay(1, 1).get(timeout=10) == 2


def test_publishing_to_a_dead_broker_fails_with_one_clear_error():
    app = App(
        "dead",
        broker="redis://127.0.0.1:1/0",
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.1},
    )

    @app.task
    def add(x, y):
        return x + y

    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="127.0.0.1:1"):
        add.delay(1, 1)
    assert time.monotonic() - started < 10


def test_acks_late_task_survives_a_killed_worker(amqp_broker, start_worker, tasks):
    first = start_worker("-c", "1")
    result = tasks.late_sleeper.delay("late", 1)
    assert wait_for_ledger(amqp_broker, "late")
    first.stop(signal.SIGKILL)
    start_worker("-c", "1")
    assert result.get(timeout=20) == "late"
    assert ledger_lines(amqp_broker).count("late") == 2


def test_pickle_runs_when_the_worker_opts_in(redis_broker, start_worker, tasks):
    start_worker("-c", "1", env={"TQ_TEST_ACCEPT": "json,pickle"})
    tasks.app.conf.task_serializer = "pickle"
    try:
        # A frozenset cannot travel as JSON: this only works through pickle, accepted by the worker.
        # The JSON result store cannot keep that argument (result_extended), and says so.
        failed = tasks.xsum.delay(frozenset({1, 2, 3}))
        with pytest.raises(Exception, match="frozenset is not JSON serializable"):
            failed.get(timeout=10)
        assert tasks.add.delay((1, 2), (3,)).get(timeout=10) == [1, 2, 3]
    finally:
        tasks.app.conf.task_serializer = "json"
