"""`tq events --dump`: print every event as it arrives, one line each (or JSON lines)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from ..cluster import ClusterState
from ..events import EventReceiver, utcoffset_hours

_HUMAN_TYPES = {
    "worker-online": "started",
    "worker-heartbeat": "heartbeat",
    "worker-offline": "shutdown",
}
#: Colour of a dump line by the last word of its human type (the console uses it too).
EVENT_COLOURS = {
    "succeeded": "green",
    "failed": "red",
    "retried": "yellow",
    "revoked": "magenta",
    "rejected": "magenta",
    "started": "cyan",
    "received": "blue",
    "sent": "blue",
    "shutdown": "red",
    "heartbeat": "dim",
}
_TASK_HIDDEN = {"type", "timestamp", "hostname", "uuid", "name", "args", "kwargs"}
_WORKER_HIDDEN = {"type", "timestamp", "hostname"}
#: Seconds between reconnect attempts when the broker goes away.
RECONNECT_DELAY_S = 1.0


def format_event(event: dict[str, Any], state: ClusterState) -> tuple[str, str]:
    """Return (human type, line) for an event, in `celery events --dump`'s layout."""
    kind = str(event.get("type"))
    human = _HUMAN_TYPES.get(kind) or kind.replace("-", " ")
    # Monitors correct the sender's clock by the difference of UTC offsets.
    offset = float(event.get("utcoffset") or 0.0) - utcoffset_hours()
    moment = datetime.fromtimestamp(
        float(event.get("timestamp") or time.time()) - offset * 3600, UTC
    )
    head = f"{event.get('hostname')} [{moment.isoformat(sep=' ')}] {human}"
    if kind.startswith("task-"):
        task = state.tasks.get(str(event.get("uuid")))
        name = (task.name if task else None) or ""
        args = (task.args if task else None) or ""
        kwargs = (task.kwargs if task else None) or ""
        fields = {k: v for k, v in event.items() if k not in _TASK_HIDDEN}
        subject = f"{name}({event.get('uuid')}) args={args} kwargs={kwargs}"
        body = ", ".join(f"{key}={fields[key]}" for key in sorted(fields))
        return human, f"{head}: {subject} {body}".rstrip()
    fields = {k: v for k, v in event.items() if k not in _WORKER_HIDDEN}
    body = ", ".join(f"{key}={fields[key]}" for key in sorted(fields))
    return human, f"{head}: {body}" if body else head


@click.command()
@click.option(
    "--dump", is_flag=True, help="Print each event as a line instead of opening the console."
)
@click.option("--json", "as_json", is_flag=True, help="With --dump: one JSON object per line.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many events.")
@click.pass_obj
def events(obj: Any, dump: bool, as_json: bool, count: int | None) -> None:
    """Watch the cluster's events (workers must send task events: -E or `control enable_events`)."""
    if not dump:
        from .console import run_console

        run_console(obj, view="tasks")
        return
    app = obj.app
    console = Console(highlight=False, soft_wrap=True)
    state = ClusterState()
    seen = 0

    def on_event(event: dict[str, Any]) -> None:
        nonlocal seen
        state.fold(event)
        seen += 1
        if as_json:
            click.echo(json.dumps(event, default=repr))
        else:
            human, line = format_event(event, state)
            colour = EVENT_COLOURS.get(human.split()[-1], "default")
            console.print(f"[{colour}]{escape(line)}[/]")
        console.file.flush()

    if not as_json:
        console.print("-> evdump: starting capture...")
    while count is None or seen < count:
        connection = app.broker_connection()
        try:
            receiver = EventReceiver(connection, on_event, exchange_name=app.conf.event_exchange)
            receiver.consume()
            while count is None or seen < count:
                receiver.drain(timeout=1.0)
        except connection.connection_errors + connection.channel_errors:
            if not as_json:
                console.print("-> Connection lost, attempting reconnect")
            time.sleep(RECONNECT_DELAY_S)
        finally:
            connection.release()


COMMANDS = [events]
