"""Faults of the embedded (SQLite) broker: a broker file locked past busy_timeout, a full data
dir, a file damaged under a running worker. Nothing is stranded, the worker outlasts a passing
fault, and a damaged file ends it with one line naming the file and the fix.

Each test drives real `tq worker` processes and real clients on a broker file of its own.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ledger_lines, make_broker_env, reset_test_app, wait_until

from .tmpfs import fill, mounted_tmpfs

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def embedded(tmp_path, monkeypatch):
    return make_broker_env("embedded", tmp_path, monkeypatch)


def broker_db(env) -> Path:
    return Path(env.env["TQ_DATA_DIR"]) / "broker.db"


def short_busy_timeout(monkeypatch) -> None:
    """Clients and workers started after this give up on a lock after 0.3 s."""
    monkeypatch.setenv("TQ_TEST_TRANSPORT_OPTIONS", json.dumps({"busy_timeout": 0.3}))
    reset_test_app()


def hold_write_lock(env, seconds: float) -> None:
    """Keep the broker file's write lock from another connection for `seconds` (longer than
    the short busy_timeout: whoever waits for it gives up)."""
    db = sqlite3.connect(broker_db(env), isolation_level=None, timeout=30)
    try:
        db.execute("BEGIN IMMEDIATE")
        time.sleep(seconds)
        db.execute("ROLLBACK")
    finally:
        db.close()


def worker_stderr(worker) -> str:
    path = Path(str(worker.logfile)[: -len(".log")] + ".err")
    return path.read_text() if path.exists() else ""


def test_failed_restore_after_lost_connection_strands_prefetched_messages(
    embedded, monkeypatch, start_worker, tasks
):
    """Another process holds the write lock past busy_timeout. The worker drops its connection
    and gives back the acks_late messages it prefetched; that restore fails too (still locked)
    and is tried again after the reconnection. It used to be given up ("UNABLE TO RESTORE"):
    the messages stayed unacked under the worker's own live process, renewed by it, and never
    ran while it lived."""
    short_busy_timeout(monkeypatch)
    names = [f"m{i}" for i in range(12)]
    for name in names:
        tasks.late_sleep.apply_async((name, 0.5), ignore_result=True)
    worker = start_worker("-c", "1", "--prefetch-multiplier", "4")
    assert wait_until(lambda: "m0" in ledger_lines(embedded), 15)
    hold_write_lock(embedded, 2.0)
    # 12 tasks of 0.5 s on one process: all done in ~8 s once the lock is free.
    done = wait_until(lambda: set(names) <= set(ledger_lines(embedded)), 20)
    stranded = (
        sqlite3.connect(broker_db(embedded))
        .execute("SELECT holder_pid, COUNT(*) FROM unacked GROUP BY holder_pid")
        .fetchall()
    )
    assert worker.process.poll() is None
    assert done, (
        f"never ran: {sorted(set(names) - set(ledger_lines(embedded)))}; "
        f"unacked rows by holder: {stranded} (worker pid {worker.pid})"
    )


@pytest.fixture
def small_data_dir(embedded):
    with mounted_tmpfs(Path(embedded.env["TQ_DATA_DIR"]), 3 << 20) as data:
        yield data


def test_worker_survives_a_data_dir_that_is_full_for_a_moment(
    embedded, small_data_dir, start_worker, tasks
):
    """The data dir's filesystem fills up for 3 s while a worker holds acks_late tasks. The
    worker takes "database or disk is full" for a lost connection and reconnects until the
    file can be written again (a DataDirError on a reconnection is a failed attempt; it used to
    end the worker after one)."""
    names = [f"a{i}" for i in range(8)]
    for name in names:
        tasks.late_sleep.apply_async((name, 0.5), ignore_result=True)
    worker = start_worker("-c", "1", "--prefetch-multiplier", "4")
    assert wait_until(lambda: "a0" in ledger_lines(embedded), 15)
    filler = fill(small_data_dir)
    time.sleep(3.0)
    filler.unlink()
    tasks.mark.apply_async(("after",), ignore_result=True)
    ran = wait_until(lambda: "after" in ledger_lines(embedded), 15)
    assert worker.process.poll() is None, (
        f"worker exited ({worker.process.returncode}) on a full disk:\n"
        f"{worker.log()[-1500:]}\n{worker_stderr(worker)[-800:]}"
    )
    assert ran


def test_broker_file_corrupted_under_a_running_worker_gives_one_line_not_a_traceback(
    embedded, start_worker, tasks
):
    """Pages of broker.db go bad while a worker consumes: the worker stops with the one-line
    DataDirError that opening such a file gives (it used to die with a Python traceback of
    sqlite3.DatabaseError: 'database disk image is malformed')."""
    for i in range(200):
        tasks.begin_end.apply_async((f"p{i}" + "z" * 3000, 0.05), ignore_result=True)
    worker = start_worker("-c", "1", "--prefetch-multiplier", "1")
    time.sleep(0.3)
    path = broker_db(embedded)
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with open(path, "r+b") as broker_file:  # a bad b-tree page header on every page but the first
        for offset in range(4096, path.stat().st_size, 4096):
            broker_file.seek(offset)
            broker_file.write(b"\xff" * 12)
    # A write from another connection (page 1, left intact) makes the worker drop its page
    # cache: its next transaction reads the damaged pages instead of the copies it kept.
    writer = sqlite3.connect(path, isolation_level=None)
    version = writer.execute("PRAGMA user_version").fetchone()[0]
    writer.execute(f"PRAGMA user_version = {version}")
    writer.close()
    try:
        worker.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    output = worker_stderr(worker) + worker.log()
    assert "Traceback" not in output, output[-2500:]
    assert worker.process.returncode is not None, output[-2500:]
    assert "is corrupt or not a SQLite file" in worker_stderr(worker), output[-2500:]


def test_acks_a_locked_file_refused_are_written_after_reconnecting(
    embedded, monkeypatch, start_worker, tasks
):
    """Tasks acked early whose acks were still waiting to be written when a lock held past
    busy_timeout dropped the connection: the acks are written after the reconnection, so the
    next worker does not run those tasks again once this one has stopped."""
    short_busy_timeout(monkeypatch)
    names = [f"e{i}" for i in range(40)]
    for name in names:
        tasks.begin_end.apply_async((name, 0.05), ignore_result=True)
    worker = start_worker("-c", "1", "--prefetch-multiplier", "1")
    assert wait_until(lambda: "e3:end" in ledger_lines(embedded), 15)
    hold_write_lock(embedded, 1.5)
    ended = {f"{name}:end" for name in names}
    assert wait_until(lambda: ended <= set(ledger_lines(embedded)), 30), worker.log()[-2000:]
    assert worker.stop() == 0
    successor = start_worker("-c", "1")
    time.sleep(3.0)  # its sweep finds the stopped worker's rows at once (a dead holder)
    begun = [line for line in ledger_lines(embedded) if line.endswith(":begin")]
    twice = sorted(line for line in set(begun) if begun.count(line) > 1)
    assert not twice, (twice, worker.log()[-2000:], successor.log()[-1000:])
