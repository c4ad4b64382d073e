"""On RabbitMQ a worker holds an ETA task only so long, under RabbitMQ's consumer_timeout.

RabbitMQ closes a channel whose delivery stays unacked past consumer_timeout (30 min by
default), and every message the worker holds goes back with it (celery#6760): tq hands a
far-off ETA task back to its queue (a copy, then an ack) every worker_eta_republish_after
seconds. The RabbitMQ these tests share keeps its default timeout, so the test shortens tq's
side instead and checks what RabbitMQ would see: no delivery held past the limit, and the task
run once, when due.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import ledger_lines, reset_test_app

pytestmark = pytest.mark.timeout(90)


def test_a_far_eta_task_goes_back_to_its_queue_in_turns_and_runs_once_when_due(
    amqp_broker, start_worker, tasks, monkeypatch
):
    # Signed messages: the worker refuses a copy whose signature no longer matches.
    monkeypatch.setenv("TQ_MESSAGE_SIGNING_KEY", "eta-hand-back-test-key-0123456789")
    reset_test_app()
    conf = json.dumps({"worker_eta_republish_after": 0.5})
    worker = start_worker("-c", "1", "-l", "debug", env={"TQ_TEST_CONF": conf})
    sent = time.monotonic()
    result = tasks.recorded.apply_async(("eta",), countdown=4)
    assert result.get(timeout=30) == 1
    assert time.monotonic() - sent >= 3.8  # not before it was due (less a clock tick)
    time.sleep(1.0)  # a second copy, had one been left behind, would have run by now
    assert ledger_lines(amqp_broker).count("eta") == 1
    log = worker.log()
    # Every 0.5 s until under 0.5 s remain: about seven, fewer when the machine is busy.
    assert log.count("handed back to queue") >= 2
    assert log.count(f"Task tqtest.tasks.recorded[{result.id}] received\n") == 1  # once at INFO


def test_a_near_eta_task_is_held_until_due(amqp_broker, start_worker, tasks):
    worker = start_worker("-c", "1", "-l", "debug")  # the default: hand back after 15 min
    assert tasks.recorded.apply_async(("near",), countdown=1).get(timeout=30) == 1
    assert "handed back to queue" not in worker.log()
