"""Fault: a supervised node's log disk fills up; the node keeps running and `tq ps` says why.

The log directory is a tiny tmpfs of the test's own (mounting needs root: skipped otherwise),
filled to the last byte, so the node's writes really fail with ENOSPC.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from tests.integration.supervised import cluster_for

from .ledger import FaultRow
from .tmpfs import fill, mounted_tmpfs

pytestmark = pytest.mark.timeout(180)

#: Size of the log filesystem: room for the node's start-up lines, little more.
LOG_FS_BYTES = 1 << 20
TASKS = 20
RESULT_TIMEOUT_S = 60.0
HOST = socket.gethostname()


@pytest.fixture
def full_log_cluster(tmp_path, monkeypatch):
    log_dir = tmp_path / "data" / "log"  # the supervisor's log directory for this run dir
    with mounted_tmpfs(log_dir, LOG_FS_BYTES):
        yield from cluster_for(tmp_path, monkeypatch)


def test_node_keeps_running_when_its_log_disk_is_full(full_log_cluster, fault_row):
    cluster = full_log_cluster
    from tqtest import tasks

    cluster.tq("up", "1", "-c", "1", "-l", "info", "-Q", cluster.broker.queue)
    before = cluster.node("celery1")
    assert before["state"] == "RUNNING" and before["log_error"] is None
    assert tasks.add.delay(1, 1).get(timeout=RESULT_TIMEOUT_S) == 2
    filler = fill(Path(before["log"]).parent)
    with pytest.raises(OSError) as refused:  # a node's write now fails the same way (once the
        with open(before["log"], "ab", buffering=0) as log:  # last page of its log is used up)
            for _ in range(4096):
                log.write(b"\n")
    assert refused.value.errno == errno.ENOSPC

    # The node keeps serving: it logs a line per task (and fails to write each one).
    results = [tasks.add.delay(i, i) for i in range(TASKS)]
    values = [result.get(timeout=RESULT_TIMEOUT_S) for result in results]
    assert values == [2 * i for i in range(TASKS)]
    replies = cluster.tq("inspect", "ping", "-d", f"celery1@{HOST}", "-t", "5").stdout
    assert "pong" in replies
    # The supervisor notices at its next log check (every 2 s) and says so in ps, once in its log.
    assert cluster.wait(lambda: cluster.node("celery1")["log_error"], timeout=30)
    row = cluster.node("celery1")
    assert row["state"] == "RUNNING" and row["pid"] == before["pid"], row
    assert "no space left on device" in row["log_error"], row
    assert "log error" in cluster.tq("ps").stdout
    supervisor_log = (cluster.run_dir / "supervisor.log").read_text()
    assert supervisor_log.count("no space left on device") == 1, supervisor_log

    # Space again: the error clears, and the node's lines reach its log again.
    filler.unlink()
    assert cluster.wait(lambda: cluster.node("celery1")["log_error"] is None, timeout=30)
    assert tasks.add.delay(2, 3).get(timeout=RESULT_TIMEOUT_S) == 5
    assert "writable again" in (cluster.run_dir / "supervisor.log").read_text()
    fault_row(
        FaultRow(
            "log disk full under a supervised node",
            "embedded",
            sent=TASKS,
            executed=len(values),
            succeeded=len(values),
            failed=0,
            duplicated=0,
            lost=TASKS - len(values),
        )
    )
