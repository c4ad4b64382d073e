"""Workflows across Celery 5 and tq on Redis: chains and chords either way, and shared chords."""

from __future__ import annotations

import pytest

from tests.conftest import make_broker_env, require_broker

# The Celery client and worker fixtures of the core interop tests.
from tests.integration.test_celery_interop import celery_client, celery_worker  # noqa: F401
from tq import chain, chord, group

celery = pytest.importorskip("celery")

pytestmark = pytest.mark.timeout(60)

RESULT_TIMEOUT_S = 20


@pytest.fixture
def server_broker(tmp_path, monkeypatch):
    """Redis only: Celery's rpc backend cannot run chords, so there is nothing to compare."""
    require_broker("redis")
    return make_broker_env("redis", tmp_path, monkeypatch)


def test_celery_chain_and_chord_run_on_tq_workers(server_broker, request, start_worker):
    from celery import chord as celery_chord
    from celery.exceptions import ChordError

    client = request.getfixturevalue("celery_client")
    start_worker("-c", "4")
    add, xsum = "tqtest.tasks.add", "tqtest.tasks.xsum"
    result = (client.signature(add, (4, 4)) | client.signature("tqtest.tasks.mul", (8,)))()
    assert result.get(timeout=RESULT_TIMEOUT_S) == 64
    assert result.parent.get(timeout=RESULT_TIMEOUT_S) == 8
    header = [client.signature(add, (i, i)) for i in range(10)]
    summed = celery_chord(header, client.signature(xsum))()
    assert summed.get(timeout=RESULT_TIMEOUT_S) == 90
    header = [client.signature(add, (1, 1)), client.signature("tqtest.tasks.boom")]
    failing = celery_chord(header, client.signature(xsum))()
    # Celery's get() re-raises the failed header task first (it follows parents).
    with pytest.raises(ValueError):
        failing.get(timeout=RESULT_TIMEOUT_S)
    error = failing.get(timeout=RESULT_TIMEOUT_S, propagate=False, follow_parents=False)
    assert isinstance(error, ChordError)
    assert "raised ValueError('bad', 42)" in str(error)


@pytest.mark.usefixtures("celery_worker")
def test_tq_chain_and_chord_run_on_celery_workers(server_broker):
    from tqtest import tasks

    assert chain(tasks.add.s(4, 4) | tasks.mul.s(8))().get(timeout=RESULT_TIMEOUT_S) == 64
    assert chain(tasks.add.s(4) | tasks.mul.s(8))(4).get(timeout=RESULT_TIMEOUT_S) == 64
    result = chord((tasks.add.s(i, i) for i in range(10)), tasks.xsum.s())()
    assert result.get(timeout=RESULT_TIMEOUT_S) == 90
    fanned = (tasks.add.s(1, 1) | group(tasks.mul.s(2), tasks.mul.s(3)))()
    assert fanned.get(timeout=RESULT_TIMEOUT_S) == [4, 6]


@pytest.mark.usefixtures("celery_worker")
def test_celery_and_tq_workers_share_one_chord(server_broker, start_worker, tmp_path):
    from tqtest import tasks

    tq_worker = start_worker("-c", "2")
    header = [tasks.slow_add.s(i, i, seconds=0.1) for i in range(30)]
    result = chord(header, tasks.xsum.s())()
    assert result.get(timeout=RESULT_TIMEOUT_S) == sum(i + i for i in range(30))
    celery_log = (tmp_path / "celery-worker.log").read_text()
    succeeded = "Task tqtest.tasks.slow_add[{}] succeeded"
    ran_on_celery = [r.id for r in result.parent.results if succeeded.format(r.id) in celery_log]
    ran_on_tq = [r.id for r in result.parent.results if r.id in tq_worker.log()]
    assert ran_on_celery and ran_on_tq, f"celery:\n{celery_log}\ntq:\n{tq_worker.log()}"
    assert len(ran_on_celery) + len(ran_on_tq) == 30
