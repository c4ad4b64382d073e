"""The console against one real worker on Redis: live states, queues, and every broker action."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest
from textual.command import CommandInput, CommandPalette

from tests.conftest import ROOT, TESTS
from tq.cli.events import format_event
from tq.errors import TaskRevokedError
from tq.tui.app import ConsoleApp
from tq.tui.feed import EventFeed
from tq.tui.screens.confirm import ConfirmScreen
from tq.tui.screens.form import FormScreen
from tq.tui.widgets.node_table import NodeTable
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


def notes(console: ConsoleApp) -> list[str]:
    return [note.message for note in console._notifications]


class Live:
    """One console, its pilot and the test's worker, with the steps the test takes."""

    def __init__(self, console: ConsoleApp, pilot, node: str) -> None:
        self.console, self.pilot, self.node = console, pilot, node
        self.tasks = console.query_one(TaskTable)

    async def until(self, condition, what: str, timeout: float = WAIT_S) -> None:
        await wait_until(self.pilot, condition, what, timeout)

    async def noted(self, prefix: str) -> str:
        """Wait for a notification starting with `prefix`; return it."""
        await self.until(lambda: any(n.startswith(prefix) for n in notes(self.console)), prefix)
        return next(n for n in reversed(notes(self.console)) if n.startswith(prefix))

    async def confirm(self, contains: str = "") -> None:
        await self.until(lambda: isinstance(self.console.screen, ConfirmScreen), "a question")
        question = str(self.console.screen.query_one("#confirm-question").render())
        assert contains in question, question
        await self.pilot.press("y")

    async def select_task(self, task_id: str) -> None:
        await self.pilot.press("1")
        self.tasks.move_cursor(row=self.tasks.get_row_index(task_id))

    async def palette(self, query: str) -> None:
        await self.pilot.press("ctrl+p")
        await self.until(lambda: isinstance(self.console.screen, CommandPalette), "the palette")
        self.console.screen.query_one(CommandInput).value = query  # typed at once
        await self.pilot.pause(0.5)  # the palette searches in the background
        await self.pilot.press("enter")

    def pool_size(self) -> int | None:
        return self.console.tq_app.control.pool_size(self.node, timeout=3.0)


@pytest.mark.timeout(120)
def test_console_flows_against_a_real_worker(redis_broker, start_worker, monkeypatch) -> None:
    from tqtest import tasks
    from tqtest.tq import app as tq_app

    # a queue nobody consumes, known to the console through the app's routes
    idle = redis_broker.q("idle")
    monkeypatch.setattr(tq_app.conf, "task_routes", {"tqtest.tasks.noop": idle})
    short = f"console-{uuid.uuid4().hex[:6]}"
    node = f"{short}@{socket.gethostname()}"
    start_worker("-c", "1", "-E", name=node)

    async def scenario() -> None:
        console = ConsoleApp(EventFeed(format_event), tq_app=tq_app)
        async with console.run_test(size=(160, 48)) as pilot:
            live = Live(console, pilot, node)
            # Redis delivers events over PUBSUB: only what is sent after we listen arrives.
            await live.until(lambda: console.feed.state.alive_workers(), "a worker online")
            ok, bad = await outcomes_show(live, tasks)
            await revoke_stops_a_queued_task(live, tasks)
            await queues_show_depth_and_consumers(live, tasks, idle, redis_broker.queue)
            await rate_limit_from_the_dialog(live)
            await grow_and_scale_the_pool(live)
            await resend_the_failed_task(live, bad.id)
            await revoke_all_received_tasks_of_a_name(live, tasks)
            await events_off_and_on(live)
        resent = run_tq("call", "--resend", ok.id, "--wait")
        assert resent.stdout.strip() == "4", resent.stderr  # the CLI twin of the console's re-send

    asyncio.run(scenario())


async def outcomes_show(live: Live, tasks):
    ok = tasks.add.delay(2, 2)
    bad = tasks.boom.delay()
    await live.until(lambda: shown_state(live.tasks, ok.id) == "SUCCESS", "add SUCCESS")
    await live.until(lambda: shown_state(live.tasks, bad.id) == "FAILURE", "boom FAILURE")
    return ok, bad


async def revoke_stops_a_queued_task(live: Live, tasks) -> None:
    later = tasks.mark.apply_async(("x",), countdown=30)
    await live.until(lambda: shown_state(live.tasks, later.id) == "RECEIVED", "countdown RECEIVED")
    await live.select_task(later.id)
    await live.pilot.press("c")
    await live.confirm(later.id)
    await live.until(lambda: shown_state(live.tasks, later.id) == "REVOKED", "countdown REVOKED")
    with pytest.raises(TaskRevokedError):
        await asyncio.to_thread(later.get, timeout=10)


async def queues_show_depth_and_consumers(live: Live, tasks, idle: str, own: str) -> None:
    for _ in range(3):
        tasks.noop.apply_async(queue=idle)
    await live.pilot.press("3")
    queues = live.console.query_one(QueueTable)
    await live.until(
        lambda: (queue_cells(queues, idle) or [None, None])[1] == "3", "3 ready in the idle queue"
    )
    await live.until(
        lambda: live.node in (queue_cells(queues, own) or [""])[-1], "the worker on its queue"
    )
    assert float((queue_cells(queues, own) or [])[2]) > 0  # received per second
    tq_app = live.console.tq_app
    with tq_app.broker_connection() as connection:
        tq_app.queue_by_name(idle)(connection.default_channel).purge()


async def rate_limit_from_the_dialog(live: Live) -> None:
    await live.pilot.press("1", "L")
    await live.until(lambda: isinstance(live.console.screen, FormScreen), "the rate dialog")
    form = live.console.screen
    form.query_one("#field-task").value = "tqtest.tasks.add"
    form.query_one("#field-rate").value = "10/m"
    form.query_one("#field-rate").focus()
    await live.pilot.press("enter")
    await live.noted("rate_limit: ok on 1 node")
    registered = live.console.operations.ask(
        "registered", {"taskinfoitems": ["rate_limit"]}, live.node
    )
    assert "tqtest.tasks.add [rate_limit=10/m]" in registered[live.node]


async def grow_and_scale_the_pool(live: Live) -> None:
    await live.pilot.press("2")
    nodes = live.console.query_one(NodeTable)
    await live.until(lambda: live.node in [key.value for key in nodes.rows], "the node row")
    nodes.move_cursor(row=nodes.get_row_index(live.node))
    await live.pilot.press("plus")
    await live.noted("pool_grow: ok on 1 node")
    assert live.pool_size() == 2
    await live.palette(f"scale node {live.node.split('@')[0]} to 1")
    await live.confirm("to 1 pool processes")
    assert "(2 -> 1)" in await live.noted("pool_shrink: ok on 1 node")
    assert live.pool_size() == 1


async def resend_the_failed_task(live: Live, failed_id: str) -> None:
    await live.select_task(failed_id)
    await live.pilot.press("s")
    await live.confirm("Re-send tqtest.tasks.boom()")
    outcome = await live.noted("re-sent tqtest.tasks.boom()")
    again = outcome.rsplit(" ", 1)[-1]
    assert again != failed_id
    await live.until(lambda: shown_state(live.tasks, again) == "FAILURE", "the re-sent task fail")


async def revoke_all_received_tasks_of_a_name(live: Live, tasks) -> None:
    waiting = [tasks.mark.apply_async((f"r{n}",), countdown=60) for n in range(2)]
    for result in waiting:
        await live.until(lambda r=result: shown_state(live.tasks, r.id) == "RECEIVED", "RECEIVED")
    await live.palette("revoke all RECEIVED tasks of tqtest.tasks.mark")
    await live.confirm("all 2 RECEIVED tasks of tqtest.tasks.mark")
    for result in waiting:
        await live.until(lambda r=result: shown_state(live.tasks, r.id) == "REVOKED", "REVOKED")


async def events_off_and_on(live: Live) -> None:
    await live.pilot.press("D")
    await live.confirm("Disable task events")
    await live.noted("disable_events: ok on 1 node")
    await live.pilot.press("E")
    await live.noted("enable_events: ok on 1 node")


def run_tq(*args: str) -> subprocess.CompletedProcess:
    """Run the tq CLI on the test app (the broker comes from the test's environment)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
    command = [sys.executable, "-m", "tq", "-A", "tqtest", "--workdir", str(TESTS), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
