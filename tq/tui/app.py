"""ConsoleApp: the tasks, nodes and events views over an EventFeed, refreshed at most 10 Hz."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Input, RichLog, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from .feed import MAX_EVENT_LINES, EventFeed, consume_events
from .history import SAMPLE_INTERVAL_S, MetricHistory, Totals
from .operations import ConsoleOperations, SupervisorView
from .screens.confirm import ConfirmScreen
from .screens.task_detail import TaskDetailScreen
from .widgets.header import ConsoleHeader, status_text
from .widgets.node_table import NodeTable, join_nodes
from .widgets.task_table import TaskTable, first_seen

if TYPE_CHECKING:
    from ..app import App as TQApp

#: Seconds between UI refreshes: events are folded at any rate, shown at most 10 times a second.
REFRESH_INTERVAL_S = 0.1
#: Seconds between redraws of the nodes view when no event changed it (heartbeat ages).
NODES_AGE_REFRESH_S = 1.0
#: Seconds between asking the local supervisor for its process table.
SUPERVISOR_POLL_S = 2.0
VIEWS = ("tasks", "nodes", "events")
#: Actions that act on the tasks view, and on the nodes view.
TASK_ACTIONS = frozenset({"detail", "filter", "revoke", "terminate", "clear_filter", "cursor"})
NODE_ACTIONS = frozenset({"restart_node"})


class ConsoleApp(App[None]):
    """The live operations console."""

    CSS_PATH = "console.tcss"
    TITLE = "tq console"
    BINDINGS = [
        Binding("1", "show_view('tasks')", "Tasks"),
        Binding("n,2", "show_view('nodes')", "Nodes"),
        Binding("e,3", "show_view('events')", "Events"),
        Binding("j", "cursor(1)", "Down", show=False),
        Binding("k", "cursor(-1)", "Up", show=False),
        Binding("i,enter", "detail", "Info"),
        Binding("slash", "filter", "Filter"),
        Binding("c", "revoke", "Revoke"),
        Binding("t", "terminate", "Terminate"),
        Binding("r", "restart_node", "Restart"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("q", "quit", "Quit"),
    ]

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
        self.operations = ConsoleOperations(tq_app, run_dir)
        self.supervisor_view = SupervisorView(reason="asking the supervisor...")
        self.initial_view = view
        self.event_colours = event_colours or {}
        #: Wall time for ages and samples (tests and replays set their own).
        self.clock = clock
        self.history = MetricHistory()
        self.refresh_count = 0
        self._supervisor_changed = True
        self._nodes_shown_at = 0.0

    def compose(self) -> ComposeResult:
        yield ConsoleHeader(id="header")
        with TabbedContent(initial=self.initial_view, id="views"):
            with TabPane("Tasks", id="tasks"):
                yield TaskTable(id="task-table")
                yield Input(placeholder="filter by id, name, state or worker", id="filter")
            with TabPane("Nodes", id="nodes"):
                yield NodeTable(id="node-table")
                yield Static(id="node-hint", markup=False)
            with TabPane("Events", id="events"):
                yield RichLog(id="event-log", max_lines=MAX_EVENT_LINES, wrap=False)
        yield Footer()

    def on_mount(self) -> None:
        tasks, lines = self.feed.snapshot()
        self.query_one(TaskTable).rebuild(tasks)
        self._write_lines(lines)
        self._refresh_nodes()
        self._show_status()
        self.sample_history()
        self.set_interval(REFRESH_INTERVAL_S, self.refresh_views)
        self.set_interval(SAMPLE_INTERVAL_S, self.sample_history)
        self.set_interval(SUPERVISOR_POLL_S, self.poll_supervisor)
        self.poll_supervisor()
        if self.tq_app is not None:
            self.consume()
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
        # Heartbeat ages and offline verdicts change with time alone, not only with events.
        now = time.monotonic()
        if now - self._nodes_shown_at >= NODES_AGE_REFRESH_S:
            supervisor_changed = True
        self._show_status()
        if not changes and not supervisor_changed:
            return
        self.refresh_count += 1
        with self.feed.lock:
            tasks = [
                copy.copy(self.feed.state.tasks[task_id])
                for task_id in changes.task_ids
                if task_id in self.feed.state.tasks
            ]
        tasks.sort(key=first_seen)
        with self.batch_update():
            if tasks:
                self.query_one(TaskTable).sync(tasks)
            if changes.workers_changed or supervisor_changed:
                self._refresh_nodes()
                self._nodes_shown_at = now
            self._write_lines(changes.event_lines)

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
                queued=None,
            )
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
            "r: restart the selected node" if view.available else f"restart disabled: {view.reason}"
        )
        self.query_one("#node-hint", Static).update(hint)

    def _write_lines(self, lines: Iterable[tuple[str, str]]) -> None:
        log = self.query_one(RichLog)
        for human, line in lines:
            log.write(Text(line, style=self.event_colours.get(human.split()[-1], ""), no_wrap=True))

    # -- actions ----------------------------------------------------------------------------

    @property
    def current_view(self) -> str:
        return self.query_one(TabbedContent).active or "tasks"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show task keys on the tasks view and node keys on the nodes view only."""
        if action not in TASK_ACTIONS | NODE_ACTIONS | {"show_view"}:
            return True
        if self.screen is not self.screen_stack[0]:
            return False
        view = self.current_view
        if action == "show_view":
            return True
        if action in TASK_ACTIONS:
            return view == "tasks"
        if view != "nodes":
            return False
        return True if self.supervisor_view.available else None

    def on_tabbed_content_tab_activated(self) -> None:
        self.refresh_bindings()
        table = {"tasks": TaskTable, "nodes": NodeTable}.get(self.current_view)
        if table is not None:
            self.query_one(table).focus()

    def action_show_view(self, view: str) -> None:
        self.query_one(TabbedContent).active = view

    def action_cursor(self, step: int) -> None:
        table = self.query_one(TaskTable)
        table.move_cursor(row=table.cursor_row + step)

    def _selected_task(self) -> str | None:
        return self.query_one(TaskTable).selected_task_id()

    def action_detail(self) -> None:
        task_id = self._selected_task()
        with self.feed.lock:
            task = self.feed.state.tasks.get(task_id or "")
            snapshot = copy.deepcopy(task) if task is not None else None
        if snapshot is not None:
            self.push_screen(TaskDetailScreen(snapshot))

    def on_data_table_row_selected(self, event: TaskTable.RowSelected) -> None:
        if isinstance(event.data_table, TaskTable):
            self.action_detail()

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.display = True
        field.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        table = self.query_one(TaskTable)
        table.filter_text = event.value.strip()
        with self.feed.lock:
            tasks = [copy.copy(task) for task in self.feed.state.tasks.values()]
        table.rebuild(tasks)

    def on_input_submitted(self) -> None:
        self.query_one(TaskTable).focus()

    def action_clear_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.value = ""
        field.display = False
        self.query_one(TaskTable).focus()

    def action_revoke(self) -> None:
        self._confirm_revoke(terminate=False)

    def action_terminate(self) -> None:
        self._confirm_revoke(terminate=True)

    def _confirm_revoke(self, *, terminate: bool) -> None:
        task_id = self._selected_task()
        if task_id is None:
            return
        verb = "Terminate (kill if running)" if terminate else "Revoke"

        def answered(yes: bool | None) -> None:
            if yes:
                self.send_revoke(task_id, terminate)

        self.push_screen(ConfirmScreen(f"{verb} task {task_id}?"), answered)

    @work(thread=True, group="actions")
    def send_revoke(self, task_id: str, terminate: bool) -> None:
        """Broadcast the revoke off the UI thread and report the outcome."""
        outcome = self.operations.revoke(task_id, terminate=terminate)
        self.call_from_thread(self.notify, outcome)

    def action_restart_node(self) -> None:
        if not self.supervisor_view.available:
            self.notify(f"restart disabled: {self.supervisor_view.reason}", severity="warning")
            return
        node = self.query_one(NodeTable).selected_node()
        if node is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.send_restart(node)

        self.push_screen(ConfirmScreen(f"Restart node {node}?"), answered)

    @work(thread=True, group="actions")
    def send_restart(self, node: str) -> None:
        """Ask the supervisor to restart a node off the UI thread."""
        outcome = self.operations.restart_node(node)
        self.call_from_thread(self.notify, outcome)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette offers the same actions as the keys."""
        yield from super().get_system_commands(screen)
        for view in VIEWS:
            yield SystemCommand(
                f"Show {view}",
                f"Switch to the {view} view",
                lambda view=view: self.action_show_view(view),
            )
        yield SystemCommand("Task details", "Open the selected task", self.action_detail)
        yield SystemCommand(
            "Filter tasks", "Filter by id, name, state or worker", self.action_filter
        )
        yield SystemCommand("Revoke task", "Revoke the selected task", self.action_revoke)
        yield SystemCommand(
            "Terminate task", "Revoke and kill the selected task", self.action_terminate
        )
        yield SystemCommand(
            "Restart node", "Restart the selected node (supervisor)", self.action_restart_node
        )
