"""ConsoleActions: what the console's keys do to tasks and nodes (the I/O runs in thread workers)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.widgets import Input, TabbedContent

from .. import states
from ..errors import TQError
from .commands import ConsoleCommands
from .feed import EventFeed
from .operations import NO_BROKER, ConsoleOperations, SupervisorView
from .screens.confirm import ConfirmScreen
from .screens.form import FormField, FormScreen, count_error, rate_error
from .screens.node_detail import NodeDetailScreen
from .screens.task_detail import TaskDetailScreen
from .widgets.node_table import NodeTable
from .widgets.task_table import TaskTable

if TYPE_CHECKING:
    from ..app import App as TQApp
    from ..cluster import TaskState
    from ..resend import TaskCall

#: Actions on the selected task (tasks view), on the selected node (nodes view).
TASK_ACTIONS = frozenset(
    {"detail", "traceback", "result", "filter", "revoke", "terminate", "resend", "clear_filter"}
    | {"cursor"}
)
SUPERVISOR_ACTIONS = frozenset({"start_node", "stop_node", "restart_node"})
POOL_ACTIONS = frozenset({"grow_pool", "shrink_pool", "scale_node"})
NODE_ACTIONS = POOL_ACTIONS | {"node_detail"}
#: Actions that need a broker (remote control or publishing).
BROKER_ACTIONS = POOL_ACTIONS | {"revoke", "terminate", "resend", "rate_limit"}
BROKER_ACTIONS |= {"enable_events", "disable_events"}


class ConsoleActions(App[None]):
    """The console's actions; ConsoleApp adds the views they act on."""

    COMMANDS = App.COMMANDS | {ConsoleCommands}
    BINDINGS = [
        Binding("1", "show_view('tasks')", "Tasks", show=False),
        Binding("2,n", "show_view('nodes')", "Nodes", show=False),
        Binding("3", "show_view('queues')", "Queues", show=False),
        Binding("4,e", "show_view('events')", "Events", show=False),
        Binding("j", "cursor(1)", "Down", show=False),
        Binding("k", "cursor(-1)", "Up", show=False),
        Binding("i,enter", "detail", "Info"),
        Binding("i", "node_detail", "Info"),
        Binding("t", "traceback", "Traceback"),
        Binding("r", "result", "Result"),
        Binding("c", "revoke", "Revoke"),
        Binding("T", "terminate", "Terminate"),
        Binding("s", "resend", "Re-send"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("s", "start_node", "Start"),
        Binding("x", "stop_node", "Stop"),
        Binding("r", "restart_node", "Restart"),
        Binding("plus", "grow_pool", "Grow"),
        Binding("minus", "shrink_pool", "Shrink"),
        Binding("L", "rate_limit", "Rate limit"),
        Binding("E", "enable_events", "Events on"),
        Binding("D", "disable_events", "Events off"),
        Binding("ctrl+t", "toggle_dark", "Theme", show=False),
        Binding("q", "quit", "Quit"),
    ]

    feed: EventFeed
    tq_app: TQApp | None
    operations: ConsoleOperations
    supervisor_view: SupervisorView

    @property
    def current_view(self) -> str:
        return self.query_one(TabbedContent).active or "tasks"

    def action_state(self, action: str) -> bool | None:
        """True: offered; None: shown but disabled (no broker, no supervisor); False: hidden."""
        view = self.current_view
        if action in TASK_ACTIONS and view != "tasks":
            return False
        if action in SUPERVISOR_ACTIONS | NODE_ACTIONS and view != "nodes":
            return False
        if action in SUPERVISOR_ACTIONS and not self.supervisor_view.available:
            return None
        if action in BROKER_ACTIONS and self.tq_app is None:
            return None
        return True

    def disabled_reason(self, action: str) -> str:
        """Why an action is disabled, for the palette and the hints."""
        if action in SUPERVISOR_ACTIONS:
            return self.supervisor_view.reason or ""
        return NO_BROKER

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys act on the view they belong to, and only when nothing is pushed over it."""
        scoped = TASK_ACTIONS | SUPERVISOR_ACTIONS | NODE_ACTIONS
        if action in scoped and self.screen is not self.screen_stack[0]:
            return False
        return self.action_state(action)

    def action_show_view(self, view: str) -> None:
        self.query_one(TabbedContent).active = view

    def action_cursor(self, step: int) -> None:
        table = self.query_one(TaskTable)
        table.move_cursor(row=table.cursor_row + step)

    def selected_task(self) -> TaskState | None:
        """A copy of the task under the cursor of the tasks view."""
        task_id = self.query_one(TaskTable).selected_task_id()
        with self.feed.lock:
            task = self.feed.state.tasks.get(task_id or "")
            return copy.deepcopy(task) if task is not None else None

    def selected_node(self) -> str | None:
        return self.query_one(NodeTable).selected_node()

    def node_names(self) -> list[str]:
        """Every node known from events or from the local supervisor."""
        with self.feed.lock:
            names = set(self.feed.state.workers)
        names |= {str(row.get("name")) for row in self.supervisor_view.nodes}
        return sorted(names)

    # -- looking at tasks -------------------------------------------------------------------

    def action_detail(self, section: str | None = None) -> None:
        task = self.selected_task()
        if task is not None:
            self.push_screen(TaskDetailScreen(task, section))

    def action_traceback(self) -> None:
        task = self.selected_task()
        if task is not None and not task.traceback:
            self.notify(f"no traceback: {task.name or task.uuid} is {task.state}")
        elif task is not None:
            self.action_detail("traceback")

    def action_result(self) -> None:
        task = self.selected_task()
        if task is not None and task.result is None and task.exception is None:
            self.notify(f"no result yet: {task.name or task.uuid} is {task.state}")
        elif task is not None:
            self.action_detail("result" if task.result is not None else "exception")

    def on_data_table_row_selected(self, event: TaskTable.RowSelected) -> None:
        if isinstance(event.data_table, TaskTable):
            self.action_detail()
        elif isinstance(event.data_table, NodeTable):
            self.action_node_detail()

    def action_node_detail(self) -> None:
        node = self.selected_node()
        if node is not None:
            self.push_screen(NodeDetailScreen(node))

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.display = True
        field.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "filter":
            return
        table = self.query_one(TaskTable)
        table.filter_text = event.value.strip()
        with self.feed.lock:
            tasks = [copy.copy(task) for task in self.feed.state.tasks.values()]
        table.rebuild(tasks)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.query_one(TaskTable).focus()

    def action_clear_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.value = ""
        field.display = False
        self.query_one(TaskTable).focus()

    # -- acting on tasks --------------------------------------------------------------------

    def confirm(self, question: str, then: Callable[[], object]) -> None:
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
        task = self.selected_task()
        if task is None:
            return
        verb = "Terminate (kill if running)" if terminate else "Revoke"
        self.confirm(f"{verb} task {task.uuid}?", lambda: self.send_revoke(task.uuid, terminate))

    def revoke_many(self, task_ids: list[str], what: str) -> None:
        """Revoke a set of tasks after confirmation (palette: revoke all FAILED tasks of X)."""
        self.confirm(f"Revoke {what}?", lambda: self.send_revoke(task_ids, False))

    @work(thread=True, group="actions")
    def send_revoke(self, task_id: str | list[str], terminate: bool) -> None:
        """Broadcast the revoke off the UI thread and report the outcome."""
        self.call_from_thread(self.notify, self.operations.revoke(task_id, terminate=terminate))

    def action_resend(self) -> None:
        task = self.selected_task()
        if task is not None:
            self.action_resend_task(task.uuid)

    def action_resend_task(self, task_id: str) -> None:
        """Re-send a task with its arguments, after saying what will be sent."""
        if self.tq_app is None:
            self.notify(NO_BROKER, severity="warning")
            return
        with self.feed.lock:
            task = copy.deepcopy(self.feed.state.tasks.get(task_id))
            queue = self.feed.queue_flow.queue_of(task_id)
        if task is None:
            self.notify(f"task {task_id} is no longer in memory", severity="warning")
        else:
            self.prepare_resend(task, queue)

    @work(thread=True, group="actions")
    def prepare_resend(self, task: TaskState, queue: str | None) -> None:
        """Find the call's arguments (the result backend may be asked), then confirm."""
        try:
            call = self.operations.find_call(task)
        except TQError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error")
            return
        if call.queue is None and queue is not None:
            call = replace(call, queue=queue)  # the queue the console saw it come from
        where = f" to queue {call.queue}" if call.queue else ""
        question = f"Re-send {call.describe()}{where}? (arguments from the {call.source})"
        self.call_from_thread(self.confirm, question, lambda: self.send_call(call))

    @work(thread=True, group="actions")
    def send_call(self, call: TaskCall) -> None:
        self.call_from_thread(self.notify, self.operations.resend(call))

    def action_rate_limit(self) -> None:
        """Ask for a task name and a rate, then set it on every worker."""
        task = self.selected_task() if self.current_view == "tasks" else None
        fields = [
            FormField("task", "Task name", "tasks.add", (task.name or "") if task else ""),
            FormField("rate", "Rate", "10/m, 5/s, 100/h; 0 lifts the limit", validate=rate_error),
        ]

        def answered(values: dict[str, str] | None) -> None:
            if values:
                self.run_operation(self.operations.rate_limit, values["task"], values["rate"])

        self.push_screen(FormScreen("Set a rate limit on every worker", fields), answered)

    def action_enable_events(self) -> None:
        self.run_operation(lambda: self.operations.set_events(enabled=True))

    def action_disable_events(self) -> None:
        self.confirm(
            "Disable task events on every worker? This console (and Flower) stop seeing tasks.",
            lambda: self.run_operation(lambda: self.operations.set_events(enabled=False)),
        )

    @work(thread=True, group="actions")
    def run_operation(self, operation: Callable[..., str], *args: object) -> None:
        """Run one operation off the UI thread and show its outcome."""
        self.call_from_thread(self.notify, operation(*args))

    @work(thread=True, group="actions")
    def run_supervised(self, operation: Callable[[str], str], node: str) -> None:
        """Run a node operation, then ask the supervisor again at once (not at the next poll)."""
        self.call_from_thread(self.notify, operation(node))
        self.call_from_thread(self.poll_supervisor)

    def poll_supervisor(self) -> object:
        """Ask the local supervisor for its table again (ConsoleApp does it in a worker)."""
        return None

    # -- acting on nodes --------------------------------------------------------------------

    def _node_action(self, action: str) -> str | None:
        """The selected node, or None after saying why the action cannot run."""
        if self.action_state(action) is None:
            self.notify(f"{action.replace('_', ' ')} disabled: {self.disabled_reason(action)}")
            return None
        return self.selected_node()

    def action_start_node(self) -> None:
        node = self._node_action("start_node")
        if node is not None:
            self.run_supervised(self.operations.start_node, node)

    def action_stop_node(self) -> None:
        node = self._node_action("stop_node")
        if node is not None:
            self.confirm(
                f"Stop node {node}? (warm: running tasks finish first)",
                lambda: self.run_supervised(self.operations.stop_node, node),
            )

    def action_restart_node(self) -> None:
        node = self._node_action("restart_node")
        if node is not None:
            self.confirm(
                f"Restart node {node}?",
                lambda: self.run_supervised(self.operations.restart_node, node),
            )

    def action_grow_pool(self) -> None:
        node = self._node_action("grow_pool")
        if node is not None:
            self.run_operation(self.operations.pool_grow, node, 1)

    def action_shrink_pool(self) -> None:
        node = self._node_action("shrink_pool")
        if node is not None:
            self.confirm(
                f"Shrink the pool of {node} by one process?",
                lambda: self.run_operation(self.operations.pool_shrink, node, 1),
            )

    def action_scale_node(self, node: str | None = None) -> None:
        """Ask for a node and a process count, then grow or shrink its pool to it."""
        node = node or self.selected_node() or ""
        fields = [
            FormField("node", "Node", "name@host", node),
            FormField("processes", "Pool processes", "8", validate=count_error),
        ]

        def answered(values: dict[str, str] | None) -> None:
            if values:
                self.confirm_scale(values["node"], int(values["processes"]))

        self.push_screen(FormScreen("Scale a node's pool", fields), answered)

    def confirm_scale(self, node: str, processes: int) -> None:
        """Grow or shrink a node's pool to `processes` (asks first: shrinking stops processes)."""
        self.confirm(
            f"Scale node {node} to {processes} pool processes?",
            lambda: self.run_operation(self.operations.scale_node, node, processes),
        )

    def tasks_in(self, state: str, name: str) -> list[str]:
        """Ids of the known tasks of one name in one state."""
        with self.feed.lock:
            return [
                task.uuid
                for task in self.feed.state.tasks.values()
                if task.state == state and task.name == name
            ]

    def revocable_groups(self) -> dict[tuple[str, str], int]:
        """(state, name) -> count, for tasks a revoke still means something to."""
        groups: dict[tuple[str, str], int] = {}
        wanted = {states.FAILURE, states.RECEIVED, states.STARTED, states.RETRY, states.PENDING}
        with self.feed.lock:
            for task in self.feed.state.tasks.values():
                if task.state in wanted and task.name:
                    key = (task.state, task.name)
                    groups[key] = groups.get(key, 0) + 1
        return groups
