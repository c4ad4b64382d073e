"""`tq inspect`, `tq control`, `tq status`: talk to running workers over the broker."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

#: Exit code when no worker answered (Celery's EX_UNAVAILABLE).
EXIT_NO_REPLY = 69

#: command -> positional parameters as (name, converter); a trailing '*' name takes the rest.
INSPECT_COMMANDS: dict[str, list[tuple[str, Any]]] = {
    "active": [],
    "scheduled": [],
    "reserved": [],
    "revoked": [],
    "registered": [("taskinfoitems*", str)],
    "stats": [],
    "active_queues": [],
    "query_task": [("ids*", str)],
    "conf": [],
    "report": [],
    "ping": [],
    "clock": [],
    "memsample": [],
}
CONTROL_COMMANDS: dict[str, list[tuple[str, Any]]] = {
    "enable_events": [],
    "disable_events": [],
    "heartbeat": [],
    "shutdown": [],
    "pool_grow": [("n", int)],
    "pool_shrink": [("n", int)],
    "autoscale": [("max", int), ("min", int)],
    "rate_limit": [("task_name", str), ("rate_limit", str)],
    "time_limit": [("task_name", str), ("soft", float), ("hard", float)],
    "revoke": [("task_id*", str)],
    "terminate": [("signal", str), ("task_id*", str)],
    "add_consumer": [
        ("queue", str),
        ("exchange", str),
        ("exchange_type", str),
        ("routing_key", str),
    ],
    "cancel_consumer": [("queue", str)],
}
_TASK_LISTS = ("active", "reserved", "scheduled")


def parse_arguments(
    command: str, table: dict[str, list[tuple[str, Any]]], values: tuple[str, ...]
) -> dict[str, Any]:
    """Convert positional CLI words to the command's named arguments."""
    spec = table[command]
    arguments: dict[str, Any] = {}
    words = list(values)
    for name, convert in spec:
        if name.endswith("*"):
            arguments[name[:-1]] = [convert(word) for word in words]
            words = []
            break
        if not words:
            break
        word = words.pop(0)
        try:
            arguments[name] = convert(word)
        except ValueError:
            raise click.BadParameter(f"{name} must be a {convert.__name__}, got {word!r}") from None
    if words:
        raise click.UsageError(
            f"{command} takes at most {len(spec)} argument(s); extra: {' '.join(words)}"
        )
    required = [name for name, _ in spec if not name.endswith("*")]
    if command in ("autoscale", "rate_limit") and len(arguments) < len(required):
        raise click.UsageError(f"{command} needs {' '.join(n.upper() for n in required)}")
    return arguments


def _destination(value: str | None) -> list[str] | None:
    return [name.strip() for name in value.split(",") if name.strip()] if value else None


def render_reply(console: Console, command: str, node: str, reply: Any) -> None:
    """Print one node's reply: status word, then the body in a readable shape."""
    failed = isinstance(reply, dict) and "error" in reply
    console.print(
        f"->  [bold]{escape(node)}[/]: " + ("[red]ERROR[/]" if failed else "[green]OK[/]"),
        highlight=False,
    )
    if command in ("status",):
        return
    if isinstance(reply, dict) and set(reply) <= {"ok", "error"} and reply:
        console.print(
            f"        {escape(str(reply.get('ok', reply.get('error'))))}", highlight=False
        )
    elif command in _TASK_LISTS and isinstance(reply, list) and reply:
        console.print(_task_table(command, reply))
    elif isinstance(reply, list):
        if not reply:
            console.print("    - empty -")
        for item in reply:
            console.print(
                f"    * {escape(item if isinstance(item, str) else json.dumps(item))}",
                highlight=False,
            )
    elif isinstance(reply, dict) and not reply:
        console.print("    - empty -")
    elif reply is not None:
        text = json.dumps(reply, indent=4, default=repr)
        console.print(
            escape("\n".join("    " + line for line in text.splitlines())), highlight=False
        )


def _task_table(command: str, items: list[dict[str, Any]]) -> Table:
    table = Table(box=None, padding=(0, 2), show_edge=False)
    for column in (
        "id",
        "name",
        "args",
        "kwargs",
        "started" if command == "active" else "eta",
        "pid",
    ):
        table.add_column(column)
    for item in items:
        request = item.get("request", item)
        when = item.get("eta") if command == "scheduled" else request.get("time_start")
        table.add_row(
            str(request.get("id")),
            str(request.get("name")),
            str(request.get("args")),
            str(request.get("kwargs")),
            str(when or ""),
            str(request.get("worker_pid") or ""),
        )
    return table


def run_remote(
    obj: Any,
    command: str,
    arguments: dict[str, Any],
    *,
    destination: str | None,
    timeout: float,
    as_json: bool,
    want_reply: bool = True,
    show_body: bool = True,
) -> None:
    """Send a command, print every reply, and exit 69 if nobody answered."""
    control = obj.app.control
    names = _destination(destination)
    if not want_reply:
        control.broadcast(command, arguments, destination=names, reply=False)
        click.echo(f"-> {command} sent to {', '.join(names) if names else 'all workers'}")
        return
    replies = control.call(command, arguments, destination=names, timeout=timeout)
    if as_json:
        click.echo(json.dumps(replies, default=repr))
    else:
        console = Console(highlight=False)
        for node in sorted(replies):
            render_reply(console, command if show_body else "status", node, replies[node])
        if replies:
            console.print(f"\n{len(replies)} node{'s' if len(replies) != 1 else ''} online.")
    missing = [name for name in names or [] if name not in replies]
    if missing:
        click.secho(f"No reply from: {', '.join(missing)}", fg="yellow", err=True)
    if not replies:
        click.secho("Error: No nodes replied within time constraint", fg="red", err=True)
        sys.exit(EXIT_NO_REPLY)


def _common(fn: Any) -> Any:
    fn = click.option("-d", "--destination", help="Only these nodes: name@host,name@host.")(fn)
    fn = click.option(
        "-t",
        "--timeout",
        type=float,
        default=1.0,
        show_default=True,
        help="Seconds to wait for replies.",
    )(fn)
    fn = click.option(
        "-j", "--json", "as_json", is_flag=True, help="Print the replies as one JSON object."
    )(fn)
    return fn


@click.command()
@click.argument("command", type=click.Choice(sorted(INSPECT_COMMANDS)))
@click.argument("args", nargs=-1)
@click.option("--safe", is_flag=True, help="Show task args as reprs (active, reserved, scheduled).")
@_common
@click.pass_obj
def inspect(
    obj: Any,
    command: str,
    args: tuple[str, ...],
    safe: bool,
    destination: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Ask workers what they are doing: active, reserved, scheduled, stats, ..."""
    arguments = parse_arguments(command, INSPECT_COMMANDS, args)
    if safe and command in _TASK_LISTS:
        arguments["safe"] = True
    run_remote(obj, command, arguments, destination=destination, timeout=timeout, as_json=as_json)


@click.command()
@click.argument("command", type=click.Choice(sorted(CONTROL_COMMANDS)))
@click.argument("args", nargs=-1)
@click.option("--terminate", is_flag=True, help="revoke: also kill the task if it is running.")
@click.option(
    "--signal", "signal_name", default=None, help="revoke --terminate: signal (default TERM)."
)
@_common
@click.pass_obj
def control(
    obj: Any,
    command: str,
    args: tuple[str, ...],
    terminate: bool,
    signal_name: str | None,
    destination: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Change running workers: events, pool size, limits, consumers, revoke, shutdown."""
    arguments = parse_arguments(command, CONTROL_COMMANDS, args)
    if command == "revoke":
        if not arguments.get("task_id"):
            raise click.UsageError("revoke needs at least one task id")
        arguments.update(terminate=terminate, signal=signal_name or "SIGTERM")
    want_reply = command not in ("shutdown", "heartbeat")
    run_remote(
        obj,
        command,
        arguments,
        destination=destination,
        timeout=timeout,
        as_json=as_json,
        want_reply=want_reply,
    )


@click.command()
@_common
@click.pass_obj
def status(obj: Any, destination: str | None, timeout: float, as_json: bool) -> None:
    """List the workers that answer a ping."""
    run_remote(
        obj, "ping", {}, destination=destination, timeout=timeout, as_json=as_json, show_body=False
    )


@click.command()
@click.argument("node")
@click.argument("processes", type=click.IntRange(min=1))
@click.option("-t", "--timeout", type=float, default=3.0, show_default=True)
@click.option(
    "-j", "--json", "as_json", is_flag=True, help="One JSON object: before, after, reply."
)
@click.pass_obj
def scale(obj: Any, node: str, processes: int, timeout: float, as_json: bool) -> None:
    """Grow or shrink NODE's pool to PROCESSES (pool_grow/pool_shrink by the difference)."""
    before, replies = obj.app.control.scale_pool(node, processes, timeout=timeout)
    if as_json:
        click.echo(
            json.dumps({"node": node, "before": before, "after": processes, "reply": replies})
        )
    if before is None:
        if not as_json:
            click.secho(f"Error: {node} did not answer within {timeout}s", fg="red", err=True)
        sys.exit(EXIT_NO_REPLY)
    if as_json:
        return
    if before == processes:
        click.echo(f"{node}: already {processes} pool processes")
        return
    reply = replies.get(node) or {}
    if "error" in reply:
        click.secho(f"Error: {node}: {reply['error']}", fg="red", err=True)
        sys.exit(1)
    click.echo(f"{node}: {before} -> {processes} pool processes")


COMMANDS = [inspect, control, status, scale]
