"""tq's Redis transport and Celery's share one Redis: unacked work of a dead worker of either kind
comes back to a live worker of the other kind, and a tq worker writes every ack before it exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import ROOT
from tests.faults.conftest import make_fault_env

pytest.importorskip("celery")

pytestmark = pytest.mark.timeout(120)

#: A message its holder has not acked comes back this long after delivery. It must exceed
#: how long a live worker holds one (FAST_S) and the few seconds before the holder is killed.
VISIBILITY_TIMEOUT_S = 3
#: How long a task sleeps on the node that is killed (it never ends there) and elsewhere.
SLOW_S, FAST_S = 60.0, 0.1
SENT = 4
WAIT_S = 60.0


@pytest.fixture
def interop_env(redis_broker, monkeypatch, start_worker):
    return make_fault_env(
        redis_broker,
        monkeypatch,
        start_worker,
        visibility_timeout=VISIBILITY_TIMEOUT_S,
        unacked_restore_interval=1,  # look for expired messages every second
        unacked_restore_throttle=1,
    )


@pytest.fixture
def celery_worker(interop_env, tmp_path):
    """Start Celery workers of redis_interop_celery on the test's queue; stop them after."""
    started: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        logfile = tmp_path / f"celery-{len(started)}.log"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "tests.integration.redis_interop_celery",
                "worker", "-l", "info", "-P", "solo", "--without-mingle", "--without-gossip",
                "--without-heartbeat", "-n", name, "-Q", interop_env.broker.queue,
                f"--logfile={logfile}", *args,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        started.append(process)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if logfile.exists() and "ready." in logfile.read_text():
                return process
            assert process.poll() is None, logfile.read_text() if logfile.exists() else ""
            time.sleep(0.05)
        raise AssertionError("the Celery worker did not get ready in 30 s")

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def send_held_tasks(slow_node: str) -> list[str]:
    from tests.faults import faultapp

    keys = [f"k{i}" for i in range(SENT)]
    for key in keys:
        faultapp.late_on.delay(key, slow_node, SLOW_S, FAST_S)
    return keys


def assert_every_task_ended_once_on(ledger, keys: list[str], node: str, killed_running: int):
    ledger.wait_until(lambda led: set(led.ends()) >= set(keys), WAIT_S, "every task ending")
    starts, ends = ledger.starts(), ledger.ends()
    assert all(ends[key] == 1 for key in keys), ends
    assert {run.node for run in ledger.runs("end")} == {node}
    # The ones the killed node was running started twice; the ones it only held, once.
    assert (
        sorted(starts[key] for key in keys) == [1] * (SENT - killed_running) + [2] * killed_running
    )


def test_tasks_a_sigkilled_tq_worker_held_run_on_a_celery_worker(interop_env, celery_worker):
    ledger = interop_env.ledger
    tq_node = f"tq-{interop_env.tag}@interop"
    celery_node = f"celery-{interop_env.tag}@interop"
    keys = send_held_tasks(tq_node)
    # 2 running, 2 prefetched behind them, every one recorded as unacked by tq's transport.
    tq_worker = interop_env.worker("-c", "2", "--prefetch-multiplier", "2", name=tq_node)
    ledger.wait_until(lambda led: len(led.runs("start")) == 2, WAIT_S, "2 tasks running on tq")
    tq_worker.process.send_signal(signal.SIGKILL)
    tq_worker.process.wait(timeout=10)
    celery_worker(celery_node)
    assert_every_task_ended_once_on(ledger, keys, celery_node, killed_running=2)


def test_tasks_a_sigkilled_celery_worker_held_run_on_a_tq_worker(interop_env, celery_worker):
    ledger = interop_env.ledger
    celery_node = f"celery-{interop_env.tag}@interop"
    tq_node = f"tq-{interop_env.tag}@interop"
    keys = send_held_tasks(celery_node)
    # Solo pool: 1 running, 3 prefetched, every one recorded as unacked by kombu's transport.
    celery = celery_worker(celery_node, "--prefetch-multiplier", "4")
    ledger.wait_until(lambda led: len(led.runs("start")) == 1, WAIT_S, "1 task running on Celery")
    celery.send_signal(signal.SIGKILL)
    celery.wait(timeout=10)
    interop_env.worker("-c", "2", name=tq_node)
    assert_every_task_ended_once_on(ledger, keys, tq_node, killed_running=1)


def test_a_warm_shutdown_writes_every_ack_and_requeues_what_was_prefetched(interop_env):
    import redis

    from tests.faults import faultapp

    broker = interop_env.broker
    prefix = f"{broker.queue}:"
    client = redis.Redis.from_url(broker.env["TQ_BROKER_URL"])
    node = f"tq-{interop_env.tag}-{uuid.uuid4().hex[:4]}@interop"
    quick = [f"q{i}" for i in range(30)]
    for key in quick:
        faultapp.quick.delay(key)
    worker = interop_env.worker("-c", "2", "--prefetch-multiplier", "4", name=node)
    interop_env.ledger.wait_until(lambda led: set(led.ends()) >= set(quick), WAIT_S, "quick")
    # Then 2 running and 6 prefetched when the worker is asked to stop.
    held = [f"h{i}" for i in range(10)]
    for key in held:
        faultapp.late_on.delay(key, node, 1.0, 1.0)
    interop_env.ledger.wait_until(lambda led: len(led.starts()) == 32, WAIT_S, "2 running")
    assert worker.stop(signal.SIGTERM) == 0
    ends = interop_env.ledger.ends()
    finished = [key for key in held if ends[key]]
    assert len(finished) == 2
    # Every message is either acked (gone from Redis) or back in its queue: nothing unacked.
    assert client.hlen(f"{prefix}unacked") == 0
    assert client.zcard(f"{prefix}unacked_index") == 0
    assert client.llen(f"{prefix}{broker.queue}") == len(held) - len(finished)
