"""ConsoleHeader: connection and workers online, then rates and levels with their sparklines."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from ..history import SERIES, MetricHistory

#: Label of each series beside its sparkline.
LABELS = {"succeeded": "ok", "failed": "fail", "active": "active", "queued": "queued"}


def status_text(
    *, workers_up: int, workers_known: int, tasks: int, connected: bool | None, live: bool
) -> Text:
    """The first header line (`live` is False when no broker feeds the console)."""
    text = Text()
    text.append(" tq ", style="bold reverse")
    if not live:
        text.append("  ○ no broker", style="dim")
    elif connected is None:
        text.append("  … connecting", style="yellow")
    elif connected:
        text.append("  ● connected", style="green")
    else:
        text.append("  ✖ disconnected", style="bold red")
    text.append(f"  workers {workers_up}/{workers_known} up")
    text.append(f"  tasks {tasks:,}")
    return text


def metric_text(name: str, history: MetricHistory) -> str:
    """`ok 12.5/s` for rates (mean of the last samples), `queued 40` for levels."""
    label = LABELS[name]
    if name in ("succeeded", "failed"):
        return f"{label} {history.rate(name):.1f}/s"
    latest = history.latest
    value = None if latest is None else getattr(latest, name)
    return f"{label} {'–' if value is None else f'{value:,}'}"


class MetricCell(Horizontal):
    """One figure and its sparkline of the last minutes."""

    def __init__(self, name: str) -> None:
        super().__init__(id=f"metric-{name}", classes="metric")
        self.metric = name

    def compose(self) -> ComposeResult:
        yield Static(LABELS[self.metric], classes="metric-label", markup=False)
        yield Sparkline([], summary_function=max)


class ConsoleHeader(Vertical):
    """Two lines at the top of the console."""

    def compose(self) -> ComposeResult:
        yield Static(id="status-line", markup=False)
        with Horizontal(id="metrics"):
            for name in SERIES:
                yield MetricCell(name)

    def show_status(self, text: Text) -> None:
        """Replace the status line, only when it changed."""
        if text != getattr(self, "_status", None):
            self._status = text
            self.query_one("#status-line", Static).update(text)

    def show_history(self, history: MetricHistory) -> None:
        """Redraw the figures and sparklines (call when a sample was added)."""
        for cell in self.query(MetricCell):
            cell.query_one(".metric-label", Static).update(metric_text(cell.metric, history))
            cell.query_one(Sparkline).data = list(history.series[cell.metric])
