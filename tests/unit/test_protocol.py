"""Protocol v2 messages and result meta, field for field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tq import errors
from tq.protocol import (
    build_result_meta,
    build_task_message,
    exception_from_meta,
    exception_to_meta,
    parse_task_message,
    saferepr,
)

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


@pytest.mark.parametrize(
    ("headers", "body", "needle"),
    [
        ({}, [[], {}, {}], "protocol v1"),
        ({"task": "t", "id": "i"}, "text", "body must be"),
        ({"task": "t", "id": "i"}, [[], None, {}], "kwargs an object"),
        ({"task": "t", "id": "i"}, [[], {}, "embed"], "embed must be"),
        ({"task": "t", "id": ""}, [[], {}, {}], "non-empty"),
        ({"task": "t", "id": "i", "eta": "not a date"}, [[], {}, {}], "bad header"),
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
