"""TaskTable: recent tasks, newest first, updated by key only where a cell changed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from textual.coordinate import Coordinate
from textual.events import Resize

from ... import states
from ...cluster import LOST, TaskState
from .columns import set_columns
from .live_table import Cell, LiveTable

#: Rows kept in the table; older tasks stay in ClusterState (the filter still finds them).
MAX_ROWS = 500
#: Terminal width from which cells are shown with the wide limits.
WIDE_FROM_COLUMNS = 120

STATE_STYLES = {
    states.PENDING: "dim",
    states.RECEIVED: "blue",
    states.STARTED: "cyan",
    states.RETRY: "yellow",
    states.SUCCESS: "green",
    states.FAILURE: "bold red",
    states.REVOKED: "magenta",
    states.REJECTED: "magenta",
    LOST: "bold yellow",  # its node died while it ran: redelivered or failed later
}
#: (key, label, shown when narrow).
COLUMNS = (
    ("id", "ID", True),
    ("name", "Name", True),
    ("state", "State", True),
    ("args", "Args", True),
    ("worker", "Worker", True),
    ("received", "Received", False),
    ("runtime", "Runtime", True),
)


class TaskIdCell(Cell):
    """The short id shown in a row, carrying the full id and the order of arrival."""

    __slots__ = ("uuid", "seq")

    def __init__(self, uuid: str, seq: int) -> None:
        super().__init__(uuid[:8])
        self.uuid = uuid
        self.seq = seq


def _cut(value: str | None, limit: int) -> str:
    text = value or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def task_matches(task: TaskState, needle: str) -> bool:
    """True when the filter text is in the task's id, name, state or worker (any case)."""
    if not needle:
        return True
    needle = needle.lower()
    return any(
        needle in (part or "").lower() for part in (task.uuid, task.name, task.state, task.worker)
    )


def first_seen(task: TaskState) -> float:
    """When the task was first seen (0 when it has no timeline)."""
    return task.timeline[0][1] if task.timeline else 0.0


class ShownRow:
    """One row: the task it shows, the values its cells were made from, and the cells."""

    __slots__ = ("task", "values", "cells")

    def __init__(self, task: TaskState, values: tuple[Any, ...], cells: list[Cell]) -> None:
        self.task = task
        self.values = values
        self.cells = cells


class TaskTable(LiveTable):
    """A DataTable of tasks keyed by task id."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.filter_text = ""
        self.wide = False
        #: Task id -> its row, in the order the rows were added (oldest first).
        self._rows: dict[str, ShownRow] = {}
        self._next_seq = 0

    @property
    def column_keys(self) -> list[str]:
        return [key for key, _label, narrow in COLUMNS if self.wide or narrow]

    def on_mount(self) -> None:
        self._set_columns(self.app.size.width >= WIDE_FROM_COLUMNS)

    def on_resize(self, event: Resize) -> None:
        wide = self.app.size.width >= WIDE_FROM_COLUMNS
        if wide != self.wide:
            tasks = [row.task for row in self._rows.values()]
            self._set_columns(wide)
            self.rebuild(tasks)

    def _set_columns(self, wide: bool) -> None:
        self.wide = wide
        set_columns(self, COLUMNS, wide=wide)

    def selected_task_id(self) -> str | None:
        """The id of the task under the cursor, if any."""
        if self.row_count == 0:
            return None
        cell = self.get_cell_at(Coordinate(self.cursor_row, 0))
        return cell.uuid if isinstance(cell, TaskIdCell) else None

    def _values(self, task: TaskState) -> tuple[Any, ...]:
        """What the cells after the id are made from, for the columns shown."""
        if self.wide:
            return (task.name, task.state, task.args, task.worker, first_seen(task), task.runtime)
        return (task.name, task.state, task.args, task.worker, task.runtime)

    def _cell(self, column: str, value: Any) -> Cell:
        """The cell of one column showing `value` (as _values gives it)."""
        name_max, args_max, worker_max = (36, 40, 30) if self.wide else (18, 12, 14)
        if column == "name":
            return Cell(_cut(value, name_max))
        if column == "state":
            return Cell(value, style=STATE_STYLES.get(value, ""))
        if column == "args":
            return Cell(_cut(value, args_max))
        if column == "worker":
            return Cell(_cut(value, worker_max))
        if column == "received":
            stamp = datetime.fromtimestamp(value, UTC).strftime("%H:%M:%S.%f")[:-3] if value else ""
            return Cell(stamp, style="dim")
        return Cell(f"{value:.3f}s" if value is not None else "", justify="right")

    def changed_rows(self, tasks: Sequence[TaskState]) -> list[TaskState]:
        """Of these changed tasks (oldest first), those sync would touch: the rows shown and
        the newest MAX_ROWS of the others that match the filter (older ones would leave at once).
        """
        rows = self._rows
        needle = self.filter_text
        wanted: list[TaskState] = []
        room = MAX_ROWS
        for task in reversed(tasks):
            if task.uuid in rows:
                wanted.append(task)
            elif room and task_matches(task, needle):
                wanted.append(task)
                room -= 1
        wanted.reverse()
        return wanted

    def sync(self, tasks: Iterable[TaskState]) -> None:
        """Add, update or drop the rows of these changed tasks (oldest first), then drop the
        oldest rows past MAX_ROWS; call inside batch_update."""
        new: list[TaskState] = []
        leaving: list[str] = []
        for task in tasks:
            row = self._rows.get(task.uuid)
            if not task_matches(task, self.filter_text):
                if row is not None:
                    leaving.append(task.uuid)
            elif row is not None:
                self._update(row, task)
            else:
                new.append(task)
        new = new[-MAX_ROWS:]
        overflow = len(self._rows) - len(leaving) + len(new) - MAX_ROWS
        if overflow > 0:
            gone = set(leaving)
            leaving += [task_id for task_id in self._rows if task_id not in gone][:overflow]
        if not leaving and not new:
            return
        keep = self.selected_task_id() if self.cursor_row > 0 else None
        for task_id in leaving:
            del self._rows[task_id]
        self.remove_rows(leaving)
        self.add_keyed_rows(self._new_row(task) for task in new)
        if new:
            self.sort("id", key=lambda cell: cell.seq, reverse=True)
        if keep is not None and keep in self._rows:  # the selected task stays selected
            self.move_cursor(row=self.get_row_index(keep), scroll=False)

    def rebuild(self, tasks: Iterable[TaskState]) -> None:
        """Replace every row with the newest MAX_ROWS of these tasks that match the filter."""
        matching = [task for task in tasks if task_matches(task, self.filter_text)]
        self.clear()
        self._rows = {}
        self.add_keyed_rows(
            self._new_row(task) for task in sorted(matching, key=first_seen)[-MAX_ROWS:]
        )
        self.sort("id", key=lambda cell: cell.seq, reverse=True)

    def _new_row(self, task: TaskState) -> tuple[str, list[Cell]]:
        """Make the row of a task entering the table: (its key, its cells)."""
        self._next_seq += 1
        values = self._values(task)
        cells: list[Cell] = [TaskIdCell(task.uuid, self._next_seq)]
        cells += [
            self._cell(key, value) for key, value in zip(self.column_keys[1:], values, strict=True)
        ]
        self._rows[task.uuid] = ShownRow(task, values, cells)
        return task.uuid, cells

    def _update(self, row: ShownRow, task: TaskState) -> None:
        row.task = task
        values = self._values(task)
        if values == row.values:
            return
        for index, (column, old, new) in enumerate(
            zip(self.column_keys[1:], row.values, values, strict=True), start=1
        ):
            if old == new:
                continue
            cell = self._cell(column, new)
            if cell != row.cells[index]:
                row.cells[index] = cell
                self.update_cell(task.uuid, column, cell)
        row.values = values
