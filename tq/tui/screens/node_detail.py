"""NodeDetailScreen: one node's supervisor facts, its pool processes and the tail of its log."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from ...supervisor.managed import tail

if TYPE_CHECKING:
    from ...cluster import WorkerState

#: How often the open detail samples the node's processes and re-reads its log.
REFRESH_S = 2.0
#: Log lines shown at the bottom of the detail.
LOG_TAIL_LINES = 20
#: Supervisor facts shown, in order: (label, key of its ps row).
SUPERVISOR_FIELDS = (
    ("process", "state"),
    ("pid", "pid"),
    ("restarts", "restarts"),
    ("queues", "queues"),
    ("pool", "concurrency"),
    ("log", "log"),
)


@dataclass(frozen=True)
class PoolProcess:
    """One process of a node as sampled: the main process (index 0) or a pool child."""

    pid: int
    cpu_percent: float
    rss_bytes: int
    status: str
    started_at: float


def sample_processes(pid: int, previous: dict[int, psutil.Process]) -> list[PoolProcess]:
    """The node's main process and its children now; previous keeps psutil handles for CPU %."""
    try:
        main = previous.get(pid) or psutil.Process(pid)
        family = [main, *main.children(recursive=True)]
    except psutil.Error:
        return []
    samples = []
    for process in family:
        process = previous.setdefault(process.pid, process)
        try:
            with process.oneshot():
                samples.append(
                    PoolProcess(
                        process.pid,
                        process.cpu_percent(),
                        process.memory_info().rss,
                        process.status(),
                        process.create_time(),
                    )
                )
        except psutil.Error:
            continue  # a child that just exited
    return samples


def node_detail_text(
    name: str,
    row: dict[str, Any] | None,
    worker: WorkerState | None,
    processes: list[PoolProcess],
    log_lines: list[str],
    *,
    now: float,
) -> Text:
    """Everything the console knows of a node, as plain styled text."""
    text = Text()
    text.append(f"{name}\n\n", style="bold")
    if row is None:
        text.append("not supervised on this machine (facts from its events only)\n", style="dim")
    else:
        for label, key in SUPERVISOR_FIELDS:
            value = row.get(key)
            if isinstance(value, list):
                value = ",".join(str(item) for item in value)
            if value not in (None, ""):
                text.append(f"{label:>10}  ", style="bold")
                text.append(f"{value}\n")
    if worker is not None:
        beat = (
            "never" if worker.last_heartbeat is None else f"{now - worker.last_heartbeat:.0f}s ago"
        )
        text.append(f"{'events':>10}  ", style="bold")
        text.append(
            f"{'online' if worker.alive(now) else 'offline'}, active {worker.active}, "
            f"processed {worker.processed}, last heartbeat {beat}\n"
        )
    text.append("\nprocesses\n", style="bold")
    if not processes:
        text.append("  none running on this machine\n", style="dim")
    for index, process in enumerate(processes):
        role = "main" if index == 0 else f"pool {index}"
        text.append(
            f"  {role:<7} pid {process.pid:<8} {process.status:<9} "
            f"cpu {process.cpu_percent:5.1f}%  rss {process.rss_bytes / 2**20:6.1f} MiB  "
            f"up {now - process.started_at:.0f}s\n"
        )
    text.append("\nlog\n", style="bold")
    for line in log_lines or ["(no log lines)"]:
        text.append(f"  {line}\n", style="dim" if not log_lines else "")
    return text


class NodeDetailScreen(Screen[None]):
    """A full screen over the nodes view, refreshed every REFRESH_S; escape goes back."""

    BINDINGS = [Binding("escape,q,i", "app.pop_screen", "Back")]

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node
        self._processes: dict[int, psutil.Process] = {}

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail-scroll"):
            yield Static(Text(self.node, style="bold"), id="node-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_detail()
        self.set_interval(REFRESH_S, self.refresh_detail)

    @work(thread=True, exclusive=True, group="node-detail")
    def refresh_detail(self) -> None:
        """Sample processes and the log off the UI thread, then show them."""
        console: Any = self.app
        row = next((r for r in console.supervisor_view.nodes if r.get("name") == self.node), None)
        with console.feed.lock:
            worker = console.feed.state.workers.get(self.node)
        # An event's pid is only ours to sample when the node runs on this machine.
        local = worker is not None and worker.hostname.endswith(f"@{socket.gethostname()}")
        pid = row.get("pid") if row else (worker.pid if worker and local else None)
        processes = sample_processes(int(pid), self._processes) if pid else []
        log_path = row.get("log") if row else None
        log_lines = tail(Path(log_path), LOG_TAIL_LINES) if log_path else []
        text = node_detail_text(self.node, row, worker, processes, log_lines, now=time.time())
        self.app.call_from_thread(self.query_one("#node-detail", Static).update, text)
