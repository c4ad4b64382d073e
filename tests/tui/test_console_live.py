"""The console against a real worker on Redis: live states, and revoke from the keyboard."""

from __future__ import annotations

import asyncio
import time

import pytest

from tq.cli.events import format_event
from tq.errors import TaskRevokedError
from tq.tui.app import ConsoleApp
from tq.tui.feed import EventFeed
from tq.tui.screens.confirm import ConfirmScreen
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


@pytest.mark.timeout(60)
def test_console_shows_live_outcomes_and_revokes_a_queued_task(redis_broker, start_worker) -> None:
    from tqtest import tasks
    from tqtest.tq import app as tq_app

    start_worker("-c", "1", "-E")

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

    asyncio.run(scenario())
