"""TaskDetailScreen: one task's arguments, outcome, traceback and timeline."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from ...cluster import TaskState
from ..widgets.task_table import STATE_STYLES


def detail_text(task: TaskState) -> Text:
    """Everything known of a task, as plain styled text (no markup from task data)."""
    text = Text()
    text.append(f"{task.name or '?'}  ", style="bold")
    text.append(task.state, style=STATE_STYLES.get(task.state, ""))
    text.append(f"\n{task.uuid}\n\n", style="dim")
    fields = [
        ("worker", task.worker),
        ("args", task.args),
        ("kwargs", task.kwargs),
        ("retries", None if task.retries is None else str(task.retries)),
        ("eta", task.eta),
        ("expires", task.expires),
        ("parent", task.parent_id),
        ("root", task.root_id),
        ("runtime", None if task.runtime is None else f"{task.runtime:.4f}s"),
        ("result", task.result),
        ("exception", task.exception),
    ]
    for label, value in fields:
        if value is not None:
            text.append(f"{label:>10}  ", style="bold")
            text.append(f"{value}\n")
    if task.traceback:
        text.append("\ntraceback\n", style="bold red")
        text.append(task.traceback.rstrip() + "\n")
    text.append("\ntimeline\n", style="bold")
    for state, moment in task.timeline:
        # UTC, as `tq events --dump` prints times
        stamp = datetime.fromtimestamp(moment, UTC).isoformat(sep=" ", timespec="milliseconds")
        text.append(f"  {stamp}  ")
        text.append(f"{state}\n", style=STATE_STYLES.get(state, ""))
    return text


class TaskDetailScreen(Screen[None]):
    """A full screen over the tasks view; escape goes back."""

    BINDINGS = [Binding("escape,q,i", "app.pop_screen", "Back")]

    def __init__(self, task: TaskState) -> None:
        super().__init__()
        self.task_state = task

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail-scroll"):
            yield Static(detail_text(self.task_state), id="detail")
        yield Footer()
