"""NodeTable: workers seen in events, joined with the local supervisor's process rows."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from ...cluster import WorkerState

COLUMNS = (
    ("name", "Node"),
    ("status", "Status"),
    ("active", "Active"),
    ("processed", "Processed"),
    ("load", "Load"),
    ("beat", "Heartbeat"),
    ("proc", "Process"),
    ("pid", "PID"),
    ("restarts", "Restarts"),
    ("cpu", "CPU%"),
    ("rss", "RSS"),
)


@dataclass(frozen=True)
class NodeRow:
    """One node as shown: its event facts and its supervisor facts, either may be missing."""

    name: str
    worker: WorkerState | None
    process: dict[str, Any] | None


def join_nodes(
    workers: dict[str, WorkerState], processes: tuple[dict[str, Any], ...]
) -> list[NodeRow]:
    """Join event workers and supervisor processes by node name, sorted by name."""
    by_name: dict[str, dict[str, Any]] = {str(p.get("name")): p for p in processes}
    names = sorted(set(workers) | set(by_name))
    return [NodeRow(name, workers.get(name), by_name.get(name)) for name in names]


def _mib(value: Any) -> str:
    return f"{int(value) / 2**20:.0f}M" if isinstance(value, int | float) else ""


def node_cells(row: NodeRow, now: float) -> tuple[Text, ...]:
    """The cells of one node row (event facts blank when no event came from it)."""
    worker, process = row.worker, row.process
    if worker is not None and worker.alive(now):
        status = Text("online", style="green")
    elif worker is not None:
        status = Text("offline", style="red")
    else:
        status = Text("no events", style="dim")
    beat = ""
    if worker is not None and worker.last_heartbeat is not None:
        beat = f"{max(0.0, now - worker.last_heartbeat):.0f}s ago"
    load = " ".join(f"{v:.2f}" for v in worker.loadavg[:3]) if worker else ""
    proc = process or {}
    return (
        Text(row.name),
        status,
        Text(str(worker.active) if worker else "", justify="right"),
        Text(str(worker.processed) if worker else "", justify="right"),
        Text(load),
        Text(beat, justify="right"),
        Text(
            str(proc.get("state") or ""), style="bold red" if proc.get("state") == "FATAL" else ""
        ),
        Text(str(proc.get("pid") or ""), justify="right"),
        Text(str(proc.get("restarts", "")), justify="right"),
        Text(
            f"{proc['cpu_percent']:.0f}" if proc.get("cpu_percent") is not None else "",
            justify="right",
        ),
        Text(_mib(proc.get("rss_bytes")), justify="right"),
    )


class NodeTable(DataTable[Text]):
    """A DataTable of nodes keyed by node name."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def selected_node(self) -> str | None:
        """The name of the node under the cursor, if any."""
        if self.row_count == 0:
            return None
        return self.get_cell_at(Coordinate(self.cursor_row, 0)).plain

    def sync(self, rows: list[NodeRow], now: float | None = None) -> None:
        """Make the table show these rows, touching only changed cells; call in batch_update."""
        now = time.time() if now is None else now
        wanted = {row.name for row in rows}
        for key in [key for key in self.rows if key.value not in wanted]:
            self.remove_row(key)
        present = {key.value for key in self.rows}
        added = False
        for row in rows:
            cells = node_cells(row, now)
            if row.name not in present:
                self.add_row(*cells, key=row.name)
                added = True
                continue
            for (column, _label), old, new in zip(
                COLUMNS, self.get_row(row.name), cells, strict=True
            ):
                if old != new:
                    self.update_cell(row.name, column, new)
        if added:
            self.sort("name", key=lambda cell: cell.plain)
