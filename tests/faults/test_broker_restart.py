"""Fault: the broker goes away under load and comes back; workers and clients carry on by themselves."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter

import pytest

from tests.conftest import make_broker_env, reset_test_app

pytestmark = pytest.mark.timeout(180)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class OwnRedis:
    """A redis-server of the test's own, on its own loopback port, keeping data across restarts."""

    def __init__(self, directory, port: int) -> None:
        self.directory, self.port = directory, port
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("own redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(
                signal.SIGTERM
            )  # a clean stop: the append-only file is complete
            self.process.wait(timeout=20)
        self.process = None


@pytest.fixture
def own_redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = OwnRedis(tmp_path, free_port())
    server.start()
    yield server
    server.stop()


def test_redis_restart_under_load_workers_and_clients_carry_on(
    own_redis, tmp_path, monkeypatch, start_worker
):
    state = make_broker_env("redis", tmp_path, monkeypatch)
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    monkeypatch.setenv("TQ_BROKER_URL", url)
    monkeypatch.setenv("TQ_RESULT_BACKEND", f"redis://127.0.0.1:{own_redis.port}/1")
    reset_test_app()
    from tqtest import tasks

    ledger = state.env["TQ_TEST_LEDGER"]
    start_worker(
        "-c",
        "2",
        env={"TQ_BROKER_URL": url, "TQ_RESULT_BACKEND": f"redis://127.0.0.1:{own_redis.port}/1"},
    )
    sent = [f"before-{i}" for i in range(1500)]
    for name in sent:
        tasks.mark.apply_async((name,), ignore_result=True)
    time.sleep(0.3)  # let the worker get going, then pull the broker away mid-drain
    own_redis.stop()
    down_at = time.monotonic()
    time.sleep(3.0)
    own_redis.start()
    reset_test_app()  # the client reconnects on its next publish
    after = [f"after-{i}" for i in range(500)]
    for name in after:
        tasks.mark.apply_async((name,), ignore_result=True)
    assert tasks.add.delay(20, 22).get(timeout=60) == 42
    resumed_s = time.monotonic() - down_at - 3.0

    def counts() -> Counter:
        if not os.path.exists(ledger):
            return Counter()
        with open(ledger) as handle:
            return Counter(line.strip() for line in handle if line.strip())

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not set(sent + after) <= set(counts()):
        time.sleep(0.5)
    seen = counts()
    lost = [name for name in sent + after if name not in seen]
    duplicated = sum(count - 1 for count in seen.values() if count > 1)
    print(
        f"broker restart: sent {len(sent) + len(after)}, executed {sum(seen.values())}, "
        f"lost {len(lost)}, duplicated {duplicated}, resumed {resumed_s:.1f} s after the broker returned"
    )
    # Everything sent after the restart runs, and so does everything that waited in Redis.
    assert not [name for name in lost if name.startswith("after-")], lost
    # Known limit, to be removed with tq's own Redis transport (issues 8 and 9): kombu's transport
    # pops a message with BRPOP before it records it as unacked, so the one message whose reply
    # was on the wire when Redis went away can be lost. Nothing else may be.
    assert len(lost) <= 1, f"{len(lost)} tasks lost, e.g. {lost[:5]}"
