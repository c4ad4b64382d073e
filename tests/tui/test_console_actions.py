"""Console actions without a broker: palette commands, dialogs, t/r keys, disabled node actions."""

from __future__ import annotations

import asyncio

import pytest
from textual.command import CommandPalette

from tq.tui.commands import parse_scale, resolve_nodes
from tq.tui.operations import NO_SUPERVISOR, summarise
from tq.tui.screens.form import FormField, FormScreen, rate_error
from tq.tui.screens.task_detail import TaskDetailScreen
from tq.tui.widgets.task_table import TaskTable

from .seed import seeded_app

NODES = ["celery1@box", "celery3@box", "celery13@box", "images@box"]


def test_scale_queries_name_a_node_exactly_by_short_name_by_number_or_in_part() -> None:
    assert parse_scale("scale node 3 to 8") == ("3", 8)
    assert parse_scale("Scale images to 2") == ("images", 2)
    assert parse_scale("scale node 3") is None
    assert resolve_nodes("3", NODES) == ["celery3@box"]
    assert resolve_nodes("images", NODES) == ["images@box"]
    assert resolve_nodes("celery1@box", NODES) == ["celery1@box"]
    assert resolve_nodes("celery1", NODES) == ["celery1@box"]
    assert resolve_nodes("elery1", NODES) == ["celery1@box", "celery13@box"]


def test_replies_are_summed_up_in_one_line() -> None:
    assert summarise("pool_grow", {"w1": {"ok": "pool will grow"}}) == "pool_grow: ok on 1 node"
    two = {"w1": {"ok": "set"}, "w2": {"error": "unknown task"}}
    assert summarise("rate_limit", two) == "rate_limit: ok on 1 node; w2: unknown task"
    assert summarise("pool_grow", {}, destination="w9") == "pool_grow: no answer from w9 within 1s"


def notes(app) -> list[str]:
    """Every notification the app showed, oldest first."""
    return [note.message for note in app._notifications]


@pytest.mark.timeout(30)
def test_t_and_r_open_the_traceback_and_result_like_celery_events() -> None:
    async def scenario() -> None:
        app = seeded_app()
        async with app.run_test(size=(80, 14)) as pilot:
            table = app.query_one(TaskTable)
            names = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
            table.move_cursor(row=names.index("tasks.boom"))
            await pilot.press("t")
            await pilot.pause()
            assert isinstance(app.screen, TaskDetailScreen) and app.screen.section == "traceback"
            # 14 lines are too few for the whole detail: it scrolled to the traceback
            assert app.screen.query_one("#detail-scroll").scroll_y > 0
            await pilot.press("escape")
            table.move_cursor(row=names.index("tasks.mark"))  # RECEIVED: nothing to show yet
            await pilot.press("r", "t")
            await pilot.pause()
            assert not isinstance(app.screen, TaskDetailScreen)
            assert notes(app)[-2:] == [
                "no result yet: tasks.mark is RECEIVED",
                "no traceback: tasks.mark is RECEIVED",
            ]

    asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_without_broker_or_supervisor_actions_are_shown_disabled_with_the_reason() -> None:
    async def scenario() -> None:
        app = seeded_app()
        async with app.run_test(size=(160, 48)) as pilot:
            assert app.check_action("revoke", ()) is None  # shown, disabled: no broker
            await pilot.press("2")
            await pilot.pause()
            for action in ("start_node", "stop_node", "restart_node"):
                assert app.check_action(action, ()) is None
            assert NO_SUPERVISOR in str(app.query_one("#node-hint").render())
            await pilot.press("ctrl+p")
            await pilot.pause()
            palette = app.screen
            assert isinstance(palette, CommandPalette)
            await pilot.press(*"stop node")
            await pilot.pause(0.5)
            await pilot.press("enter")
            await pilot.pause()
            assert notes(app)[-1].startswith(NO_SUPERVISOR)

    asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_form_dialog_checks_values_before_it_answers() -> None:
    async def scenario() -> None:
        app = seeded_app()
        answers: list[dict[str, str] | None] = []
        async with app.run_test(size=(80, 24)) as pilot:
            assert app.check_action("rate_limit", ()) is None  # L: disabled without a broker
            fields = [
                FormField("task", "Task name", value="tasks.mul"),
                FormField("rate", "Rate", validate=rate_error),
            ]
            app.push_screen(FormScreen("Set a rate limit", fields), answers.append)
            await pilot.pause()
            await pilot.press(*"ten a minute", "enter")
            await pilot.pause()
            assert "a rate is N/s" in str(app.screen.query_one("#form-error").render())
            assert answers == []
            app.screen.query_one("#field-rate").value = "10/m"
            await pilot.press("enter")
            await pilot.pause()
            assert answers == [{"task": "tasks.mul", "rate": "10/m"}]

    asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_ctrl_t_toggles_dark_and_light() -> None:
    async def scenario() -> None:
        app = seeded_app()
        async with app.run_test(size=(80, 24)) as pilot:
            assert app.theme == "textual-dark"
            await pilot.press("ctrl+t")
            assert app.theme == "textual-light"
            await pilot.press("ctrl+t")
            assert app.theme == "textual-dark"

    asyncio.run(scenario())
