"""ConsoleApp: the tasks, nodes, queues and events views over an EventFeed, refreshed at most 10 Hz."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.widgets import Footer, Input, RichLog, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from ..queues import configured_queues, routed_queue
from .actions import ConsoleActions
from .feed import MAX_EVENT_LINES, EventFeed, consume_events
from .history import SAMPLE_INTERVAL_S, MetricHistory, Totals
from .operations import ConsoleOperations, SupervisorView
from .queue_board import QueueBoard
from .widgets.header import ConsoleHeader, status_text
from .widgets.node_table import NodeTable, join_nodes
from .widgets.queue_table import QueueTable
from .widgets.task_table import MAX_ROWS, TaskTable, first_seen

if TYPE_CHECKING:
    from ..app import App as TQApp
    from ..cluster import TaskState

#: Seconds between UI refreshes: events are folded at any rate, shown at most 10 times a second.
REFRESH_INTERVAL_S = 0.1
#: Seconds between redraws of the nodes view when no event changed it (heartbeat ages).
NODES_AGE_REFRESH_S = 1.0
#: Seconds between asking the local supervisor for its process table.
SUPERVISOR_POLL_S = 2.0
#: Seconds between asking the broker for queue depths.
QUEUE_POLL_S = 2.0
#: Seconds between asking the workers which queues they consume (sooner when workers change).
CONSUMERS_REFRESH_S = 30.0
#: Changed tasks remembered while the tasks view is hidden; past this it is rebuilt when shown.
HIDDEN_CHANGES_MAX = 2 * MAX_ROWS


class ConsoleApp(ConsoleActions):
    """The live operations console."""

    CSS_PATH = "console.tcss"
    TITLE = "tq console"

    def __init__(
        self,
        feed: EventFeed,
        *,
        tq_app: TQApp | None = None,
        run_dir: Path | None = None,
        view: str = "tasks",
        event_colours: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.feed = feed
        self.tq_app = tq_app
        self.operations = ConsoleOperations(tq_app, run_dir, online=self._online_count)
        self.supervisor_view = SupervisorView(reason="asking the supervisor...")
        self.initial_view = view
        self.event_colours = event_colours or {}
        #: Wall time for ages and samples (tests and replays set their own).
        self.clock = clock
        self.history = MetricHistory()
        self.queue_board = QueueBoard()
        self.refresh_count = 0
        self._supervisor_changed = True
        self._nodes_shown_at = 0.0
        self._consumers_asked: tuple[float, frozenset[str]] | None = None
        self._queue_names: dict[str | None, str | None] = {}
        # Hidden views are not redrawn: what they missed is applied when they are shown again.
        self._hidden_task_ids: set[str] = set()
        self._tasks_stale = False
        self._log_stale = False
        if tq_app is not None:
            feed.queue_flow.resolve = self._resolve_queue

    def compose(self) -> ComposeResult:
        yield ConsoleHeader(id="header")
        with TabbedContent(initial=self.initial_view, id="views"):
            with TabPane("1 Tasks", id="tasks"):
                yield TaskTable(id="task-table")
                yield Input(placeholder="filter by id, name, state or worker", id="filter")
            with TabPane("2 Nodes", id="nodes"):
                yield NodeTable(id="node-table")
                yield Static(id="node-hint", markup=False)
            with TabPane("3 Queues", id="queues"):
                yield QueueTable(id="queue-table")
                yield Static(id="queue-hint", markup=False)
            with TabPane("4 Events", id="events"):
                yield RichLog(id="event-log", max_lines=MAX_EVENT_LINES, wrap=False)
        yield Footer()

    def on_mount(self) -> None:
        tasks, lines = self.feed.snapshot()
        self.query_one(TaskTable).rebuild(tasks)
        self._write_lines(lines)
        self._refresh_nodes()
        self._refresh_queues()
        self._show_status()
        self.sample_history()
        self.set_interval(REFRESH_INTERVAL_S, self.refresh_views)
        self.set_interval(SAMPLE_INTERVAL_S, self.sample_history)
        self.set_interval(SUPERVISOR_POLL_S, self.poll_supervisor)
        self.poll_supervisor()
        if self.tq_app is not None:
            self.consume()
            self.set_interval(QUEUE_POLL_S, self.poll_queues)
            self.poll_queues()
        self.query_one(TaskTable).focus()

    # -- background I/O -------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="events", exit_on_error=False)
    def consume(self) -> None:
        """Fold the broker's events into the feed until the app exits."""
        assert self.tq_app is not None
        worker = get_current_worker()
        consume_events(self.tq_app, self.feed, lambda: worker.is_cancelled)

    @work(thread=True, exclusive=True, group="supervisor", exit_on_error=False)
    def poll_supervisor(self) -> None:
        """Ask the local supervisor for its nodes (the UI picks the answer up on its tick)."""
        view = self.operations.supervisor()
        if view != self.supervisor_view:
            self.supervisor_view = view
            self._supervisor_changed = True

    @work(thread=True, exclusive=True, group="queues", exit_on_error=False)
    def poll_queues(self) -> None:
        """Ask the workers who consumes what (now and then) and the broker how deep each queue is."""
        assert self.tq_app is not None
        now = time.monotonic()
        with self.feed.lock:
            online = frozenset(worker.hostname for worker in self.feed.state.alive_workers())
        asked = self._consumers_asked
        if asked is None or asked[1] != online or now - asked[0] >= CONSUMERS_REFRESH_S:
            self._consumers_asked = (now, online)
            try:
                self.queue_board.set_consumers(self.operations.active_queues())
                self._queue_names.clear()  # a worker's queues changed: resolve again
            except Exception:  # noqa: BLE001 - the depth query below reports the broker's state
                self._consumers_asked = None
        try:
            names = self.queue_board.names(self._known_queue_names())
            self.queue_board.set_depths(self.operations.queue_depths(names))
        except Exception as exc:  # noqa: BLE001 - any broker failure is shown, then retried
            self.queue_board.set_depths((), error=f"broker unreachable: {exc}")

    def _known_queue_names(self) -> list[str]:
        names = configured_queues(self.tq_app) if self.tq_app is not None else []
        for node in self.supervisor_view.nodes:
            names += [name for name in str(node.get("queues") or "").split(",") if name]
        return names

    def _online_count(self) -> int:
        with self.feed.lock:
            return len(self.feed.state.alive_workers())

    def _resolve_queue(self, name: str | None, hostname: str | None) -> str | None:
        """The queue of a task event without one: its worker's only queue, else its route."""
        if hostname:
            queues = self.queue_board.queues_of(hostname)
            if len(queues) == 1:
                return queues[0]
        if name not in self._queue_names:
            known = routed_queue(self.tq_app, name) if self.tq_app is not None and name else None
            self._queue_names[name] = known
        return self._queue_names[name]

    # -- the refresh tick -------------------------------------------------------------------

    def refresh_views(self) -> None:
        """Apply what changed since the last tick, in one batch."""
        try:
            self._apply_changes()
        except NoMatches:
            pass  # a tick that fires while the app tears its widgets down: nothing left to update

    def _apply_changes(self) -> None:
        changes = self.feed.take_changes()
        supervisor_changed, self._supervisor_changed = self._supervisor_changed, False
        queues_changed = self.queue_board.take_changed()
        # Heartbeat ages and offline verdicts change with time alone, not only with events.
        now = time.monotonic()
        if now - self._nodes_shown_at >= NODES_AGE_REFRESH_S:
            supervisor_changed = True
        self._show_status()
        if not changes and not supervisor_changed and not queues_changed:
            return
        self.refresh_count += 1
        view = self.current_view
        task_ids = changes.task_ids
        if view != "tasks":
            self._remember_hidden(task_ids)
            task_ids = set()
        tasks = self._task_copies(task_ids)
        with self.batch_update():
            if tasks:
                self.query_one(TaskTable).sync(tasks)
            if changes.workers_changed or supervisor_changed:
                self._refresh_nodes()
                self._nodes_shown_at = now
            if queues_changed:
                self._refresh_queues()
            if view == "events":
                self._write_lines(changes.event_lines)
            elif changes.event_lines:
                self._log_stale = True

    def _task_copies(self, task_ids: Iterable[str]) -> list[TaskState]:
        """Copies of those of these tasks (still kept) the task table would touch, oldest first.

        After a slow tick there may be thousands; only the rows shown and the newest that can
        enter the table are copied, so a tick's work stays bounded by the table, not the rate.
        """
        table = self.query_one(TaskTable)
        with self.feed.lock:
            known = self.feed.state.tasks
            tasks = [known[task_id] for task_id in task_ids if task_id in known]
            tasks.sort(key=first_seen)
            return [copy.copy(task) for task in table.changed_rows(tasks)]

    def _remember_hidden(self, task_ids: set[str]) -> None:
        if self._tasks_stale:
            return
        self._hidden_task_ids |= task_ids
        if len(self._hidden_task_ids) > HIDDEN_CHANGES_MAX:
            self._tasks_stale = True  # cheaper to rebuild than to replay when shown
            self._hidden_task_ids.clear()

    def _catch_up(self, view: str) -> None:
        """Apply to a view shown again what it missed while hidden."""
        if view == "tasks" and self._tasks_stale:
            self._tasks_stale = False
            with self.feed.lock:
                tasks = [copy.copy(task) for task in self.feed.state.tasks.values()]
            self.query_one(TaskTable).rebuild(tasks)
        elif view == "tasks" and self._hidden_task_ids:
            tasks = self._task_copies(self._hidden_task_ids)
            self._hidden_task_ids.clear()
            self.query_one(TaskTable).sync(tasks)
        elif view == "events" and self._log_stale:
            self._log_stale = False
            with self.feed.lock:
                lines = list(self.feed.lines)
            self.query_one(RichLog).clear()
            self._write_lines(lines)

    def _show_status(self) -> None:
        now = self.clock()
        with self.feed.lock:
            state = self.feed.state
            text = status_text(
                workers_up=len(state.alive_workers(now)),
                workers_known=len(state.workers),
                tasks=len(state.tasks),
                connected=self.feed.connected,
                live=self.tq_app is not None,
            )
        self.query_one(ConsoleHeader).show_status(text)

    def sample_history(self) -> None:
        """Read the counters once a second and redraw the header's figures and sparklines."""
        now = self.clock()
        with self.feed.lock:
            counts = self.feed.counts
            totals = Totals(
                succeeded=counts["task-succeeded"],
                failed=counts["task-failed"],
                active=sum(worker.active for worker in self.feed.state.alive_workers(now)),
                queued=self.queue_board.queued_total(),
            )
            if self.tq_app is not None:
                self.queue_board.sample(time.monotonic(), self.feed.queue_flow)
        self.history.sample(now, totals)
        try:
            self.query_one(ConsoleHeader).show_history(self.history)
        except NoMatches:
            pass  # the app is tearing its widgets down

    def _refresh_nodes(self) -> None:
        with self.feed.lock:
            workers = {name: copy.copy(w) for name, w in self.feed.state.workers.items()}
        view = self.supervisor_view
        self.query_one(NodeTable).sync(join_nodes(workers, view.nodes), now=self.clock())
        hint = (
            "s start  x stop  r restart  (supervisor)   +/- pool size (remote control)"
            if view.available
            else f"start/stop/restart disabled: {view.reason}"
        )
        self.query_one("#node-hint", Static).update(hint)

    def _refresh_queues(self) -> None:
        board = self.queue_board
        self.query_one(QueueTable).sync(board.rows(self._known_queue_names()))
        if board.error:
            hint = board.error
        elif self.tq_app is None and not board.depths:
            hint = "no broker: queue depths unknown"
        else:
            hint = "ready: waiting on the broker  recv/done: per second over 10 s, from events"
        self.query_one("#queue-hint", Static).update(hint)

    def _write_lines(self, lines: Iterable[tuple[str, str]]) -> None:
        """Append event lines to the events view, in one write (a write per line costs more)."""
        block = Text(no_wrap=True, end="")
        for human, line in lines:
            if block:
                block.append("\n")
            block.append(line, style=self.event_colours.get(human.split()[-1], ""))
        if block:
            self.query_one(RichLog).write(block)

    def on_tabbed_content_tab_activated(self) -> None:
        self.refresh_bindings()
        self._catch_up(self.current_view)
        table = {"tasks": TaskTable, "nodes": NodeTable, "queues": QueueTable}.get(
            self.current_view
        )
        if table is not None:
            self.query_one(table).focus()
