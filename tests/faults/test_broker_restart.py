"""Fault: the broker goes away under load and comes back; workers and clients carry on by themselves."""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest

from tests.conftest import make_broker_env, reset_test_app

from .ledger import FaultRow

pytestmark = pytest.mark.timeout(180)

#: Seconds without a new execution after which the remaining tasks count as lost.
STALL_S = 5.0


def test_redis_restart_under_load_workers_and_clients_carry_on(
    own_redis, tmp_path, monkeypatch, start_worker, fault_row
):
    state = make_broker_env("redis", tmp_path, monkeypatch)
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    monkeypatch.setenv("TQ_BROKER_URL", url)
    monkeypatch.setenv("TQ_RESULT_BACKEND", f"redis://127.0.0.1:{own_redis.port}/1")
    reset_test_app()
    from tqtest import tasks

    ledger = state.env["TQ_TEST_LEDGER"]

    def counts() -> Counter:
        if not os.path.exists(ledger):
            return Counter()
        with open(ledger) as handle:
            return Counter(line.strip() for line in handle if line.strip())

    # Queued first, then the worker: a worker already running drains them as fast as they come.
    sent = [f"before-{i}" for i in range(1500)]
    for name in sent:
        tasks.mark.apply_async((name,), ignore_result=True)
    start_worker(
        "-c",
        "2",
        env={"TQ_BROKER_URL": url, "TQ_RESULT_BACKEND": f"redis://127.0.0.1:{own_redis.port}/1"},
    )
    # Pull the broker away mid-drain: once the worker has run some, with most still waiting.
    deadline = time.monotonic() + 30
    while sum(counts().values()) < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    own_redis.stop()
    ran_at_stop = sum(counts().values())
    time.sleep(3.0)
    own_redis.start()
    # Time to resume: from the broker's return until the worker runs tasks again (work waits for
    # it either way: what was queued before, or what is sent now).
    back_at = time.monotonic()
    ran_before = sum(counts().values())
    reset_test_app()  # the client reconnects on its next publish
    after = [f"after-{i}" for i in range(500)]
    for name in after:
        tasks.mark.apply_async((name,), ignore_result=True)
    deadline = back_at + 60
    while sum(counts().values()) == ran_before and time.monotonic() < deadline:
        time.sleep(0.05)
    resumed_s = time.monotonic() - back_at
    assert tasks.add.delay(20, 22).get(timeout=60) == 42

    # Wait for every task, or until nothing more has run for STALL_S (a lost one never will).
    deadline = time.monotonic() + 90
    progress, progress_at = -1, time.monotonic()
    while time.monotonic() < deadline and not set(sent + after) <= set(counts()):
        ran = sum(counts().values())
        if ran != progress:
            progress, progress_at = ran, time.monotonic()
        elif time.monotonic() - progress_at > STALL_S:
            break
        time.sleep(0.2)
    seen = counts()
    lost = [name for name in sent + after if name not in seen]
    duplicated = sum(count - 1 for count in seen.values() if count > 1)
    fault_row(
        FaultRow(
            "broker restart under load (3 s down)",
            "redis",
            sent=len(sent) + len(after),
            executed=sum(seen.values()),
            succeeded=len(seen),
            failed=0,
            duplicated=duplicated,
            lost=len(lost),
            resume_s=resumed_s,
        )
    )
    assert ran_at_stop < len(sent), "the worker drained everything before Redis went away"
    # Everything sent after the restart runs, and so does everything that waited in Redis.
    assert not [name for name in lost if name.startswith("after-")], lost
    # tq's Redis transport records a claim as unacked in the script that pops it and gives back
    # a claim whose reply was on the wire when Redis went away: nothing may be lost.
    assert not lost, f"{len(lost)} tasks lost, e.g. {lost[:5]}"


#: RabbitMQ case: tasks sent before and after the restart, each running this long.
AMQP_BEFORE, AMQP_AFTER, AMQP_TASK_S = 1500, 500, 0.01
AMQP_CONCURRENCY, AMQP_PREFETCH = 2, 4
#: Seconds the RabbitMQ node stays down (after its clean stop, which takes about 3 s more).
AMQP_DOWN_S = 3.0


def test_rabbitmq_restart_under_load_workers_and_clients_carry_on(
    own_rabbitmq, tmp_path, monkeypatch, start_worker, fault_row
):
    from . import faultapp
    from .conftest import make_fault_env

    broker = make_broker_env("amqp", tmp_path, monkeypatch)
    monkeypatch.setenv("TQ_BROKER_URL", own_rabbitmq.url)  # never the machine's RabbitMQ
    env = make_fault_env(broker, monkeypatch, start_worker)
    env.worker("-c", str(AMQP_CONCURRENCY), "--prefetch-multiplier", str(AMQP_PREFETCH))
    before = [f"before-{i}" for i in range(AMQP_BEFORE)]
    for key in before:
        faultapp.mark_late.delay(key, AMQP_TASK_S)
    env.ledger.wait_until(lambda ledger: len(ledger.runs("start")) >= 100, 60, "100 tasks")
    own_rabbitmq.stop()  # connections close: what the worker held unacked goes back to the queue
    time.sleep(AMQP_DOWN_S)
    own_rabbitmq.start()
    back_at = time.monotonic()
    ran_before = len(env.ledger.runs("start"))
    after = [f"after-{i}" for i in range(AMQP_AFTER)]
    for key in after:  # the client publishes again on its own (no reset)
        faultapp.mark_late.delay(key, AMQP_TASK_S)
    deadline = back_at + 60
    while len(env.ledger.runs("start")) == ran_before and time.monotonic() < deadline:
        time.sleep(0.05)
    resumed_s = time.monotonic() - back_at

    # Wait for every task, or until nothing more has run for STALL_S (a lost one never will).
    keys = before + after
    deadline = time.monotonic() + 120
    progress, progress_at = -1, time.monotonic()
    while time.monotonic() < deadline and not set(keys) <= set(env.ledger.ends()):
        ran = len(env.ledger.runs("start"))
        if ran != progress:
            progress, progress_at = ran, time.monotonic()
        elif time.monotonic() - progress_at > STALL_S:
            break
        time.sleep(0.2)
    starts, ends = env.ledger.starts(), env.ledger.ends()
    lost = [key for key in keys if not ends[key]]
    duplicated = env.ledger.duplicated()
    fault_row(
        FaultRow(
            f"broker restart under load ({AMQP_DOWN_S:.0f} s down)",
            "amqp",
            sent=len(keys),
            executed=sum(starts.values()),
            succeeded=sum(1 for key in keys if ends[key]),
            failed=0,
            duplicated=duplicated,
            lost=len(lost),
            resume_s=resumed_s,
        )
    )
    assert not lost, f"{len(lost)} tasks lost, e.g. {lost[:5]}"
    # RabbitMQ requeues what the worker held unacked when the connection went: only tasks
    # running then, or finished with their ack unsent, can run again; never more than the window.
    assert duplicated <= AMQP_CONCURRENCY * AMQP_PREFETCH, duplicated
    assert set(starts) == set(keys)
    # Work was waiting in RabbitMQ (durable queue, persistent messages) across the restart.
    assert ran_before < AMQP_BEFORE, "the worker drained everything before the broker went"
