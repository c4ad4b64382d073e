"""The Dramatiq side of the benchmark: the same no-op actor, configured from BENCH_DRAMATIQ_*.

The worker runs it as `dramatiq --processes 2 --threads 1 dramatiq_app`; the benchmark process
drives `noop_task` and `add_task`, which give the actors the delay() and get() of tq and Celery.
"""

import os

import dramatiq

from bench_record import record_completion

broker_url = os.environ["BENCH_DRAMATIQ_BROKER_URL"]
result_backend_url = os.environ.get("BENCH_DRAMATIQ_RESULT_BACKEND")
queue_name = os.environ["BENCH_DRAMATIQ_QUEUE"]

if broker_url.startswith("redis://"):
    from dramatiq.brokers.redis import RedisBroker

    # Dramatiq's own keys (queue, acks, heartbeats) are named after the namespace: one per run
    # lets the benchmark delete them all afterwards.
    broker = RedisBroker(url=broker_url, namespace=os.environ["BENCH_DRAMATIQ_NAMESPACE"])
else:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=broker_url)

if result_backend_url:
    from dramatiq.results import Results
    from dramatiq.results.backends.redis import RedisBackend

    # Kept an hour, as tq's and Celery's results (result_expires=3600).
    results = Results(backend=RedisBackend(url=result_backend_url), result_ttl=3_600_000)
    broker.add_middleware(results)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bench.noop", queue_name=queue_name)
def noop():
    record_completion()


# Only with a result backend: Dramatiq refuses store_results without the Results middleware.
add = None
if result_backend_url:

    @dramatiq.actor(actor_name="bench.add", queue_name=queue_name, store_results=True)
    def add(x, y):
        return x + y


class SentMessage:
    """A message sent to an actor, waited on like a Celery AsyncResult."""

    def __init__(self, message):
        self.message = message

    def get(self, timeout):
        """Return the actor's result, waiting up to `timeout` seconds."""
        return self.message.get_result(block=True, timeout=int(timeout * 1000))


class CeleryStyleActor:
    """An actor with delay(), so the benchmark drives Dramatiq as it drives tq and Celery."""

    def __init__(self, actor):
        self.actor = actor

    def delay(self, *args):
        """Send one message to the actor (actor.send) and return it."""
        return SentMessage(self.actor.send(*args))


noop_task = CeleryStyleActor(noop)
add_task = CeleryStyleActor(add) if add is not None else None
