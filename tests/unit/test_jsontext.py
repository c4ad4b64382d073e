"""tq.jsontext decodes task messages exactly as kombu does, faster where it can."""

from __future__ import annotations

import datetime
import decimal
import uuid

import pytest
from kombu.serialization import dumps as kombu_serialize
from kombu.serialization import loads as kombu_deserialize
from kombu.utils.json import dumps as kombu_dumps
from kombu.utils.json import loads as kombu_loads

from tq import jsontext

SAMPLES = [
    {"headers": {"task": "proj.tasks.add", "id": "a1", "eta": None}, "body": [[2, 2], {}, {}]},
    # kombu's encoder writes these as {"__type__": ..., "__value__": ...}: the hook decodes them.
    {"when": datetime.datetime(2026, 12, 7, 1, 2, 3), "id": uuid.UUID(int=7)},
    {"price": decimal.Decimal("1.10"), "day": datetime.date(2026, 12, 7)},
    {"text": "naïve café ✓"},  # written with \u escapes
    [1, 2.5, None, True, "x", {"nested": [{"deep": {}}]}],
]


@pytest.mark.parametrize("value", SAMPLES)
def test_decodes_what_kombu_encodes_to_what_kombu_decodes(value):
    text = kombu_dumps(value)
    assert jsontext.loads(text) == kombu_loads(text)
    assert jsontext.loads(text.encode()) == kombu_loads(text.encode())
    assert jsontext.loads(memoryview(text.encode())) == kombu_loads(memoryview(text.encode()))


def test_a_type_marker_spelled_with_escapes_is_still_decoded():
    text = '{"\\u005f_type__": "uuid", "__value__": {"hex": "00000000000000000000000000000007"}}'
    assert jsontext.loads(text) == uuid.UUID(int=7) == kombu_loads(text)


def test_bad_json_raises_as_kombu_does():
    with pytest.raises(ValueError):
        jsontext.loads('{"task": ')


def test_kombu_bodies_decode_through_it_once_registered():
    jsontext.register_json_decoder()
    content_type, encoding, body = kombu_serialize({"at": datetime.date(2026, 1, 2)}, "json")
    decoded = kombu_deserialize(body, content_type, encoding, accept={"application/json"})
    assert decoded == {"at": datetime.date(2026, 1, 2)}
    from kombu.serialization import registry

    assert registry._decoders["application/json"] is jsontext.loads
