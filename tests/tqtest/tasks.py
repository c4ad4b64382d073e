"""Tasks the integration tests call. A ledger file (TQ_TEST_LEDGER) records executions."""

import os
import time

from tq.errors import Reject, SoftTimeLimitExceeded

from .tq import app


def record(event: str) -> None:
    """Append one line to the test's ledger: independent of the broker under test."""
    path = os.environ.get("TQ_TEST_LEDGER")
    if path:
        with open(path, "a") as ledger:
            ledger.write(f"{event}\n")


def attempts(event: str) -> int:
    path = os.environ.get("TQ_TEST_LEDGER")
    if not path or not os.path.exists(path):
        return 0
    with open(path) as ledger:
        return sum(1 for line in ledger if line.strip() == event)


@app.task
def add(x, y):
    return x + y


@app.task
def mul(x, y):
    return x * y


@app.task
def xsum(numbers):
    return sum(numbers)


@app.task
def noop():
    return None


@app.task
def boom(*args):
    raise ValueError("bad", 42)


@app.task
def mark(name):
    record(name)
    return name


@app.task
def sleep_then(seconds, value=None):
    time.sleep(seconds)
    return value


@app.task(acks_late=True)
def late_sleep(name, seconds):
    """acks_late: its message stays unacked in the broker while it runs."""
    record(name)
    time.sleep(seconds)
    return attempts(name)


@app.task
def recorded(name):
    """Record one run; return how many runs the ledger has."""
    record(name)
    return attempts(name)


@app.task
def pid():
    return os.getpid()


@app.task(track_started=True)
def slow_tracked(seconds):
    time.sleep(seconds)
    return "done"


@app.task(bind=True, max_retries=3)
def flaky(self, name, fail_times):
    record(name)
    if self.request.retries < fail_times:
        raise self.retry(exc=KeyError(name), countdown=0.2)
    return self.request.retries


@app.task(bind=True, max_retries=1)
def always_retry(self):
    raise self.retry(exc=RuntimeError("still broken"), countdown=0.1)


@app.task(autoretry_for=(ZeroDivisionError,), retry_backoff=0.1, retry_jitter=False, max_retries=2)
def auto(name):
    record(name)
    if attempts(name) < 3:
        return 1 / 0
    return attempts(name)


@app.task
def soft_limited(seconds):
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "soft limit caught"
    return "no limit"


@app.task
def die(name):
    record(name)
    os.kill(os.getpid(), 9)


@app.task(acks_late=True, reject_on_worker_lost=True)
def die_once(name):
    record(name)
    if attempts(name) == 1:
        os.kill(os.getpid(), 9)
    return attempts(name)


@app.task(acks_late=True, reject_on_worker_lost=True)
def die_always(name):
    """A poison task: its pool process dies every time it runs."""
    record(name)
    os.kill(os.getpid(), 9)


@app.task
def routed_exact():
    return "hipri"


@app.task
def glob_one():
    return "globbed"


@app.task
def reject_it(requeue):
    raise Reject("no thanks", requeue=requeue)


@app.task
def leak(megabytes):
    global _hoard
    _hoard = bytearray(megabytes * 1024 * 1024)
    return os.getpid()


_hoard = None


@app.task(acks_late=True)
def late_sleeper(name, seconds):
    record(name)
    time.sleep(seconds)
    return name


@app.task(acks_late=True)
def slow_first_time(name, seconds):
    """Sleep on the first delivery only: a redelivery returns at once."""
    record(name)
    if attempts(name) == 1:
        time.sleep(seconds)
    return attempts(name)


@app.task
def on_error(task_id):
    record(f"errback:{task_id}")


@app.task
def on_error_new_style(request, exc, traceback):
    record(f"new-errback:{request.id}:{type(exc).__name__}")


# -- canvas (workflows) -----------------------------------------------------------------------


@app.task
def add_debug(x, y, debug=False):
    return [x + y, debug]


@app.task
def slow_add(x, y, seconds=0.05):
    time.sleep(seconds)
    return x + y


@app.task
def upload_document(name):
    return f"doc:{name}"


@app.task
def apply_filter(document, filter_name):
    return f"{filter_name}({document})"


@app.task
def counted(name, value):
    """A chord header task that records each run, so a test can see redeliveries."""
    record(name)
    return value


@app.task
def tally(numbers, name):
    """A chord body that records each run, so a test can count how often it ran."""
    record(f"{name}:{sum(numbers)}")
    return sum(numbers)


@app.task
def loaded(*names):
    """Which of these modules the pool process running this task had imported."""
    import sys

    return [name for name in names if name in sys.modules]


@app.task
def begin_end(name, seconds):
    """Records `name:begin`, sleeps, then records `name:end`: whether it ran to the end."""
    record(f"{name}:begin")
    time.sleep(seconds)
    record(f"{name}:end")


@app.task(rate_limit="4/s")
def rated(name):
    record(name)
