"""Fault: the broker goes away while a worker has tasks running, or is stopping.

The worker keeps turning its loop without a broker: results come in, time limits hold, a warm
stop lets the running tasks end (it used to kill them after 5 s), a thread's result is not lost
with the old loop, and a rate-limited task still runs after the reconnection. Giving up follows
Celery's settings (broker_connection_max_retries, broker_connection_retry_on_startup).
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.conftest import ledger_lines, make_broker_env, reset_test_app, wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def lost_broker(own_redis, tmp_path, monkeypatch):
    """A broker env whose broker is this test's own redis-server (results on the shared one)."""
    state = make_broker_env("redis", tmp_path, monkeypatch)
    url = f"{own_redis.url}/0"
    monkeypatch.setenv("TQ_BROKER_URL", url)
    state.env["TQ_BROKER_URL"] = url
    reset_test_app()
    yield state
    reset_test_app()


def test_a_warm_stop_lets_the_running_task_end_when_the_broker_goes_away(
    lost_broker, own_redis, start_worker, tasks
):
    worker = start_worker("-c", "1")
    tasks.begin_end.apply_async(("long", 8), ignore_result=True)
    assert wait_until(lambda: "long:begin" in ledger_lines(lost_broker))
    worker.process.send_signal(signal.SIGTERM)
    worker.wait_for_log("Warm shutdown")
    own_redis.stop()
    worker.wait_for_log("Connection to broker lost while stopping", timeout=15)
    assert worker.stop(sig=0, timeout=30) == 0, worker.log()
    assert ledger_lines(lost_broker) == ["long:begin", "long:end"], worker.log()


def test_a_warm_stop_while_reconnecting_lets_the_running_task_end(
    lost_broker, own_redis, start_worker, tasks
):
    worker = start_worker("-c", "1")
    tasks.begin_end.apply_async(("long", 8), ignore_result=True)
    assert wait_until(lambda: "long:begin" in ledger_lines(lost_broker))
    own_redis.stop()
    worker.wait_for_log("Cannot connect to", timeout=15)
    worker.process.send_signal(signal.SIGTERM)
    assert worker.stop(sig=0, timeout=30) == 0, worker.log()
    assert ledger_lines(lost_broker) == ["long:begin", "long:end"], worker.log()
    assert "Warm shutdown" in worker.log()


def test_hard_time_limits_hold_while_the_broker_is_away(
    lost_broker, own_redis, start_worker, tasks
):
    worker = start_worker("-c", "1", "--time-limit", "2")
    tasks.begin_end.apply_async(("stuck", 30), ignore_result=True)
    assert wait_until(lambda: "stuck:begin" in ledger_lines(lost_broker))
    own_redis.stop()
    begun = time.monotonic()
    worker.wait_for_log("Hard time limit (2.0s) exceeded", timeout=10)
    assert time.monotonic() - begun < 6, worker.log()
    assert "Connection to broker lost" in worker.log()


def test_a_thread_that_ends_while_the_broker_is_away_frees_its_slot(
    lost_broker, own_redis, start_worker, tasks
):
    worker = start_worker("-P", "threads", "-c", "1")
    tasks.begin_end.apply_async(("during", 1.5), ignore_result=True)
    assert wait_until(lambda: "during:begin" in ledger_lines(lost_broker))
    own_redis.stop()
    assert wait_until(lambda: "during:end" in ledger_lines(lost_broker), timeout=10)
    time.sleep(1.0)  # the result reaches the worker's loop while it has no broker
    own_redis.start()
    worker.wait_for_reconnection(lost_within=10)
    reset_test_app()
    tasks.begin_end.apply_async(("after", 0), ignore_result=True)
    assert wait_until(lambda: "after:end" in ledger_lines(lost_broker), timeout=20), worker.log()


def test_rate_limited_tasks_run_after_a_reconnection(lost_broker, own_redis, start_worker, tasks):
    names = [f"r{i}" for i in range(12)]
    for name in names:
        tasks.rated.apply_async((name,), ignore_result=True)
    worker = start_worker("-c", "2")
    # Lost while the rate limit holds most of them back (4/s: 3 s for all twelve).
    assert wait_until(lambda: len(ledger_lines(lost_broker)) >= 2, timeout=10)
    own_redis.stop()
    worker.wait_for_log("Connection to broker lost", timeout=10)
    own_redis.start()
    worker.wait_for_reconnection(lost_within=10)
    assert wait_until(lambda: set(names) <= set(ledger_lines(lost_broker)), timeout=20), (
        sorted(set(names) - set(ledger_lines(lost_broker))),
        worker.log(),
    )


def test_the_worker_gives_up_after_broker_connection_max_retries(
    lost_broker, own_redis, start_worker
):
    worker = start_worker(
        "-c", "1", env={"TQ_TEST_CONF": json.dumps({"broker_connection_max_retries": 2})}
    )
    own_redis.stop()
    assert worker.stop(sig=0, timeout=30) == 1, worker.log()
    log = worker.log()
    assert "gave up after 3 attempt(s), as broker_connection_max_retries says" in log, log
    assert log.count("Trying again in") == 2, log


def test_no_retry_on_startup_stops_the_worker_at_once(lost_broker, own_redis, start_worker):
    own_redis.stop()
    worker = start_worker(
        "-c",
        "1",
        env={"TQ_TEST_CONF": json.dumps({"broker_connection_retry_on_startup": False})},
        ready=False,
    )
    assert worker.stop(sig=0, timeout=30) == 1, worker.log()
    log = worker.log()
    assert "as broker_connection_retry_on_startup says" in log, log
    assert "Trying again in" not in log and " ready." not in log, log


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_term_while_reconnecting_is_acted_on_at_once(lost_broker, own_redis, start_worker):
    # kombu's ensure_connection(max_retries=1) is two tries with a 2 s sleep between them,
    # during which the loop did not turn: a TERM waited up to 2 s for each attempt.
    worker = start_worker("-c", "1")
    own_redis.stop()
    worker.wait_for_log("Cannot connect to", timeout=15)
    time.sleep(0.8)  # inside the attempts, past the first back-off
    sent = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    assert wait_until(lambda: "Warm shutdown" in worker.log(), timeout=10, interval=0.02)
    acted_s = time.monotonic() - sent
    assert worker.stop(sig=0, timeout=30) == 0, worker.log()
    assert acted_s < 1.0, f"TERM acted on after {acted_s:.2f} s\n{worker.log()}"


def test_a_hard_time_limit_is_on_time_while_reconnecting(
    lost_broker, own_redis, start_worker, tasks
):
    worker = start_worker("-c", "1", "--time-limit", "1")
    tasks.begin_end.apply_async(("stuck", 30), ignore_result=True)
    assert wait_until(lambda: "stuck:begin" in ledger_lines(lost_broker), interval=0.02)
    begun = time.monotonic()
    own_redis.stop()
    assert wait_until(
        lambda: "Hard time limit (1.0s) exceeded" in worker.log(), timeout=10, interval=0.02
    ), worker.log()
    late_s = time.monotonic() - begun
    assert late_s < 1.7, f"enforced {late_s:.2f} s after the task began\n{worker.log()}"


def test_reconnecting_leaves_no_redis_sockets_open(lost_broker, own_redis, start_worker):
    # The dropped connection's channels kept their sockets to the old Redis (CLOSE_WAIT),
    # three more at each reconnection, until the garbage collector found the channels.
    worker = start_worker("-c", "1")
    counts = []
    for connected in range(2, 7):
        own_redis.stop()
        worker.wait_for_log("Cannot connect to", timeout=15)
        own_redis.start()
        assert wait_until(
            lambda n=connected: worker.log().count("Connected to") >= n, timeout=30
        ), worker.log()
        time.sleep(0.5)
        counts.append(_open_fds(worker.pid))
    assert counts[-1] <= counts[0] + 2, counts


def _refused_queue(name: str) -> None:
    """Declare `name` with arguments the worker does not ask for: its declare is refused
    (PRECONDITION_FAILED) on every connection."""
    from kombu import Connection

    with Connection("amqp://guest:guest@127.0.0.1:5672//", connect_timeout=2) as connection:
        connection.channel().queue_declare(
            name, durable=False, auto_delete=False, arguments={"x-max-length": 7}
        )


def test_a_queue_the_broker_refuses_does_not_make_a_reconnect_loop(amqp_broker, start_worker):
    # A connection lost right after it was made counts as a failed attempt: the worker backs
    # off (it used to reconnect ~250 times a second, never reading its signals).
    _refused_queue(amqp_broker.queue)
    worker = start_worker("-c", "1", ready=False)
    time.sleep(5.0)
    log = worker.log()
    assert 1 <= log.count("Connection to broker lost") <= 6, log[-2000:]
    assert "PRECONDITION_FAILED" in log, log[-2000:]
    assert worker.stop(timeout=10) == 0, worker.log()[-2000:]


def test_a_refused_queue_gives_up_after_broker_connection_max_retries(
    amqp_broker, start_worker
):
    _refused_queue(amqp_broker.queue)
    worker = start_worker(
        "-c",
        "1",
        env={"TQ_TEST_CONF": json.dumps({"broker_connection_max_retries": 2})},
        ready=False,
    )
    assert worker.stop(sig=0, timeout=30) == 1, worker.log()
    log = worker.log()
    assert "gave up after 3 attempt(s), as broker_connection_max_retries says" in log, log


def test_a_task_killed_while_broker_and_backend_are_away_does_not_hold_the_loop(
    lost_broker, own_redis, monkeypatch, start_worker, tasks
):
    # Broker and result backend on the same Redis, which goes away: the FAILURE of a task its
    # time limit killed is written once Redis is back (here, at the warm stop). Writing it at
    # once held the loop while the backend waited for Redis (up to 30 s): no signals, no limits.
    backend = f"{own_redis.url}/1"
    monkeypatch.setenv("TQ_RESULT_BACKEND", backend)
    reset_test_app()
    worker = start_worker("-c", "1", "--time-limit", "1", env={"TQ_RESULT_BACKEND": backend})
    result = tasks.begin_end.delay("stuck", 30)
    assert wait_until(lambda: "stuck:begin" in ledger_lines(lost_broker), interval=0.02)
    own_redis.stop()
    worker.wait_for_log("Hard time limit (1.0s) exceeded", timeout=10)
    sent = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    assert wait_until(lambda: "Warm shutdown" in worker.log(), timeout=40, interval=0.02)
    acted_s = time.monotonic() - sent
    own_redis.start()
    assert worker.stop(sig=0, timeout=60) == 0, worker.log()
    assert acted_s < 3.0, f"TERM acted on after {acted_s:.2f} s\n{worker.log()}"
    reset_test_app()
    assert result.state == "FAILURE", worker.log()
    assert "TimeLimitExceeded" in repr(result.result), result.result
