"""Embedded broker: a free prefetch slot is filled within the claim-coalescing wait, even when
the channel also consumes an empty queue (a claim that finds a queue empty must not restart the
wait for the next queue)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kombu import Connection, Consumer, Queue
from kombu.asynchronous import Hub

from tests.conftest import kill_tq_tree, ledger_lines, make_broker_env, wait_until
from tq.transports import register_transports

from .test_sqlite_transport import publish, url_for

register_transports()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("queue_names", [["work"], ["work", "idle"], ["idle", "work"]])
def test_a_freed_slot_is_refilled_while_the_others_stay_busy(
    tmp_path: Path, queue_names: list[str]
) -> None:
    """-c 4 --prefetch-multiplier 1 (or -c 1 with 4): three long tasks run, one finishes; the
    next waiting message must reach the free slot within a few ms, not wait for a second ack."""
    with Connection(url_for(tmp_path)) as conn:
        queues = [Queue(name) for name in queue_names]
        for each in queues:
            each(conn.default_channel).declare()
        publish(conn, [f"m{i}" for i in range(10)], "work")
        hub = Hub()
        pending: list = []
        work = Consumer(
            conn.channel(), queues, accept=["json"], callbacks=[lambda b, m: pending.append(m)]
        )
        work.qos(prefetch_count=4)
        work.consume()
        conn.transport.register_with_event_loop(conn.connection, hub)
        loop = hub.create_loop()
        deadline = time.monotonic() + 10
        while len(pending) < 4 and time.monotonic() < deadline:
            next(loop)
        assert len(pending) == 4
        pending[0].ack()  # one task done; three still running
        acked_at = time.monotonic()
        while len(pending) < 5 and time.monotonic() - acked_at < 2.0:
            next(loop)
        waited_s = time.monotonic() - acked_at
        got = len(pending)
        hub.close()
    assert got == 5, f"the free slot stayed empty for {waited_s:.2f} s with 6 messages waiting"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("with_idle_queue", [False, True])
def test_a_worker_consuming_two_queues_fills_a_free_pool_process(
    tmp_path, monkeypatch, start_worker, tasks, with_idle_queue
):
    broker = make_broker_env("embedded", tmp_path, monkeypatch)
    idle = broker.q("idle")
    queues = f"{broker.queue},{idle}" if with_idle_queue else broker.queue
    worker = start_worker("-c", "4", "--prefetch-multiplier", "1", "-Q", queues)
    try:
        for name in ("long1", "long2", "long3"):
            tasks.late_sleep.delay(name, 40)
        tasks.late_sleep.delay("short", 0)
        tasks.late_sleep.delay("second", 0)  # waits for a free pool process
        assert wait_until(lambda: "short" in ledger_lines(broker), timeout=20)
        started = wait_until(lambda: "second" in ledger_lines(broker), timeout=8)
        assert started, (
            f"'second' did not start within 8 s; a pool process idles: {ledger_lines(broker)}"
        )
    finally:
        kill_tq_tree(worker.pid)
        worker.process.wait(timeout=10)
