"""Signatures, task options and the in-process calling paths."""

from __future__ import annotations

import pytest

from tq import App, states
from tq.canvas import Signature


@pytest.fixture
def app():
    app = App("unit", broker="memory://")

    @app.task(name="unit.add")
    def add(x, y, debug=False):
        return x + y

    @app.task(bind=True, max_retries=2, name="unit.retrying")
    def retrying(self, value):
        if self.request.retries < 2:
            raise self.retry(countdown=0)
        return (value, self.request.retries)

    return app


def test_signature_repr_and_dict_form(app):
    add = app.tasks["unit.add"]
    sig = add.s(2, 2)
    assert repr(sig) == "unit.add(2, 2)"
    assert dict(sig) == {
        "task": "unit.add",
        "args": (2, 2),
        "kwargs": {},
        "options": {},
        "subtask_type": None,
        "immutable": False,
    }
    assert Signature.from_dict(dict(sig), app=app) == sig


def test_partial_args_are_prepended_and_kwargs_merged(app):
    add = app.tasks["unit.add"]
    partial = add.s(2)
    assert partial.clone((8,)).args == (8, 2)
    assert add.s(2, 2, debug=True).clone(kwargs={"debug": False}).kwargs == {"debug": False}
    assert add.si(1, 1).clone((5,)).args == (1, 1)
    assert partial(8) == 10


def test_signature_options_merge_and_set(app):
    sig = app.tasks["unit.add"].signature((2, 2), countdown=10)
    assert sig.options == {"countdown": 10}
    sig.set(queue="q")
    assert sig.clone(countdown=5).options == {"countdown": 5, "queue": "q"}


def test_apply_runs_eagerly_with_retries(app):
    result = app.tasks["unit.retrying"].apply(("v",))
    assert result.get() == ("v", 2)
    assert result.state == states.SUCCESS


def test_unknown_task_option_is_a_type_error(app):
    with pytest.raises(TypeError, match="unknown option"):
        app.task(retries_max=3)(lambda: None)


def test_task_names_default_to_module_and_function(app):
    def double(x):
        return 2 * x

    task = app.task(double)
    assert task.name == f"{__name__}.double"
    assert app.tasks[task.name] is task
