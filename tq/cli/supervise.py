"""`tq up / ps / restart / down / kill`: start, show, restart and stop the supervised nodes."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..supervisor import ipc
from ..supervisor.managed import FATAL, RUNNING, STOPPED
from ..supervisor.nodes import expand_nodes
from .supervisor_client import (
    add_active_counts,
    ensure_supervisor,
    fetch,
    global_words,
    log_to_stderr,
    online_label,
    online_verdict,
    resolve_run_dir,
    run_dir_option,
    wait_for,
)

_STATE_COLOURS = {
    "RUNNING": "green",
    "STARTING": "cyan",
    "BACKOFF": "yellow",
    "STOPPING": "yellow",
    "STOPPED": "dim",
    "FATAL": "red",
}
#: While nodes drain, `tq down` reports their running tasks this often.
IN_FLIGHT_REPORT_S = 2.0


#: The supervisor's own options, shared by `tq up` and `tq supervisor run`: (flag, click kwargs).
_SUPERVISOR_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    (
        "--log-max-bytes",
        {"type": int, "default": 10 << 20, "help": "Rotate a node's log past this size."},
    ),
    ("--log-backups", {"type": int, "default": 5, "help": "Rotated logs kept per node."}),
]


def supervisor_options(fn: Any) -> Any:
    """Add the supervisor's options (and --run-dir, --reload) to a command."""
    for flag, kwargs in reversed(_SUPERVISOR_OPTIONS):
        fn = click.option(flag, show_default=True, **kwargs)(fn)
    fn = click.option(
        "--reload", "reload_", is_flag=True, help="Rolling restart when the app's .py files change."
    )(fn)
    fn = click.option(
        "--no-record-events",
        is_flag=True,
        help="Do not append the cluster's events to the event log (<data dir>/events).",
    )(fn)
    return run_dir_option(fn)


def _option_words(options: dict[str, Any]) -> list[str]:
    """The same options as words, for the command line of a background supervisor."""
    words = [f"--run-dir={resolve_run_dir(options['run_dir'])}"]
    for flag, _ in _SUPERVISOR_OPTIONS:
        words.append(f"{flag}={options[flag.lstrip('-').replace('-', '_')]}")
    words += ["--no-record-events"] if options.get("no_record_events") else []
    return [*words, *(["--reload"] if options["reload_"] else [])]


def make_supervisor(obj: Any, options: dict[str, Any], *, foreground: bool) -> Any:
    """Build the daemon from the options (its node events go out through the app, if any)."""
    from ..eventlog import default_event_dir
    from ..supervisor.daemon import Supervisor
    from ..supervisor.notices import NodeNotices
    from ..supervisor.recorder import EventRecorder

    run_dir = resolve_run_dir(options["run_dir"])
    app = obj.app if obj.app_spec else None
    return Supervisor(
        run_dir=run_dir,
        cwd=os.getcwd(),
        foreground=foreground,
        reload=options["reload_"],
        log_max_bytes=options["log_max_bytes"],
        log_backups=options["log_backups"],
        notices=NodeNotices(app),
        recorder=EventRecorder(
            None if options.get("no_record_events") else app, default_event_dir(run_dir.parent)
        ),
    )


#: How each node is kept alive: node options of the multi grammar, like -Q (supervisor/policy.py).
UP_EPILOG = """\b
Restart policy, per node like any node option (--restart:1,2=forever):
  --restart=on-failure|forever   forever: never FATAL, retry at most every 60 s
  --start-secs=1                 up (and ready) this long = started
  --stop-timeout=60              warm-stop budget before KILL, s
  --backoff-start=1              first crash-restart delay, doubling to 60 s
"""


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, epilog=UP_EPILOG
)
@click.argument("node_args", nargs=-1, type=click.UNPROCESSED)
@supervisor_options
@click.option(
    "--foreground", is_flag=True, help="Run the supervisor here (for systemd, Type=notify)."
)
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=60.0,
    show_default=True,
    help="Wait this long for nodes.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def up(
    obj: Any,
    node_args: tuple[str, ...],
    foreground: bool,
    wait_s: float,
    as_json: bool,
    **options: Any,
) -> None:
    """Start (or change) supervised nodes: `tq -A proj up 10 -Q:1-3 images -c 2`."""
    if not obj.app_spec:
        raise click.UsageError("tq up needs the app: tq -A proj up N ...")
    directory = resolve_run_dir(options["run_dir"])
    argv = [*global_words(obj), *node_args] if node_args else []
    if argv:
        expand_nodes(argv)  # a grammar error is said here, before any supervisor starts
    if foreground:
        log_to_stderr()
        sys.exit(make_supervisor(obj, options, foreground=True).run(initial_argv=argv))
    if not ipc.is_running(directory):
        from ..supervisor.rundir import start_in_background

        command = [
            sys.executable,
            "-m",
            "tq",
            *global_words(obj),
            "supervisor",
            "run",
            *_option_words(options),
        ]
        start_in_background(command, directory)
    reply = ipc.request(directory, {"cmd": "up", "argv": argv})
    changes = reply.get("changes") or {}
    wanted = {name for kind, names in changes.items() if kind != "removed" for name in names}
    names = [row["name"] for row in fetch(directory)["nodes"] if row["name"] in wanted]
    console = Console(highlight=False, file=sys.stderr if as_json else sys.stdout)
    ok = wait_for(
        directory, names, done=online_verdict, timeout_s=wait_s, console=console, label=online_label
    )
    if as_json:
        click.echo(json.dumps({**fetch(directory), "ok": ok, "changes": reply.get("changes")}))
    sys.exit(0 if ok else 1)


def _size(num: int) -> str:
    return f"{num / (1 << 20):.0f}M" if num else "-"


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s"


@click.command()
@run_dir_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def ps(obj: Any, run_dir: str | None, as_json: bool) -> None:
    """Show the supervised nodes: state, pid, uptime, restarts, queues, CPU, memory, log."""
    directory = resolve_run_dir(run_dir)
    ensure_supervisor(directory, obj)
    reply = fetch(directory)
    add_active_counts(obj, reply["nodes"])
    if as_json:
        click.echo(json.dumps(reply))
        return
    table = Table(box=None, padding=(0, 1), header_style="bold")
    for column in (
        "NODE",
        "PID",
        "STATE",
        "UPTIME",
        "RST",
        "QUEUES",
        "CONC",
        "ACT",
        "CPU%",
        "RSS",
        "LOG",
    ):
        table.add_column(column, no_wrap=column != "QUEUES")
    for row in reply["nodes"]:
        colour = _STATE_COLOURS.get(row["state"], "default")
        table.add_row(
            escape(row["name"]),
            str(row["pid"] or "-"),
            f"[{colour}]{row['state']}[/]",
            _uptime(row["uptime_s"]),
            str(row["restarts"]),
            escape(str(row["queues"])),
            str(row["concurrency"]),
            "-" if row["active"] is None else str(row["active"]),
            f"{row['cpu_percent']:.0f}",
            _size(row["rss_bytes"]),
            escape(os.path.basename(row["log"])),  # the full path: --json, or `tq logs NODE`
        )
    console = Console(highlight=False)
    console.print(table)
    for row in reply["nodes"]:
        if row["state"] == FATAL:
            console.print(
                f"\n[red]{escape(row['name'])} is FATAL[/] ({escape(str(row['last_exit']))}); "
                "last lines of its log:"
            )
            for line in row["fatal_log"]:
                console.print(f"  {escape(line)}", highlight=False)
    for row in reply["nodes"]:
        if row.get("log_error"):  # a node keeps running when its log cannot be written
            console.print(f"[red]{escape(row['name'])}: log error:[/] {escape(row['log_error'])}")
    if not reply["nodes"]:
        console.print("no nodes: start some with `tq -A proj up N`")


@click.command()
@click.argument("nodes", nargs=-1)
@run_dir_option
@click.option("--wait", "wait_s", type=float, default=120.0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def restart(nodes: tuple[str, ...], run_dir: str | None, wait_s: float, as_json: bool) -> None:
    """Rolling restart: one node at a time, each after its warm shutdown (all nodes by default)."""
    directory = resolve_run_dir(run_dir)
    before = {row["name"]: row["pid"] for row in fetch(directory)["nodes"]}
    reply = ipc.request(directory, {"cmd": "restart", "nodes": list(nodes)})
    console = Console(highlight=False, file=sys.stderr if as_json else sys.stdout)

    def restarted(row: dict[str, Any]) -> bool | None:
        if row["pid"] and row["pid"] != before.get(row["name"]) and row["state"] == RUNNING:
            return True
        return False if row["state"] == FATAL else None

    ok = wait_for(
        directory,
        reply["nodes"],
        done=restarted,
        timeout_s=wait_s,
        console=console,
        label=online_label,
    )
    if as_json:
        click.echo(json.dumps({**fetch(directory), "ok": ok}))
    sys.exit(0 if ok else 1)


@click.command()
@click.argument("nodes", nargs=-1)
@run_dir_option
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="Warm stop budget before KILL, s (default: each node's --stop-timeout).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def down(
    obj: Any, nodes: tuple[str, ...], run_dir: str | None, timeout: float | None, as_json: bool
) -> None:
    """Warm stop: TERM, wait for running tasks, KILL after --timeout (all nodes by default)."""
    directory = resolve_run_dir(run_dir)
    reply = ipc.request(directory, {"cmd": "down", "nodes": list(nodes), "timeout": timeout})
    budget_s = timeout
    if budget_s is None:
        budgets = [row["policy"]["stop_timeout_s"] for row in fetch(directory)["nodes"]]
        budget_s = max(budgets, default=0.0)
    console = Console(highlight=False, file=sys.stderr if as_json else sys.stdout)
    last_report = [0.0]

    def report_in_flight(pending: set[str]) -> None:
        # While nodes drain, say how much work is still running (needs -A to ask them).
        if time.monotonic() - last_report[0] < IN_FLIGHT_REPORT_S:
            return
        last_report[0] = time.monotonic()
        rows = [row for row in fetch(directory)["nodes"] if row["name"] in pending]
        add_active_counts(obj, rows, ask=[row["name"] for row in rows])
        for row in rows:
            if row["active"] is not None:
                console.print(
                    f"  {escape(row['name'])}: {row['active']} task(s) still running",
                    highlight=False,
                )

    ok = wait_for(
        directory,
        reply["nodes"],
        done=lambda row: True if row["state"] == STOPPED else None,
        timeout_s=budget_s + 10,
        console=console,
        label=lambda row, verdict: "DOWN",
        on_poll=report_in_flight,
    )
    if as_json:
        click.echo(json.dumps({**fetch(directory), "ok": ok}))
    sys.exit(0 if ok else 1)


@click.command()
@click.argument("nodes", nargs=-1)
@run_dir_option
@click.option("--json", "as_json", is_flag=True)
def kill(nodes: tuple[str, ...], run_dir: str | None, as_json: bool) -> None:
    """SIGKILL nodes and their pool processes at once (work in flight is lost or redelivered)."""
    reply = ipc.request(resolve_run_dir(run_dir), {"cmd": "kill", "nodes": list(nodes)})
    if as_json:
        click.echo(json.dumps(reply))
        return
    for name in reply["nodes"]:
        click.echo(f"> {name}: KILLED")


COMMANDS = [up, ps, restart, down, kill]
