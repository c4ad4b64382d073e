"""The per-node count of lost runs that caps reject_on_worker_lost requeues."""

from __future__ import annotations

from tq.worker.outcomes import LostRuns


def test_each_task_counts_its_own_lost_runs() -> None:
    lost = LostRuns()
    assert [lost.add("a"), lost.add("a"), lost.add("b"), lost.add("a")] == [1, 2, 1, 3]


def test_only_the_most_recent_task_ids_are_remembered() -> None:
    lost = LostRuns(keep=2)
    lost.add("a")
    lost.add("b")
    lost.add("a")  # a is now the most recent
    lost.add("c")  # b, the least recent, is forgotten
    assert lost.add("b") == 1
    assert lost.add("c") == 2
