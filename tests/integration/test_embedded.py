"""The embedded broker under real workers: crash safety, concurrent producers, broken data dirs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import ROOT, TESTS, ledger_lines, make_broker_env, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def embedded(tmp_path, monkeypatch):
    return make_broker_env("embedded", tmp_path, monkeypatch)


def test_sigkilled_worker_holding_prefetched_and_running_tasks_loses_nothing(
    embedded, start_worker
):
    from tqtest import tasks

    first = start_worker("-c", "2", "--prefetch-multiplier", "4")
    names = [f"k{i}" for i in range(12)]
    for name in names:
        tasks.late_sleeper.apply_async((name, 0.5), ignore_result=True)
    assert wait_until(lambda: len(ledger_lines(embedded)) >= 2, 10)
    started_before_kill = set(ledger_lines(embedded))
    first.stop(signal.SIGKILL)
    start_worker("-c", "2")
    assert wait_until(lambda: set(names) <= set(ledger_lines(embedded)), 60)
    time.sleep(1.0)  # anything run twice would show by now
    counts = Counter(ledger_lines(embedded))
    assert set(counts) == set(names)
    for name in names:
        # A task running when its worker died runs again (at-least-once); the rest exactly once.
        assert counts[name] == (2 if name in started_before_kill else 1), (name, counts)


def test_with_prefetch_multiplier_1_every_pool_slot_gets_an_acks_late_task(embedded, start_worker):
    from tqtest import tasks

    start_worker("-c", "4", "-P", "threads", "--prefetch-multiplier", "1")
    results = []
    for index in range(4):  # one at a time, acks_late: the window fills slot by slot
        results.append(tasks.late_sleeper.delay(f"slot{index}", 6))
        time.sleep(0.3)

    def running() -> int:
        replies = tasks.app.control.broadcast("active", reply=True, timeout=1.0) or []
        return sum(len(tasks_) for reply in replies for tasks_ in reply.values())

    # All four run at once: none waits in the queue while a pool slot is free.
    assert wait_until(lambda: running() == 4, 4.0, interval=0.3), running()
    for result in results:
        result.get(timeout=20)
    assert sorted(ledger_lines(embedded)) == ["slot0", "slot1", "slot2", "slot3"]


PRODUCER = """
import sys
sys.path[:0] = [{tests!r}, {root!r}]
from tqtest import tasks
for i in range(2500):
    tasks.mark.apply_async(("p{index}-%d" % i,), ignore_result=True)
"""


def test_four_producer_processes_and_exactly_ten_thousand_executions(embedded, start_worker):
    producers = [
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER.format(tests=str(TESTS), root=str(ROOT), index=index)]
        )
        for index in range(4)
    ]
    try:
        start_worker("-c", "2")
        for producer in producers:
            assert producer.wait(timeout=90) == 0
        assert wait_until(lambda: len(ledger_lines(embedded)) >= 10_000, 90, interval=0.5)
        time.sleep(0.5)
        lines = ledger_lines(embedded)
        assert len(lines) == 10_000
        assert len(set(lines)) == 10_000
    finally:
        for producer in producers:
            if producer.poll() is None:
                producer.kill()
                producer.wait(timeout=10)


def run_tq(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tq", "-A", "tqtest", "--workdir", str(TESTS), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=f"{TESTS}{os.pathsep}{ROOT}", **env),
    )


@pytest.mark.parametrize("where", ["unwritable", "corrupt"])
def test_broken_data_dir_gives_one_clear_line(embedded, tmp_path, where):
    if where == "unwritable":
        data_dir = Path("/proc/tq-cannot-exist/data")  # /proc refuses new directories, even to root
    else:
        data_dir = tmp_path / "corrupt"
        data_dir.mkdir()
        (data_dir / "broker.db").write_bytes(b"this is not a database" * 100)
    env = {"TQ_DATA_DIR": str(data_dir)}
    for args in (["call", "tqtest.tasks.add", "--args", "[1, 2]"], ["worker", "-c", "1"]):
        result = run_tq(*args, env=env)
        assert result.returncode in (1, 2), result
        assert "Traceback" not in result.stderr
        error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(error) == 1, result.stderr
        assert str(data_dir) in error[0]
