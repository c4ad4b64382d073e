"""The Celery side of the benchmark: the same task names as tq_app, configured from BENCH_*."""

import os

from celery import Celery

from bench_record import record_completion

app = Celery(
    "celery_app",
    broker=os.environ["BENCH_CELERY_BROKER_URL"],
    backend=os.environ["BENCH_CELERY_RESULT_BACKEND"],
)
app.conf.update(task_default_queue=os.environ["BENCH_CELERY_QUEUE"], result_expires=3600)


# ignore_result for the same reason as in tq_app.
@app.task(name="bench.noop", ignore_result=True)
def noop():
    record_completion()


@app.task(name="bench.add")
def add(x, y):
    return x + y
