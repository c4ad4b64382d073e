"""The Redis result backend's waits: one connection per thread, nothing missed, RESP3 or RESP2."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from tq.backends import redis as redis_backend

pytestmark = pytest.mark.timeout(60)


def resp2_only(client):
    """A subscriber factory that speaks RESP2, as with a Redis older than 6."""
    pool = client.connection_pool
    kwargs = {
        key: value
        for key, value in pool.connection_kwargs.items()
        if not key.startswith("maint_notifications")
    }
    return lambda: pool.connection_class(**kwargs, protocol=2, health_check_interval=0)


@pytest.fixture(params=[3, 2], ids=["resp3", "resp2"])
def backend(request, redis_broker, monkeypatch):
    from tqtest.tq import app

    if request.param == 2:
        monkeypatch.setattr(redis_backend, "subscriber_factory", resp2_only)
    backend = app.backend
    backend._channels = None
    yield backend
    backend.close()


def store(backend, task_id: str, result) -> None:
    meta = {"status": "SUCCESS", "result": result, "task_id": task_id}
    backend.set(f"celery-task-meta-{task_id}", json.dumps(meta), "SUCCESS")


def test_waits_read_stored_results_take_pushed_ones_and_keep_one_connection(backend):
    stored = str(uuid.uuid4())
    store(backend, stored, 1)
    assert backend.wait_for(stored, timeout=10)["result"] == 1
    connection = backend._channels._local.connection
    pushed = str(uuid.uuid4())
    writer = threading.Timer(0.2, store, (backend, pushed, 2))
    writer.start()
    assert backend.wait_for(pushed, timeout=10)["result"] == 2
    many = [str(uuid.uuid4()) for _ in range(3)]
    store(backend, many[0], 3)
    writer = threading.Timer(0.2, lambda: [store(backend, i, 3) for i in many[1:]])
    writer.start()
    metas = backend.wait_for_many(many, timeout=10)
    assert [metas[i]["result"] for i in many] == [3, 3, 3]
    # A wait that times out leaves nothing behind for the next one.
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        backend.wait_for(str(uuid.uuid4()), timeout=0.3)
    assert time.monotonic() - started < 5
    assert backend.wait_for(stored, timeout=10)["result"] == 1
    if backend._channels._local.connection is not connection:
        pytest.fail("a wait opened a new connection though the last one ended normally")
