"""EventFeed hand-over and the consumer's reconnect loop (no UI)."""

from __future__ import annotations

import threading
import time

import pytest

from tq import App
from tq.cli.events import format_event
from tq.tui.feed import EventFeed, consume_events

from .seed import seed_events


@pytest.mark.timeout(10)
def test_take_changes_returns_each_change_once() -> None:
    feed = EventFeed(format_event)
    for event in seed_events():
        feed.fold(event)
    changes = feed.take_changes()
    assert len(changes.task_ids) == 5 and changes.workers_changed
    assert len(changes.event_lines) == len(seed_events())
    assert not feed.take_changes()


@pytest.mark.timeout(20)
def test_consumer_reports_disconnected_when_the_broker_is_unreachable() -> None:
    app = App("unreachable", broker="redis://127.0.0.1:1/0")
    feed = EventFeed(format_event)
    stop = threading.Event()
    thread = threading.Thread(target=consume_events, args=(app, feed, stop.is_set))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while feed.connected is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert feed.connected is False
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
