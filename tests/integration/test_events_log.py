"""The durable event log from the command line: tq events --record, --dump --since, --follow."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, TESTS
from tests.integration.test_events import collect
from tests.integration.test_events import spawn as spawn_monitor
from tq.eventlog import EventLog

pytestmark = pytest.mark.timeout(120)

ENV_PATH = {"PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}"}
TQ = [sys.executable, "-m", "tq", "-A", "tqtest"]


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*TQ, *args],
        cwd=TESTS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, **ENV_PATH),
    )


def run_tq(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TQ, *args],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, **ENV_PATH),
    )


def wait_for_record(log_dir: Path, matches, what: str, timeout: float = 30.0) -> None:
    """Poll the log until a record satisfies `matches` (other tests' events share the broker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_dir.exists() and any(matches(r.event) for r in EventLog(log_dir).read()):
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} never reached the event log in {timeout}s")


def stop(process: subprocess.Popen) -> tuple[int, str, str]:
    """TERM a tq process (started by this test) and return its exit code and output."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate(timeout=5)
    return process.returncode, out, err


def test_recorded_events_dump_since_and_follow_in_the_live_layout(
    redis_broker, start_worker, tmp_path
) -> None:
    from tqtest import tasks

    log_dir = tmp_path / "events"
    recorder = spawn("events", "--record", "--log-dir", str(log_dir))
    try:
        mine = f"rec{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
        start_worker("-c", "1", "-E", name=mine)
        # The recorder listens once our worker's heartbeat reaches the log (Redis is PUBSUB).
        wait_for_record(log_dir, lambda e: e.get("hostname") == mine, "our worker's heartbeat")
        first = tasks.add.delay(2, 3)
        assert first.get(timeout=10) == 5
        wait_for_record(
            log_dir,
            lambda e: e.get("uuid") == first.id and e["type"] == "task-succeeded",
            "the task's success",
        )
    finally:
        code, _, err = stop(recorder)
    assert code == 0, err
    assert "recorded" in err and "Traceback" not in err

    backlog = run_tq("events", "--dump", "--since", "10m", "--log-dir", str(log_dir))
    assert backlog.returncode == 0, backlog.stderr
    assert f"task succeeded: tqtest.tasks.add({first.id}) args=(2, 3) kwargs={{}}" in backlog.stdout
    assert "result=5" in backlog.stdout and f"{mine} [" in backlog.stdout

    # A recorder appends again; a follower prints the backlog, then what arrives.
    recorder = spawn("events", "--record", "--log-dir", str(log_dir))
    follower = spawn_monitor(
        *TQ, "events", "--dump", "--since", "10m", "--follow", "--log-dir", str(log_dir)
    )
    try:
        deadline = time.monotonic() + 30
        second = None
        while time.monotonic() < deadline:
            second = tasks.mul.delay(6, 7)
            assert second.get(timeout=10) == 42
            try:
                wanted = second.id
                wait_for_record(
                    log_dir, lambda e, w=wanted: e.get("uuid") == w, "the second task", timeout=2
                )
                break
            except AssertionError:
                continue  # sent before the new recorder listened: send another
        assert second is not None
        out = collect(
            follower,
            [f"tqtest.tasks.add({first.id})", f"task succeeded: tqtest.tasks.mul({second.id})"],
        )
    finally:
        stop(recorder)
        if follower.poll() is None:
            follower.kill()
            follower.wait(timeout=5)
    assert f"task succeeded: tqtest.tasks.add({first.id}) args=(2, 3)" in out
    assert f"task succeeded: tqtest.tasks.mul({second.id}) args=(6, 7)" in out, out[-2000:]


def test_bad_since_values_are_one_clear_error() -> None:
    result = run_tq("events", "--dump", "--since", "yesterday")
    assert result.returncode == 2
    assert "Invalid value for '--since'" in result.stderr and "30s, 10m" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_tq("events", "--follow")
    assert result.returncode == 2 and "--dump" in result.stderr
