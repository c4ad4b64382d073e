"""The console against a real worker on Redis: live states, and revoke from the keyboard."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tq.cli.events import format_event
from tq.errors import TaskRevokedError
from tq.tui.app import ConsoleApp
from tq.tui.feed import EventFeed
from tq.tui.screens.confirm import ConfirmScreen
from tq.tui.widgets.queue_table import QueueTable
from tq.tui.widgets.task_table import TaskTable

pytestmark = pytest.mark.broker

#: Seconds a live test waits for the console to show something.
WAIT_S = 20.0


async def wait_until(pilot, condition, what: str, timeout: float = WAIT_S) -> None:
    """Pause the pilot until `condition()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"console never showed {what} within {timeout}s")


def shown_state(table: TaskTable, task_id: str) -> str | None:
    try:
        return str(table.get_row(task_id)[2])
    except Exception:
        return None


def queue_cells(table: QueueTable, queue: str) -> list[str] | None:
    try:
        return [str(cell) for cell in table.get_row(queue)]
    except Exception:
        return None


@pytest.mark.timeout(60)
def test_console_shows_live_outcomes_and_revokes_a_queued_task(
    redis_broker, start_worker, monkeypatch
) -> None:
    from tqtest import tasks
    from tqtest.tq import app as tq_app

    # a queue nobody consumes, known to the console through the app's routes
    idle = redis_broker.q("idle")
    monkeypatch.setattr(tq_app.conf, "task_routes", {"tqtest.tasks.noop": idle})
    node = f"console-{uuid.uuid4().hex[:6]}"
    start_worker("-c", "1", "-E", name=f"{node}@%h")

    async def scenario() -> None:
        console = ConsoleApp(EventFeed(format_event), tq_app=tq_app)
        async with console.run_test(size=(160, 48)) as pilot:
            # Redis delivers events over PUBSUB: only what is sent after we listen arrives.
            await wait_until(pilot, lambda: console.feed.state.alive_workers(), "a worker online")
            table = console.query_one(TaskTable)
            ok = tasks.add.delay(2, 2)
            bad = tasks.boom.delay()
            await wait_until(pilot, lambda: shown_state(table, ok.id) == "SUCCESS", "add SUCCESS")
            await wait_until(pilot, lambda: shown_state(table, bad.id) == "FAILURE", "boom FAILURE")

            later = tasks.mark.apply_async(("x",), countdown=30)
            await wait_until(
                pilot,
                lambda: shown_state(table, later.id) == "RECEIVED",
                "the countdown task RECEIVED",
            )
            table.move_cursor(row=table.get_row_index(later.id))
            await pilot.press("c")
            await wait_until(
                pilot,
                lambda: isinstance(console.screen, ConfirmScreen),
                "the confirmation",
                timeout=5,
            )
            await pilot.press("y")
            await wait_until(
                pilot,
                lambda: shown_state(table, later.id) == "REVOKED",
                "the countdown task REVOKED",
            )
            with pytest.raises(TaskRevokedError):
                await asyncio.to_thread(later.get, timeout=10)

            # queues: the broker's depth of the idle queue, the worker on its own queue
            for _ in range(3):
                tasks.noop.apply_async(queue=idle)
            await pilot.press("3")
            queues = console.query_one(QueueTable)
            await wait_until(
                pilot,
                lambda: (queue_cells(queues, idle) or [None, None])[1] == "3",
                "three messages ready in the idle queue",
            )
            await wait_until(
                pilot,
                lambda: node in (queue_cells(queues, redis_broker.queue) or [""])[-1],
                "the worker consuming its queue",
            )
            assert float((queue_cells(queues, redis_broker.queue) or [])[2]) > 0  # recv/s
            with tq_app.broker_connection() as connection:
                tq_app.queue_by_name(idle)(connection.default_channel).purge()

    asyncio.run(scenario())
