"""chain, group and chord without a broker: the `|` table, dict forms and the messages sent."""

from __future__ import annotations

import contextlib
import json

import pytest

from tq import App, GroupResult, Signature, chain, chord, group, result_from_tuple
from tq.canvas import to_plain
from tq.canvas_group import chord_size


class Captured:
    """Stands in for the publisher and the backend: keeps what would be sent."""

    def __init__(self) -> None:
        self.messages: list = []
        self.chord_sizes: dict[str, int] = {}

    def publish(self, message, **_options):
        self.messages.append(message)

    def batch(self):
        return contextlib.nullcontext()

    def ensure_chords_allowed(self):
        pass

    def set_chord_size(self, group_id, size):
        self.chord_sizes[group_id] = size

    def on_task_call(self, producer):
        pass

    def close(self):
        pass


@pytest.fixture
def app():
    app = App("unit", broker="memory://")

    @app.task(name="unit.add")
    def add(x, y):
        return x + y

    @app.task(name="unit.mul")
    def mul(x, y):
        return x * y

    @app.task(name="unit.xsum")
    def xsum(numbers):
        return sum(numbers)

    return app


@pytest.fixture
def sent(app):
    captured = Captured()
    app._publisher = captured
    app._backend = captured
    return captured


def sig(app, name, *args):
    return app.tasks[f"unit.{name}"].s(*args)


def test_pipe_builds_chains_chords_and_flattens(app):
    def add(*args):
        return sig(app, "add", *args)

    def mul(*args):
        return sig(app, "mul", *args)

    xsum = sig(app, "xsum")
    assert isinstance(add(1, 1) | mul(2), chain)
    flat = add(1, 1) | (mul(2) | mul(3))
    assert isinstance(flat, chain)
    assert [s.task for s in flat.tasks] == ["unit.add", "unit.mul", "unit.mul"]
    assert len(((add(1, 1) | mul(2)) | (mul(3) | mul(4))).tasks) == 4
    fan_out = add(1, 1) | group(mul(2), mul(3))
    assert isinstance(fan_out, chain) and isinstance(fan_out.tasks[-1], group)
    assert not isinstance((add(1, 1) | group(mul(2))).tasks[-1], group)  # one member: unrolled
    assert (add(1, 1) | group()) == add(1, 1)
    assert isinstance(group(add(1, 1), add(2, 2)) | xsum, chord)
    group_body = group(add(1, 1)) | group(xsum, xsum)
    assert isinstance(group_body, chord) and isinstance(group_body.body, group)
    to_chord = (add(1, 1) | group(mul(2), mul(3))) | xsum
    assert isinstance(to_chord, chain) and isinstance(to_chord.tasks[-1], chord)
    extended = chord([add(1, 1)], xsum) | mul(2)
    assert isinstance(extended, chord) and isinstance(extended.body, chain)
    into_body = (add(1, 1) | chord([mul(2)], xsum)) | group(mul(3), mul(4))
    assert isinstance(into_body.tasks[-1].body, chain)


def test_dict_forms_match_celery_and_round_trip(app):
    add, xsum = sig(app, "add", 1, 1), sig(app, "xsum")
    workflow = chain(add, chord([sig(app, "add", 2, 2)], xsum))
    plain = json.loads(json.dumps(to_plain(workflow)))
    assert plain["task"] == "celery.chain" and plain["subtask_type"] == "chain"
    assert set(plain) == {"task", "args", "kwargs", "options", "subtask_type", "immutable"}
    chord_form = plain["kwargs"]["tasks"][1]
    assert chord_form["task"] == "celery.chord"
    assert set(chord_form["kwargs"]) == {"header", "body", "kwargs"}
    assert chord_form["kwargs"]["header"]["task"] == "celery.group"
    rebuilt = Signature.from_dict(plain, app=app)
    assert isinstance(rebuilt, chain) and isinstance(rebuilt.tasks[1], chord)
    assert rebuilt.tasks[1].body == xsum
    assert to_plain(rebuilt) == plain


def test_celery_built_workflows_are_read_as_tq_primitives(app):
    celery = pytest.importorskip("celery")
    capp = celery.Celery("c", set_as_current=False)
    csig = capp.signature
    workflow = csig("unit.add", (1, 1)) | celery.group(
        csig("unit.mul", (2,)), csig("unit.mul", (3,))
    )
    workflow = workflow | csig("unit.xsum")
    plain = json.loads(json.dumps(workflow))
    rebuilt = Signature.from_dict(plain, app=app)
    assert isinstance(rebuilt, chain)
    assert isinstance(rebuilt.tasks[1], chord)
    assert [m.task for m in rebuilt.tasks[1].header.tasks] == ["unit.mul", "unit.mul"]


def test_chain_sends_its_first_step_carrying_the_rest_reversed(app, sent):
    result = (sig(app, "add", 4, 4) | sig(app, "mul", 8) | sig(app, "mul", 2))()
    assert len(sent.messages) == 1
    message = sent.messages[0]
    assert message.headers["task"] == "unit.add"
    args, _kwargs, embed = message.body
    assert args == [4, 4]
    assert [step["args"] for step in embed["chain"]] == [[2], [8]]
    assert embed["chain"][0]["options"]["task_id"] == result.id
    assert embed["chain"][1]["options"]["task_id"] == result.parent.id
    assert result.parent.parent.id == message.headers["id"]
    assert all(step["options"]["reply_to"] == app.oid for step in embed["chain"])


def test_partial_chain_prepends_to_the_first_step_only(app, sent):
    chain(sig(app, "add", 4) | sig(app, "mul", 8))(4)
    args, _kwargs, embed = sent.messages[0].body
    assert args == [4, 4] and embed["chain"][0]["args"] == [8]


def test_group_sends_members_with_group_id_and_index(app, sent):
    result = group(sig(app, "add", i) for i in range(3))(10)
    assert isinstance(result, GroupResult)
    assert [m.headers["group"] for m in sent.messages] == [result.id] * 3
    assert [m.headers["group_index"] for m in sent.messages] == [0, 1, 2]
    assert [m.body[0] for m in sent.messages] == [[10, 0], [10, 1], [10, 2]]
    assert [r.id for r in result.results] == [m.headers["id"] for m in sent.messages]
    assert not sent.chord_sizes  # a plain group keeps no bookkeeping
    with pytest.raises(TypeError, match="use a chord"):
        group(sig(app, "add", 1, 1)).apply_async(link=sig(app, "xsum"))


def test_chord_header_carries_the_body_and_the_size_is_recorded(app, sent):
    header = [sig(app, "add", i, i) for i in range(3)] + [
        sig(app, "add", 1, 1) | sig(app, "mul", 2)
    ]
    result = chord(header, sig(app, "xsum"))()
    group_id = result.parent.id
    assert sent.chord_sizes == {group_id: 4}
    bodies = [m.body[2]["chord"] for m in sent.messages]
    plain_members = sent.messages[:3]
    assert all(m.headers["group"] == group_id for m in plain_members)
    assert all(body["options"]["task_id"] == result.id for body in bodies[:3])
    assert bodies[0]["options"]["group_id"] == group_id
    # The chain member is sent as its first step; its last step carries the chord place.
    chain_member = sent.messages[3]
    assert chain_member.headers["group"] is None
    last_step = chain_member.body[2]["chain"][0]["options"]
    assert last_step["group_id"] == group_id and last_step["group_index"] == 3
    assert last_step["chord"]["options"]["task_id"] == result.id


def test_chord_size_counts_what_reports_back(app):
    add, xsum = sig(app, "add", 1, 1), sig(app, "xsum")
    assert chord_size(add) == 1
    assert chord_size(group(add, add, group(add, add))) == 4
    assert chord_size(add | group(add, add)) == 2
    assert chord_size(chord([add, add, add], xsum)) == 1


def test_results_round_trip_through_tuples(app):
    frozen = (sig(app, "add", 1, 1) | group(sig(app, "mul", 2), sig(app, "mul", 3))).freeze()
    assert isinstance(frozen, GroupResult)
    rebuilt = result_from_tuple(json.loads(json.dumps(frozen.as_tuple())), app)
    assert rebuilt == frozen
    assert rebuilt.parent.id == frozen.parent.id
    assert [r.id for r in rebuilt.results] == [r.id for r in frozen.results]


def test_workflows_run_in_process_when_always_eager(app):
    app.conf.task_always_eager = True
    add, mul, xsum = (app.tasks[f"unit.{name}"] for name in ("add", "mul", "xsum"))
    assert (add.s(4, 4) | mul.s(8))().get() == 64
    assert chain(add.s(4) | mul.s(8))(4).get() == 64
    assert group(add.s(i, i) for i in range(5))().get() == [0, 2, 4, 6, 8]
    assert chord((add.s(i, i) for i in range(5)), xsum.s())().get() == 20
    fanned = (add.s(1, 1) | group(mul.s(2), mul.s(3)))()
    assert fanned.get() == [4, 6] and fanned.parent.get() == 2
