"""The header's history: per-second rates from counters sampled once a second, and the header."""

from __future__ import annotations

import asyncio

import pytest

from tq.tui.history import MetricHistory, Totals
from tq.tui.widgets.header import metric_text

from .seed import NOW, seeded_app, task_event


def test_rates_are_counter_deltas_per_second_and_levels_are_kept_as_read() -> None:
    history = MetricHistory(maxlen=3)
    assert not history.sample(100.0, Totals(succeeded=10, failed=1, active=2, queued=None))
    assert not history.sample(100.5, Totals(succeeded=12, failed=1, active=2, queued=5))
    assert history.sample(102.0, Totals(succeeded=30, failed=5, active=4, queued=7))
    assert list(history.series["succeeded"]) == [10.0]  # (30 - 10) / 2 s
    assert list(history.series["failed"]) == [2.0]
    assert list(history.series["active"]) == [4.0]
    assert list(history.series["queued"]) == [7.0]
    for second in range(103, 108):
        history.sample(float(second), Totals(succeeded=0, failed=5, active=0, queued=None))
    # bounded, and a counter that went back (a new state) counts as zero, never negative
    assert list(history.series["succeeded"]) == [0.0, 0.0, 0.0]
    assert metric_text("queued", history) == "queued –"
    assert metric_text("succeeded", history) == "ok 0.0/s"


@pytest.mark.timeout(30)
def test_header_shows_rates_from_events_folded_between_samples() -> None:
    async def scenario() -> None:
        app = seeded_app()
        now = [NOW + 100.0]
        app.clock = lambda: now[0]
        app.history = MetricHistory()
        async with app.run_test(size=(80, 24)) as pilot:
            app.sample_history()  # the baseline
            for number in range(20):
                uuid = f"e{number:07d}-0000-4000-8000-000000000000"
                app.feed.fold(task_event("task-succeeded", uuid, 7, result="1", runtime=0.1))
            app.feed.fold(task_event("task-failed", "e9999999", 7, exception="X()"))
            now[0] += 2.0
            app.sample_history()
            await pilot.pause()
            assert list(app.history.series["succeeded"]) == [10.0]
            label = app.query_one("#metric-succeeded .metric-label").render()
            assert str(label) == "ok 10.0/s"
            assert str(app.query_one("#metric-failed .metric-label").render()) == "fail 0.5/s"
            # the status line follows the 10 Hz refresh of folded events: wait for it (bounded)
            for _ in range(100):
                status = str(app.query_one("#status-line").render())
                if "tasks 26" in status:
                    break
                await pilot.pause(0.05)
            assert "workers 0/1 up" in status and "tasks 26" in status

    asyncio.run(scenario())
