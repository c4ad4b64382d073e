"""TaskTable: recent tasks, newest first, updated by key only where a cell changed."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from rich.text import Text
from textual.coordinate import Coordinate
from textual.events import Resize
from textual.widgets import DataTable

from ... import states
from ...cluster import LOST, TaskState
from .columns import set_columns

#: Rows kept in the table; older tasks stay in ClusterState (the filter still finds them).
MAX_ROWS = 500
#: Rows past MAX_ROWS before the oldest leave; DataTable.remove_row costs O(rows), so more
#: than REMOVE_ONE_BY_ONE rows leave in one rebuild of the table instead.
TRIM_SLACK = 500
REMOVE_ONE_BY_ONE = 16
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


class TaskIdCell(Text):
    """The short id shown in a row, carrying the full id and the order of arrival."""

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


class TaskTable(DataTable[Text]):
    """A DataTable of tasks keyed by task id."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.filter_text = ""
        self.wide = False
        self._seq_by_id: dict[str, int] = {}
        #: The task each row shows (to redraw it with other columns).
        self._tasks: dict[str, TaskState] = {}
        self._next_seq = 0

    @property
    def column_keys(self) -> list[str]:
        return [key for key, _label, narrow in COLUMNS if self.wide or narrow]

    def on_mount(self) -> None:
        self._set_columns(self.app.size.width >= WIDE_FROM_COLUMNS)

    def on_resize(self, event: Resize) -> None:
        wide = self.app.size.width >= WIDE_FROM_COLUMNS
        if wide != self.wide:
            tasks = [self._tasks[task_id] for task_id in self._seq_by_id]
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

    def _cells(self, task: TaskState) -> tuple[Text, ...]:
        """The row's cells after the id, for the columns shown."""
        name_max, args_max, worker_max = (36, 40, 30) if self.wide else (18, 12, 14)
        runtime = f"{task.runtime:.3f}s" if task.runtime is not None else ""
        cells = [
            Text(_cut(task.name, name_max)),
            Text(task.state, style=STATE_STYLES.get(task.state, "")),
            Text(_cut(task.args, args_max)),
            Text(_cut(task.worker, worker_max)),
        ]
        if self.wide:
            seen = first_seen(task)
            stamp = datetime.fromtimestamp(seen, UTC).strftime("%H:%M:%S.%f")[:-3] if seen else ""
            cells.append(Text(stamp, style="dim"))
        cells.append(Text(runtime, justify="right"))
        return tuple(cells)

    def sync(self, tasks: Iterable[TaskState]) -> None:
        """Add, update or drop the rows of these (changed) tasks; call inside batch_update."""
        new: list[TaskState] = []
        leaving: list[str] = []
        for task in tasks:
            present = task.uuid in self._seq_by_id
            if not task_matches(task, self.filter_text):
                if present:
                    leaving.append(task.uuid)
            elif present:
                self._update(task)
            else:
                new.append(task)
        overflow = len(self._seq_by_id) - len(leaving) + len(new) - MAX_ROWS
        if overflow > TRIM_SLACK:
            leaving += list(self._seq_by_id)[: max(0, overflow - len(new))]
        if len(leaving) > REMOVE_ONE_BY_ONE:
            self._rebuild_from_rows(set(leaving), new)
            return
        for task_id in leaving:
            self._drop(task_id)
        for task in new:
            self._add(task)
        if new:
            self._sort_keeping_cursor()

    def rebuild(self, tasks: Iterable[TaskState]) -> None:
        """Replace every row with the newest MAX_ROWS of these tasks that match the filter."""
        matching = [task for task in tasks if task_matches(task, self.filter_text)]
        self.clear()
        self._seq_by_id.clear()
        self._tasks = {}
        for task in sorted(matching, key=first_seen)[-MAX_ROWS:]:
            self._add(task)
        self.sort("id", key=lambda cell: cell.seq, reverse=True)

    def _rebuild_from_rows(self, leaving: set[str], new: list[TaskState]) -> None:
        """Clear and re-add the newest MAX_ROWS rows: one pass instead of many remove_row."""
        keep = self.selected_task_id() if self.cursor_row > 0 else None
        kept = [self._tasks[task_id] for task_id in self._seq_by_id if task_id not in leaving]
        self.clear()
        self._seq_by_id.clear()
        self._tasks = {}
        for task in [*kept, *new][-MAX_ROWS:]:
            self._add(task)
        self.sort("id", key=lambda cell: cell.seq, reverse=True)
        if keep is not None and keep in self._seq_by_id:
            self.move_cursor(row=self.get_row_index(keep), scroll=False)

    def _add(self, task: TaskState) -> None:
        self._next_seq += 1
        self._seq_by_id[task.uuid] = self._next_seq
        self._tasks[task.uuid] = task
        self.add_row(TaskIdCell(task.uuid, self._next_seq), *self._cells(task), key=task.uuid)

    def _update(self, task: TaskState) -> None:
        self._tasks[task.uuid] = task
        current = self.get_row(task.uuid)
        for column, old, new in zip(
            self.column_keys[1:], current[1:], self._cells(task), strict=True
        ):
            if old != new:
                self.update_cell(task.uuid, column, new)

    def _drop(self, task_id: str) -> None:
        del self._seq_by_id[task_id]
        del self._tasks[task_id]
        self.remove_row(task_id)

    def _sort_keeping_cursor(self) -> None:
        keep = self.selected_task_id() if self.cursor_row > 0 else None
        self.sort("id", key=lambda cell: cell.seq, reverse=True)
        if keep is not None:
            self.move_cursor(row=self.get_row_index(keep), scroll=False)
