"""The event log's on-disk format: record lines, segment files and the writer's lock.

A log is a directory of segments named by the receive time of their first record
(`<microseconds since the epoch>.jsonl`); each line is one record,
`{"t": <local receive time>, "e": <the event dict as it came off the wire>}`.
A line is written with one `write()` on an O_APPEND descriptor, so a SIGKILLed writer leaves
at most one torn last line, which readers skip and the next writer terminates.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEGMENT_SUFFIX = ".jsonl"
#: The one writer of a directory holds an flock on this file (and writes its pid in it).
LOCK_FILE = "writer.lock"
#: Directory name of the event log inside the data directory (next to run/ and log/).
EVENT_DIR_NAME = "events"

_SEGMENT_NAME = re.compile(r"^(\d{16,20})\.jsonl$")


@dataclass(frozen=True)
class LoggedEvent:
    """One record: when it was received here, and the event (with `local_received` set)."""

    received_at: float
    event: dict[str, Any]


def default_event_dir(data_dir: Path) -> Path:
    """Where the supervisor and `tq events --record` keep the log for this data directory."""
    return data_dir / EVENT_DIR_NAME


def encode_record(event: dict[str, Any], received_at: float) -> bytes:
    """One log line for an event (its `local_received` is the record's own time)."""
    raw = {key: value for key, value in event.items() if key != "local_received"}
    line = json.dumps({"t": received_at, "e": raw}, separators=(",", ":"), default=repr)
    return line.encode() + b"\n"


def decode_record(line: bytes) -> LoggedEvent | None:
    """A log line -> the record, or None for a torn or foreign line."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    received_at, event = record.get("t"), record.get("e")
    if not isinstance(received_at, int | float) or not isinstance(event, dict):
        return None
    if "type" not in event:
        return None
    event["local_received"] = float(received_at)
    return LoggedEvent(float(received_at), event)


def segment_start(path: Path) -> float:
    """The receive time of a segment's first record, from its name."""
    match = _SEGMENT_NAME.match(path.name)
    return int(match.group(1)) / 1e6 if match else 0.0


def list_segments(directory: Path) -> list[Path]:
    """A log directory's segments, oldest first."""
    try:
        names = [name for name in os.listdir(directory) if _SEGMENT_NAME.match(name)]
    except FileNotFoundError:
        return []
    return [directory / name for name in sorted(names, key=lambda name: (len(name), name))]


def writer_pid(directory: Path) -> int | None:
    """The pid of the process appending to this log right now, or None."""
    path = directory / LOCK_FILE
    try:
        handle = open(path)
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def is_after(path: Path, segment: Path) -> bool:
    return (len(path.name), path.name) > (len(segment.name), segment.name)


def read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read()
    except FileNotFoundError:
        return b""


def ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def file_mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
