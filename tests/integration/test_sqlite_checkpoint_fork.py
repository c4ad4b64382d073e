"""Forks while the checkpoint thread works never leave a child stuck in SQLite (the
worker's shape: one thread using the store, plus the checkpoint thread)."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tq.transports.sqlite_store import BrokerStore


@pytest.mark.timeout(150)
def test_children_forked_during_checkpoints_can_use_sqlite(tmp_path: Path) -> None:
    store = BrokerStore(tmp_path / "broker.db")
    store.declare_queue("q")
    store.checkpoint_in_thread()
    payload = "x" * 2000
    failed: list = []
    rng = random.Random(7)
    try:
        for _ in range(60):
            store.put([(["q"], 0, payload, 0.0, None)] * 50, durable=False)
            time.sleep(rng.uniform(0.0, 0.12))  # the thread checkpoints every 0.1 s
            pid = os.fork()
            if pid == 0:
                try:
                    child = BrokerStore(tmp_path / "broker.db", busy_timeout_s=5)
                    child.put([(["q"], 0, '"c"', 0.0, None)], durable=False)
                    child.close()
                    os._exit(0)
                except BaseException:
                    import traceback

                    with open(tmp_path / f"err-{os.getpid()}", "w") as f:
                        traceback.print_exc(file=f)
                    os._exit(3)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    if os.waitstatus_to_exitcode(status) != 0:
                        failed.append((pid, (tmp_path / f"err-{pid}").read_text()))
                    break
                time.sleep(0.01)
            else:
                failed.append((pid, "stuck"))
                os.kill(pid, 9)
                os.waitpid(pid, 0)
    finally:
        store.close()
    assert failed == []
