"""`tq events`: print events as they arrive (--dump), from the durable log (--since), record them."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from ..cluster import ClusterState
from ..errors import ConfigError, DataDirError
from ..eventlog import (
    DEFAULT_MAX_BYTES,
    DEFAULT_RETENTION_S,
    EventLog,
    EventLogWriter,
    default_event_dir,
    parse_duration,
    parse_since,
    parse_size,
    writer_pid,
)
from ..events import receive_events, utcoffset_hours
from .supervise import resolve_run_dir

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


class _Parsed(click.ParamType):
    """A click type from one of the event log's parsers (bad values: one line, exit 2)."""

    def __init__(self, name: str, parse: Any) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


SINCE = _Parsed("time", parse_since)
DURATION = _Parsed("duration", parse_duration)
SIZE = _Parsed("size", parse_size)


def event_log_dir(log_dir: str | None, run_dir: str | None = None) -> Path:
    """--log-dir, else the supervisor's: <data dir>/events (beside run/ and log/)."""
    if log_dir:
        return Path(log_dir).expanduser().resolve()
    return default_event_dir(resolve_run_dir(run_dir).parent)


class _Stop:
    """Set by Ctrl-C or TERM: long-running loops finish their step and return."""

    def __init__(self) -> None:
        self.flag = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: self.flag.set())

    def __call__(self) -> bool:
        return self.flag.is_set()


@click.command()
@click.option(
    "--dump", is_flag=True, help="Print each event as a line instead of opening the console."
)
@click.option("--json", "as_json", is_flag=True, help="With --dump: one JSON object per line.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option(
    "--since",
    type=SINCE,
    help="Start with the recorded events since then: 30s, 10m, 2h, 1d or an ISO time.",
)
@click.option("--follow", is_flag=True, help="With --since: go on printing new events live.")
@click.option(
    "--record", is_flag=True, help="Append every event to the durable log (until Ctrl-C)."
)
@click.option("--log-dir", help="The event log directory (default: .tq/events, or $TQ_DATA_DIR).")
@click.option(
    "--retention",
    type=DURATION,
    default=f"{int(DEFAULT_RETENTION_S)}s",
    help="With --record: drop events older than this (24h).",
)
@click.option(
    "--max-bytes",
    type=SIZE,
    default=str(DEFAULT_MAX_BYTES),
    help="With --record: keep the log under this size (256M).",
)
@click.pass_obj
def events(
    obj: Any,
    dump: bool,
    as_json: bool,
    count: int | None,
    since: float | None,
    follow: bool,
    record: bool,
    log_dir: str | None,
    retention: float,
    max_bytes: int,
) -> None:
    """Watch the cluster's events (workers must send task events: -E or `control enable_events`)."""
    if follow and since is None:
        since = time.time()
    if not (dump or record):
        if follow:
            raise click.UsageError("--follow prints lines: use it with --dump")
        from .console import run_console

        run_console(obj, view="tasks", since=since, log_dir=log_dir)
        return
    directory = event_log_dir(log_dir)
    printer = _Printer(as_json=as_json) if dump else None
    stop = _Stop()
    if record:
        _record(obj.app, directory, printer, stop, count, retention, max_bytes)
        return
    assert printer is not None
    try:
        if since is None:
            printer.note("-> evdump: starting capture...")
            _print_live(obj.app, printer, stop, count)
            return
        printer.note(f"-> evdump: events since {_when(since)} from {directory}")
        if not follow:
            printer.print_all(EventLog(directory).read(since=since), count)
            return
        if writer_pid(directory) is not None or directory.is_file():
            printer.print_all(EventLog(directory).follow(since=since, stop=stop), count)
            return
        if directory.exists():
            printer.print_all(EventLog(directory).read(since=since), count)
        printer.note("-> no recorder is appending to the log: following the broker")
        _print_live(obj.app, printer, stop, count)
    except KeyboardInterrupt:
        pass


class _Printer:
    """Prints events in `celery events --dump`'s layout (or as JSON), folding them for names."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        self.console = Console(highlight=False, soft_wrap=True)
        self.state = ClusterState()
        self.seen = 0

    def note(self, text: str) -> None:
        if not self.as_json:
            self.console.print(escape(text))

    def __call__(self, event: dict[str, Any]) -> None:
        self.state.fold(event)
        self.seen += 1
        if self.as_json:
            click.echo(json.dumps(event, default=repr))
        else:
            human, line = format_event(event, self.state)
            colour = EVENT_COLOURS.get(human.split()[-1], "default")
            self.console.print(f"[{colour}]{escape(line)}[/]")
        self.console.file.flush()

    def done(self, count: int | None) -> bool:
        return count is not None and self.seen >= count

    def print_all(self, records: Iterator[Any], count: int | None) -> None:
        for logged in records:
            if self.done(count):
                return
            self(logged.event)


def _print_live(app: Any, printer: _Printer, stop: _Stop, count: int | None) -> None:
    def lost(connected: bool) -> None:
        if not connected:
            printer.note("-> Connection lost, attempting reconnect")

    receive_events(
        app,
        printer,
        is_cancelled=lambda: stop() or printer.done(count),
        on_connection=lost,
    )


def _record(
    app: Any,
    directory: Path,
    printer: _Printer | None,
    stop: _Stop,
    count: int | None,
    retention_s: float,
    max_bytes: int,
) -> None:
    """Append every event to the log until Ctrl-C, TERM or `count` events."""
    recorded = 0
    failures: list[OSError] = []
    writer = EventLogWriter(directory, retention_s=retention_s or None, max_bytes=max_bytes)

    def on_event(event: dict[str, Any]) -> None:
        nonlocal recorded
        try:
            writer.append(event)
        except OSError as exc:  # a full or vanished disk: stop, and say so
            failures.append(exc)
            stop.flag.set()
            return
        recorded += 1
        if printer is not None:
            printer(event)

    status = Console(stderr=True, highlight=False)
    status.print(f"-> recording events to {escape(str(directory))} (Ctrl-C to stop)")
    try:
        receive_events(
            app,
            on_event,
            is_cancelled=lambda: stop() or (count is not None and recorded >= count),
            on_connection=lambda up: None if up else status.print("-> broker lost, reconnecting"),
        )
    except KeyboardInterrupt:
        pass
    finally:
        writer.close()
    status.print(f"-> recorded {recorded} events")
    if failures:
        raise DataDirError(f"cannot append to the event log in {directory}: {failures[0]}")


def _when(moment: float) -> str:
    return datetime.fromtimestamp(moment).isoformat(sep=" ", timespec="seconds")


COMMANDS = [events]
