"""The durable event log: append, read from a time, rotate, retain, survive a torn last record."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tq.errors import ConfigError, DataDirError
from tq.eventlog import (
    EventLog,
    EventLogWriter,
    list_segments,
    parse_duration,
    parse_since,
    parse_size,
    writer_pid,
)

T0 = time.time() - 600.0


def task_event(number: int, kind: str = "task-succeeded") -> dict:
    return {"type": kind, "uuid": f"id{number}", "hostname": "w1@h", "clock": number}


def uuids(records) -> list[str]:
    return [record.event["uuid"] for record in records]


def test_appended_events_read_back_in_order_with_their_receive_time(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path) as log:
        for number in range(5):
            log.append(task_event(number), received_at=T0 + number)
    records = list(EventLog(tmp_path).read())
    assert uuids(records) == [f"id{n}" for n in range(5)]
    assert records[2].received_at == T0 + 2
    assert records[2].event["local_received"] == T0 + 2
    assert records[2].event["clock"] == 2 and records[2].event["hostname"] == "w1@h"


def test_read_since_and_until_select_by_receive_time(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path, segment_max_bytes=300) as log:
        for number in range(40):
            log.append(task_event(number), received_at=T0 + number)
    assert len(list_segments(tmp_path)) > 3
    reader = EventLog(tmp_path)
    assert uuids(reader.read(since=T0 + 30)) == [f"id{n}" for n in range(30, 40)]
    assert uuids(reader.read(since=T0 + 10, until=T0 + 12)) == ["id10", "id11", "id12"]


def test_segments_rotate_by_size_and_the_oldest_go_past_the_byte_limit(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path, max_bytes=2000, segment_max_bytes=500) as log:
        for number in range(200):
            log.append(task_event(number), received_at=T0 + number)
        log.enforce_retention()
    segments = list_segments(tmp_path)
    assert 2 <= len(segments) <= 5
    assert sum(path.stat().st_size for path in segments) <= 2000
    kept = uuids(EventLog(tmp_path).read())
    assert kept[-1] == "id199" and "id0" not in kept
    assert kept == sorted(kept, key=lambda uuid: int(uuid[2:]))


def test_segments_that_ended_before_the_retention_are_dropped(tmp_path: Path) -> None:
    now = time.time()
    with EventLogWriter(tmp_path, retention_s=3600, segment_max_age_s=60) as log:
        for minutes_ago in (180, 120, 90, 30, 1):
            log.append(task_event(minutes_ago), received_at=now - minutes_ago * 60)
    # one segment per record; the one begun 90 min ago ran until the next began, 30 min ago
    assert len(list_segments(tmp_path)) == 3
    assert uuids(EventLog(tmp_path).read()) == ["id90", "id30", "id1"]


def test_a_torn_last_record_is_skipped_and_the_next_writer_carries_on(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path) as log:
        log.append(task_event(1), received_at=T0)
    [segment] = list_segments(tmp_path)
    with open(segment, "ab") as handle:
        handle.write(b'{"t": 1.0, "e": {"type": "task-rec')  # killed mid-write
    reader = EventLog(tmp_path)
    assert uuids(reader.read()) == ["id1"] and reader.skipped == 1
    with EventLogWriter(tmp_path) as log:
        log.append(task_event(2), received_at=T0 + 1)
    reader = EventLog(tmp_path)
    assert uuids(reader.read()) == ["id1", "id2"] and reader.skipped == 1


def test_a_sigkilled_writer_leaves_a_readable_log(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from tq.eventlog import EventLogWriter\n"
        "log = EventLogWriter(sys.argv[1])\n"
        "n = 0\n"
        "while True:\n"
        "    log.append({'type': 'task-sent', 'uuid': f'id{n}', 'args': 'x' * 300})\n"
        "    n += 1\n"
        "    if n == 200: print('ready', flush=True)\n"
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        assert writer_pid(tmp_path) == writer.pid
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
    assert writer_pid(tmp_path) is None
    records = uuids(EventLog(tmp_path).read())
    assert len(records) >= 200 and records == [f"id{n}" for n in range(len(records))]


def test_one_writer_per_directory(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path):
        assert writer_pid(tmp_path) == os.getpid()
        with pytest.raises(DataDirError, match="--log-dir"):
            EventLogWriter(tmp_path)
    assert writer_pid(tmp_path) is None


def test_follow_yields_the_backlog_then_new_records_across_rotation(tmp_path: Path) -> None:
    writer = EventLogWriter(tmp_path, segment_max_bytes=400)
    for number in range(3):
        writer.append(task_event(number), received_at=T0 + number)
    stop = threading.Event()
    seen: list[str] = []

    def follow() -> None:
        for record in EventLog(tmp_path).follow(since=T0 + 1, stop=stop.is_set, poll_s=0.02):
            seen.append(record.event["uuid"])

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        for number in range(3, 30):
            writer.append(task_event(number), received_at=T0 + number)
        deadline = time.monotonic() + 10
        while len(seen) < 29 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        follower.join(timeout=5)
        writer.close()
    assert len(list_segments(tmp_path)) > 2
    assert seen == [f"id{n}" for n in range(1, 30)]


def test_follow_without_since_starts_at_the_end(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path) as writer:
        writer.append(task_event(1), received_at=T0)
        deadline = time.monotonic() + 10
        stream = EventLog(tmp_path).follow(stop=lambda: time.monotonic() > deadline, poll_s=0.01)
        writer.append(task_event(2), received_at=T0 + 1)
        assert next(stream).event["uuid"] == "id2"


def test_tail_bytes_reads_only_the_end_of_a_big_log(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path, segment_max_bytes=1000) as log:
        for number in range(100):
            log.append(task_event(number), received_at=T0 + number)
    tail = uuids(EventLog(tmp_path).read(tail_bytes=700))
    assert 5 <= len(tail) < 20 and tail[-1] == "id99"
    assert tail == [f"id{n}" for n in range(100 - len(tail), 100)]


def test_a_single_segment_file_can_be_read_on_its_own(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path / "log") as log:
        log.append(task_event(7), received_at=T0)
    [segment] = list_segments(tmp_path / "log")
    copy = tmp_path / "incident.jsonl"
    copy.write_bytes(segment.read_bytes())
    assert uuids(EventLog(copy).read()) == ["id7"]
    with pytest.raises(DataDirError, match="tq events --record"):
        list(EventLog(tmp_path / "missing").read())


def test_since_durations_times_and_sizes_parse_or_say_what_to_type() -> None:
    now = 1_700_000_000.0
    assert parse_since("30s", now) == now - 30
    assert parse_since("10m", now) == now - 600
    assert parse_since("2h", now) == now - 7200
    assert parse_since("1d", now) == now - 86400
    assert parse_since("2023-11-14T22:13:20+00:00", now) == now
    assert parse_duration("90") == 90.0
    assert parse_size("256M") == 256 << 20 and parse_size("64kb") == 65536
    for bad in ("10 minutes", "yesterday", "-5m"):
        with pytest.raises(ConfigError, match="duration"):
            parse_since(bad, now)
    with pytest.raises(ConfigError, match="size"):
        parse_size("lots")
