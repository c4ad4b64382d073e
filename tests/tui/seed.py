"""Seeded cluster data for console tests: fixed timestamps, no broker."""

from __future__ import annotations

import math
from typing import Any

from tq.cli.events import EVENT_COLOURS, format_event
from tq.queues import QueueDepth
from tq.tui.app import ConsoleApp
from tq.tui.feed import EventFeed
from tq.tui.operations import ConsoleOperations, SupervisorView
from tq.tui.queue_board import QueueFlow

#: Seed events happen at this fixed time; the seeded console's clock stands at NOW.
T0 = 1_700_000_000.0
NOW = T0 + 6.0
BOOM_TRACEBACK = (
    'Traceback (most recent call last):\n  File "tasks.py", line 48, in boom\n'
    "    raise ValueError('bad', 42)\nValueError: ('bad', 42)"
)


def task_event(kind: str, uuid: str, at: float, **fields: Any) -> dict[str, Any]:
    """One task event from worker w1@host."""
    return {"type": kind, "uuid": uuid, "hostname": "w1@host", "timestamp": T0 + at, **fields}


def seed_events() -> list[dict[str, Any]]:
    """A worker and five tasks in different states."""
    events: list[dict[str, Any]] = [
        {
            "type": "worker-online",
            "hostname": "w1@host",
            "timestamp": T0,
            "freq": 2.0,
            "active": 1,
            "processed": 3,
            "loadavg": [0.1, 0.2, 0.3],
        },
    ]
    add = "a1d2c3e4-0000-4000-8000-000000000001"
    boom = "b0000000-0000-4000-8000-000000000002"
    slow = "c5100000-0000-4000-8000-000000000003"
    mark = "d4a40000-0000-4000-8000-000000000004"
    mul = "e3000000-0000-4000-8000-000000000005"
    for uuid, name, args in (
        (add, "tasks.add", "(2, 2)"),
        (boom, "tasks.boom", "()"),
        (slow, "tasks.sleep_then", "(30,)"),
        (mark, "tasks.mark", "('x',)"),
        (mul, "tasks.mul", "(3, 4)"),
    ):
        events.append(task_event("task-received", uuid, 1, name=name, args=args, kwargs="{}"))
    events += [
        task_event("task-started", add, 2),
        task_event("task-succeeded", add, 2.5, result="4", runtime=0.0021),
        task_event("task-started", boom, 3),
        task_event(
            "task-failed", boom, 3.5, exception="ValueError('bad', 42)", traceback=BOOM_TRACEBACK
        ),
        task_event("task-started", slow, 4),
        task_event("task-started", mul, 5),
        task_event("task-succeeded", mul, 5.5, result="12", runtime=0.0013),
        {
            "type": "worker-heartbeat",
            "hostname": "w1@host",
            "timestamp": T0 + 5,
            "freq": 2.0,
            "active": 1,
            "processed": 5,
            "loadavg": [0.1, 0.2, 0.3],
        },
    ]
    return events


def seed_history(app: ConsoleApp) -> None:
    """Five minutes of made-up header samples, so the sparklines have a shape."""
    history = app.history
    history.extend("succeeded", (60 + 45 * math.sin(i / 40) for i in range(300)))
    history.extend("failed", (9.0 if 200 <= i < 215 else 0.4 for i in range(300)))
    history.extend("active", (4 + 4 * math.sin(i / 25) ** 2 for i in range(300)))
    history.extend("queued", (max(0.0, 180 - 0.7 * i) for i in range(300)))


def seed_queues(app: ConsoleApp) -> None:
    """Depths, consumers and ten seconds of flow for three queues and a missing one."""
    board = app.queue_board
    board.set_depths(
        [
            QueueDepth("celery", 12, None),
            QueueDepth("images", 340, None),
            QueueDepth("reports", 0, None),
            QueueDepth("retired", None),
        ]
    )
    board.set_consumers({"celery": ("w1@host", "w2@host"), "images": ("w2@host",)})
    before, after = QueueFlow(), QueueFlow()
    after.received.update({"celery": 420, "images": 95, "reports": 3})
    after.done.update({"celery": 418, "images": 64, "reports": 3})
    board.sample(0.0, before)
    board.sample(10.0, after)


def seeded_feed() -> EventFeed:
    """An EventFeed that has folded the seed events."""
    feed = EventFeed(format_event)
    for event in seed_events():
        feed.fold(event)
    return feed


def supervisor_row(name: str, state: str, pid: int | None, **fields: Any) -> dict[str, Any]:
    """One row of the supervisor's `ps`, as the console gets it."""
    row = {
        "name": name,
        "state": state,
        "pid": pid,
        "uptime_s": 3725.0 if pid else None,
        "restarts": 0,
        "queues": "celery",
        "concurrency": "4",
        "cpu_percent": 12.5 if pid else 0.0,
        "rss_bytes": 96 << 20 if pid else 0,
    }
    return {**row, **fields}


SUPERVISED = SupervisorView(
    nodes=(
        supervisor_row("w1@host", "RUNNING", 4242),
        supervisor_row("w2@host", "RUNNING", 4243, queues="celery,images", restarts=1),
        supervisor_row("w3@host", "FATAL", None, queues="reports", restarts=5),
    )
)


class SeededOperations(ConsoleOperations):
    """No broker; a supervisor that always answers with the SUPERVISED table."""

    def supervisor(self) -> SupervisorView:
        return SUPERVISED


def seeded_app(*, supervised: bool = False) -> ConsoleApp:
    """A console over the seed data, its clock stopped; no broker, and a supervisor if asked."""
    feed = seeded_feed()
    if supervised:
        feed.fold({"type": "worker-heartbeat", "hostname": "w2@host", "timestamp": T0 + 5,
                   "freq": 2.0, "active": 3, "processed": 118, "loadavg": [0.9, 0.7, 0.5]})  # fmt: skip
    app = ConsoleApp(feed, event_colours=EVENT_COLOURS, clock=lambda: NOW)
    if supervised:
        app.operations = SeededOperations(None, None)
        app.supervisor_view = SUPERVISED
    seed_history(app)
    seed_queues(app)
    return app
