"""Presenting the figures: the machine, the comparison table and the JSON file."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from measure import Figures

#: Table rows: (Figures field, label, unit format, higher is better).
METRICS: list[tuple[str, str, str, bool]] = [
    ("enqueue_per_s", "enqueue (tasks/s)", "{:,.0f}", True),
    ("group_enqueue_per_s", "group enqueue (tasks/s)", "{:,.0f}", True),
    ("drain_per_s", "drain (tasks/s)", "{:,.0f}", True),
    ("rtt_p50_ms", "round trip p50 (ms)", "{:.2f}", False),
    ("rtt_p99_ms", "round trip p99 (ms)", "{:.2f}", False),
    ("startup_s", "start-up (s)", "{:.2f}", False),
    ("idle_rss_mb", "idle RSS, node + pool (MB)", "{:.0f}", False),
    ("idle_pss_mb", "idle PSS, node + pool (MB)", "{:.0f}", False),
]


def machine_description() -> dict[str, Any]:
    """Return what the figures depend on: CPUs, Python and library versions."""
    versions = {}
    for package in ("tq", "celery", "kombu", "amqp", "redis", "dramatiq", "pika"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {
        "tq_source": tq_source(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        # Other work on the machine skews every figure: say how busy it was at the start.
        "load_average_1m": round(os.getloadavg()[0], 2),
        "versions": versions,
    }


def tq_source() -> str:
    """Return where the measured tq comes from: its directory and, in a checkout, the commit."""
    spec = importlib.util.find_spec("tq")
    if spec is None or not spec.submodule_search_locations:
        return "not found"
    package_dir = Path(list(spec.submodule_search_locations)[0])
    try:
        commit = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        changes = subprocess.run(
            ["git", "-C", str(package_dir), "status", "--porcelain", "--", "."],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return str(package_dir)
    return f"{package_dir} at {commit}" + (" with uncommitted changes" if changes else "")


def _cell(value: float | None, fmt: str, *, system_figures: Figures | None) -> str:
    if value is None:
        if system_figures is None:
            return "n/a"  # the system was not run
        # A run that did not fail measured everything that applies to it.
        return "[red]failed[/red]" if system_figures.error else "-"
    return fmt.format(value)


def _ratio(tq_value: float | None, other_value: float | None, higher_is_better: bool) -> str:
    if tq_value is None or other_value is None or other_value == 0:
        return "n/a"
    ratio = tq_value / other_value
    better = ratio > 1 if higher_is_better else ratio < 1
    colour = "green" if better else "red" if abs(ratio - 1) > 0.05 else "default"
    return f"[{colour}]{ratio:.2f}×[/{colour}]"


def results_table(
    figures: dict[str, Figures | None], *, broker: str, server: str, sizes: str
) -> Table:
    """Return the comparison table: n/a for a system not run, "-" for a figure not applicable."""
    # Dramatiq's two columns appear only when it was run (installed, on Redis or RabbitMQ).
    others = ["celery"] + (["dramatiq"] if figures.get("dramatiq") else [])
    versus = " and Dramatiq" if len(others) > 1 else ""
    table = Table(
        title=f"tq vs Celery 5{versus} on {broker} ({server}), {sizes}",
        title_justify="left",
        caption="tq/X: above 1× tq does better on a rate (↑), below 1× on a time or memory (↓)",
        caption_justify="left",
    )
    table.add_column("metric")
    table.add_column("tq", justify="right")
    table.add_column("Celery", justify="right")
    table.add_column("tq/Celery", justify="right")
    if "dramatiq" in others:
        table.add_column("Dramatiq", justify="right")
        table.add_column("tq/Dramatiq", justify="right")
    tq_figures = figures.get("tq")
    for field, label, fmt, higher_is_better in METRICS:
        tq_value = getattr(tq_figures, field) if tq_figures else None
        cells = [_cell(tq_value, fmt, system_figures=tq_figures)]
        for name in others:
            system_figures = figures.get(name)
            value = getattr(system_figures, field) if system_figures else None
            cells.append(_cell(value, fmt, system_figures=system_figures))
            cells.append(_ratio(tq_value, value, higher_is_better))
        direction = "↑" if higher_is_better else "↓"
        table.add_row(f"{label} {direction}", *cells)
    return table


def print_report(
    console: Console,
    figures: dict[str, Figures | None],
    *,
    broker: str,
    server: str,
    sizes: str,
    machine: dict[str, Any],
    command: str,
) -> None:
    """Print the table, the machine and the command, then any failure in full."""
    console.print()
    console.print(results_table(figures, broker=broker, server=server, sizes=sizes))
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    console.print(
        f"machine: nproc {machine['nproc']}, load average {machine['load_average_1m']} at start, "
        f"{machine['python']}, {machine['platform']}"
    )
    console.print(f"versions: {versions}; tq from {machine['tq_source']}")
    console.print(f"command: {command}", soft_wrap=True)
    for name, system_figures in figures.items():
        if system_figures and system_figures.error:
            console.print(f"\n[red]{name} failed:[/red]")
            console.print(system_figures.error, markup=False, highlight=False)


def print_rounds(console: Console, rounds: dict[str, list[Figures]]) -> None:
    """Print tq's ratio to each other system round by round, under the table of medians."""
    tq_rounds = rounds.get("tq") or []
    for name, measured in rounds.items():
        if name == "tq" or not measured or not tq_rounds:
            continue
        parts = []
        for field, label, _fmt, _higher in METRICS:
            ratios = [
                f"{getattr(ours, field) / getattr(theirs, field):.2f}"
                for ours, theirs in zip(
                    tq_rounds, measured, strict=False
                )  # a failed system stops early
                if getattr(ours, field) is not None and getattr(theirs, field)
            ]
            if len(ratios) > 1:
                parts.append(f"{label.split(' (')[0]} {', '.join(ratios)}")
        if parts:
            label = f"tq/{name.capitalize()} by round (the table shows medians): "
            console.print(label + "; ".join(parts))


def write_json(
    path: Path,
    figures: dict[str, Figures | None],
    *,
    broker: str,
    server: str,
    settings: dict[str, Any],
    machine: dict[str, Any],
    command: str,
    rounds: dict[str, list[Figures]] | None = None,
) -> None:
    """Write every figure (the medians, and each round's), the settings, the machine and the
    command as JSON."""
    document = {
        "broker": broker,
        "server": server,
        "settings": settings,
        "machine": machine,
        "command": command,
        "results": {
            name: asdict(system_figures) if system_figures else None
            for name, system_figures in figures.items()
        },
        "rounds": {
            name: [asdict(one) for one in measured] for name, measured in (rounds or {}).items()
        },
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def command_line() -> str:
    """Return the command that started this run, as it could be typed again."""
    command = shlex.join([sys.executable, *sys.argv])
    # PYTHONPATH decides which tq is measured (e.g. a snapshot of a commit): keep it.
    pythonpath = os.environ.get("PYTHONPATH")
    return f"PYTHONPATH={shlex.quote(pythonpath)} {command}" if pythonpath else command
