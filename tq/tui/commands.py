"""ConsoleCommands: the palette's commands (the keys' actions, revoke-all, scale node N to K)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .. import states

if TYPE_CHECKING:
    from .actions import ConsoleActions

#: "scale node 3 to 8", "scale w1@host to 4", "scale images to 2".
SCALE_QUERY = re.compile(r"^\s*scale\s+(?:node\s+)?(?P<node>\S+)\s+to\s+(?P<count>\d+)\s*$", re.I)
#: How a state reads in a command ("revoke all FAILED tasks of tasks.boom").
STATE_WORDS = {
    states.FAILURE: "FAILED",
    states.RECEIVED: "RECEIVED",
    states.STARTED: "STARTED",
    states.RETRY: "RETRYING",
    states.PENDING: "PENDING",
}
#: (text, help, action whose state decides whether it is offered, method name, arguments)
_ACTIONS = [
    ("Show tasks", "Switch to the tasks view (1)", "show_view", "action_show_view", ("tasks",)),
    ("Show nodes", "Switch to the nodes view (2)", "show_view", "action_show_view", ("nodes",)),
    ("Show queues", "Switch to the queues view (3)", "show_view", "action_show_view", ("queues",)),
    ("Show events", "Switch to the events view (4)", "show_view", "action_show_view", ("events",)),
    ("Task details", "Open the selected task (i)", "detail", "action_detail", ()),
    ("Show traceback", "The selected task's traceback (t)", "traceback", "action_traceback", ()),
    ("Show result", "The selected task's result (r)", "result", "action_result", ()),
    ("Filter tasks", "By id, name, state or worker (/)", "filter", "action_filter", ()),
    ("Revoke task", "Revoke the selected task (c)", "revoke", "action_revoke", ()),
    ("Terminate task", "Revoke and kill the selected task (T)", "terminate", "action_terminate", ()),
    ("Re-send task", "Send the selected task again, same args (s)", "resend", "action_resend", ()),
    ("Start node", "Start the selected node (s)", "start_node", "action_start_node", ()),
    ("Stop node", "Warm-stop the selected node (x)", "stop_node", "action_stop_node", ()),
    ("Restart node", "Restart the selected node (r)", "restart_node", "action_restart_node", ()),
    ("Grow pool", "One more process on the selected node (+)", "grow_pool", "action_grow_pool", ()),
    ("Shrink pool", "One process less on the selected node (-)", "shrink_pool", "action_shrink_pool", ()),
    ("Scale node…", "Set a node's pool size; or type: scale node N to K", "scale_node", "action_scale_node", ()),
    ("Set rate limit…", "A task's rate on every worker (L)", "rate_limit", "action_rate_limit", ()),
    ("Enable events on all workers", "enable_events (E)", "enable_events", "action_enable_events", ()),
    ("Disable events on all workers", "disable_events (D)", "disable_events", "action_disable_events", ()),
    ("Toggle dark/light theme", "textual-dark <-> textual-light (ctrl+t)", "toggle_dark", "action_toggle_dark", ()),
]  # fmt: skip


def parse_scale(query: str) -> tuple[str, int] | None:
    """("3", 8) out of "scale node 3 to 8", or None."""
    found = SCALE_QUERY.match(query)
    return (found["node"], int(found["count"])) if found else None


def resolve_nodes(text: str, names: list[str]) -> list[str]:
    """The nodes `text` names: exactly, by short name, by number ("3": tq3@host), or in part."""
    exact = [name for name in names if name == text]
    if exact:
        return exact
    short = [name for name in names if name.split("@", 1)[0] == text]
    if short:
        return short
    if text.isdigit():
        numbered = [
            name
            for name in names
            if (digits := re.search(r"(\d+)$", name.split("@", 1)[0]))
            and int(digits[1]) == int(text)
        ]
        if numbered:
            return numbered
    return [name for name in names if text in name]


@dataclass(frozen=True)
class PaletteCommand:
    """One palette entry: what it reads, what it does."""

    text: str
    help: str
    run: Callable[[], object]


def console_commands(console: ConsoleActions) -> Iterator[PaletteCommand]:
    """The commands that make sense now (a disabled one says why when chosen)."""
    for text, help_text, action, method, arguments in _ACTIONS:
        state = console.action_state(action)
        if state is False:
            continue
        if state is None:
            reason = console.disabled_reason(action)
            yield PaletteCommand(text, f"disabled: {reason}", partial(console.notify, reason))
            continue
        yield PaletteCommand(text, help_text, partial(getattr(console, method), *arguments))
    if console.tq_app is None:
        return
    for (task_state, name), count in sorted(console.revocable_groups().items()):
        word = STATE_WORDS[task_state]
        yield PaletteCommand(
            f"Revoke all {word} tasks of {name}",
            f"{count} task{'s' if count != 1 else ''}, asks first",
            partial(_revoke_group, console, task_state, name, word),
        )


def _revoke_group(console: ConsoleActions, state: str, name: str, word: str) -> None:
    task_ids = console.tasks_in(state, name)
    console.revoke_many(task_ids, f"all {len(task_ids)} {word} tasks of {name}")


class ConsoleCommands(Provider):
    """Offers every console action, revoke-all by state and name, and `scale node N to K`."""

    @property
    def console(self) -> ConsoleActions:
        return cast("ConsoleActions", self.app)

    async def startup(self) -> None:
        self.commands = list(console_commands(self.console))

    async def discover(self) -> Hits:
        for command in self.commands:
            yield DiscoveryHit(command.text, command.run, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self.commands:
            score = matcher.match(command.text)
            if score > 0:
                yield Hit(score, matcher.highlight(command.text), command.run, help=command.help)
        scale = parse_scale(query)
        if scale is None or self.console.action_state("scale_node") is None:
            return
        wanted, processes = scale
        for node in resolve_nodes(wanted, self.console.node_names()):
            yield Hit(
                1.0,
                f"Scale node {node} to {processes}",
                partial(self.console.confirm_scale, node, processes),
                help="pool_grow / pool_shrink by the difference (asks first)",
            )
