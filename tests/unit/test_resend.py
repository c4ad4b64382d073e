"""Re-sending a task from what events said of it (tq/resend.py, no broker)."""

from __future__ import annotations

import pytest

from tq.errors import TQError
from tq.protocol import saferepr
from tq.resend import TaskCall, call_from_reprs


def test_literal_reprs_become_the_same_call() -> None:
    call = call_from_reprs("tasks.add", "(2, 'x', [1.5, None])", "{'debug': True}", task_id="t1")
    assert call == TaskCall("tasks.add", [2, "x", [1.5, None]], {"debug": True}, None, "events")
    assert call.describe() == "tasks.add(2, 'x', [1.5, None], debug=True)"
    assert call_from_reprs("tasks.noop", None, None, task_id="t2").args == []


@pytest.mark.parametrize(
    "args_repr",
    ["(<object object at 0x7f>,)", "('a very long argument...", "42"],
    ids=["object", "cut", "not-a-tuple"],
)
def test_arguments_that_are_not_literals_are_refused_with_a_way_out(args_repr: str) -> None:
    with pytest.raises(TQError, match="cannot re-send t3"):
        call_from_reprs("tasks.add", args_repr, "{}", task_id="t3")


@pytest.mark.parametrize(
    "args", [("x" * 300,), (list(range(100)),), ([[[[[[[1]]]]]]],)], ids=["string", "list", "deep"]
)
def test_arguments_the_worker_abbreviated_are_refused(args: tuple) -> None:
    with pytest.raises(TQError, match="abbreviated"):
        call_from_reprs("tasks.add", saferepr(args), "{}", task_id="t5")


def test_a_task_without_a_name_cannot_be_resent() -> None:
    with pytest.raises(TQError, match="name was never seen"):
        call_from_reprs(None, "()", "{}", task_id="t4")
