"""StatusBar: workers online, success and failure rates, active tasks, broker connection."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from ... import states
from ...cluster import ClusterState

#: Seconds over which the header's rates are averaged.
RATE_WINDOW_S = 10.0


def status_text(
    state: ClusterState, *, connected: bool | None, live: bool, now: float | None = None
) -> Text:
    """The header line for this state (`live` is False when no broker feeds the console)."""
    now = time.time() if now is None else now
    alive = state.alive_workers(now)
    active = sum(worker.active for worker in alive)
    text = Text()
    text.append(" tq ", style="bold reverse")
    text.append(f"  workers {len(alive)}/{len(state.workers)} up")
    text.append(f"  ok {state.rate(states.SUCCESS, RATE_WINDOW_S, now):.1f}/s", style="green")
    text.append(f"  fail {state.rate(states.FAILURE, RATE_WINDOW_S, now):.1f}/s", style="red")
    text.append(f"  active {active}")
    text.append(f"  tasks {len(state.tasks)}")
    if not live:
        text.append("  ○ no broker", style="dim")
    elif connected is None:
        text.append("  … connecting", style="yellow")
    elif connected:
        text.append("  ● connected", style="green")
    else:
        text.append("  ✖ disconnected", style="bold red")
    return text


class StatusBar(Static):
    """One line at the top of the console."""

    def show(self, text: Text) -> None:
        """Replace the line, only when it changed."""
        if text != getattr(self, "_shown", None):
            self._shown = text
            self.update(text)
