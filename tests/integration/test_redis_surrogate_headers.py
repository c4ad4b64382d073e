"""A message whose JSON Redis's cjson refuses (a lone surrogate escape, which Python's json writes
for a header decoded with surrogateescape) is still recorded as unacked when claimed, so a reject
with requeue (or a warm shutdown, a lost connection) puts it back; it used to be dropped."""

from __future__ import annotations

import time

import pytest

from .test_redis_transport import connect, direct_queue, raw_client, redis_url  # noqa: F401

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("use_kombu", [True, False], ids=["kombu", "tq"])
def test_a_requeued_message_with_a_lone_surrogate_header_comes_back(
    redis_url,  # noqa: F811
    redis_broker,
    use_kombu,
):
    queue = direct_queue(redis_broker.q("surrogate"))
    client = raw_client(redis_url)
    prefix = redis_url[1]
    with connect(redis_url, kombu=use_kombu) as connection:
        # A file name decoded with surrogateescape (os.fsdecode of non-UTF-8 bytes).
        connection.Producer().publish(
            {"n": 1},
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            headers={"path": b"/data/caf\xe9.txt".decode("utf-8", "surrogateescape")},
        )
        received: list = []
        with connection.Consumer(
            [queue], callbacks=[lambda b, m: received.append(m)], accept=["json"]
        ) as consumer:
            consumer.qos(prefetch_count=1)
            deadline = time.monotonic() + 10
            while not received and time.monotonic() < deadline:
                try:
                    connection.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
            assert len(received) == 1
            unacked = client.hlen(prefix + "unacked")
            received[0].reject(requeue=True)
        waiting = client.llen(prefix + queue.name)
    assert (unacked, waiting) == (1, 1), "the requeued message was dropped"
