"""QueueTable: depth, flow rates and consumers of each queue, updated by key where a cell changed."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from ..queue_board import QueueRow

COLUMNS = (
    ("name", "Queue"),
    ("ready", "Ready"),
    ("received", "Recv/s"),
    ("done", "Done/s"),
    ("consumers", "Consumers"),
    ("nodes", "Nodes"),
)
#: Terminal width from which node names are listed in full.
WIDE_FROM_COLUMNS = 120
#: Characters of the node list at narrower widths.
NARROW_NODES_CHARS = 22


def _rate(value: float) -> Text:
    return Text(f"{value:.1f}" if value else "0", justify="right", style="" if value else "dim")


def queue_cells(row: QueueRow, *, wide: bool) -> tuple[Text, ...]:
    """The cells of one queue row."""
    if not row.exists:
        ready = Text("missing", style="red", justify="right")
    elif row.messages is None:
        ready = Text("?", style="dim", justify="right")
    else:
        ready = Text(f"{row.messages:,}", justify="right", style="bold" if row.messages else "")
    count = len(row.nodes) if row.nodes else row.broker_consumers
    consumers = Text(
        "" if count is None else str(count),
        justify="right",
        style="bold red" if count == 0 and row.messages else "",
    )
    nodes = ", ".join(row.nodes)
    if not wide and len(nodes) > NARROW_NODES_CHARS:
        nodes = nodes[: NARROW_NODES_CHARS - 1] + "…"
    return (
        Text(row.name),
        ready,
        _rate(row.received_per_s),
        _rate(row.done_per_s),
        consumers,
        Text(nodes, style="dim"),
    )


class QueueTable(DataTable[Text]):
    """A DataTable of queues keyed by queue name."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def sync(self, rows: list[QueueRow]) -> None:
        """Make the table show these rows (sorted by name), touching only changed cells."""
        wide = self.app.size.width >= WIDE_FROM_COLUMNS
        wanted = {row.name for row in rows}
        for key in [key for key in self.rows if key.value not in wanted]:
            self.remove_row(key)
        present = {key.value for key in self.rows}
        added = False
        for row in rows:
            cells = queue_cells(row, wide=wide)
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
