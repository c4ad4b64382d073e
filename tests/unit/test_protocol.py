"""Protocol v2 messages and result meta, field for field."""

from __future__ import annotations

import pickle
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tq import errors
from tq.protocol import (
    build_result_meta,
    build_task_message,
    parse_task_message,
    saferepr,
)
from tq.wire_errors import exception_from_meta, exception_to_meta

CELERY_HEADER_KEYS = {
    "lang",
    "task",
    "id",
    "shadow",
    "eta",
    "expires",
    "group",
    "group_index",
    "retries",
    "timelimit",
    "root_id",
    "parent_id",
    "argsrepr",
    "kwargsrepr",
    "origin",
    "ignore_result",
    "replaced_task_nesting",
    "stamped_headers",
    "stamps",
}


def test_message_has_every_celery_header_and_a_three_part_body():
    eta = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    message = build_task_message(
        task_id="abc",
        name="proj.add",
        args=(2, 2),
        eta=eta,
        time_limit=10,
        soft_time_limit=5,
        reply_to="oid",
        priority=5,
    )
    assert set(message.headers) == CELERY_HEADER_KEYS
    assert message.headers["timelimit"] == [10, 5]  # hard first
    assert message.headers["argsrepr"] == "(2, 2)"
    assert message.headers["kwargsrepr"] == "{}"
    assert message.headers["eta"] == "2030-01-01T12:00:00+00:00"
    assert message.headers["root_id"] == "abc"
    assert message.body == (
        [2, 2],
        {},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    )
    assert message.properties == {"correlation_id": "abc", "reply_to": "oid", "priority": 5}


def test_expires_sets_an_expiration_in_milliseconds():
    expires = datetime.now(UTC) + timedelta(seconds=100)
    message = build_task_message(task_id="x", name="t", expires=expires)
    assert 98_000 <= int(message.properties["expiration"]) <= 100_000


def test_parse_round_trip_keeps_every_field():
    message = build_task_message(
        task_id="abc",
        name="proj.add",
        args=[1],
        kwargs={"y": 2},
        retries=3,
        group_id="g",
        group_index=1,
        parent_id="p",
        root_id="r",
        callbacks=[{"task": "cb"}],
    )
    request = parse_task_message(
        message.headers, list(message.body), message.properties, {"routing_key": "celery"}
    )
    assert (request.id, request.name, request.args, request.kwargs) == (
        "abc",
        "proj.add",
        [1],
        {"y": 2},
    )
    assert (request.retries, request.group_id, request.group_index) == (3, "g", 1)
    assert (request.parent_id, request.root_id) == ("p", "r")
    assert request.callbacks == [{"task": "cb"}]
    assert request.delivery_info == {"routing_key": "celery"}


def test_a_request_travels_to_a_pool_process_whole():
    message = build_task_message(
        task_id="abc",
        name="proj.add",
        args=[1],
        kwargs={"y": 2},
        eta=datetime.now(UTC) + timedelta(seconds=5),
        expires=datetime.now(UTC) + timedelta(seconds=60),
    )
    request = parse_task_message(message.headers, list(message.body), message.properties, {})
    copy = pickle.loads(pickle.dumps((7, request), pickle.HIGHEST_PROTOCOL))[1]
    assert copy == request and copy is not request
    assert copy.eta == request.eta and copy.eta is not None and copy.headers == request.headers


class Text(str):
    """A str subclass, as some decoders return."""


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"timelimit": (None, None)}, (None, None)),
        ({"timelimit": [None, None]}, (None, None)),
        ({"timelimit": [30, None]}, (30.0, None)),
        ({"timelimit": [None, 2.5]}, (None, 2.5)),
        ({"argsrepr": Text("(1,)"), "group_index": 3}, (None, None)),
    ],
)
def test_typed_headers_are_read_whatever_shape_a_client_gives_them(changes, expected):
    message = build_task_message(task_id="abc", name="proj.add", args=[1], kwargs={})
    headers = {**message.headers, **changes}
    request = parse_task_message(headers, list(message.body), message.properties, {})
    assert (request.time_limit, request.soft_time_limit) == expected
    assert request.argsrepr == headers["argsrepr"] and request.group_index == headers["group_index"]


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"group_index": True}, "header 'group_index' must be a whole number"),
        ({"root_id": 7}, "header 'root_id' must be a string"),
        ({"timelimit": [None]}, "header 'timelimit' must be [hard, soft]"),
        ({"timelimit": [True, None]}, "header 'timelimit' must be [hard, soft]"),
        ({"eta": 5}, "header 'eta' must be an ISO-8601 time"),
    ],
)
def test_a_typed_header_of_the_wrong_type_is_refused(changes, needle):
    message = build_task_message(task_id="abc", name="proj.add", args=[1], kwargs={})
    with pytest.raises(errors.InvalidTaskError, match=re.escape(needle)):
        parse_task_message(
            {**message.headers, **changes}, list(message.body), message.properties, {}
        )


@pytest.mark.parametrize(
    ("headers", "body", "needle"),
    [
        ({}, [[], {}, {}], "protocol v1"),
        ({"task": "t", "id": "i"}, "text", "body must be"),
        ({"task": "t", "id": "i"}, [[], None, {}], "kwargs an object"),
        ({"task": "t", "id": "i"}, [[], {}, "embed"], "embed must be"),
        ({"task": "t", "id": ""}, [[], {}, {}], "non-empty"),
        ({"task": "t", "id": "i", "eta": "not a date"}, [[], {}, {}], "ISO-8601"),
    ],
)
def test_malformed_messages_raise_invalid_task_error(headers, body, needle):
    with pytest.raises(errors.InvalidTaskError, match=needle):
        parse_task_message(headers, body)


def test_exception_meta_uses_args_list_and_qualname():
    meta = exception_to_meta(ValueError("bad", 42))
    assert meta == {"exc_type": "ValueError", "exc_message": ["bad", 42], "exc_module": "builtins"}
    rebuilt = exception_from_meta(meta)
    assert type(rebuilt) is ValueError and rebuilt.args == ("bad", 42)


def test_tq_errors_travel_under_celery_names_and_come_back_as_tq_errors():
    meta = exception_to_meta(errors.WorkerLostError("lost"))
    assert (meta["exc_module"], meta["exc_type"]) == ("billiard.exceptions", "WorkerLostError")
    assert isinstance(exception_from_meta(meta), errors.WorkerLostError)


def test_unknown_exception_class_is_synthesised_and_non_exceptions_refused():
    rebuilt = exception_from_meta(
        {"exc_type": "Nope", "exc_message": ["x"], "exc_module": "no.such.mod"}
    )
    assert type(rebuilt).__name__ == "Nope" and rebuilt.args == ("x",)
    with pytest.raises(errors.SecurityError):
        exception_from_meta({"exc_type": "system", "exc_message": ["echo hi"], "exc_module": "os"})


def test_result_meta_sets_date_done_only_when_ready():
    assert build_result_meta("i", "STARTED", {"pid": 1})["date_done"] is None
    done = build_result_meta("i", "SUCCESS", 4, group_id="g")
    assert done["date_done"] and done["task_id"] == "i" and done["group_id"] == "g"
    assert "parent_id" not in done


def test_saferepr_is_bounded_and_never_raises():
    class Broken:
        def __repr__(self):
            raise RuntimeError("no")

    assert len(saferepr("x" * 5000)) <= 1024
    assert "Broken" in saferepr(Broken())


# -- fuzzing the parser: bad input gives InvalidTaskError and nothing else ---------------------

JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=8,
)
HEADER_KEYS = sorted(CELERY_HEADER_KEYS | {"compression", "tq_signature"})
VALID = build_task_message(task_id="fuzz-id", name="proj.add", args=[1, 2], reply_to="oid")


@st.composite
def near_valid_headers(draw):
    """A valid message's headers with some keys dropped and some set to arbitrary values."""
    headers = dict(VALID.headers)
    for key in draw(st.lists(st.sampled_from(HEADER_KEYS), max_size=4)):
        if draw(st.booleans()):
            headers.pop(key, None)
        else:
            headers[key] = draw(JSONISH)
    return headers


@st.composite
def near_valid_body(draw):
    """[args, kwargs, embed] with parts (or an embed entry) replaced by arbitrary values."""
    args, kwargs, embed = (list(VALID.body[0]), dict(VALID.body[1]), dict(VALID.body[2]))
    parts = [args, kwargs, embed]
    for index in draw(st.lists(st.integers(0, 2), max_size=2)):
        parts[index] = draw(JSONISH)
    if draw(st.booleans()):
        embed_key = draw(st.sampled_from(["callbacks", "errbacks", "chain", "chord"]))
        if isinstance(parts[2], dict):
            parts[2][embed_key] = draw(JSONISH)
    return draw(st.sampled_from([parts, tuple(parts), parts[:2]]))


@given(
    headers=near_valid_headers() | JSONISH,
    body=near_valid_body() | JSONISH,
    properties=st.fixed_dictionaries(
        {}, optional={"reply_to": JSONISH, "correlation_id": JSONISH, "priority": JSONISH}
    )
    | JSONISH,
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_parser_raises_only_invalid_task_error_with_a_one_line_message(headers, body, properties):
    try:
        request = parse_task_message(headers, body, properties)
    except errors.InvalidTaskError as exc:
        assert "\n" not in str(exc) and "\r" not in str(exc)
        return
    # What the parser lets through has the types every later step relies on.
    assert isinstance(request.id, str) and request.id.isprintable()
    assert isinstance(request.name, str) and request.name.isprintable()
    assert isinstance(request.args, list) and isinstance(request.kwargs, dict)
    assert all(isinstance(key, str) for key in request.kwargs)
    assert isinstance(request.retries, int) and request.retries >= 0
    for limit in (request.time_limit, request.soft_time_limit):
        assert limit is None or (isinstance(limit, float) and limit >= 0)
    for moment in (request.eta, request.expires):
        assert moment is None or moment.tzinfo is not None
    for value in (request.root_id, request.parent_id, request.group_id, request.reply_to):
        assert value is None or isinstance(value, str)
    assert request.group_index is None or isinstance(request.group_index, int)
    assert request.priority is None or isinstance(request.priority, int)
    assert isinstance(request.argsrepr, str) and isinstance(request.kwargsrepr, str)
    for chained in (request.callbacks, request.errbacks, request.chain):
        assert chained is None or isinstance(chained, list)
    assert request.chord is None or isinstance(request.chord, dict)
