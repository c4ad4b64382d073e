"""`tq logs` and `tq supervisor run|stop`: a node's log, and the supervisor process itself."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..supervisor import ipc
from ..supervisor.managed import tail
from .supervise import make_supervisor, supervisor_options
from .supervisor_client import POLL_S, fetch, log_to_stderr, resolve_run_dir, run_dir_option


@click.command()
@click.argument("node")
@run_dir_option
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing as the log grows (Ctrl-C to stop)."
)
@click.option("-n", "--lines", type=int, default=50, show_default=True)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object: node, log path, last lines."
)
def logs(node: str, run_dir: str | None, follow: bool, lines: int, as_json: bool) -> None:
    """Print the end of a node's log file (and follow it)."""
    rows = fetch(resolve_run_dir(run_dir))["nodes"]
    matches = [row for row in rows if row["name"] == node or row["name"].split("@")[0] == node]
    if not matches:
        raise click.UsageError(
            f"no node named {node!r}; known: {', '.join(r['name'] for r in rows) or 'none'}"
        )
    path = Path(matches[0]["log"])
    if as_json:
        click.echo(
            json.dumps({"node": matches[0]["name"], "log": str(path), "lines": tail(path, lines)})
        )
        return
    for line in tail(path, lines):
        click.echo(line)
    if follow:
        _follow(path)


def _follow(path: Path) -> None:
    handle = open(path, "rb")
    handle.seek(0, 2)
    inode = os.fstat(handle.fileno()).st_ino
    try:
        while True:
            chunk = handle.read()
            if chunk:
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
                continue
            try:
                if os.stat(path).st_ino != inode:  # rotated: read the new file from its start
                    handle.close()
                    handle = open(path, "rb")
                    inode = os.fstat(handle.fileno()).st_ino
                    continue
            except FileNotFoundError:
                pass
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        handle.close()


#: `tq supervisor stop` waits this much longer than the slowest node's --stop-timeout.
STOP_MARGIN_S = 30.0


@click.group()
def supervisor() -> None:
    """The supervisor daemon itself."""


@supervisor.command("run")
@supervisor_options
@click.pass_obj
def supervisor_run(obj: Any, **options: Any) -> None:
    """Run the supervisor in this process (`tq up` starts it in the background for you)."""
    log_to_stderr()
    sys.exit(make_supervisor(obj, options, foreground=False).run())


@supervisor.command("stop")
@run_dir_option
@click.option(
    "--keep-nodes", is_flag=True, help="Leave the nodes running (a new supervisor re-adopts them)."
)
@click.option("--json", "as_json", is_flag=True)
def supervisor_stop(run_dir: str | None, keep_nodes: bool, as_json: bool) -> None:
    """Stop the supervisor (and, warm, its nodes)."""
    directory = resolve_run_dir(run_dir)
    # the supervisor stops once every node has (warm), so wait as long as the slowest may take
    budgets = [row["policy"]["stop_timeout_s"] for row in fetch(directory)["nodes"]]
    wait_s = STOP_MARGIN_S + (0.0 if keep_nodes else max(budgets, default=0.0))
    reply = ipc.request(directory, {"cmd": "stop", "keep_nodes": keep_nodes})
    deadline = time.monotonic() + wait_s
    while ipc.is_running(directory) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    stopped = not ipc.is_running(directory)
    if as_json:
        click.echo(
            json.dumps({"ok": stopped, "pid": reply["pid"], "nodes_left_running": keep_nodes})
        )
    elif stopped:
        click.echo(
            f"supervisor {reply['pid']} stopped" + (" (nodes left running)" if keep_nodes else "")
        )
    else:
        click.secho(
            f"supervisor {reply['pid']} is still stopping after {wait_s:.0f}s "
            "(see `tq ps` and its log)",
            fg="red",
            err=True,
        )
    sys.exit(0 if stopped else 1)


COMMANDS = [logs, supervisor]
