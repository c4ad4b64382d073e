"""Per-queue flow from events and the queues view over seeded data (no broker)."""

from __future__ import annotations

import asyncio

import pytest

from tq.queues import QueueDepth
from tq.tui.queue_board import QueueBoard, QueueFlow, consumers_by_queue
from tq.tui.widgets.queue_table import QueueTable

from .seed import seeded_app


def event(kind: str, uuid: str, **fields) -> dict:
    return {"type": kind, "uuid": uuid, "hostname": "w1@host", **fields}


def test_flow_takes_the_queue_from_the_event_then_memory_then_the_resolver() -> None:
    flow = QueueFlow(max_tasks=1)
    asked: list[tuple[str | None, str | None]] = []

    def resolve(name: str | None, hostname: str | None) -> str | None:
        asked.append((name, hostname))
        return "routed" if name == "tasks.add" else None

    flow.resolve = resolve
    flow.observe(event("task-sent", "a", queue="images"), "tasks.resize")
    flow.observe(event("task-received", "a"), "tasks.resize")
    flow.observe(event("task-succeeded", "a"), "tasks.resize")
    flow.observe(event("task-received", "b"), "tasks.add")
    flow.observe(event("task-failed", "b"), "tasks.add")
    flow.observe(event("task-received", "c"), "tasks.unknown")
    flow.observe(event("task-started", "c"), "tasks.unknown")
    assert flow.received == {"images": 1, "routed": 1}
    assert flow.done == {"images": 1, "routed": 1}
    assert asked == [("tasks.add", "w1@host"), ("tasks.unknown", "w1@host")]
    # memory of task -> queue is bounded by the task bound
    assert flow.queue_of("a") is None and flow.queue_of("b") == "routed"


def test_board_rates_are_over_the_last_ten_seconds_and_depths_sum_to_queued() -> None:
    board = QueueBoard()
    flow = QueueFlow()
    for second in range(15):
        flow.received["celery"] += 4
        flow.done["celery"] += 2
        board.sample(float(second), flow)
    board.set_depths([QueueDepth("celery", 7), QueueDepth("gone", None)])
    board.set_consumers(consumers_by_queue({"w1@host": [{"name": "celery"}], "w2@host": []}))
    rows = {row.name: row for row in board.rows(["extra"])}
    assert set(rows) == {"celery", "gone", "extra"}
    assert rows["celery"].received_per_s == pytest.approx(4.0)
    assert rows["celery"].done_per_s == pytest.approx(2.0)
    assert rows["celery"].nodes == ("w1@host",)
    assert not rows["gone"].exists and rows["extra"].exists
    assert board.queued_total() == 7
    assert board.queues_of("w1@host") == ["celery"]
    board.set_depths((), error="broker unreachable: refused")
    assert board.queued_total() is None


@pytest.mark.timeout(30)
def test_queues_view_shows_depth_rates_and_consumers() -> None:
    async def scenario() -> None:
        app = seeded_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("3")
            await pilot.pause()
            table = app.query_one(QueueTable)
            rows = {
                str(row[0]): [str(cell) for cell in row[1:]]
                for row in (table.get_row_at(i) for i in range(table.row_count))
            }
            assert rows["images"] == ["340", "9.5", "6.4", "1", "w2@host"]
            assert rows["celery"][3:] == ["2", "w1@host, w2@host"]
            assert rows["retired"][0] == "missing"
            assert str(app.query_one("#metric-queued .metric-label").render()) == "queued 352"

    asyncio.run(scenario())
