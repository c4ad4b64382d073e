"""The core calling API against real workers on RabbitMQ (rpc), Redis and the embedded broker."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ledger_lines
from tq import states
from tq.errors import TaskRevokedError, TimeLimitExceeded, TimeoutError, WorkerLostError

pytestmark = pytest.mark.timeout(90)


def test_delay_and_get_return_the_value(broker, start_worker, tasks):
    start_worker("-c", "2")
    result = tasks.add.delay(2, 2)
    assert result.get(timeout=10) == 4
    assert result.state == states.SUCCESS
    assert result.status == states.SUCCESS
    assert result.ready() and result.successful() and not result.failed()
    assert result.result == 4
    assert result.id == result.task_id
    assert tasks.app.AsyncResult(result.id).get(timeout=5) == 4 or broker.kind == "amqp"


def test_unknown_id_is_pending_and_get_times_out(broker, tasks):
    result = tasks.app.AsyncResult("no-such-task-id")
    assert result.state == states.PENDING
    with pytest.raises(TimeoutError):
        result.get(timeout=0.3)


def test_failure_reraises_the_original_type_with_remote_traceback(broker, start_worker, tasks):
    start_worker("-c", "1")
    with pytest.raises(TypeError):
        tasks.add.delay(2)  # wrong call: refused at the client, like Celery with typing on
    result = tasks.add.delay(2, "x")
    with pytest.raises(TypeError) as raised:
        result.get(timeout=10)
    assert "unsupported operand" in str(raised.value)
    assert result.state == states.FAILURE and result.failed()
    assert "Traceback" in result.traceback and "TypeError" in result.traceback
    assert any("Remote traceback" in note for note in raised.value.__notes__)
    exc = result.get(propagate=False)
    assert isinstance(exc, TypeError)
    boom = tasks.boom.delay()
    with pytest.raises(ValueError) as raised:
        boom.get(timeout=10)
    assert raised.value.args == ("bad", 42)


def test_direct_call_and_apply_run_in_process(broker, tasks):
    assert tasks.add(2, 2) == 4
    eager = tasks.add.apply((3, 4))
    assert eager.get() == 7 and eager.state == states.SUCCESS
    failed = tasks.boom.apply()
    assert failed.state == states.FAILURE
    with pytest.raises(ValueError):
        failed.get()


def test_send_task_by_name_and_result_extended(broker, start_worker, tasks):
    start_worker("-c", "1")
    result = tasks.app.send_task("tqtest.tasks.mul", (6, 7))
    assert result.get(timeout=10) == 42
    if broker.kind != "amqp":  # rpc results carry the same meta but are read once
        assert result.name == "tqtest.tasks.mul"
        assert result.args == [6, 7]
        assert result.queue == broker.queue


def test_countdown_and_eta_wait_without_blocking_other_work(broker, start_worker, tasks):
    start_worker("-c", "1")
    sent = time.monotonic()
    later = tasks.add.apply_async((1, 1), countdown=1.5)
    naive_eta = datetime.now() + timedelta(seconds=1.5)  # naive: read in the app's timezone (UTC)
    at_eta = tasks.mul.apply_async((2, 3), eta=naive_eta.astimezone(UTC).replace(tzinfo=None))
    now = tasks.add.delay(5, 5)
    assert now.get(timeout=10) == 10
    assert time.monotonic() - sent < 1.5, "an ETA task blocked the task sent after it"
    assert later.get(timeout=10) == 2
    assert at_eta.get(timeout=10) == 6
    assert time.monotonic() - sent >= 1.4


def test_expired_task_is_revoked_and_not_run(broker, start_worker, tasks):
    start_worker("-c", "1")
    result = tasks.mark.apply_async(("expired",), countdown=1, expires=0.5)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=10)
    assert result.state == states.REVOKED
    assert "expired" not in ledger_lines(broker)


def test_revoke_prevents_a_scheduled_task_from_running(broker, start_worker, tasks):
    start_worker("-c", "1")
    result = tasks.mark.apply_async(("revoked",), countdown=2)
    time.sleep(0.5)
    result.revoke()
    with pytest.raises(TaskRevokedError):
        result.get(timeout=10)
    assert "revoked" not in ledger_lines(broker)


def test_retry_runs_again_and_then_succeeds(broker, start_worker, tasks):
    start_worker("-c", "1")
    result = tasks.flaky.delay("flaky", 2)
    assert result.get(timeout=15) == 2
    assert ledger_lines(broker).count("flaky") == 3
    exhausted = tasks.always_retry.delay()
    with pytest.raises(RuntimeError, match="still broken"):
        exhausted.get(timeout=15)


def test_autoretry_for_with_backoff(broker, start_worker, tasks):
    start_worker("-c", "1")
    assert tasks.auto.delay("auto").get(timeout=15) == 3
    assert ledger_lines(broker).count("auto") == 3


def test_track_started_shows_started_while_running(broker, start_worker, tasks):
    start_worker("-c", "1")
    result = tasks.slow_tracked.delay(1.5)
    if broker.kind != "amqp":  # rpc: each state is one message, read by get()
        deadline = time.monotonic() + 10
        while result.state != states.STARTED and time.monotonic() < deadline:
            time.sleep(0.05)
        assert result.state == states.STARTED
    assert result.get(timeout=10) == "done"


def test_routes_and_queue_option_pick_the_queue(broker, start_worker, tasks):
    hipri, globbed, lopri = broker.q("hipri"), broker.q("glob"), broker.q("lopri")
    configured = tasks.app.conf.task_routes
    tasks.app.conf.task_routes = {
        "tqtest.tasks.routed_exact": hipri,
        "tqtest.tasks.glob_*": {"queue": globbed},
    }
    try:
        worker = start_worker("-c", "2", "-Q", f"{hipri},{globbed},{lopri}")
        assert tasks.routed_exact.delay().get(timeout=10) == "hipri"
        assert tasks.glob_one.delay().get(timeout=10) == "globbed"
        assert tasks.add.apply_async((1, 2), queue=lopri).get(timeout=10) == 3
        log = worker.log()
        assert "tqtest.tasks.routed_exact" in log and "tqtest.tasks.glob_one" in log
    finally:
        tasks.app.conf.task_routes = configured  # later tests in this process see the app's own


def test_soft_time_limit_raises_inside_the_task(broker, start_worker, tasks):
    start_worker("-c", "1", "--soft-time-limit", "0.5")
    assert tasks.soft_limited.delay(5).get(timeout=10) == "soft limit caught"


def test_hard_time_limit_kills_and_replaces_the_child(broker, start_worker, tasks):
    worker = start_worker("-c", "1", "--time-limit", "0.5")
    result = tasks.sleep_then.delay(10, "never")
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=10)
    assert tasks.add.delay(1, 1).get(timeout=10) == 2
    assert "Hard time limit" in worker.log()


def test_killed_child_fails_the_task_with_worker_lost(broker, start_worker, tasks):
    start_worker("-c", "1")
    result = tasks.die.delay("die")
    with pytest.raises(WorkerLostError, match="signal 9"):
        result.get(timeout=10)
    assert tasks.add.delay(2, 3).get(timeout=10) == 5


def test_acks_late_reject_on_worker_lost_redelivers(broker, start_worker, tasks):
    start_worker("-c", "1")
    assert tasks.die_once.delay("once").get(timeout=20) == 2
    assert ledger_lines(broker).count("once") == 2


def test_a_task_that_kills_its_pool_process_every_time_runs_four_times_in_all_then_fails(
    broker, start_worker, tasks
):
    # Two nodes: the count travels with the task (in a requeued copy), not per node.
    nodes = [start_worker("-c", "1"), start_worker("-c", "1")]
    result = tasks.die_always.delay("poison")
    with pytest.raises(WorkerLostError, match=r"Not requeued again: .* each of its 4 runs"):
        result.get(timeout=30)
    time.sleep(1.0)  # a copy left behind would have run by now
    assert ledger_lines(broker).count("poison") == 4  # the first run and three requeues
    assert tasks.add.delay(2, 3).get(timeout=10) == 5  # the nodes work on
    logs = "".join(node.log() for node in nodes)
    assert "requeued (reject_on_worker_lost, 3 of 3)" in logs
    assert "requeued (reject_on_worker_lost, 4 of 3)" not in logs


def test_max_tasks_per_child_recycles_processes(broker, start_worker, tasks):
    start_worker("-c", "1", "--max-tasks-per-child", "1")
    pids = {tasks.pid.delay().get(timeout=10) for _ in range(3)}
    assert len(pids) == 3


def test_max_memory_per_child_recycles_processes(broker, start_worker, tasks):
    start_worker("-c", "1", "--max-memory-per-child", "60000")
    first = tasks.leak.delay(100).get(timeout=10)
    second = tasks.pid.delay().get(timeout=10)
    assert first != second


def test_warm_shutdown_finishes_running_tasks(broker, start_worker, tasks):
    worker = start_worker("-c", "2")
    result = tasks.sleep_then.delay(1.5, "finished")
    time.sleep(0.5)
    assert worker.stop(signal.SIGTERM) == 0
    assert result.get(timeout=10) == "finished"
    assert "Warm shutdown" in worker.log()


def test_rejected_messages_do_not_stop_the_worker(broker, start_worker, tasks):
    worker = start_worker("-c", "1")
    tasks.app.send_task("tqtest.tasks.not_a_task", (1,))
    with tasks.app.broker_connection() as connection:
        producer = connection.Producer()
        queue = tasks.app.default_queue()
        producer.publish(
            b"\x80\x04not json",
            exchange="",
            routing_key=queue.name,
            declare=[queue],
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={"task": "tqtest.tasks.add", "id": "pickled"},
        )
        producer.publish(
            "not a list",
            exchange="",
            routing_key=queue.name,
            serializer="json",
            headers={"task": "tqtest.tasks.add", "id": "bad-body"},
        )
        producer.publish(
            {"task": "tqtest.tasks.add", "id": "v1"},
            exchange="",
            routing_key=queue.name,
            serializer="json",
        )
    assert tasks.add.delay(20, 22).get(timeout=10) == 42
    worker.wait_for_log("unregistered task")
    log = worker.log()
    assert "cannot be decoded" in log
    assert "body must be [args, kwargs, embed]" in log
    assert "protocol v1" in log
    assert worker.process.poll() is None
