"""A worker's acks on the embedded broker reach the database while it runs, not only when its
queue delivers again or it stops: a worker killed later does not run an acked task again."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import kill_tq_tree, ledger_lines, make_broker_env, wait_until

pytestmark = pytest.mark.timeout(120)


def unacked_rows(tmp_path: Path) -> int:
    db = sqlite3.connect(tmp_path / "data" / "broker.db", timeout=10)
    try:
        return db.execute("SELECT COUNT(*) FROM unacked").fetchone()[0]
    finally:
        db.close()


def test_a_task_acked_before_the_worker_is_killed_does_not_run_again(
    tmp_path, monkeypatch, start_worker, tasks
):
    broker = make_broker_env("embedded", tmp_path, monkeypatch)
    # One pool process, a prefetch window of 8: the worker claims all 8 messages at once.
    worker = start_worker("-c", "1", "--prefetch-multiplier", "8")
    tasks.recorded.delay("short")  # acked when handed to the pool, done at once
    for _ in range(7):
        tasks.sleep_then.delay(60)  # the first runs, six wait in the worker (held, unacked)
    assert wait_until(lambda: "short" in ledger_lines(broker), timeout=20)
    time.sleep(2.0)  # the worker's loop keeps polling its (now empty) queue meanwhile
    rows = unacked_rows(tmp_path)
    # short and the running sleep_then were acked (early acks); six are still held.
    kill_tq_tree(worker.pid)  # e.g. the OOM killer, a power loss, kill -9
    worker.process.wait(timeout=10)
    start_worker("-c", "1")  # sweeps the dead worker's unacked messages back to the queue
    time.sleep(3.0)
    runs = ledger_lines(broker).count("short")
    assert (rows, runs) == (6, 1), (
        f"unacked rows 2 s after the acks: {rows} (expected 6); 'short' ran {runs} times"
    )
