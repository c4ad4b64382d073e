"""The durable event log that the supervisor and `tq events --record` append to, and its readers.

records.py holds the format, writer.py the one appender per directory (rotation, retention),
reader.py reading from a time and following, timespec.py the '10m' / '256M' parsers.
"""

from __future__ import annotations

from .reader import FOLLOW_POLL_S, EventLog
from .records import (
    EVENT_DIR_NAME,
    LoggedEvent,
    decode_record,
    default_event_dir,
    encode_record,
    list_segments,
    writer_pid,
)
from .timespec import parse_duration, parse_since, parse_size
from .writer import DEFAULT_MAX_BYTES, DEFAULT_RETENTION_S, EventLogWriter, drop_expired_segments

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_RETENTION_S",
    "EVENT_DIR_NAME",
    "FOLLOW_POLL_S",
    "EventLog",
    "EventLogWriter",
    "LoggedEvent",
    "decode_record",
    "default_event_dir",
    "drop_expired_segments",
    "encode_record",
    "list_segments",
    "parse_duration",
    "parse_since",
    "parse_size",
    "writer_pid",
]
