"""A warm stop gives back the messages it prefetched at the head of their queue, in order, on
every broker: the next worker runs them before what was queued behind them. On Redis they used
to go to the back (a reject's place), so every restart of a worker reordered a queue."""

from __future__ import annotations

import pytest

from tests.conftest import ledger_lines, wait_until

pytestmark = pytest.mark.timeout(90)


def test_a_warm_stop_gives_back_prefetched_messages_first_in_line(broker, start_worker, tasks):
    tasks.begin_end.apply_async(("first", 2), ignore_result=True)
    names = [f"m{i}" for i in range(10)]
    for name in names:
        tasks.mark.apply_async((name,), ignore_result=True)
    worker = start_worker("-c", "1", "--prefetch-multiplier", "4")
    assert wait_until(lambda: "first:begin" in ledger_lines(broker))
    assert worker.stop() == 0, worker.log()
    assert ledger_lines(broker) == ["first:begin", "first:end"], worker.log()
    successor = start_worker("-c", "1", "--prefetch-multiplier", "1")
    assert wait_until(lambda: set(names) <= set(ledger_lines(broker)), timeout=30), (
        successor.log()
    )
    assert ledger_lines(broker)[2:] == names
