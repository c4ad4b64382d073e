"""A worker app whose first task's pool process dies right after it reports, before it reads the
job waiting in its pipe (tests/integration/test_prefork_unread_job.py)."""

from __future__ import annotations

import os
import signal
import time

from tq import App

app = App("tqtest_dying")


@app.task(name="dying.die_after_reply")
def die_after_reply(seconds):
    """Succeed; this pool process then dies when it goes to read its next job."""
    from tq.worker import pipes

    def die(self):
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)

    pipes.JobReader.recv = die  # this pool process only (a forked copy of the worker)
    time.sleep(seconds)  # the next job is handed to this process (waits in its pipe) meanwhile
    return "replied"


@app.task(name="dying.mark")
def mark(name):
    """Record name in the test's ledger and return it."""
    path = os.environ.get("TQ_TEST_LEDGER")
    if path:
        with open(path, "a") as ledger:
            ledger.write(f"{name}\n")
    return name
