"""ReplayDriver: a time cursor over a recorded event log, folding events up to the cursor."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Protocol

from ..errors import DataDirError
from ..eventlog import EventLog, LoggedEvent

#: Playback speeds that `faster` and `slower` step through (1.0 is real time).
SPEEDS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 100.0)
#: How far one seek moves the cursor.
SEEK_STEP_S = 10.0


class ReplaySink(Protocol):
    """Where replayed events go: an EventFeed, or anything that folds and forgets."""

    def fold(self, event: dict[str, Any]) -> None: ...

    def reset(self) -> None: ...


class ReplayDriver:
    """Plays a log into a sink: seek, step and play; seeking back folds again from the start.

    Memory holds the sink's state and one pending record, whatever the log's size; the price is
    that moving back re-reads the log up to the new cursor.
    """

    def __init__(self, log: EventLog, sink: ReplaySink) -> None:
        self.log = log
        self.sink = sink
        self.total, self.start_time, self.end_time = _measure(log)
        self.playing = False
        self.speed = 1.0
        self.position = 0
        self.cursor = self.start_time
        self._records: Iterator[LoggedEvent] = iter(())
        self._next: LoggedEvent | None = None
        self._rewind()

    @property
    def at_end(self) -> bool:
        """True when every record has been folded."""
        return self._next is None

    def _rewind(self) -> None:
        self.sink.reset()
        self.position, self.cursor = 0, self.start_time
        self._records = self.log.read()
        self._next = next(self._records, None)

    def _apply_next(self) -> None:
        record = self._next
        assert record is not None
        self.sink.fold(record.event)
        self.position += 1
        self.cursor = max(self.cursor, record.received_at)
        self._next = next(self._records, None)

    def seek(self, moment: float) -> bool:
        """Put the cursor at `moment`; True when the sink was reset (views must be rebuilt)."""
        moment = min(max(moment, self.start_time), self.end_time)
        rewound = moment < self.cursor
        if rewound:
            self._rewind()
        while self._next is not None and self._next.received_at <= moment:
            self._apply_next()
        self.cursor = moment
        return rewound

    def step(self, count: int) -> bool:
        """Fold `count` more events, or go back -count events; True when the sink was reset."""
        if count >= 0:
            for _ in range(count):
                if self.at_end:
                    break
                self._apply_next()
            return False
        target = max(0, self.position + count)
        self._rewind()
        for _ in range(target):
            self._apply_next()
        return True

    def to_start(self) -> bool:
        """Back to before the first event."""
        self._rewind()
        return True

    def to_end(self) -> bool:
        """Fold everything."""
        return self.seek(self.end_time)

    def advance(self, elapsed_s: float) -> bool:
        """While playing, move the cursor by `elapsed_s` times the speed; stop at the end."""
        if not self.playing:
            return False
        rewound = self.seek(self.cursor + elapsed_s * self.speed)
        if self.at_end and self.cursor >= self.end_time:
            self.playing = False
        return rewound

    def toggle(self) -> bool:
        """Play or pause; playing from the end starts again from the beginning."""
        rewound = False
        if not self.playing and self.at_end:
            rewound = self.to_start()
        self.playing = not self.playing
        return rewound

    def faster(self) -> None:
        self.speed = next((speed for speed in SPEEDS if speed > self.speed), SPEEDS[-1])

    def slower(self) -> None:
        self.speed = next((speed for speed in reversed(SPEEDS) if speed < self.speed), SPEEDS[0])

    def describe(self) -> str:
        """One line for the header: play state, cursor time, offset, event number, speed."""
        mark = "▶" if self.playing else "⏸"
        moment = datetime.fromtimestamp(self.cursor).isoformat(sep=" ", timespec="milliseconds")
        offset = _clock(self.cursor - self.start_time)
        length = _clock(self.end_time - self.start_time)
        return (
            f"{mark} replay {moment}  {offset} of {length}  "
            f"event {self.position}/{self.total}  ×{self.speed:g}"
        )


def _measure(log: EventLog) -> tuple[int, float, float]:
    """(records, first and last receive time) of a log, in one bounded pass."""
    total, first, last = 0, 0.0, 0.0
    for record in log.read():
        if total == 0:
            first = record.received_at
        last = max(last, record.received_at)
        total += 1
    if total == 0:
        raise DataDirError(f"the event log at {log.path} holds no events to replay")
    return total, first, last


def _clock(seconds: float) -> str:
    """Seconds -> 'h:mm:ss' or 'm:ss.s'."""
    minutes, rest = divmod(max(seconds, 0.0), 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours}:{minutes:02d}:{int(rest):02d}"
    return f"{minutes}:{rest:04.1f}"
