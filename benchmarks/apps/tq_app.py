"""The tq side of the benchmark; broker, backend and queue come from TQ_* variables."""

from bench_record import record_completion
from tq import App

# No broker here: TQ_BROKER_URL / TQ_RESULT_BACKEND / TQ_DEFAULT_QUEUE (set by run.py) choose
# them, and with none set tq uses its embedded broker in TQ_DATA_DIR.
app = App("tq_app", result_expires=3600)


# ignore_result: the drain measures consuming, running and acking, not result storage (and on
# rpc:// ten thousand unread replies would pile up in the client's reply queue).
@app.task(name="bench.noop", ignore_result=True)
def noop():
    record_completion()


@app.task(name="bench.add")
def add(x, y):
    return x + y
