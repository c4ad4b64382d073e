"""EventLogWriter: appends events to a log directory, rotating segments, within retention."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import DataDirError
from .records import (
    LOCK_FILE,
    SEGMENT_SUFFIX,
    encode_record,
    ends_with_newline,
    file_mtime,
    file_size,
    list_segments,
    segment_start,
)

#: Records older than this are dropped (whole segments at a time).
DEFAULT_RETENTION_S = 24 * 3600.0
#: The log's segments together stay under this many bytes (oldest dropped first).
DEFAULT_MAX_BYTES = 256 << 20
#: A log is cut in about this many segments, so retention drops 1/16 of it at a time ...
SEGMENTS_PER_LOG = 16
#: ... but never in segments smaller than this.
MIN_SEGMENT_BYTES = 4096
#: A segment is closed once its first record is this old, so age retention can drop it.
SEGMENT_MAX_AGE_S = 3600.0
#: Data reaches the disk (fdatasync) at most this long after it was written: a SIGKILL loses
#: nothing already appended; a power cut loses at most this much.
SYNC_INTERVAL_S = 1.0
#: Seconds between retention checks while appending.
RETENTION_CHECK_S = 30.0
#: A writer retries the directory lock this long (a reader probing for a writer holds it briefly).
LOCK_RETRY_S = 0.5


class EventLogWriter:
    """Appends events to a log directory, rotating segments by size and age, within retention."""

    def __init__(
        self,
        directory: Path,
        *,
        retention_s: float | None = DEFAULT_RETENTION_S,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        segment_max_bytes: int | None = None,
        segment_max_age_s: float = SEGMENT_MAX_AGE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.retention_s = retention_s
        self.max_bytes = max_bytes
        if segment_max_bytes is None:
            limit = max_bytes if max_bytes else DEFAULT_MAX_BYTES
            segment_max_bytes = max(MIN_SEGMENT_BYTES, limit // SEGMENTS_PER_LOG)
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_age_s = segment_max_age_s
        self.clock = clock
        self._fd: int | None = None
        self._segment_start = 0.0
        self._segment_bytes = 0
        self._synced_at = 0.0
        self._dirty = False
        self._checked_at = 0.0
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise DataDirError(
                f"cannot create the event log directory {self.directory}: {exc}"
            ) from None
        self._lock = self._take_lock()
        self._reopen_last_segment()
        self.enforce_retention()

    def _take_lock(self) -> Any:
        handle = open(self.directory / LOCK_FILE, "a+")
        deadline = time.monotonic() + LOCK_RETRY_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:  # a reader's probe (writer_pid) holds it briefly
                    time.sleep(0.05)
                    continue
            handle.seek(0)
            pid = handle.read().strip() or "?"
            handle.close()
            raise DataDirError(
                f"another recorder (pid {pid}) is writing the event log in {self.directory}: "
                "read it with `tq events --dump --since ...`, or record elsewhere with --log-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle

    def _reopen_last_segment(self) -> None:
        """Continue the newest segment if it may still grow; end a torn last line first."""
        segments = list_segments(self.directory)
        if not segments:
            return
        last = segments[-1]
        size = last.stat().st_size
        self._segment_start = segment_start(last)
        if size >= self.segment_max_bytes:
            return
        self._fd = os.open(last, os.O_WRONLY | os.O_APPEND)
        self._segment_bytes = size
        if size and not ends_with_newline(last):
            # A writer was killed mid-line: end that line so it stays one skipped record.
            self._segment_bytes += os.write(self._fd, b"\n")

    def append(self, event: dict[str, Any], received_at: float | None = None) -> None:
        """Write one event as one record (received now unless told)."""
        if received_at is None:
            received_at = float(event.get("local_received") or self.clock())
        line = encode_record(event, received_at)
        if self._fd is not None and (
            self._segment_bytes + len(line) > self.segment_max_bytes
            or received_at - self._segment_start > self.segment_max_age_s
        ):
            self._close_segment()
            self.enforce_retention()
        if self._fd is None:
            self._open_segment(received_at)
        assert self._fd is not None
        self._segment_bytes += os.write(self._fd, line)
        self._dirty = True
        now = self.clock()
        if now - self._synced_at >= SYNC_INTERVAL_S:
            self.sync()
        if now - self._checked_at >= RETENTION_CHECK_S:
            self.enforce_retention()

    def _open_segment(self, first_record_at: float) -> None:
        stamp = max(int(first_record_at * 1e6), 0)
        if self._segment_start and stamp <= int(self._segment_start * 1e6):
            stamp = int(self._segment_start * 1e6) + 1  # names stay in order if time steps back
        while True:
            path = self.directory / f"{stamp:016d}{SEGMENT_SUFFIX}"
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
                break
            except FileExistsError:
                stamp += 1
        self._segment_start = stamp / 1e6
        self._segment_bytes = 0

    def _close_segment(self) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None

    def sync(self) -> None:
        """Push written records to the disk."""
        if self._fd is not None and self._dirty:
            os.fdatasync(self._fd)
            self._dirty = False
        self._synced_at = self.clock()

    def enforce_retention(self) -> list[Path]:
        """Drop whole segments past the age or size limit (never the one being written)."""
        self._checked_at = self.clock()
        return drop_expired_segments(
            self.directory,
            now=self._checked_at,
            retention_s=self.retention_s,
            max_bytes=self.max_bytes,
            keep_last=self._fd is not None,
        )

    def close(self) -> None:
        """Flush, close the segment and release the directory."""
        self._close_segment()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> EventLogWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def drop_expired_segments(
    directory: Path,
    *,
    now: float,
    retention_s: float | None,
    max_bytes: int | None,
    keep_last: bool = True,
) -> list[Path]:
    """Delete segments older than `retention_s` or beyond `max_bytes` in total; return them."""
    segments = list_segments(directory)
    removable = segments[:-1] if keep_last else segments
    dropped: list[Path] = []
    sizes = {path: file_size(path) for path in segments}
    total = sum(sizes.values())
    for index, path in enumerate(removable):
        # A segment ends where the next begins; the last one when it was last written.
        ends_at = (
            segment_start(segments[index + 1]) if index + 1 < len(segments) else file_mtime(path)
        )
        too_old = retention_s is not None and ends_at < now - retention_s
        too_big = max_bytes is not None and total > max_bytes
        if not (too_old or too_big):
            break
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        total -= sizes[path]
        dropped.append(path)
    return dropped
