"""A Celery 5 worker app with the fault app's acks_late tasks, for tq's Redis transport tests.

Same task names and ledger as tests/faults/faultapp.py, same broker, queue, exchanges and
broker_transport_options (TQ_FAULT_TRANSPORT: a short visibility timeout, the test's key prefix).
"""

from __future__ import annotations

import json
import os
import time

from celery import Celery

from tests.faults.ledger import LEDGER_ENV, Ledger

app = Celery(
    "redis_interop",
    broker=os.environ.get("TQ_BROKER_URL"),
    backend=os.environ.get("TQ_RESULT_BACKEND"),
)
app.conf.update(
    task_default_queue=os.environ.get("TQ_DEFAULT_QUEUE", "celery"),
    control_exchange=os.environ.get("TQ_CONTROL_EXCHANGE", "celery"),
    event_exchange=os.environ.get("TQ_EVENT_EXCHANGE", "celeryev"),
    broker_transport_options=json.loads(os.environ.get("TQ_FAULT_TRANSPORT") or "{}"),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


def _record(task, key: str, event: str) -> None:
    request = task.request
    Ledger(os.environ[LEDGER_ENV]).record(
        key, event, task_id=request.id or "", attempt=request.retries or 0, node=request.hostname
    )


@app.task(bind=True, name="faults.late_on", acks_late=True)
def late_on(self, key: str, slow_node: str, slow_s: float, fast_s: float) -> str:
    """acks_late; sleeps slow_s on node slow_node (the one a test kills), fast_s elsewhere."""
    _record(self, key, "start")
    time.sleep(slow_s if self.request.hostname == slow_node else fast_s)
    _record(self, key, "end")
    return key
