"""chunks on every broker, and across Celery 5 and tq on Redis (the celery.starmap message)."""

from __future__ import annotations

import pytest

from tests.conftest import make_broker_env, require_broker

# The Celery client and worker fixtures of the core interop tests.
from tests.integration.test_celery_interop import celery_client, celery_worker  # noqa: F401
from tq import GroupResult

pytestmark = pytest.mark.timeout(60)

RESULT_TIMEOUT_S = 20


@pytest.fixture
def server_broker(tmp_path, monkeypatch):
    """Redis: the broker the Celery client and worker fixtures use."""
    require_broker("redis")
    return make_broker_env("redis", tmp_path, monkeypatch)


def test_chunks_run_n_calls_per_message_and_return_a_list_per_part(broker, start_worker, tasks):
    start_worker("-c", "2")
    result = tasks.add.chunks([(i, i) for i in range(25)], 10)()
    assert isinstance(result, GroupResult) and len(result.results) == 3
    assert result.get(timeout=RESULT_TIMEOUT_S) == [
        [i + i for i in range(0, 10)],
        [i + i for i in range(10, 20)],
        [i + i for i in range(20, 25)],
    ]
    with pytest.raises(ValueError, match="n must be a whole number"):
        tasks.add.chunks([(1, 1)], 0)


@pytest.mark.usefixtures("celery_worker")
def test_tq_chunks_run_on_a_celery_worker(server_broker, tasks):
    result = tasks.mul.chunks([(i, 3) for i in range(7)], 3)()
    assert result.get(timeout=RESULT_TIMEOUT_S) == [[0, 3, 6], [9, 12, 15], [18]]


def test_celery_chunks_run_on_a_tq_worker(server_broker, request, start_worker):
    from celery import chunks

    client = request.getfixturevalue("celery_client")
    start_worker("-c", "2")
    result = chunks(client.signature("tqtest.tasks.mul"), [(i, 2) for i in range(5)], 2)()
    assert result.get(timeout=RESULT_TIMEOUT_S) == [[0, 2], [4, 6], [8]]
