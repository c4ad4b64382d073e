"""The client's per-send shortcuts give what the long way gives: argument checks, ids, origin."""

from __future__ import annotations

import inspect
import itertools
import os
import socket
import uuid

import pytest

from tq import App
from tq.protocol import build_task_message, new_task_id, origin_name


def plain(a, b): ...
def defaults(a, b=1, c=2): ...
def star(a, *rest): ...
def keyword_only(a, *, flag): ...
def keyword_default(a, *, flag=False): ...
def positional_only(a, /, b=0): ...
def anything(*args, **kwargs): ...
def bound(self, a): ...


@pytest.mark.parametrize(
    "function",
    [plain, defaults, star, keyword_only, keyword_default, positional_only, anything, bound],
)
def test_the_argument_check_agrees_with_inspect_bind(function):
    app = App("unit", broker="memory://")
    task = app.task(bind=function is bound)(function)
    for count, with_kwargs in itertools.product(range(5), (False, True)):
        args, kwargs = tuple(range(count)), ({"b": 1} if with_kwargs else {})
        try:
            inspect.signature(function).bind(*((task,) if task.bind else ()), *args, **kwargs)
        except TypeError:
            with pytest.raises(TypeError, match=task.name):
                task._check_arguments(args, kwargs)
        else:
            task._check_arguments(args, kwargs)


def test_task_ids_are_random_version_4_uuids():
    ids = [new_task_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_origin_and_empty_argument_reprs_are_what_celery_sends():
    assert origin_name() == f"gen{os.getpid()}@{socket.gethostname()}"
    message = build_task_message(task_id="t", name="n")
    assert (message.headers["argsrepr"], message.headers["kwargsrepr"]) == ("()", "{}")
    message = build_task_message(task_id="t", name="n", args=[1, "x"], kwargs={"k": [2]})
    assert (message.headers["argsrepr"], message.headers["kwargsrepr"]) == (
        "(1, 'x')",
        "{'k': [2]}",
    )
