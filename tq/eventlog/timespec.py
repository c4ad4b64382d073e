"""Durations, times and sizes as a user types them for the event log (10m, 2h, 256M)."""

from __future__ import annotations

import re
import time
from datetime import datetime

from ..errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_duration(text: str) -> float:
    """'30s', '10m', '2h', '1d' (or bare seconds) -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"{text!r} is not a duration: use a number with s, m, h or d (30s, 10m)")
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]


def parse_since(text: str, now: float | None = None) -> float:
    """A duration back from now ('10m') or an ISO time ('2024-05-01T12:00') -> epoch seconds."""
    now = time.time() if now is None else now
    if _DURATION.match(text):
        return now - parse_duration(text)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{text!r} is neither a duration (30s, 10m, 2h, 1d) "
            "nor an ISO time (2024-05-01T12:00:00)"
        ) from None
    return moment.timestamp()  # a naive time is local time, as a user typing it means


def parse_size(text: str) -> int:
    """'256MB', '64k', '1g' or bare bytes -> bytes (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(f"{text!r} is not a size: use bytes or a number with k, M or G (256M)")
    unit = (match.group(2) or "").lower()[:1]
    return int(match.group(1)) * _SIZE_UNITS[unit]
