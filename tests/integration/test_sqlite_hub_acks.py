"""Embedded broker under a hub: a deferred ack is written soon even when no claim will carry it
(the queue is empty and most of the prefetch window is held by running tasks)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kombu import Connection, Consumer, Queue
from kombu.asynchronous import Hub

from tq.transports import register_transports

from .test_sqlite_transport import publish, url_for

register_transports()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("with_control", [False, True])
def test_an_ack_is_written_soon_when_the_queue_is_empty_and_others_are_held(
    tmp_path: Path, with_control: bool
) -> None:
    """A worker holding most of its prefetch window (long tasks) acks one finished task while
    its queue is empty: the ack must reach the database within a few poll intervals."""
    with Connection(url_for(tmp_path)) as conn:
        queue, control = Queue("work"), Queue("control")
        for each in (queue, control):
            each(conn.default_channel).declare()
        publish(conn, ["a", "b", "c", "d"], "work")
        hub = Hub()
        pending: list = []
        work = Consumer(
            conn.channel(), [queue], accept=["json"], callbacks=[lambda b, m: pending.append(m)]
        )
        work.qos(prefetch_count=4)
        work.consume()
        if with_control:
            Consumer(conn.channel(), [control], accept=["json"], callbacks=[]).consume()
        conn.transport.register_with_event_loop(conn.connection, hub)
        store = conn.transport.store
        loop = hub.create_loop()
        deadline = time.monotonic() + 10
        while len(pending) < 4 and time.monotonic() < deadline:
            next(loop)
        assert len(pending) == 4
        assert store.size("work") == 0 and store.unacked_size("work") == 4
        pending[0].ack()  # one task finished; three still run (or wait in the pool)
        acked_at = time.monotonic()
        # Run the loop for 2 s (40 x polling_interval): plenty for a pass to write the ack.
        while time.monotonic() - acked_at < 2.0:
            next(loop)
        unacked = store.unacked_size("work")
        deferred = list(store._deferred_acks)
        hub.close()
    assert (unacked, deferred) == (3, []), (
        f"2 s after the ack: {unacked} unacked rows, deferred acks not written: {deferred}"
    )
