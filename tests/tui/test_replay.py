"""Replaying a recorded incident: the driver's time cursor, and the console moving with it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tq import states
from tq.cli.events import EVENT_COLOURS, format_event
from tq.cluster import LOST, ClusterState
from tq.eventlog import EventLog, EventLogWriter
from tq.tui.feed import EventFeed
from tq.tui.replay import ReplayDriver
from tq.tui.replay_app import ReplayBar, ReplayConsoleApp
from tq.tui.widgets.task_table import TaskTable

#: The incident happened at this fixed time.
T0 = 1_700_000_000.0
ADD, SLOW, BOOM = (
    "a" * 8 + "-0000-4000-8000-000000000001",
    "c" * 8 + "-0000-4000-8000-000000000002",
    "b" * 8 + "-0000-4000-8000-000000000003",
)


def incident() -> list[tuple[float, dict[str, Any]]]:
    """(seconds after T0, event): w1 dies running `slow`, which w2 then runs to success."""

    def task(kind: str, uuid: str, at: float, host: str = "w1@a", **fields: Any):
        return at, {"type": kind, "uuid": uuid, "hostname": host, "timestamp": T0 + at, **fields}

    def node(kind: str, at: float, host: str, **fields: Any):
        return at, {"type": kind, "hostname": host, "timestamp": T0 + at, "freq": 2.0, **fields}

    return [
        node("worker-online", 0.0, "w1@a"),
        node("worker-online", 0.0, "w2@a"),
        task("task-received", ADD, 1.0, name="tasks.add", args="(2, 2)", kwargs="{}"),
        task("task-started", ADD, 1.1),
        task("task-succeeded", ADD, 1.2, result="4", runtime=0.1),
        task("task-received", SLOW, 2.0, name="tasks.slow", args="()", kwargs="{}"),
        task("task-started", SLOW, 2.1),
        task("task-received", BOOM, 2.5, name="tasks.boom", args="()", kwargs="{}"),
        task("task-failed", BOOM, 2.6, exception="ValueError('bad')", traceback="Traceback..."),
        node("node-exited", 3.0, "supervisor@a", node="w1@a", how="killed by SIGKILL"),
        task("task-received", SLOW, 5.0, host="w2@a", name="tasks.slow", args="()"),
        task("task-started", SLOW, 5.1, host="w2@a"),
        task("task-succeeded", SLOW, 8.0, host="w2@a", result="None", runtime=2.9),
    ]


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """The incident as `tq events --record` would have logged it."""
    with EventLogWriter(tmp_path / "events", retention_s=None) as log:
        for at, event in incident():
            log.append(event, received_at=T0 + at + 0.01)
    return tmp_path / "events"


class StateSink:
    """A sink that is just a ClusterState (what the console's feed holds)."""

    def __init__(self) -> None:
        self.state = ClusterState()

    def fold(self, event: dict[str, Any]) -> None:
        self.state.fold(event)

    def reset(self) -> None:
        self.state = ClusterState()

    def task_state(self, uuid: str) -> str | None:
        task = self.state.tasks.get(uuid)
        return task.state if task else None


def test_the_cursor_shows_the_state_at_its_time_forward_and_back(recorded: Path) -> None:
    sink = StateSink()
    driver = ReplayDriver(EventLog(recorded), sink)
    assert driver.total == 13 and driver.position == 0 and sink.task_state(ADD) is None
    assert driver.to_end() is False
    assert (sink.task_state(ADD), sink.task_state(SLOW)) == (states.SUCCESS, states.SUCCESS)
    assert sink.task_state(BOOM) == states.FAILURE and driver.at_end
    assert driver.seek(T0 + 4.0) is True  # back: folded again from the start
    assert sink.task_state(SLOW) == LOST and sink.task_state(ADD) == states.SUCCESS
    assert driver.position == 10
    assert driver.seek(T0 + 2.2) is True
    assert sink.task_state(SLOW) == states.STARTED and sink.task_state(BOOM) is None
    assert driver.seek(T0 + 5.05) is False  # forward: only the new events
    assert sink.task_state(SLOW) == states.RECEIVED
    assert sink.state.tasks[SLOW].worker == "w2@a"


def test_steps_move_one_event_at_a_time(recorded: Path) -> None:
    sink = StateSink()
    driver = ReplayDriver(EventLog(recorded), sink)
    driver.step(7)
    assert sink.task_state(SLOW) == states.STARTED and driver.position == 7
    assert driver.cursor == pytest.approx(T0 + 2.11)
    assert driver.step(-1) is True and driver.position == 6
    assert sink.task_state(SLOW) == states.RECEIVED
    driver.step(100)
    assert driver.at_end and driver.position == 13
    assert driver.step(-100) is True and driver.position == 0 and not sink.state.tasks


def test_playing_moves_the_cursor_by_speed_and_stops_at_the_end(recorded: Path) -> None:
    sink = StateSink()
    driver = ReplayDriver(EventLog(recorded), sink)
    assert driver.toggle() is False and driver.playing
    driver.advance(1.5)
    assert sink.task_state(ADD) == states.SUCCESS and sink.task_state(SLOW) is None
    driver.faster()
    driver.faster()
    assert driver.speed == 5.0
    driver.advance(10.0)
    assert driver.at_end and not driver.playing
    assert sink.task_state(SLOW) == states.SUCCESS
    assert driver.toggle() is True and driver.playing and driver.position == 0  # from the top
    assert "replay" in driver.describe() and "×5" in driver.describe()


def shown_states(table: TaskTable) -> dict[str, str]:
    rows = (table.get_row_at(index) for index in range(table.row_count))
    return {str(row[1]): str(row[2]) for row in rows}


@pytest.mark.timeout(60)
def test_the_replay_console_shows_final_states_then_earlier_ones_as_the_cursor_moves_back(
    recorded: Path,
) -> None:
    async def scenario() -> None:
        feed = EventFeed(format_event)
        driver = ReplayDriver(EventLog(recorded), feed)
        driver.to_end()
        app = ReplayConsoleApp(feed, driver, event_colours=EVENT_COLOURS)
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.pause()
            table = app.query_one(TaskTable)
            assert shown_states(table) == {
                "tasks.add": states.SUCCESS,
                "tasks.slow": states.SUCCESS,
                "tasks.boom": states.FAILURE,
            }
            bar = str(app.query_one(ReplayBar).render())
            assert "replay" in bar and "event 13/13" in bar
            await pilot.press("comma", "comma", "comma")  # back before w2 took it over
            await pilot.pause()
            assert shown_states(table)["tasks.slow"] == LOST
            assert "event 10/13" in str(app.query_one(ReplayBar).render())
            await pilot.press("less_than_sign")  # 10 s back: before anything happened
            await pilot.pause()
            assert table.row_count == 0
            await pilot.press("circumflex_accent")  # before the first event
            for _ in range(7):
                await pilot.press("full_stop")
            await pilot.pause()
            assert shown_states(table) == {"tasks.add": states.SUCCESS, "tasks.slow": "STARTED"}
            await pilot.press("dollar_sign")
            await pilot.pause()
            assert shown_states(table)["tasks.slow"] == states.SUCCESS

    asyncio.run(scenario())


def test_a_console_started_late_folds_the_recent_backlog_only(tmp_path: Path) -> None:
    import time

    from tq.cli.console import fold_backlog

    now = time.time()
    with EventLogWriter(tmp_path / "events") as log:
        for minutes_ago, uuid in ((120, "old"), (30, "recent"), (1, "latest")):
            event = {"type": "task-succeeded", "uuid": uuid, "hostname": "w1@a"}
            log.append({**event, "timestamp": now - minutes_ago * 60}, now - minutes_ago * 60)
    feed = EventFeed(format_event)
    assert fold_backlog(feed, tmp_path / "events", since=now - 3600) == 2
    assert set(feed.state.tasks) == {"recent", "latest"}
    assert fold_backlog(EventFeed(format_event), tmp_path / "nothing-recorded", since=0) == 0
