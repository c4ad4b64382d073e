"""`tq console`: open the live operations console on this app's broker."""

from __future__ import annotations

from typing import Any

import click

from .events import EVENT_COLOURS, format_event
from .supervise import resolve_run_dir


def run_console(obj: Any, *, view: str = "tasks", run_dir: str | None = None) -> None:
    """Open the console (blocks until the user quits)."""
    from ..tui.app import ConsoleApp
    from ..tui.feed import EventFeed

    app = obj.app
    ConsoleApp(
        EventFeed(format_event),
        tq_app=app,
        run_dir=resolve_run_dir(run_dir),
        view=view,
        event_colours=EVENT_COLOURS,
    ).run()


@click.command()
@click.option(
    "--view",
    type=click.Choice(["tasks", "nodes", "events"]),
    default="tasks",
    show_default=True,
    help="The view to open on.",
)
@click.option("--run-dir", help="Supervisor run directory (default: .tq/run, or $TQ_RUN_DIR).")
@click.pass_obj
def console(obj: Any, view: str, run_dir: str | None) -> None:
    """Watch and steer the cluster: tasks, nodes and events, live (workers need -E)."""
    run_console(obj, view=view, run_dir=run_dir)
