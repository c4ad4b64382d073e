"""JSON as kombu decodes it, without kombu's per-object hook where the text cannot need it.

kombu decodes every JSON object through a Python hook that turns ``{"__type__": ...,
"__value__": ...}`` back into a datetime, UUID or Decimal. A task message is about ten objects
(the envelope on Redis and SQLite, headers, properties, the body), so the hook costs half the
decoding. Text that contains neither ``"__type__"`` nor a ``\\u`` escape (which could spell it
otherwise) has no such object: the standard library's C decoder alone gives the same result.
"""

from __future__ import annotations

import json
from typing import Any

from kombu.serialization import registry
from kombu.utils.json import dumps as kombu_dumps
from kombu.utils.json import loads as kombu_loads

_plain_loads = json.loads


def loads(text: str | bytes | bytearray | memoryview) -> Any:
    """Decode JSON text (or UTF-8 bytes) exactly as kombu.utils.json.loads does."""
    if isinstance(text, memoryview):
        text = text.tobytes()
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    if '"__type__"' in text or "\\u" in text:
        return kombu_loads(text)
    return _plain_loads(text)


def register_json_decoder() -> None:
    """Make kombu's serializer registry decode application/json bodies with `loads` (the same
    result, faster); encoding stays kombu's. Safe to call repeatedly."""
    registry.register(
        "json", kombu_dumps, loads, content_type="application/json", content_encoding="utf-8"
    )
