"""NodeTable: workers seen in events, joined with the local supervisor's process rows."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.coordinate import Coordinate
from textual.events import Resize
from textual.widgets import DataTable

from ...cluster import WorkerState
from .columns import set_columns

#: Terminal width from which every column is shown (below it, the ones that matter most).
WIDE_FROM_COLUMNS = 120
#: (key, label, shown when narrow); keys index node_cells().
COLUMNS = (
    ("name", "Node", True),
    ("status", "Status", True),
    ("proc", "Process", True),
    ("pid", "PID", True),
    ("uptime", "Up", False),
    ("restarts", "Rst", False),
    ("queues", "Queues", False),
    ("conc", "Conc", False),
    ("active", "Act", True),
    ("processed", "Done", True),
    ("load", "Load", False),
    ("beat", "Beat", True),
    ("cpu", "CPU%", True),
    ("rss", "RSS", True),
)
PROCESS_STYLES = {"RUNNING": "green", "STARTING": "cyan", "BACKOFF": "yellow", "FATAL": "bold red"}


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
    return f"{int(value) / 2**20:.0f}M" if isinstance(value, int | float) and value else ""


def _uptime(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return ""
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s"


def node_cells(row: NodeRow, now: float) -> dict[str, Text]:
    """Every cell of one node row by column key (event facts blank when no event came from it)."""
    worker, proc = row.worker, row.process or {}
    if worker is not None and worker.alive(now):
        status = Text("online", style="green")
    elif worker is not None:
        status = Text("offline", style="red")
    else:
        status = Text("no events", style="dim")
    beat = ""
    if worker is not None and worker.last_heartbeat is not None:
        beat = f"{max(0.0, now - worker.last_heartbeat):.0f}s"
    state = str(proc.get("state") or "")
    cpu = proc.get("cpu_percent")

    def right(value: object) -> Text:
        return Text("" if value is None else str(value), justify="right")

    return {
        "name": Text(row.name),
        "status": status,
        "proc": Text(state, style=PROCESS_STYLES.get(state, "dim")),
        "pid": right(proc.get("pid") or ""),
        "uptime": right(_uptime(proc.get("uptime_s"))),
        "restarts": right(proc.get("restarts", "")),
        "queues": Text(str(proc.get("queues") or "")),
        "conc": right(proc.get("concurrency", "")),
        "active": right(worker.active if worker else ""),
        "processed": right(worker.processed if worker else ""),
        "load": Text(" ".join(f"{v:.2f}" for v in worker.loadavg[:3]) if worker else ""),
        "beat": right(beat),
        "cpu": right(f"{cpu:.0f}" if isinstance(cpu, int | float) and proc.get("pid") else ""),
        "rss": right(_mib(proc.get("rss_bytes"))),
    }


class NodeTable(DataTable[Text]):
    """A DataTable of nodes keyed by node name; fewer columns in a narrow terminal."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.wide: bool | None = None
        self._shown: tuple[list[NodeRow], float] = ([], 0.0)

    @property
    def column_keys(self) -> list[str]:
        return [key for key, _label, narrow in COLUMNS if self.wide or narrow]

    def on_mount(self) -> None:
        self._set_columns(self.app.size.width >= WIDE_FROM_COLUMNS)

    def on_resize(self, event: Resize) -> None:
        wide = self.app.size.width >= WIDE_FROM_COLUMNS
        if wide != self.wide:
            self._set_columns(wide)
            self.sync(*self._shown)

    def _set_columns(self, wide: bool) -> None:
        self.wide = wide
        set_columns(self, COLUMNS, wide=wide)

    def selected_node(self) -> str | None:
        """The name of the node under the cursor, if any."""
        if self.row_count == 0:
            return None
        return self.get_cell_at(Coordinate(self.cursor_row, 0)).plain

    def sync(self, rows: list[NodeRow], now: float | None = None) -> None:
        """Make the table show these rows, touching only changed cells; call in batch_update."""
        now = time.time() if now is None else now
        self._shown = (rows, now)
        keys = self.column_keys
        wanted = {row.name for row in rows}
        for key in [key for key in self.rows if key.value not in wanted]:
            self.remove_row(key)
        present = {key.value for key in self.rows}
        added = False
        for row in rows:
            every = node_cells(row, now)
            cells = [every[key] for key in keys]
            if row.name not in present:
                self.add_row(*cells, key=row.name)
                added = True
                continue
            for column, old, new in zip(keys, self.get_row(row.name), cells, strict=True):
                if old != new:
                    self.update_cell(row.name, column, new)
        if added:
            self.sort("name", key=lambda cell: cell.plain)
