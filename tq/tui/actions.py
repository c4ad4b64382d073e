"""ConsoleActions: what the console's keys do to tasks and nodes (the I/O runs in thread workers)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Input, TabbedContent

from .feed import EventFeed
from .operations import ConsoleOperations, SupervisorView
from .screens.confirm import ConfirmScreen
from .screens.task_detail import TaskDetailScreen
from .widgets.node_table import NodeTable
from .widgets.task_table import TaskTable

if TYPE_CHECKING:
    from ..app import App as TQApp

VIEWS = ("tasks", "nodes", "queues", "events")
#: Actions that act on the tasks view, and on the nodes view.
TASK_ACTIONS = frozenset({"detail", "filter", "revoke", "terminate", "clear_filter", "cursor"})
NODE_ACTIONS = frozenset({"restart_node"})


class ConsoleActions(App[None]):
    """The console's actions; ConsoleApp adds the views they act on."""

    BINDINGS = [
        Binding("1", "show_view('tasks')", "Tasks", show=False),
        Binding("2,n", "show_view('nodes')", "Nodes", show=False),
        Binding("3", "show_view('queues')", "Queues", show=False),
        Binding("4,e", "show_view('events')", "Events", show=False),
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

    feed: EventFeed
    tq_app: TQApp | None
    operations: ConsoleOperations
    supervisor_view: SupervisorView

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

    def _confirm(self, question: str, then: Callable[[], object]) -> None:
        """Ask before a destructive action; run `then` on yes."""

        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.push_screen(ConfirmScreen(question), answered)

    def action_revoke(self) -> None:
        self._confirm_revoke(terminate=False)

    def action_terminate(self) -> None:
        self._confirm_revoke(terminate=True)

    def _confirm_revoke(self, *, terminate: bool) -> None:
        task_id = self._selected_task()
        if task_id is None:
            return
        verb = "Terminate (kill if running)" if terminate else "Revoke"
        self._confirm(f"{verb} task {task_id}?", lambda: self.send_revoke(task_id, terminate))

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
        self._confirm(f"Restart node {node}?", lambda: self.send_restart(node))

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
