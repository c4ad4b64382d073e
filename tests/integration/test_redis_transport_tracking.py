"""tq's Redis transport on a redis-server of the test's own that refuses CLIENT TRACKING.

A Redis restart mid-drain (no task lost: tq's transport records a claim in the script that pops
it) is tests/faults/test_broker_restart.py::test_redis_restart_under_load_workers_and_clients_carry_on.
"""

from __future__ import annotations

import pytest

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
