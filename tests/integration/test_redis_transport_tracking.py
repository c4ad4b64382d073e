"""tq's Redis transport on a redis-server of the test's own that refuses CLIENT TRACKING.

A Redis restart mid-drain (no task lost: tq's transport records a claim in the script that pops
it) is tests/faults/test_broker_restart.py::test_redis_restart_under_load_workers_and_clients_carry_on.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.conftest import own_redis_database

pytestmark = pytest.mark.timeout(120)


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


def test_a_worker_notices_a_redis_gone_silent_and_reconnects(
    redis_broker, start_worker, tasks, freezable_proxy
):
    proxy = freezable_proxy(("127.0.0.1", 6379))
    env = {
        "TQ_BROKER_URL": f"redis://127.0.0.1:{proxy.port}/3",
        "TQ_TEST_TRANSPORT_OPTIONS": json.dumps({"socket_timeout": 1}),
    }
    worker = start_worker("-c", "1", env=env)
    proxy.freeze()
    # The next worker-heartbeat publish (every 2 s) times out after 1 s: the worker drops
    # the connection and reconnects (new connections pass the proxy).
    worker.wait_for_reconnection(lost_within=20)
    assert tasks.add.delay(2, 3).get(timeout=20) == 5


def test_redis_commands_wait_at_most_the_default_socket_timeout(redis_broker):
    from tq import App
    from tq.transports.redis_channel import SOCKET_TIMEOUT_S

    app = App("timeouts", broker="redis://127.0.0.1:6379/3")
    with app.broker_connection() as connection:
        assert connection.default_channel._connparams()["socket_timeout"] == SOCKET_TIMEOUT_S
    app.conf.broker_transport_options = {"socket_timeout": 3}
    with app.broker_connection() as connection:
        assert connection.default_channel._connparams()["socket_timeout"] == 3


def test_a_warm_shutdown_ends_soon_when_redis_has_gone_silent(
    redis_broker, start_worker, tasks, monkeypatch, freezable_proxy
):
    # A database of its own: the test leaves claims behind. The client goes straight to Redis,
    # the worker through the proxy.
    with own_redis_database(monkeypatch, 14):
        proxy = freezable_proxy(("127.0.0.1", 6379))
        worker = start_worker(
            "-c", "1", env={"TQ_BROKER_URL": f"redis://127.0.0.1:{proxy.port}/14"}
        )
        first = tasks.sleep_then.delay(1.5, "first")
        for _ in range(3):  # prefetched behind it: each would be given back on the way out
            tasks.sleep_then.delay(1.5, "queued")
        worker.wait_for_log(f"{first.id}] received")
        time.sleep(0.5)
        proxy.freeze(new_connections=True)
        started = time.monotonic()
        assert worker.stop(signal.SIGTERM, timeout=60) == 0
        took = time.monotonic() - started
        # Before: each give-back, the last acks, the offline event, kombu's periodic checks
        # and the restore on close waited socket_timeout (10 s) each. Now: the running task
        # (1.5 s) and one PING (2 s).
        assert took < 8, took
        assert "The broker does not answer" in worker.log()
