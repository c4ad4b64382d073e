"""MetricHistory: the header's figures sampled once a second, for its sparklines (no UI)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

#: Samples kept: one a second for five minutes.
HISTORY_SAMPLES = 300
#: Seconds between samples.
SAMPLE_INTERVAL_S = 1.0
#: Samples averaged for the rate printed beside a sparkline.
RATE_SAMPLES = 10
#: The series a history keeps, in the order the header shows them.
SERIES = ("succeeded", "failed", "active", "queued")


@dataclass(frozen=True)
class Totals:
    """The counters read at one moment: cumulative outcomes and current levels."""

    succeeded: int
    failed: int
    active: int
    queued: int | None


class MetricHistory:
    """Per-second success and failure rates, active and queued counts, in bounded memory."""

    def __init__(self, maxlen: int = HISTORY_SAMPLES) -> None:
        self.series: dict[str, deque[float]] = {name: deque(maxlen=maxlen) for name in SERIES}
        self.latest: Totals | None = None
        self._last: tuple[float, Totals] | None = None

    def sample(self, now: float, totals: Totals) -> bool:
        """Add one sample when a second has passed since the last; return whether it did."""
        self.latest = totals
        if self._last is None:
            self._last = (now, totals)  # the first reading is only a baseline for the rates
            return False
        then, before = self._last
        elapsed = now - then
        if elapsed < SAMPLE_INTERVAL_S:
            return False
        self._last = (now, totals)
        # A counter that went down was reset (a new state): count from zero, never negative.
        self.series["succeeded"].append(max(0, totals.succeeded - before.succeeded) / elapsed)
        self.series["failed"].append(max(0, totals.failed - before.failed) / elapsed)
        self.series["active"].append(float(totals.active))
        self.series["queued"].append(float(totals.queued or 0))
        return True

    def extend(self, name: str, values: Iterable[float]) -> None:
        """Append known values to one series (seeded data, a replayed backlog)."""
        self.series[name].extend(values)

    def rate(self, name: str, samples: int = RATE_SAMPLES) -> float:
        """The mean of the last `samples` values of a series (0 when empty)."""
        values = list(self.series[name])[-samples:]
        return sum(values) / len(values) if values else 0.0
