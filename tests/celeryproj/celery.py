"""A real Celery 5 app with the same task names as tqtest, for interop tests."""

import os

from celery import Celery

app = Celery(
    "celeryproj",
    broker=os.environ.get("TQ_BROKER_URL"),
    backend=os.environ.get("TQ_RESULT_BACKEND"),
)
app.conf.update(
    task_default_queue=os.environ.get("TQ_DEFAULT_QUEUE", "celery"),
    # The tests give each test its own remote-control and event exchanges, as tq reads them.
    control_exchange=os.environ.get("TQ_CONTROL_EXCHANGE", "celery"),
    event_exchange=os.environ.get("TQ_EVENT_EXCHANGE", "celeryev"),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="tqtest.tasks.add")
def add(x, y):
    return x + y


@app.task(name="tqtest.tasks.mul")
def mul(x, y):
    return x * y


@app.task(name="tqtest.tasks.boom")
def boom(*args):
    raise ValueError("bad", 42)


@app.task(name="tqtest.tasks.mark")
def mark(name):
    with open(os.environ["TQ_TEST_LEDGER"], "a") as ledger:
        ledger.write(name + "\n")
    return name


@app.task(name="tqtest.tasks.xsum")
def xsum(numbers):
    return sum(numbers)


@app.task(name="tqtest.tasks.slow_add")
def slow_add(x, y, seconds=0.05):
    import time

    time.sleep(seconds)
    return x + y
