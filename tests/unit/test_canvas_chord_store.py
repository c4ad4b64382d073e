"""Chord bookkeeping in the embedded SQLite result store: counts once, finishes once."""

from __future__ import annotations

import multiprocessing

import pytest

from tq import App, states
from tq.backends.base import ChordPart, join_chord_parts
from tq.errors import ChordError
from tq.protocol import TaskRequest


@pytest.fixture
def app(tmp_path):
    return App("unit", broker="memory://", backend=f"sqlite://{tmp_path}/results.db")


def part(group_id, index, task_id=None):
    return TaskRequest(
        id=task_id or f"task-{index}",
        name="unit.add",
        args=[],
        kwargs={},
        group_id=group_id,
        group_index=index,
        chord={"task": "unit.xsum", "args": [], "kwargs": {}, "options": {}},
    )


def test_the_last_part_gets_the_values_in_index_order(app):
    backend = app.backend
    backend.set_chord_size("g1", 3)
    assert backend.on_chord_part_return(part("g1", 2), states.SUCCESS, 20) is None
    assert backend.on_chord_part_return(part("g1", 0), states.SUCCESS, 0) is None
    ready = backend.on_chord_part_return(part("g1", 1), states.SUCCESS, 10)
    assert ready is not None and ready.error is None
    assert ready.values == [0, 10, 20]


def test_redelivered_parts_count_once_and_late_ones_are_ignored(app):
    backend = app.backend
    backend.set_chord_size("g2", 2)
    assert backend.on_chord_part_return(part("g2", 0), states.SUCCESS, 1) is None
    assert backend.on_chord_part_return(part("g2", 0), states.SUCCESS, 1) is None
    assert backend.on_chord_part_return(part("g2", 1), states.SUCCESS, 2).values == [1, 2]
    assert backend.on_chord_part_return(part("g2", 1), states.SUCCESS, 2) is None
    assert backend.on_chord_part_return(part("g2", 0), states.SUCCESS, 1) is None


def test_a_failed_part_becomes_a_chord_error_naming_the_task(app):
    backend = app.backend
    backend.set_chord_size("g3", 2)
    backend.on_chord_part_return(part("g3", 0), states.FAILURE, ValueError("bad", 42))
    ready = backend.on_chord_part_return(part("g3", 1), states.SUCCESS, 2)
    assert isinstance(ready.error, ChordError)
    assert str(ready.error) == "Dependency unit.add[task-0] raised ValueError('bad', 42)"


def test_join_uses_celerys_wording_when_the_name_is_unknown():
    failed = ChordPart(
        "abc",
        states.REVOKED,
        {
            "exc_type": "TaskRevokedError",
            "exc_message": ["revoked"],
            "exc_module": "celery.exceptions",
        },
    )
    ready = join_chord_parts([ChordPart("x", states.SUCCESS, 1), failed])
    assert str(ready.error) == "Dependency abc raised TaskRevokedError('revoked')"


def _report_parts(url, group_id, indexes, finished):
    app = App("unit", broker="memory://", backend=url)
    for index in indexes:
        for _attempt in range(2):  # every part is delivered twice
            ready = app.backend.on_chord_part_return(part(group_id, index), states.SUCCESS, index)
            if ready is not None:
                finished.put(ready.values)


def test_concurrent_processes_finish_the_chord_exactly_once(app, tmp_path):
    size, workers = 200, 4
    app.backend.set_chord_size("g4", size)
    finished = multiprocessing.get_context("fork").Queue()
    processes = [
        multiprocessing.get_context("fork").Process(
            target=_report_parts,
            args=(app.result_backend_url, "g4", range(n, size, workers), finished),
        )
        for n in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * workers
    assert finished.get(timeout=5) == list(range(size))
    assert finished.empty()
