"""Talking to a node supervisor from the CLI: its run directory, its table, waiting on its nodes."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from ..supervisor import ipc, nodes
from ..supervisor.managed import BACKOFF, FATAL, RUNNING, STOPPED

#: How often the CLI asks the supervisor for its table while it waits on nodes.
POLL_S = 0.2


def resolve_run_dir(value: str | None) -> Path:
    """--run-dir, else $TQ_RUN_DIR, else <data dir>/run (the data dir is $TQ_DATA_DIR or ./.tq)."""
    if value:
        return Path(value).expanduser().resolve()
    if os.environ.get("TQ_RUN_DIR"):
        return Path(os.environ["TQ_RUN_DIR"]).expanduser().resolve()
    return (Path(os.environ.get("TQ_DATA_DIR") or ".tq").expanduser() / "run").resolve()


def run_dir_option(fn: Any) -> Any:
    return click.option(
        "--run-dir", help="Supervisor run directory (default: .tq/run, or $TQ_RUN_DIR)."
    )(fn)


def global_words(obj: Any) -> list[str]:
    """The -A/-b/... given to `tq`, as node options for the multi grammar."""
    return nodes.global_words(
        app=obj.app_spec, broker=obj.broker, result_backend=obj.result_backend, workdir=obj.workdir
    )


def add_active_counts(obj: Any, rows: list[dict[str, Any]], ask: list[str] | None = None) -> None:
    """Ask nodes (the running ones by default) how many tasks they execute; needs -A."""
    running = ask if ask is not None else [row["name"] for row in rows if row["state"] == RUNNING]
    for row in rows:
        row["active"] = None
    if not running or obj is None or not obj.app_spec:
        return
    try:
        replies = obj.app.control.call("active", destination=running, timeout=1.0)
    except Exception:  # a monitor must still show the table when the broker is away
        return
    for row in rows:
        reply = replies.get(row["name"])
        if isinstance(reply, list):
            row["active"] = len(reply)


def fetch(run_dir: Path) -> dict[str, Any]:
    return ipc.request(run_dir, {"cmd": "ps"})


def ensure_supervisor(run_dir: Path, obj: Any) -> None:
    """If the supervisor died while its table still names node processes, start one to re-adopt them."""
    if ipc.is_running(run_dir):
        return
    try:
        entries = json.loads((run_dir / "state.json").read_text()).get("nodes", [])
    except (OSError, ValueError):
        return
    if not any(entry.get("identity") for entry in entries):
        return  # stopped on purpose (or never started): nothing to adopt
    from ..supervisor.rundir import start_in_background

    words = global_words(obj) if obj is not None and obj.app_spec else []
    start_in_background(
        [sys.executable, "-m", "tq", *words, "supervisor", "run", f"--run-dir={run_dir}"], run_dir
    )


def wait_for(
    run_dir: Path,
    names: list[str],
    *,
    done: Any,
    timeout_s: float,
    console: Console,
    label: Any,
    on_poll: Any = None,
) -> bool:
    """Poll until done(row) holds for every named node, printing each once it does."""
    pending = set(names)
    ok = True
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        if on_poll is not None:
            on_poll(pending)
        for row in fetch(run_dir)["nodes"]:
            if row["name"] in pending:
                verdict = done(row)
                if verdict is not None:
                    pending.discard(row["name"])
                    ok = ok and verdict
                    console.print(
                        f"> {escape(row['name'])}: {label(row, verdict)}", highlight=False
                    )
        time.sleep(POLL_S)
    for name in sorted(pending):
        console.print(
            f"> {escape(name)}: [red]TIMED OUT[/] after {timeout_s:.0f}s", highlight=False
        )
    return ok and not pending


def online_verdict(row: dict[str, Any]) -> bool | None:
    if row["state"] == RUNNING:
        return True
    if row["state"] in (FATAL, STOPPED) or (row["state"] == BACKOFF and row["last_exit"]):
        return False
    return None


def online_label(row: dict[str, Any], verdict: bool) -> str:
    if verdict:
        return "[green]OK[/]"
    return f"[red]FAILED[/] ({escape(str(row['last_exit']))}; see {escape(row['log'])})"


def log_to_stderr() -> None:
    import logging

    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s: %(levelname)s/supervisor] %(message)s"
    )
