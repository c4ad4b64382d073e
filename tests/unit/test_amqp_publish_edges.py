"""tq's own Basic.Publish frames are py-amqp's for every value a message can carry, and both
refuse the same bad input with the same exception type: header values of every type, each
property at and past its limits, bodies around frame_max (one frame or several), exchange and
routing key names at and past a short string's 255 bytes, flags, channel numbers."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from tq.transports.amqp import Message

from .test_amqp_publish import py_amqp_bytes, tq_bytes

HEADER_VALUES = [
    None, True, False, 0, -1, 2**31 - 1, 2**31, -(2**31), -(2**31) + 1, 2**63 - 1, 2**63,
    -(2**63), -(2**63) - 1, 1.5, float("nan"), float("inf"), Decimal("1.23"), Decimal("-0.001"),
    Decimal("1E+3"), Decimal("NaN"), "", "é", "x" * 300, "\ud800", b"", b"\xff\x00",
    bytearray(b"ab"), datetime(2024, 1, 1, 12), datetime(1960, 1, 1), [1, "a", None, [2]], (1, 2),
    {"a": {"b": [None, 1.0]}}, {}, [], {1}, object(), memoryview(b"ab"),
]  # fmt: skip
PROPERTY_VALUES: dict[str, list[Any]] = {
    "content_type": ["", "é", "x" * 255, "x" * 256, b"raw", 0, False],
    "correlation_id": ["x" * 256, "", "\ud800"],
    "reply_to": ["x" * 300],
    "priority": [0, 255, 256, -1, True, 5.0],
    "delivery_mode": [1, 2, 0],
    "expiration": ["1000", "", 1000],
    "timestamp": [0, 2**64 - 1, 2**64, -1, datetime(2020, 1, 1), 1.5],
    "message_id": ["m"], "type": ["t"], "user_id": ["guest"], "app_id": ["a"], "cluster_id": ["c"],
    "content_encoding": ["utf-8", "binary"],
    "application_headers": [{}, None, [], ""],
}  # fmt: skip
NAMES = ["", "é" * 127, "é" * 128, "x" * 255, "x" * 256, b"bx", None, "\ud800"]


def outcome(make: Callable[[], Message], wire_args: tuple, frame_max: int, how: Callable) -> Any:
    """The bytes written, or the type of the exception raised."""
    try:
        return how(wire_args, make(), frame_max)[0]
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return type(exc)


def differences(cases: list[tuple[str, Callable[[], Message], tuple, int]]) -> list[str]:
    return [
        label
        for label, make, wire_args, frame_max in cases
        if outcome(make, wire_args, frame_max, py_amqp_bytes)
        != outcome(make, wire_args, frame_max, tq_bytes)
    ]


def test_header_values_of_every_type() -> None:
    cases = [
        (
            f"header {value!r:.40}",
            lambda value=value: Message(
                b"body", content_type="application/json", application_headers={"k": value, "é": value}
            ),
            (1, "", "q", True, False),
            131072,
        )
        for value in HEADER_VALUES
    ]
    assert differences(cases) == []


def test_every_property_at_and_past_its_limits() -> None:
    cases = [
        (f"{name}={value!r:.40}", lambda name=name, value=value: Message(b"b", **{name: value}),
         (1, "", "q", False, False), 131072)
        for name, values in PROPERTY_VALUES.items()
        for value in values
    ]  # fmt: skip
    assert differences(cases) == []


def test_bodies_around_frame_max_in_one_frame_or_several() -> None:
    cases = []
    for frame_max in (4096, 131072):
        for extra in range(-60, 20):
            size = frame_max - 8 + extra
            for body in (b"y" * size, "é" * (size // 2)):
                cases.append((
                    f"{type(body).__name__} body {size} at frame_max {frame_max}",
                    lambda body=body: Message(body, content_type="application/json",
                                              application_headers={"id": "x"}),
                    (1, "ex", "rk", False, False), frame_max,
                ))  # fmt: skip
        for size in (0, 1, frame_max * 3 + 5):
            cases.append((f"body {size}", lambda size=size: Message(b"z" * size),
                          (1, "", "rk", False, False), frame_max))  # fmt: skip
    assert differences(cases) == []


def test_names_flags_and_channels() -> None:
    cases = [
        (f"name {name!r:.20} flags {flags}", lambda: Message(b"b"), (5, name, name, *flags), 131072)
        for name in NAMES
        for flags in itertools.product([False, True, 0, 1, "yes", None], repeat=2)
    ]
    cases += [
        (f"channel {channel}", lambda: Message(b"b"), (channel, "", "q", False, False), 131072)
        for channel in (0, 1, 65535, 65536, -1)
    ]
    cases += [
        (f"exchange {name!r}", lambda: Message(b"b"), (1, name, "q", False, False), 131072)
        for name in (3, 0, 2.5)
    ]
    assert differences(cases) == []
