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


@pytest.mark.timeout(60)
def test_consumer_shows_disconnected_then_reconnects_when_its_broker_returns(tmp_path) -> None:
    from kombu import Connection

    from tests.faults.servers import OwnRedis, free_port, have_redis_server
    from tq.events import EventDispatcher

    if not have_redis_server():
        pytest.skip("redis-server is not installed")
    server = OwnRedis(tmp_path, free_port())
    server.start()
    app = App("comeback", broker=f"{server.url}/0")
    feed = EventFeed(format_event)
    stop = threading.Event()
    thread = threading.Thread(target=consume_events, args=(app, feed, stop.is_set))

    def wait_for(condition, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert condition(), what

    def send(hostname: str) -> None:
        with Connection(f"{server.url}/0") as connection:
            EventDispatcher(connection, hostname=hostname).send("worker-online", freq=2.0)

    def seen(hostname: str) -> bool:
        with feed.lock:
            return hostname in feed.state.workers

    thread.start()
    try:
        wait_for(lambda: feed.connected is True, "connected at first")
        time.sleep(0.3)  # the consumer's queue is bound before the first event is sent
        send("before@comeback")
        wait_for(lambda: seen("before@comeback"), "an event before the broker went away")
        server.stop()
        wait_for(lambda: feed.connected is False, "disconnected while the broker is away")
        server.start()
        wait_for(lambda: feed.connected is True, "connected again once the broker is back")
        time.sleep(0.3)
        send("after@comeback")
        wait_for(lambda: seen("after@comeback"), "events flow again after the reconnect")
    finally:
        stop.set()
        thread.join(timeout=15)
        server.stop()
    assert not thread.is_alive()
