"""Events from real workers: tq events --dump, and Celery's own tools reading tq workers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from tests.conftest import ROOT, TESTS

pytestmark = pytest.mark.timeout(120)

ENV_PATH = {"PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}"}


def spawn(*command: str) -> subprocess.Popen:
    return subprocess.Popen(
        list(command),
        cwd=TESTS,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, **ENV_PATH),
    )


def collect(
    process: subprocess.Popen, until: list[str] | Callable[[str], bool], timeout: float = 30.0
) -> str:
    """Read a monitor's output until every needle appeared (or `until(text)`); then stop it."""
    chunks: list[bytes] = []
    fd = process.stdout.fileno()
    os.set_blocking(fd, False)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                chunk = b""
            if chunk:
                chunks.append(chunk)
            text = b"".join(chunks).decode(errors="replace")
            if until(text) if callable(until) else all(needle in text for needle in until):
                return text
            if process.poll() is not None:
                break
            time.sleep(0.1)
        return b"".join(chunks).decode(errors="replace")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def test_events_dump_shows_task_and_worker_events(broker, start_worker):
    from tqtest import tasks

    monitor = spawn(sys.executable, "-m", "tq", "-A", "tqtest", "events", "--dump")
    time.sleep(1.5)  # the monitor's queue must exist before the events are sent
    start_worker("-c", "1", "-E", name="ev@%h")
    ok = tasks.add.delay(2, 3)
    bad = tasks.boom.delay()
    assert ok.get(timeout=10) == 5
    bad.get(timeout=10, propagate=False)
    out = collect(
        monitor,
        [
            "started:",
            f"task received: tqtest.tasks.add({ok.id})",
            f"task succeeded: tqtest.tasks.add({ok.id})",
            f"task failed: tqtest.tasks.boom({bad.id})",
            "heartbeat:",
        ],
    )
    assert "-> evdump: starting capture..." in out
    assert f"task succeeded: tqtest.tasks.add({ok.id}) args=(2, 3) kwargs={{}}" in out
    [failed] = [
        line for line in out.splitlines() if f"task failed: tqtest.tasks.boom({bad.id})" in line
    ]
    assert "ValueError('bad', 42)" in failed
    assert "heartbeat: active=" in out and "freq=2.0" in out and "sw_ident=py-celery" in out


def test_events_dump_json_lines(redis_broker, start_worker):
    from tqtest import tasks

    monitor = spawn(sys.executable, "-m", "tq", "-A", "tqtest", "events", "--dump", "--json")
    time.sleep(1.5)
    start_worker("-c", "1", name="evj@%h")
    tasks.app.control.enable_events()
    tasks.app.conf.task_send_sent_event = True
    try:
        result = tasks.mul.delay(6, 7)
        assert result.get(timeout=10) == 42
    finally:
        tasks.app.conf.task_send_sent_event = False

    def ours(text: str) -> list[dict]:
        # Other tests share the broker's event exchange: keep this task's events only.
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        return [event for event in lines if event.get("uuid") == result.id]

    out = collect(
        monitor, lambda text: {"task-sent", "task-succeeded"} <= {e["type"] for e in ours(text)}
    )
    events = ours(out)
    succeeded = [e for e in events if e["type"] == "task-succeeded"]
    assert (
        succeeded and succeeded[0]["result"] == "42" and isinstance(succeeded[0]["runtime"], float)
    )
    assert all({"hostname", "timestamp", "clock", "pid", "utcoffset"} <= set(e) for e in events)
    [sent] = [e for e in events if e["type"] == "task-sent"]
    assert sent["hostname"].startswith(f"gen{os.getpid()}@") and sent["name"] == "tqtest.tasks.mul"
    assert sent["args"] == "(6, 7)" and sent["queue"] == redis_broker.queue


@pytest.fixture(params=["amqp", "redis"])
def celery_env(request, tmp_path, monkeypatch):
    from tests.conftest import delete_queues, make_broker_env, require_broker

    require_broker(request.param)
    state = make_broker_env(request.param, tmp_path, monkeypatch)
    yield state
    delete_queues(state)


def test_celery_inspect_and_status_see_tq_workers(celery_env, start_worker):
    from tqtest import tasks

    start_worker("-c", "1", name="seen@%h")
    celery = [sys.executable, "-m", "celery", "-A", "celeryproj"]
    status = subprocess.run(
        [*celery, "status", "-t", "3"],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, **ENV_PATH),
    )
    assert "seen@" in status.stdout and ": OK" in status.stdout, status.stdout + status.stderr
    ping = subprocess.run(
        [*celery, "inspect", "ping", "-t", "3"],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, **ENV_PATH),
    )
    assert "pong" in ping.stdout
    running = tasks.sleep_then.delay(6, "x")
    time.sleep(1.0)
    node = f"seen@{socket.gethostname()}"  # other tests' workers may share the broadcast exchange
    active = subprocess.run(
        [*celery, "inspect", "active", "-t", "3", "--json", "-d", node],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, **ENV_PATH),
    )
    payload = json.loads(active.stdout.strip().splitlines()[-1])
    items = payload[node]
    assert items and items[0]["id"] == running.id and items[0]["name"] == "tqtest.tasks.sleep_then"


def test_celery_event_receiver_and_state_read_tq_events(celery_env, start_worker):
    import threading

    from celery import Celery
    from celery.events.state import State
    from tqtest import tasks

    app = Celery("observer", broker=celery_env.env["TQ_BROKER_URL"])
    app.conf.event_exchange = celery_env.env["TQ_EVENT_EXCHANGE"]
    state = State()
    seen: list[str] = []
    with app.connection() as connection:

        def on_event(event):
            seen.append(event["type"])
            state.event(event)
            if "task-succeeded" in seen and "worker-heartbeat" in seen:
                receiver.should_stop = True

        receiver = app.events.Receiver(connection, handlers={"*": on_event})
        capture = threading.Thread(target=receiver.capture, kwargs={"wakeup": False}, daemon=True)
        capture.start()
        time.sleep(1.5)  # the monitor's queue exists before events are sent
        start_worker("-c", "1", "-E", name="flowerish@%h")
        result = tasks.add.delay(20, 22)
        assert result.get(timeout=10) == 42
        capture.join(timeout=20)
        receiver.should_stop = True
    assert "task-succeeded" in seen, seen
    task = state.tasks[result.id]
    assert task.state == "SUCCESS" and task.name == "tqtest.tasks.add" and task.result == "42"
    assert task.worker.hostname.startswith("flowerish@")
    worker = state.workers[task.worker.hostname]
    assert worker.alive and worker.freq == 2.0 and worker.sw_ident == "py-celery"


def test_celery_events_dump_sees_tq_events(celery_env, start_worker):
    from tqtest import tasks

    monitor = spawn(sys.executable, "-m", "celery", "-A", "celeryproj", "events", "--dump")
    time.sleep(3.0)
    start_worker("-c", "1", "-E", name="dumped@%h")
    result = tasks.add.delay(1, 1)
    assert result.get(timeout=10) == 2
    out = collect(
        monitor, [f"task succeeded: tqtest.tasks.add({result.id})", "heartbeat"], timeout=30
    )
    assert f"task succeeded: tqtest.tasks.add({result.id}) args=(1, 1)" in out, out[-2000:]
    assert "dumped@" in out
