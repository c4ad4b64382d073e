"""Feed the console 5,000 events/s for 30 s and report its frame latency and memory.

    .venv/bin/python benchmarks/console_load.py                   # 5,000 events/s for 30 s
    .venv/bin/python benchmarks/console_load.py --rate 2000 --seconds 10 --json /tmp/load.json

The console runs headless at 160x48 (it lays out and renders every frame; only the terminal
writes are skipped). A thread folds synthetic events into its EventFeed exactly as the live
consumer thread does (EventFeed.fold from a thread other than the UI's): four workers
beating every 2 s and tasks going received -> started -> succeeded (one in 20 failed, with a
traceback; one in 50 with a 2 KB argument). Figures:

- event -> screen: from the first event of a batch folded to the frame that shows it
  (includes the up-to-100 ms coalescing wait, so it is what an operator sees);
- tick -> screen: from the refresh tick taking a batch to that frame (the UI's own work);
- refreshes a second (the views are redrawn at most every REFRESH_INTERVAL_S);
- peak RSS of the process (ru_maxrss), RSS at the start and end, fold cost per event.

tests/tui/test_console_load.py drives the same code for 5 s and checks the outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual.widgets import RichLog  # noqa: E402

from tq.cli.events import EVENT_COLOURS, format_event  # noqa: E402
from tq.cluster import ClusterState  # noqa: E402
from tq.tui.app import ConsoleApp  # noqa: E402
from tq.tui.feed import EventFeed  # noqa: E402
from tq.tui.widgets.task_table import TaskTable  # noqa: E402

#: Workers in the synthetic cluster and their heartbeat period.
WORKERS = 4
HEARTBEAT_S = 2.0
#: Every this many tasks one fails (with a traceback), one carries a 2 KB argument.
FAIL_EVERY = 20
BIG_ARG_EVERY = 50
#: Seconds the feeder sleeps between bursts (it catches up to the rate after each).
FEED_STEP_S = 0.005
#: Tasks whose last state the source remembers (the newest; more than any console keeps).
EXPECTED_KEPT = 20_000
#: Seconds between samples of the process's RSS while feeding.
RSS_SAMPLE_S = 10.0
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "tasks.py", line 12, in resize\n'
    "    raise ValueError('image too large')\n"
    "ValueError: image too large"
)
#: Event type -> the state a task is in after it.
STATE_AFTER = {
    "task-received": "RECEIVED",
    "task-started": "STARTED",
    "task-succeeded": "SUCCESS",
    "task-failed": "FAILURE",
}


class EventSource:
    """Deterministic task and worker events; remembers each task's last state and touch order."""

    def __init__(self) -> None:
        self.clock = 0
        self.tasks = 0
        self.expected: OrderedDict[str, str] = OrderedDict()
        self._pipeline: list[tuple[int, str]] = []
        self._beats_due = 0.0

    def _uuid(self, number: int) -> str:
        return f"{number:08x}-0000-4000-8000-{number:012x}"

    def _task_event(self, kind: str, number: int) -> dict[str, Any]:
        uuid = self._uuid(number)
        self.clock += 1
        event: dict[str, Any] = {
            "type": kind,
            "uuid": uuid,
            "hostname": f"w{number % WORKERS}@load",
            "timestamp": time.time(),
            "clock": self.clock,
        }
        if kind == "task-received":
            big = number % BIG_ARG_EVERY == 0
            event.update(
                name=f"tasks.job{number % 7}", args=repr(("x" * 2048,) if big else (number,))
            )
            event.update(kwargs="{}", retries=0)
        elif kind == "task-succeeded":
            event.update(result=repr(number * 2), runtime=0.004)
        elif kind == "task-failed":
            event.update(exception="ValueError('image too large')", traceback=TRACEBACK)
        self.expected[uuid] = STATE_AFTER[kind]
        self.expected.move_to_end(uuid)
        if len(self.expected) > EXPECTED_KEPT:
            self.expected.popitem(last=False)
        return event

    def heartbeats(self) -> list[dict[str, Any]]:
        self.clock += 1
        return [
            {
                "type": "worker-heartbeat",
                "hostname": f"w{index}@load",
                "timestamp": time.time(),
                "clock": self.clock,
                "freq": HEARTBEAT_S,
                "active": 3,
                "processed": self.tasks // WORKERS,
                "loadavg": [0.5, 0.4, 0.3],
            }
            for index in range(WORKERS)
        ]

    def take(self, count: int, now: float) -> list[dict[str, Any]]:
        """The next `count` events: each new task received, the one before it started, ..."""
        events: list[dict[str, Any]] = []
        if now >= self._beats_due:
            self._beats_due = now + HEARTBEAT_S
            events += self.heartbeats()
        while len(events) < count:
            number = self.tasks
            self.tasks += 1
            events.append(self._task_event("task-received", number))
            if number >= 2:
                events.append(self._task_event("task-started", number - 2))
            if number >= 4:
                done = number - 4
                kind = "task-failed" if done % FAIL_EVERY == 0 else "task-succeeded"
                events.append(self._task_event(kind, done))
        return events


@dataclass
class FrameProbe:
    """Times each batch from its first event (and from its tick) to the frame that shows it."""

    event_to_screen: list[float] = field(default_factory=list)
    tick_to_screen: list[float] = field(default_factory=list)
    frames: int = 0
    #: CPU seconds the UI thread spent (and wall seconds it ran) while the feeder fed.
    ui_cpu_s: float = 0.0
    ui_wall_s: float = 0.0
    #: Refreshes of the views while the feeder fed.
    refreshes: int = 0
    #: What the tasks view and the events view showed at the end: (task id, state) per row.
    rows: list[tuple[str, str]] = field(default_factory=list)
    #: The text of the tasks view's first row as drawn at the end (below its header).
    top_line: str = ""
    log_lines: int = 0
    _pending: list[tuple[float, float]] = field(default_factory=list)

    def attach(self, app: ConsoleApp) -> None:
        take_changes, display = app.feed.take_changes, app._display

        def timed_take() -> Any:
            changes = take_changes()
            if changes and changes.since is not None:
                self._pending.append((changes.since, time.monotonic()))
            return changes

        def timed_display(screen: Any, renderable: Any) -> None:
            display(screen, renderable)
            if renderable is None:
                return
            self.frames += 1
            now = time.monotonic()
            for since, tick in self._pending:
                self.event_to_screen.append(now - since)
                self.tick_to_screen.append(now - tick)
            self._pending.clear()

        app.feed.take_changes = timed_take  # type: ignore[method-assign]
        app._display = timed_display  # type: ignore[method-assign]


@dataclass
class FeedResult:
    """What the feeder thread did."""

    events: int = 0
    seconds: float = 0.0
    fold_s: float = 0.0
    #: The process's RSS (MiB) every RSS_SAMPLE_S seconds while feeding.
    rss_samples: list[float] = field(default_factory=list)


def feed_at_rate(
    feed: EventFeed, source: EventSource, rate: float, seconds: float, stop: threading.Event
) -> FeedResult:
    """Fold `rate` events a second into the feed for `seconds` (from this, a non-UI thread)."""
    result = FeedResult()
    start = time.monotonic()
    while not stop.is_set():
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            break
        if elapsed >= RSS_SAMPLE_S * len(result.rss_samples):
            result.rss_samples.append(round(rss_mib(), 1))
        due = int(rate * elapsed) - result.events
        if due > 0:
            events = source.take(due, time.monotonic())
            began = time.perf_counter()
            for event in events:
                feed.fold(event)
            result.fold_s += time.perf_counter() - began
            result.events += len(events)
        time.sleep(FEED_STEP_S)
    result.seconds = time.monotonic() - start
    return result


def rss_mib() -> float:
    """This process's resident set now, in MiB."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def caught_up(app: ConsoleApp) -> bool:
    """True once every folded event has been applied to the views."""
    with app.feed.lock:
        return not app.feed._changes


async def drive(
    app: ConsoleApp,
    source: EventSource,
    *,
    rate: float,
    seconds: float,
    size: tuple[int, int] = (160, 48),
    settle_s: float = 30.0,
) -> tuple[FeedResult, FrameProbe]:
    """Run the console headless while a thread feeds it; return once the views caught up."""
    probe = FrameProbe()
    stop = threading.Event()
    outcome: dict[str, FeedResult] = {}
    async with app.run_test(size=size, notifications=False) as pilot:
        probe.attach(app)

        def feeder() -> None:
            outcome["feed"] = feed_at_rate(app.feed, source, rate, seconds, stop)

        thread = threading.Thread(target=feeder, name="feeder", daemon=True)
        cpu, wall = time.thread_time(), time.monotonic()
        refreshes_before = app.refresh_count
        thread.start()
        try:
            while thread.is_alive():
                await pilot.pause(0.1)
        finally:
            stop.set()
            thread.join(timeout=10)
        probe.ui_cpu_s, probe.ui_wall_s = time.thread_time() - cpu, time.monotonic() - wall
        probe.refreshes = app.refresh_count - refreshes_before
        deadline = time.monotonic() + settle_s
        while not caught_up(app) and time.monotonic() < deadline:
            await pilot.pause(0.1)
        await pilot.pause(0.3)  # and its frame reaches the screen
        table = app.query_one(TaskTable)
        for index in range(table.row_count):
            row = table.get_row_at(index)
            probe.rows.append((str(getattr(row[0], "uuid", "")), str(row[2])))
        if table.row_count and table.size.height > 1:
            probe.top_line = table.render_line(1).text
        probe.log_lines = len(app.query_one(RichLog).lines)
    return outcome["feed"], probe


def new_console(max_tasks: int | None = None, view: str = "tasks") -> ConsoleApp:
    """A console with no broker or supervisor, fed only by the benchmark."""
    state = ClusterState() if max_tasks is None else ClusterState(max_tasks=max_tasks)
    return ConsoleApp(EventFeed(format_event, state), event_colours=EVENT_COLOURS, view=view)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=5000.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to feed")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument(
        "--view", choices=["tasks", "nodes", "queues", "events"], default="tasks",
        help="the view on screen while fed (hidden views catch up when shown)",
    )  # fmt: skip
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    options = parser.parse_args(argv)
    rss_start = rss_mib()
    app = new_console(view=options.view)
    source = EventSource()
    cpu_start = time.process_time()
    fed, probe = asyncio.run(
        drive(app, source, rate=options.rate, seconds=options.seconds,
              size=(options.width, options.height))
    )  # fmt: skip
    cpu_s = time.process_time() - cpu_start
    state = app.feed.state
    figures = {
        "events": fed.events,
        "events_per_s": round(fed.events / fed.seconds, 1),
        "events_folded": state.event_count,
        "tasks_fed": source.tasks,
        "tasks_kept": len(state.tasks),
        "rows_shown": len(probe.rows),
        "frames": probe.frames,
        "batches": len(probe.event_to_screen),
        "refreshes": app.refresh_count,
        "refreshes_per_s": round(probe.refreshes / max(probe.ui_wall_s, 1e-9), 1),
        "event_to_screen_ms": {
            "p50": round(1000 * percentile(probe.event_to_screen, 0.50), 1),
            "p99": round(1000 * percentile(probe.event_to_screen, 0.99), 1),
            "max": round(1000 * max(probe.event_to_screen, default=0.0), 1),
        },
        "tick_to_screen_ms": {
            "p50": round(1000 * percentile(probe.tick_to_screen, 0.50), 1),
            "p99": round(1000 * percentile(probe.tick_to_screen, 0.99), 1),
            "mean": round(1000 * statistics.fmean(probe.tick_to_screen or [0.0]), 1),
        },
        "fold_us_per_event": round(1e6 * fed.fold_s / max(1, fed.events), 1),
        "cpu_percent": round(100 * cpu_s / fed.seconds, 1),
        "ui_thread_cpu_percent": round(100 * probe.ui_cpu_s / max(probe.ui_wall_s, 1e-9), 1),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "rss_mib": {
            "start": round(rss_start, 1),
            "end": round(rss_mib(), 1),
            "peak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            f"every_{RSS_SAMPLE_S:.0f}_s": fed.rss_samples,
        },
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
    }
    report(figures, options)
    if options.json:
        Path(options.json).write_text(json.dumps(figures, indent=2))
    return 0


def report(figures: dict[str, Any], options: argparse.Namespace) -> None:
    latency, work, rss = (
        figures["event_to_screen_ms"],
        figures["tick_to_screen_ms"],
        figures["rss_mib"],
    )
    print(f"console load: {options.rate:,.0f} events/s for {options.seconds:.0f} s "
          f"at {options.width}x{options.height} (headless), {options.view} view")  # fmt: skip
    print(f"  fed            {figures['events']:,} events ({figures['events_per_s']:,.0f}/s), "
          f"{figures['events_folded']:,} folded, {figures['tasks_fed']:,} tasks, "
          f"{figures['tasks_kept']:,} kept")  # fmt: skip
    print(f"  frames         {figures['frames']:,} ({figures['batches']:,} batches shown, "
          f"{figures['refreshes']:,} refreshes, {figures['refreshes_per_s']}/s while fed)")  # fmt: skip
    print(
        f"  event->screen  p50 {latency['p50']} ms  p99 {latency['p99']} ms  max {latency['max']} ms"
    )
    print(f"  tick->screen   p50 {work['p50']} ms  p99 {work['p99']} ms  mean {work['mean']} ms")
    print(f"  CPU            UI thread {figures['ui_thread_cpu_percent']}% of a core, "
          f"process {figures['cpu_percent']}%; fold {figures['fold_us_per_event']} us/event")  # fmt: skip
    print(
        f"  RSS            start {rss['start']} MiB  end {rss['end']} MiB  peak {rss['peak']} MiB"
    )
    samples = " ".join(str(value) for value in rss[f"every_{RSS_SAMPLE_S:.0f}_s"])
    print(f"                 while fed, every {RSS_SAMPLE_S:.0f} s: {samples}")
    print(f"  load average   {' '.join(str(v) for v in figures['load_average'])} "
          f"({os.cpu_count()} CPUs; other processes share them)")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
