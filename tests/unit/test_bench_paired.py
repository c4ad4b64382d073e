"""benchmarks/paired.py: reading a drain's summary, taking turns, and the median change."""

from __future__ import annotations

import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from paired import Drain, median_change, pair_order, parse_drain  # noqa: E402

OUTPUT = """redis: Redis 7.0.15
drained 10,000 in 4.37 s = 2,290/s without cProfile; CPU of main process, pool: 85%, 29%, 28%
CPU per task (us): main process 372, pool 126, 122
"""


def test_a_drains_summary_is_read_from_profile_worker_output() -> None:
    assert parse_drain(OUTPUT) == Drain(rate_per_s=2290.0, main_us=372.0, pool_us=[126.0, 122.0])
    assert parse_drain("the worker stopped or stalled at 10 of 10,000 tasks") is None


def test_the_side_that_runs_first_alternates() -> None:
    assert [pair_order(pair) for pair in range(3)] == [
        ("base", "work"),
        ("work", "base"),
        ("base", "work"),
    ]


def test_the_change_is_the_median_of_the_pairs() -> None:
    def drain(main_us: float) -> Drain:
        return Drain(rate_per_s=1.0, main_us=main_us, pool_us=[])

    pairs = [(drain(400), drain(300)), (drain(400), drain(380)), (drain(500), drain(400))]
    assert round(median_change(pairs), 3) == -0.2
