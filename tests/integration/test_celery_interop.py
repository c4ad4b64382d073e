"""Wire compatibility with the real Celery 5: each side's client against the other's worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, TESTS, delete_queues, ledger_lines, make_broker_env, require_broker

celery = pytest.importorskip("celery")

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(params=["amqp", "redis"])
def server_broker(request, tmp_path, monkeypatch):
    require_broker(request.param)
    state = make_broker_env(request.param, tmp_path, monkeypatch)
    yield state
    delete_queues(state)


@pytest.fixture
def celery_client(server_broker):
    from celery import Celery

    app = Celery(
        "interop-client",
        broker=server_broker.env["TQ_BROKER_URL"],
        backend=server_broker.env["TQ_RESULT_BACKEND"],
    )
    app.conf.task_default_queue = server_broker.queue
    yield app
    app.close()


@pytest.fixture
def celery_worker(server_broker, tmp_path):
    logfile = tmp_path / "celery-worker.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celeryproj",
            "worker",
            "-l",
            "info",
            "-c",
            "1",
            "-P",
            "solo",
            "--without-mingle",
            "--without-gossip",
            "-n",
            f"celery-{server_broker.queue}@%h",
            "-Q",
            server_broker.queue,
            f"--logfile={logfile}",
        ],
        cwd=TESTS,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if logfile.exists() and "ready." in logfile.read_text():
            break
        if process.poll() is not None:
            pytest.fail(f"celery worker exited: {logfile.read_text() if logfile.exists() else ''}")
        time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("celery worker did not become ready")
    yield process
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def test_celery_client_to_tq_worker(server_broker, celery_client, start_worker):
    start_worker("-c", "2")
    result = celery_client.send_task("tqtest.tasks.add", (2, 2))
    assert result.get(timeout=10) == 4
    failing = celery_client.send_task("tqtest.tasks.boom")
    with pytest.raises(ValueError) as raised:
        failing.get(timeout=10)
    assert raised.value.args == ("bad", 42)
    # A Celery link (callback) is honoured by the tq worker.
    linked = celery_client.signature("tqtest.tasks.add", (1, 1))
    linked.link(celery_client.signature("tqtest.tasks.mark", immutable=True, args=("linked",)))
    assert linked.apply_async().get(timeout=10) == 2
    deadline = time.monotonic() + 10
    while "linked" not in ledger_lines(server_broker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "linked" in ledger_lines(server_broker)


def test_celery_countdown_and_expires_on_tq_worker(server_broker, celery_client, start_worker):
    start_worker("-c", "1")
    started = time.monotonic()
    result = celery_client.send_task("tqtest.tasks.mul", (3, 4), countdown=1)
    assert result.get(timeout=10) == 12
    assert time.monotonic() - started >= 0.9
    expired = celery_client.send_task("tqtest.tasks.mark", ("late",), countdown=1, expires=0.3)
    from celery.exceptions import TaskRevokedError

    with pytest.raises(TaskRevokedError):
        expired.get(timeout=10)


def test_tq_client_to_celery_worker(server_broker, celery_worker):
    from tqtest import tasks

    assert tasks.add.delay(2, 2).get(timeout=10) == 4
    with pytest.raises(ValueError) as raised:
        tasks.boom.delay().get(timeout=10)
    assert raised.value.args == ("bad", 42)
    assert tasks.mul.apply_async((5, 5), countdown=0.5).get(timeout=10) == 25
    linked = tasks.add.s(3, 3)
    linked.link(tasks.mark.si("from-tq"))
    assert linked.delay().get(timeout=10) == 6
    deadline = time.monotonic() + 10
    while "from-tq" not in ledger_lines(server_broker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "from-tq" in ledger_lines(server_broker)
