"""The `tq worker` command: banner, options, pid files, pools, signals, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import EXAMPLES, ROOT, TESTS, ledger_lines

pytestmark = pytest.mark.timeout(90)


def run_tq(*args: str, cwd=EXAMPLES, env=None, timeout=30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tq", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})),
    )


def test_bad_app_gives_one_line_naming_what_was_searched():
    result = run_tq("-A", "nosuchproj", "worker")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "no module named 'nosuchproj'" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_tq("-A", "proj.tasks:nothing", "worker")
    assert result.returncode == 2 and "has no attribute" in result.stderr


def test_bad_options_are_usage_errors():
    result = run_tq("-A", "proj", "worker", "-c", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    result = run_tq("-A", "proj", "worker", "-l", "loud")
    assert result.returncode == 2 and "loglevel" in result.stderr


def test_banner_shows_node_app_masked_broker_and_queues(amqp_broker, tmp_path):
    broker = amqp_broker
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tq",
            "-A",
            "proj",
            "-b",
            "amqp://guest:guest@127.0.0.1:5672//",
            "worker",
            "-l",
            "info",
            "-c",
            "3",
            "-n",
            "bannertest@%h",
            "-Q",
            f"{broker.queue},{broker.q('b')}",
        ],
        cwd=EXAMPLES,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    try:
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "ready." in line or not line:
                break
        banner = "".join(lines)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    assert "bannertest@" in banner and "tq v0.1.0" in banner
    assert "amqp://guest:**@127.0.0.1:5672//" in banner and "guest:guest" not in banner
    assert ".> app:         proj:0x" in banner
    assert ".> concurrency: 3 (prefork)" in banner
    assert "OFF (enable -E to monitor tasks in this worker)" in banner
    assert f".> {broker.queue:<16} exchange={broker.queue}(direct) key={broker.queue}" in banner
    assert ". proj.tasks.add" in banner
    assert process.returncode == 0


def test_pidfile_is_written_refused_while_live_and_removed(redis_broker, start_worker, tmp_path):
    pidfile = tmp_path / "%n.pid"
    worker = start_worker("-c", "1", "--pidfile", str(pidfile), name="pidtest@%h")
    written = tmp_path / "pidtest.pid"
    assert int(written.read_text()) == worker.pid
    second = start_worker("-c", "1", "--pidfile", str(pidfile), name="pidtest@%h", ready=False)
    assert second.process.wait(timeout=20) == 1
    assert worker.stop() == 0
    assert not written.exists()


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_threads_and_solo_pools_run_tasks(redis_broker, start_worker, pool):
    from tqtest import tasks

    worker = start_worker("-P", pool, "-c", "3")
    results = [tasks.add.delay(i, i) for i in range(10)]
    assert [r.get(timeout=10) for r in results] == [2 * i for i in range(10)]
    assert tasks.boom.delay().get(timeout=10, propagate=False).args == ("bad", 42)
    assert psutil.Process(worker.pid).children() == []


def test_two_queues_are_consumed_with_equal_weight(broker, start_worker):
    from tqtest import tasks

    second = broker.q("second")
    for i in range(15):
        tasks.mark.apply_async((f"a{i}",))
        tasks.mark.apply_async((f"b{i}",), queue=second)
    start_worker("-c", "1", "-Q", f"{broker.queue},{second}", "--prefetch-multiplier", "1")
    deadline = time.monotonic() + 20
    while len(ledger_lines(broker)) < 30 and time.monotonic() < deadline:
        time.sleep(0.1)
    first_ten = ledger_lines(broker)[:10]
    assert sum(name.startswith("a") for name in first_ten) >= 3
    assert sum(name.startswith("b") for name in first_ten) >= 3


def test_cold_shutdown_on_quit_leaves_no_children(redis_broker, start_worker):
    from tqtest import tasks

    worker = start_worker("-c", "2")
    children = psutil.Process(worker.pid).children()
    assert len(children) == 2
    tasks.sleep_then.delay(30)
    time.sleep(0.5)
    assert worker.stop(signal.SIGQUIT) == 1
    assert "Cold shutdown" in worker.log()
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []


def test_sigkilled_worker_leaves_no_orphaned_children(redis_broker, start_worker):
    worker = start_worker("-c", "2")
    children = psutil.Process(worker.pid).children()
    os.kill(worker.pid, signal.SIGKILL)
    worker.process.wait(timeout=10)
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []


def test_logfile_placeholders(redis_broker, tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tq",
            "-A",
            "tqtest",
            "worker",
            "-l",
            "info",
            "-c",
            "1",
            "-n",
            "logtest@%h",
            "--logfile",
            str(tmp_path / "%n%I.log"),
        ],
        cwd=TESTS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=f"{TESTS}{os.pathsep}{ROOT}"),
    )
    try:
        deadline = time.monotonic() + 20
        logfile = tmp_path / "logtest.log"
        while time.monotonic() < deadline and not (
            logfile.exists() and "ready." in logfile.read_text()
        ):
            time.sleep(0.1)
        assert "logtest@" in logfile.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_task_s_end_is_logged_where_it_ran_as_celery_does(redis_broker, start_worker, pool):
    from tqtest import tasks

    worker = start_worker("-P", pool, "-c", "1")
    added = tasks.add.delay(2, 3)
    boomed = tasks.boom.delay()
    assert added.get(timeout=10) == 5
    boomed.get(timeout=10, propagate=False)
    ran_in = "ForkPoolWorker-1" if pool == "prefork" else "MainProcess"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "raised unexpected" not in worker.log():
        time.sleep(0.05)
    lines = worker.log().splitlines()

    def process_of(text: str) -> str:
        line = next(line for line in lines if text in line)
        return line.split("/", 1)[1].split("]", 1)[0]

    assert process_of(f"[{added.id}] received") == "MainProcess"
    assert process_of(f"[{added.id}] succeeded in") == ran_in
    assert process_of(f"[{boomed.id}] raised unexpected: ValueError") == ran_in
    assert sum(f"[{added.id}] succeeded in" in line for line in lines) == 1  # not twice
