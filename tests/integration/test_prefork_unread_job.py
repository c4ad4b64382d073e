"""A pool process that dies after it reported one job and before it read the next: that next job
never ran, so it runs elsewhere, not reported lost (WorkerLostError). The parent counts it as
begun once the previous result arrives; the child's record of the last job it read decides.

An OOM kill or a hard time limit racing the end of the previous task puts a death there; the
test places it deterministically (tests/tqtest/dying.py)."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from tests.conftest import reset_app_clients

pytestmark = pytest.mark.timeout(90)


def test_a_job_the_dead_child_never_read_runs_elsewhere(redis_broker, start_worker):
    from tqtest import dying

    reset_app_clients(dying.app)
    worker = start_worker("-c", "1", app="tqtest.dying")
    first = dying.die_after_reply.delay(1.0)
    name = f"behind-{uuid4().hex[:6]}"
    behind = dying.mark.delay(name)
    assert first.get(timeout=20) == "replied"
    try:
        value = behind.get(timeout=20)
    except Exception as exc:  # noqa: BLE001 - reported lost is the failure this test is about
        ledger = Path(redis_broker.env["TQ_TEST_LEDGER"])
        ran = ledger.read_text().split() if ledger.exists() else []
        raise AssertionError(
            f"a job the dead child never read was reported {exc!r}; it ran {ran.count(name)} "
            f"times\n--- worker log ---\n{worker.log()}"
        ) from exc
    assert value == name
