"""`tq console`: open the live operations console on this app's broker (or replay a log)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import DataDirError
from ..eventlog import EventLog
from .events import EVENT_COLOURS, SINCE, event_log_dir, format_event
from .supervise import resolve_run_dir

if TYPE_CHECKING:
    from ..tui.feed import EventFeed

#: A console started late shows the recorded events of this last stretch of time ...
BACKLOG_S = 3600.0
#: ... but reads no more than this many bytes of the log (about 50,000 events).
BACKLOG_MAX_BYTES = 16 << 20


def fold_backlog(feed: EventFeed, directory: Path, since: float) -> int:
    """Fold the log's events since `since` (its last BACKLOG_MAX_BYTES at most); return the count."""
    folded = 0
    try:
        for record in EventLog(directory).read(since=since, tail_bytes=BACKLOG_MAX_BYTES):
            feed.fold(record.event)
            folded += 1
    except DataDirError:
        return 0  # nothing recorded here yet: start empty, as before
    return folded


def run_console(
    obj: Any,
    *,
    view: str = "tasks",
    run_dir: str | None = None,
    since: float | None = None,
    log_dir: str | None = None,
) -> None:
    """Open the console on the backlog since `since`, then live (blocks until the user quits)."""
    from ..tui.app import ConsoleApp
    from ..tui.feed import EventFeed

    app = obj.app
    feed = EventFeed(format_event)
    fold_backlog(
        feed,
        event_log_dir(log_dir, run_dir),
        time.time() - BACKLOG_S if since is None else since,
    )
    ConsoleApp(
        feed,
        tq_app=app,
        run_dir=resolve_run_dir(run_dir),
        view=view,
        event_colours=EVENT_COLOURS,
    ).run()


def run_replay(path: Path, *, view: str = "tasks") -> None:
    """Open the console on a recorded log, its cursor at the end (blocks until the user quits)."""
    from ..tui.feed import EventFeed
    from ..tui.replay import ReplayDriver
    from ..tui.replay_app import ReplayConsoleApp

    feed = EventFeed(format_event)
    driver = ReplayDriver(EventLog(path), feed)
    driver.to_end()
    ReplayConsoleApp(feed, driver, view=view, event_colours=EVENT_COLOURS).run()


@click.command()
@click.option(
    "--view",
    type=click.Choice(["tasks", "nodes", "queues", "events"]),
    default="tasks",
    show_default=True,
    help="The view to open on.",
)
@click.option("--run-dir", help="Supervisor run directory (default: .tq/run, or $TQ_RUN_DIR).")
@click.option(
    "--since",
    type=SINCE,
    help="Show the recorded events since then first (default: the last hour): 10m, 2h, ISO time.",
)
@click.option("--log-dir", help="The event log directory (default: .tq/events, or $TQ_DATA_DIR).")
@click.option(
    "--replay",
    type=click.Path(exists=True, path_type=Path),
    help="Replay a recorded log (a directory or one .jsonl segment) with a time cursor, no broker.",
)
@click.pass_obj
def console(
    obj: Any,
    view: str,
    run_dir: str | None,
    since: float | None,
    log_dir: str | None,
    replay: Path | None,
) -> None:
    """Watch and steer the cluster: tasks, nodes, queues and events, live (workers need -E)."""
    if replay is not None:
        run_replay(replay, view=view)
        return
    run_console(obj, view=view, run_dir=run_dir, since=since, log_dir=log_dir)
