"""ReplayConsoleApp: the console over a recorded event log, with a time cursor on keys."""

from __future__ import annotations

import time
from collections.abc import Mapping

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import RichLog, Static

from .app import ConsoleApp
from .feed import EventFeed
from .replay import SEEK_STEP_S, ReplayDriver
from .widgets.task_table import TaskTable

#: Seconds between cursor moves while playing.
REPLAY_TICK_S = 0.1
#: What the replay keys do, shown under the cursor.
REPLAY_KEYS = "space play/pause  ,/. step  </> ±10s  [/] speed  ^/$ start/end"


class ReplayBar(Static):
    """The replay line above the header: cursor time, event number, speed and keys."""

    DEFAULT_CSS = "ReplayBar { height: 1; background: $accent 40%; }"


class ReplayConsoleApp(ConsoleApp):
    """The console without a broker, its state moved by a ReplayDriver's cursor."""

    TITLE = "tq console (replay)"
    BINDINGS = [
        Binding("space", "replay_toggle", "Play/pause"),
        Binding("comma", "replay_step(-1)", "Back"),
        Binding("full_stop", "replay_step(1)", "Forward"),
        Binding("less_than_sign", f"replay_seek({-SEEK_STEP_S})", "-10s", show=False),
        Binding("greater_than_sign", f"replay_seek({SEEK_STEP_S})", "+10s", show=False),
        Binding("left_square_bracket", "replay_speed(-1)", "Slower", show=False),
        Binding("right_square_bracket", "replay_speed(1)", "Faster", show=False),
        Binding("circumflex_accent", "replay_start", "Start", show=False),
        Binding("dollar_sign", "replay_end", "End", show=False),
    ]

    def __init__(
        self,
        feed: EventFeed,
        driver: ReplayDriver,
        *,
        view: str = "tasks",
        event_colours: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(feed, view=view, event_colours=event_colours, clock=lambda: driver.cursor)
        self.driver = driver
        self._ticked_at = time.monotonic()

    def compose(self) -> ComposeResult:
        yield ReplayBar(id="replay-bar", markup=False)
        yield from super().compose()

    def on_mount(self) -> None:
        self.set_interval(REPLAY_TICK_S, self._play_tick)
        self._show_cursor()

    def _play_tick(self) -> None:
        now = time.monotonic()
        elapsed, self._ticked_at = now - self._ticked_at, now
        if self.driver.playing:
            self._moved(self.driver.advance(elapsed))

    def _moved(self, rewound: bool) -> None:
        """Show the state at the new cursor: rebuild after a rewind, else apply the changes."""
        if rewound:
            tasks, lines = self.feed.snapshot()
            with self.batch_update():
                self.query_one(TaskTable).rebuild(tasks)
                self.query_one("#event-log", RichLog).clear()
                self._write_lines(lines)
                self._refresh_nodes()
        self.refresh_views()
        self._show_cursor()

    def _show_cursor(self) -> None:
        self.query_one(ReplayBar).update(f"{self.driver.describe()}   {REPLAY_KEYS}")

    def action_replay_toggle(self) -> None:
        self._ticked_at = time.monotonic()
        self._moved(self.driver.toggle())

    def action_replay_step(self, count: int) -> None:
        self.driver.playing = False
        self._moved(self.driver.step(count))

    def action_replay_seek(self, seconds: float) -> None:
        self._moved(self.driver.seek(self.driver.cursor + seconds))

    def action_replay_speed(self, direction: int) -> None:
        if direction > 0:
            self.driver.faster()
        else:
            self.driver.slower()
        self._show_cursor()

    def action_replay_start(self) -> None:
        self.driver.playing = False
        self._moved(self.driver.to_start())

    def action_replay_end(self) -> None:
        self.driver.playing = False
        self._moved(self.driver.to_end())
