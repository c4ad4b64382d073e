"""The app the fault tests run: every task appends to the SQLite ledger named by TQ_FAULT_LEDGER.

Broker, backend and queue come from the TQ_* variables the `broker` fixture sets;
TQ_FAULT_TRANSPORT holds JSON broker_transport_options (short visibility timeouts, a Redis
key prefix of the test's own).
"""

from __future__ import annotations

import json
import os
import random
import time

from tq import App

from .ledger import LEDGER_ENV, Ledger

#: Environment variable with JSON broker transport options for this app (client and worker).
TRANSPORT_ENV = "TQ_FAULT_TRANSPORT"
#: How long a task that already started once sleeps when it runs again.
RERUN_S = 0.05

app = App("faultapp")
app.conf.update(broker_transport_options=json.loads(os.environ.get(TRANSPORT_ENV) or "{}"))

_ledger: Ledger | None = None


def ledger() -> Ledger:
    """This process's handle on the test's ledger."""
    global _ledger
    path = os.environ[LEDGER_ENV]
    if _ledger is None or str(_ledger.path) != path:
        _ledger = Ledger(path)
    return _ledger


def _record(task, key: str, event: str) -> None:
    request = task.request
    ledger().record(
        key,
        event,
        task_id=request.id or "",
        attempt=request.retries or 0,
        node=request.hostname or "",
    )


def _hold(task, key: str, seconds: float) -> str:
    # The first run of a key sleeps `seconds` (time for the test to break something); a
    # redelivered run is quick.
    first = ledger().starts()[key] == 0
    _record(task, key, "start")
    time.sleep(seconds if first else RERUN_S)
    _record(task, key, "end")
    return key


@app.task(bind=True, name="faults.hold_late", acks_late=True, reject_on_worker_lost=True)
def hold_late(self, key: str, seconds: float) -> str:
    """acks_late + reject_on_worker_lost: a lost pool process sends the message back."""
    return _hold(self, key, seconds)


@app.task(bind=True, name="faults.hold_early")
def hold_early(self, key: str, seconds: float) -> str:
    """The default: acked as it starts, so a lost pool process fails it."""
    return _hold(self, key, seconds)


@app.task(bind=True, name="faults.late_on", acks_late=True)
def late_on(self, key: str, slow_node: str, slow_s: float, fast_s: float) -> str:
    """acks_late; sleeps slow_s on node slow_node (the one a test breaks), fast_s elsewhere."""
    _record(self, key, "start")
    time.sleep(slow_s if self.request.hostname == slow_node else fast_s)
    _record(self, key, "end")
    return key


@app.task(bind=True, name="faults.mark_late", acks_late=True, ignore_result=True)
def mark_late(self, key: str, seconds: float) -> None:
    """acks_late and short: a lost connection sends back what runs (and what ran, unacked)."""
    _record(self, key, "start")
    time.sleep(seconds)
    _record(self, key, "end")


@app.task(bind=True, name="faults.stuck", time_limit=1.0)
def stuck(self, key: str) -> None:
    """Sleeps far beyond its 1 s hard time limit."""
    _record(self, key, "start")
    time.sleep(120)
    _record(self, key, "end")


_hoard: list[bytearray] = []


@app.task(bind=True, name="faults.hoard")
def hoard(self, key: str, megabytes: int) -> int:
    """Leak: keep `megabytes` MB in a module global; return the pool process's pid."""
    _record(self, key, "start")
    block = bytearray(megabytes * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not just reserved
    _hoard.append(block)
    _record(self, key, "end")
    return os.getpid()


@app.task(bind=True, name="faults.quick")
def quick(self, key: str) -> int:
    """Run at once; return the pool process's pid."""
    _record(self, key, "start")
    _record(self, key, "end")
    return os.getpid()


class FlakyError(Exception):
    """The failure the flaky task raises (and retries on)."""


#: Chance that one attempt of a flaky task fails.
FLAKY_RATE = 0.05
#: Chance that a flaky task fails on every attempt (ends in FAILURE).
DOOMED_RATE = 0.01
FLAKY_MAX_RETRIES = 2


def attempt_fails(key: str, attempt: int) -> bool:
    """Whether attempt `attempt` (0 = first run) of flaky task `key` fails: a seeded draw."""
    if random.Random(f"doomed:{key}").random() < DOOMED_RATE:
        return True
    return random.Random(f"{key}:{attempt}").random() < FLAKY_RATE


@app.task(
    bind=True,
    name="faults.flaky",
    autoretry_for=(FlakyError,),
    retry_backoff=0.05,
    retry_backoff_max=0.5,
    retry_jitter=False,
    max_retries=FLAKY_MAX_RETRIES,
)
def flaky(self, key: str) -> str:
    """Fails on the attempts attempt_fails() picks; retried with back-off."""
    _record(self, key, "start")
    if attempt_fails(key, self.request.retries or 0):
        raise FlakyError(key)
    _record(self, key, "end")
    return key
