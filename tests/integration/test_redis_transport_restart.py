"""tq's Redis transport on a redis-server of the test's own: restarted mid-drain, or refusing
CLIENT TRACKING.

kombu's transport pops with BRPOP and records the message as unacked afterwards, so the message
whose reply is on the wire when Redis goes away is lost; tq's transport records a claim in the
same script that pops it, and gives back a claim whose reply never came.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest

from tests.conftest import make_broker_env, reset_test_app
from tests.faults.servers import OwnRedis, free_port, have_redis_server

pytestmark = pytest.mark.timeout(120)

SENT = 3000
#: Redis goes away once this many tasks ran: the worker is mid-drain, claims in flight.
STOP_AFTER = 300
DOWN_S = 1.0
#: Seconds without a new execution after which the rest count as lost.
STALL_S = 5.0


@pytest.fixture
def own_redis(tmp_path):
    if not have_redis_server():
        pytest.skip("redis-server is not installed")
    server = OwnRedis(tmp_path, free_port())
    server.start()
    yield server
    server.stop()


def test_a_redis_restart_mid_drain_loses_no_task(own_redis, tmp_path, monkeypatch, start_worker):
    state = make_broker_env("redis", tmp_path, monkeypatch)
    env = {"TQ_BROKER_URL": f"{own_redis.url}/0", "TQ_RESULT_BACKEND": f"{own_redis.url}/1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_test_app()
    from tqtest import tasks

    ledger = state.env["TQ_TEST_LEDGER"]

    def counts() -> Counter:
        if not os.path.exists(ledger):
            return Counter()
        with open(ledger) as handle:
            return Counter(line.strip() for line in handle if line.strip())

    names = [f"t{i}" for i in range(SENT)]
    for name in names:
        tasks.mark.apply_async((name,), ignore_result=True)
    start_worker("-c", "2", env=env)
    deadline = time.monotonic() + 60
    while sum(counts().values()) < STOP_AFTER and time.monotonic() < deadline:
        time.sleep(0.005)
    own_redis.stop()
    ran_at_stop = sum(counts().values())
    time.sleep(DOWN_S)
    own_redis.start()

    progress, progress_at = -1, time.monotonic()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not set(names) <= set(counts()):
        ran = sum(counts().values())
        if ran != progress:
            progress, progress_at = ran, time.monotonic()
        elif time.monotonic() - progress_at > STALL_S:
            break
        time.sleep(0.1)
    seen = counts()
    lost = [name for name in names if name not in seen]
    assert STOP_AFTER <= ran_at_stop < SENT, "Redis must go away while the worker drains"
    assert not lost, f"{len(lost)} tasks lost, e.g. {lost[:5]}"


def test_an_idle_consumer_polls_where_redis_refuses_client_tracking(own_redis, caplog):
    import redis
    from kombu import Connection, Queue

    from tq.transports import TQ_REDIS_TRANSPORT

    admin = redis.Redis(port=own_redis.port)
    admin.acl_setuser(
        "tq", enabled=True, passwords=["+secret"], keys=["*"], channels=["*"],
        commands=["+@all", "-client|tracking"],
    )  # fmt: skip
    url = f"redis://tq:secret@127.0.0.1:{own_redis.port}/0"
    received = []
    with Connection(url, transport=TQ_REDIS_TRANSPORT) as connection:
        queue = Queue("untracked", routing_key="untracked")
        with connection.Consumer(
            [queue], callbacks=[lambda body, m: (received.append(body), m.ack())]
        ):
            with pytest.raises(TimeoutError):  # idle, after the refused CLIENT TRACKING
                connection.drain_events(timeout=0.3)
            connection.Producer().publish({"n": 1}, routing_key="untracked", declare=[queue])
            connection.drain_events(timeout=10)
    assert received == [{"n": 1}]
    assert "Redis refused CLIENT TRACKING" in caplog.text
