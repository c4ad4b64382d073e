"""On RabbitMQ the worker settles finished tasks with multiple-acks (tq/worker/acks.py): one
must never settle a message the worker still holds."""

from __future__ import annotations

import time
from uuid import uuid4

import pytest

from tests.conftest import kill_tq_tree, ledger_lines

pytestmark = pytest.mark.timeout(90)


def test_acks_of_later_tasks_never_settle_a_running_acks_late_task(
    amqp_broker, start_worker, tasks
):
    first = start_worker("-c", "2")
    name = f"held-{uuid4().hex[:8]}"
    held = tasks.slow_first_time.delay(name, 60)  # delivered first: the lowest delivery tag
    deadline = time.monotonic() + 15
    while name not in ledger_lines(amqp_broker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert name in ledger_lines(amqp_broker)
    shorts = [tasks.add.delay(i, i) for i in range(60)]
    assert [short.get(timeout=30) for short in shorts] == [i + i for i in range(60)]
    time.sleep(0.3)  # let the last acks leave
    kill_tq_tree(first.pid)
    start_worker("-c", "2")
    # Redelivered because nothing acked it: the second run returns at once.
    assert held.get(timeout=30) == 2
