"""A pool process that is free gets the next waiting task at once, on every broker, while the
others run long acks_late tasks with a prefetch multiplier of 1 (Celery's advice for long tasks):
the worker must claim for one free slot, not wait until half its prefetch window is free."""

from __future__ import annotations

import pytest

from tests.conftest import kill_tq_tree, ledger_lines, make_broker_env, require_broker, wait_until


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["redis", "amqp", "embedded"])
def test_a_free_pool_process_takes_the_next_task(tmp_path, monkeypatch, start_worker, tasks, kind):
    if kind != "embedded":
        require_broker(kind)
    broker = make_broker_env(kind, tmp_path, monkeypatch)
    worker = start_worker("-c", "4", "--prefetch-multiplier", "1")
    try:
        for name in ("long1", "long2", "long3"):
            tasks.late_sleep.delay(name, 40)
        tasks.late_sleep.delay("short", 0)
        tasks.late_sleep.delay("second", 0)
        assert wait_until(lambda: "short" in ledger_lines(broker), timeout=20)
        started = wait_until(lambda: "second" in ledger_lines(broker), timeout=8)
        assert started, f"'second' did not start within 8 s: {ledger_lines(broker)}"
    finally:
        kill_tq_tree(worker.pid)
        worker.process.wait(timeout=10)
