"""EventLog: reads a log from a time, or its last bytes, and follows it as it grows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import DataDirError
from .records import (
    LoggedEvent,
    decode_record,
    file_size,
    is_after,
    list_segments,
    read_from,
    segment_start,
)

#: A follower looks for new records this often.
FOLLOW_POLL_S = 0.2


class EventLog:
    """Reads a log: a directory of segments, or one segment file (a copied incident)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        #: Lines skipped because they were torn or not records.
        self.skipped = 0

    def segments(self) -> list[Path]:
        """The segments to read, oldest first."""
        if self.path.is_file():
            return [self.path]
        if not self.path.exists():
            raise DataDirError(
                f"no event log at {self.path}: record one with `tq events --record`, "
                "or run a supervisor with an app (tq -A proj up ...)"
            )
        return list_segments(self.path)

    def read(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        tail_bytes: int | None = None,
    ) -> Iterator[LoggedEvent]:
        """Every record received from `since` to `until`, at most the last `tail_bytes` of it."""
        for record, _, _ in self._scan(since=since, until=until, tail_bytes=tail_bytes):
            yield record

    def follow(
        self,
        *,
        since: float | None = None,
        stop: Callable[[], bool] = lambda: False,
        poll_s: float = FOLLOW_POLL_S,
    ) -> Iterator[LoggedEvent]:
        """Records from `since` (or from now), then new ones as they come, until `stop()`."""
        segments = self.segments()  # now, not at the first next(): "from now" means this call
        segment = segments[-1] if segments else None
        offset = file_size(segment) if segment is not None and since is None else 0
        return self._follow_from(segment, offset, since=since, stop=stop, poll_s=poll_s)

    def _follow_from(
        self,
        segment: Path | None,
        offset: int,
        *,
        since: float | None,
        stop: Callable[[], bool],
        poll_s: float,
    ) -> Iterator[LoggedEvent]:
        if since is not None:
            for record, scanned, scanned_to in self._scan(since=since):
                segment, offset = scanned, scanned_to
                yield record
        pending = b""
        while not stop():
            if segment is None:
                segments = self.segments()
                if not segments:
                    time.sleep(poll_s)
                    continue
                segment, offset, pending = segments[0], 0, b""
            newer = [path for path in self.segments() if is_after(path, segment)]
            chunk = read_from(segment, offset)
            offset += len(chunk)
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                decoded = self._decode(line, since)
                if decoded is not None:
                    yield decoded
            if chunk:
                continue
            if newer:  # the writer moved on: what is left of this segment is a torn line
                if pending:
                    self.skipped += 1
                segment, offset, pending = newer[0], 0, b""
                continue
            time.sleep(poll_s)

    def _scan(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        tail_bytes: int | None = None,
    ) -> Iterator[tuple[LoggedEvent, Path, int]]:
        """(record, segment, offset after it) for the complete lines in range."""
        segments = self.segments()
        if since is not None and self.path.is_dir():
            # A segment ends where the next begins: skip those that end before `since`.
            while len(segments) > 1 and segment_start(segments[1]) <= since:
                segments.pop(0)
        start_offsets = _tail_offsets(segments, tail_bytes)
        for path in segments:
            offset = start_offsets.get(path, 0)
            if offset < 0:
                continue
            try:
                handle = open(path, "rb")
            except FileNotFoundError:
                continue  # dropped by retention while we read
            with handle:
                if offset:
                    handle.seek(offset - 1)
                    if handle.read(1) != b"\n":
                        handle.readline()  # we landed inside a line: start at the next one
                    offset = handle.tell()
                for line in handle:
                    if not line.endswith(b"\n"):
                        self.skipped += 1  # torn (or still being written): not a record yet
                        break
                    offset += len(line)
                    record = self._decode(line, since)
                    if record is None:
                        continue
                    if until is not None and record.received_at > until:
                        return
                    yield record, path, offset

    def _decode(self, line: bytes, since: float | None) -> LoggedEvent | None:
        if not line.strip():
            return None
        record = decode_record(line)
        if record is None:
            self.skipped += 1
            return None
        if since is not None and record.received_at < since:
            return None
        return record


def _tail_offsets(segments: list[Path], tail_bytes: int | None) -> dict[Path, int]:
    """Where to start reading each segment so that at most `tail_bytes` are read (-1: skip)."""
    if tail_bytes is None:
        return {}
    offsets: dict[Path, int] = {}
    left = tail_bytes
    for path in reversed(segments):
        size = file_size(path)
        if left <= 0:
            offsets[path] = -1
        elif size > left:
            offsets[path] = size - left
        left -= size
    return offsets
