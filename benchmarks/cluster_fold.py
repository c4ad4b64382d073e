"""Fold synthetic events into ClusterState alone, and through the console's EventFeed; report the
cost per event and the memory the state keeps.

    .venv/bin/python benchmarks/cluster_fold.py                     # 200,000 events
    .venv/bin/python benchmarks/cluster_fold.py --events 50000 --json /tmp/fold.json

The events are benchmarks/console_load.py's (four workers beating, tasks going received ->
started -> succeeded, one in 20 failed with a traceback, one in 50 with a 2 KB argument),
made before the clock starts, in chunks. Figures: microseconds per event and events a second
on one core for ClusterState.fold and for EventFeed.fold (which also formats the event's line
for the events view and counts queues under its lock); the bytes ClusterState holds once
full (tracemalloc), per task kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from console_load import EventSource  # noqa: E402
from tq.cli.events import format_event  # noqa: E402
from tq.cluster import ClusterState  # noqa: E402
from tq.tui.feed import EventFeed  # noqa: E402

#: Events made (and then folded) at a time.
CHUNK = 10_000


def time_folds(fold: Callable[[dict[str, Any]], object], total: int) -> float:
    """Seconds of CPU `fold` takes over `total` fresh events (made outside the clock)."""
    source = EventSource()
    spent = 0.0
    done = 0
    while done < total:
        events = source.take(min(CHUNK, total - done), time.monotonic())
        began = time.process_time()
        for event in events:
            fold(event)
        spent += time.process_time() - began
        done += len(events)
    return spent


def state_bytes(max_tasks: int) -> tuple[int, int]:
    """Bytes a full ClusterState holds (fed twice its bound) and the tasks it keeps.

    Counted from before the events are made (a task keeps its event's strings), after the
    events and their source are gone.
    """
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    state = ClusterState(max_tasks=max_tasks)
    source = EventSource()
    while source.tasks < 2 * max_tasks:
        for event in source.take(CHUNK, time.monotonic()):
            state.fold(event)
    del source
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held, len(state.tasks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to fold")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    options = parser.parse_args(argv)
    total = options.events

    state = ClusterState()
    state_s = time_folds(state.fold, total)
    feed = EventFeed(format_event)
    feed_s = time_folds(feed.fold, total)
    held, kept = state_bytes(state.max_tasks)
    figures = {
        "events": total,
        "cluster_state_us_per_event": round(1e6 * state_s / total, 2),
        "cluster_state_events_per_s": round(total / state_s),
        "event_feed_us_per_event": round(1e6 * feed_s / total, 2),
        "event_feed_events_per_s": round(total / feed_s),
        "max_tasks": state.max_tasks,
        "state_mib_when_full": round(held / 2**20, 1),
        "bytes_per_task": round(held / max(1, kept)),
    }
    print(f"fold {total:,} events on one core")
    print(f"  ClusterState.fold  {figures['cluster_state_us_per_event']} us/event "
          f"({figures['cluster_state_events_per_s']:,}/s)")  # fmt: skip
    print(f"  EventFeed.fold     {figures['event_feed_us_per_event']} us/event "
          f"({figures['event_feed_events_per_s']:,}/s; + the event's line and queue counts)")  # fmt: skip
    print(f"  memory when full   {figures['state_mib_when_full']} MiB for "
          f"{kept:,} tasks (max_tasks), {figures['bytes_per_task']:,} bytes a task")  # fmt: skip
    if options.json:
        Path(options.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
