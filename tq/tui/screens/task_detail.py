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


def section_line(text: Text, section: str) -> int | None:
    """The line where a section of detail_text starts ("result", "traceback"), if present."""
    for number, line in enumerate(text.plain.splitlines()):
        if line == section or line.strip().startswith(f"{section}  "):
            return number
    return None


class TaskDetailScreen(Screen[None]):
    """A full screen over the tasks view, scrolled to a section; escape goes back."""

    BINDINGS = [
        Binding("escape,q,i", "app.pop_screen", "Back"),
        Binding("s", "resend", "Re-send"),
    ]

    def __init__(self, task: TaskState, section: str | None = None) -> None:
        super().__init__()
        self.task_state = task
        self.section = section

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail-scroll"):
            yield Static(detail_text(self.task_state), id="detail")
        yield Footer()

    def on_mount(self) -> None:
        if self.section is None:
            return
        line = section_line(detail_text(self.task_state), self.section)
        if line is not None:  # after the first layout: before it there is nothing to scroll
            scroll = self.query_one(VerticalScroll)
            self.call_after_refresh(scroll.scroll_to, y=line, animate=False)

    async def action_resend(self) -> None:
        """Re-send this task with its arguments (the app asks first)."""
        await self.app.run_action(f"resend_task({self.task_state.uuid!r})")
