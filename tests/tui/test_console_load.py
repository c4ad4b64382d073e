"""The console under load: 5,000 events/s for 5 s through the live feed path (benchmarks/console_load.py).

Behaviour only, never speed: every event is folded, every task fed ends in the state its last
event gave it, in the table as in the state and on the screen, and memory stays within the
bounds (tasks, rows, lines, texts, pending changes).
"""

from __future__ import annotations

import asyncio
import sys

import pytest

from tests.conftest import ROOT
from tq.tui.app import REFRESH_INTERVAL_S
from tq.tui.feed import MAX_EVENT_LINES
from tq.tui.widgets.task_table import MAX_ROWS

sys.path.insert(0, str(ROOT / "benchmarks"))
from console_load import EventSource, drive, new_console  # noqa: E402

#: Fewer tasks than 5 s at 5,000 events/s creates (about 8,300), so the bound is reached.
MAX_TASKS = 1_000
RATE = 5_000.0
SECONDS = 5.0


@pytest.mark.timeout(120)
def test_console_keeps_every_state_at_5000_events_a_second_in_bounded_memory() -> None:
    app = new_console(max_tasks=MAX_TASKS)
    source = EventSource()
    fed, probe = asyncio.run(drive(app, source, rate=RATE, seconds=SECONDS, size=(160, 48)))
    assert source.tasks > MAX_TASKS, "the feeder must create more tasks than the bound"

    state = app.feed.state
    assert state.event_count == fed.events  # every event folded, none dropped
    newest = list(source.expected)[-MAX_TASKS:]  # the tasks touched last are the ones kept
    assert list(state.tasks) == newest
    assert {uuid: task.state for uuid, task in state.tasks.items()} == {
        uuid: source.expected[uuid] for uuid in newest
    }
    assert all(len(task.args or "") <= state.max_value_chars for task in state.tasks.values())

    rows = dict(probe.rows)  # what the tasks view showed at the end
    assert len(rows) == MAX_ROWS
    assert {uuid: rows[uuid] for uuid in rows if uuid in state.tasks} == {
        uuid: source.expected[uuid] for uuid in rows if uuid in state.tasks
    }
    top = max(newest, key=lambda uuid: int(uuid[:8], 16))
    assert probe.rows[0][0] == top  # newest on top, and drawn so with its last state
    assert probe.top_line.split()[:3] == [top[:8], state.tasks[top].name, source.expected[top]]

    assert len(app.feed.lines) <= MAX_EVENT_LINES
    assert probe.log_lines <= MAX_EVENT_LINES + 10  # (a traceback spans lines)
    assert len(app.feed.queue_flow._queue_of) <= MAX_TASKS
    assert not app.feed._changes  # nothing left unshown
    # the feed was applied in batches, at most ten a second
    assert app.refresh_count <= (probe.ui_wall_s + 30) / REFRESH_INTERVAL_S
    assert fed.events > 0 and probe.frames > 0
