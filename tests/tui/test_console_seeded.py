"""The console over seeded cluster data (no broker): rows, filter, detail, refresh rate."""

from __future__ import annotations

import asyncio

import pytest
from rich.text import Text

from tq.tui.app import REFRESH_INTERVAL_S, ConsoleApp
from tq.tui.screens.task_detail import TaskDetailScreen
from tq.tui.widgets.node_table import NodeTable
from tq.tui.widgets.task_table import TaskTable

from .seed import BOOM_TRACEBACK, NOW, seeded_app, task_event


def run(scenario) -> None:
    """Run one async Pilot scenario to completion."""
    asyncio.run(scenario())


def states_by_name(table: TaskTable) -> dict[str, str]:
    rows = (table.get_row_at(index) for index in range(table.row_count))
    return {str(row[1]): str(row[2]) for row in rows}


@pytest.mark.timeout(30)
def test_seeded_tasks_show_with_their_states_newest_first() -> None:
    async def scenario() -> None:
        app = seeded_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            table = app.query_one(TaskTable)
            assert states_by_name(table) == {
                "tasks.add": "SUCCESS",
                "tasks.boom": "FAILURE",
                "tasks.sleep_then": "STARTED",
                "tasks.mark": "RECEIVED",
                "tasks.mul": "SUCCESS",
            }
            assert str(table.get_row_at(0)[1]) == "tasks.mul"

    run(scenario)


@pytest.mark.timeout(30)
def test_slash_filter_narrows_the_table_and_escape_clears_it() -> None:
    async def scenario() -> None:
        app = seeded_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("slash", *"fail")
            await pilot.pause()
            table = app.query_one(TaskTable)
            assert states_by_name(table) == {"tasks.boom": "FAILURE"}
            await pilot.press("enter", "escape")
            await pilot.pause()
            assert table.row_count == 5

    run(scenario)


@pytest.mark.timeout(30)
def test_detail_screen_shows_the_traceback_of_a_failed_task() -> None:
    async def scenario() -> None:
        app = seeded_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("j", "j", "j")  # mul, sleep_then, boom... cursor on row 3
            await pilot.press("k")
            table = app.query_one(TaskTable)
            assert str(table.get_row_at(table.cursor_row)[1]) == "tasks.boom"
            await pilot.press("i")
            await pilot.pause()
            assert isinstance(app.screen, TaskDetailScreen)
            shown = app.screen.query_one("#detail").render()
            text = shown.plain if isinstance(shown, Text) else str(shown)
            assert BOOM_TRACEBACK in text
            assert "ValueError('bad', 42)" in text
            assert "FAILURE" in text and "STARTED" in text
            await pilot.press("escape")
            assert not isinstance(app.screen, TaskDetailScreen)

    run(scenario)


@pytest.mark.timeout(30)
def test_a_burst_of_events_is_shown_in_one_refresh() -> None:
    async def scenario() -> None:
        app = seeded_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(3 * REFRESH_INTERVAL_S)
            table = app.query_one(TaskTable)
            syncs: list[int] = []
            original = table.sync
            table.sync = lambda tasks: (syncs.append(len(tasks)), original(tasks))[1]
            before = app.refresh_count
            for number in range(300):  # no await: all arrive within one interval
                uuid = f"f{number:07d}-0000-4000-8000-000000000000"
                app.feed.fold(task_event("task-received", uuid, 10, name="tasks.noop", args="()"))
                app.feed.fold(task_event("task-succeeded", uuid, 11, result="None", runtime=0.001))
            await pilot.pause(3 * REFRESH_INTERVAL_S)
            # one table update for the whole burst (the nodes view may redraw once for ages)
            assert len(syncs) == 1 and syncs[0] >= 300  # (tasks inferred LOST may join)
            assert app.refresh_count - before <= 2
            assert table.row_count == 305

    run(scenario)


@pytest.mark.timeout(30)
def test_refreshes_stay_within_ten_a_second_under_a_steady_stream() -> None:
    async def scenario() -> None:
        app = seeded_app()
        async with app.run_test(size=(120, 40)):
            loop = asyncio.get_running_loop()
            before, start = app.refresh_count, loop.time()
            for number in range(100):
                uuid = f"a{number:07d}-0000-4000-8000-000000000000"
                app.feed.fold(task_event("task-received", uuid, 10, name="tasks.noop"))
                await asyncio.sleep(0.01)
            elapsed = loop.time() - start
            assert app.refresh_count - before <= elapsed / REFRESH_INTERVAL_S + 2

    run(scenario)


@pytest.mark.timeout(30)
def test_nodes_view_shows_workers_and_says_why_restart_is_disabled() -> None:
    async def scenario() -> None:
        app = seeded_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("n")
            await pilot.pause(0.3)
            nodes = app.query_one(NodeTable)
            assert nodes.row_count == 1
            row = nodes.get_row_at(0)
            assert str(row[0]) == "w1@host"
            assert str(row[1]) == "online"  # the seeded clock stands one second after a beat
            app.clock = lambda: NOW + 60  # no heartbeat for a minute: shown offline
            await pilot.pause(1.5)
            assert str(nodes.get_row_at(0)[1]) == "offline"
            assert app.check_action("restart_node", ()) is None
            hint = str(app.query_one("#node-hint").render())
            assert "restart disabled" in hint

    run(scenario)


@pytest.mark.timeout(30)
def test_events_view_shows_the_dump_lines() -> None:
    async def scenario() -> None:
        app: ConsoleApp = seeded_app()
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.press("e")
            await pilot.pause()
            log_lines = [strip.text for strip in app.query_one("#event-log").lines]
            assert any("task failed" in line and "tasks.boom" in line for line in log_lines)
            # one line per event, plus the lines of the traceback in task-failed
            assert len(log_lines) == len(app.feed.lines) + BOOM_TRACEBACK.count("\n")

    run(scenario)
