"""Workflows (celery-wire §4) on every broker: signatures, groups, chains and chords."""

from __future__ import annotations

import time

import pytest

from tests.conftest import ledger_lines
from tq import GroupResult, chain, chord, group, states
from tq.errors import BackendError, ChordError, TaskRevokedError

pytestmark = pytest.mark.timeout(30)

RESULT_TIMEOUT_S = 15


def wait_for_ledger(broker, line, count=1, timeout=10.0):
    deadline = time.monotonic() + timeout
    while ledger_lines(broker).count(line) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return ledger_lines(broker).count(line)


def test_signatures_call_with_partial_args_kwargs_and_options(broker, start_worker, tasks):
    start_worker("-c", "2")
    sig = tasks.add.signature((2, 2), countdown=0.5)
    assert repr(sig) == "tqtest.tasks.add(2, 2)"
    started = time.monotonic()
    assert sig.delay().get(timeout=RESULT_TIMEOUT_S) == 4
    assert time.monotonic() - started >= 0.45
    partial = tasks.add.s(2)
    assert partial.delay(8).get(timeout=RESULT_TIMEOUT_S) == 10
    assert partial.apply_async((1,)).get(timeout=RESULT_TIMEOUT_S) == 3
    merged = tasks.add_debug.s(2, 2, debug=True).delay(debug=False)
    assert merged.get(timeout=RESULT_TIMEOUT_S) == [4, False]
    assert tasks.add.si(1, 1).delay(5).get(timeout=RESULT_TIMEOUT_S) == 2
    assert partial(8) == 10  # __call__ runs here


def test_group_results_arrive_in_member_order(broker, start_worker, tasks):
    start_worker("-c", "4")
    result = group(tasks.add.s(i, i) for i in range(10))()
    assert isinstance(result, GroupResult)
    assert result.get(timeout=RESULT_TIMEOUT_S) == [i + i for i in range(10)]
    partial = group(tasks.add.s(i) for i in range(10))(10)
    assert partial.get(timeout=RESULT_TIMEOUT_S) == list(range(10, 20))
    assert result.ready() and result.successful() and not result.failed()
    assert result.completed_count() == 10


def test_group_result_states_join_and_failures(broker, start_worker, tasks):
    start_worker("-c", "4")
    result = group([tasks.add.s(1, 1), tasks.boom.s(), tasks.add.s(2, 2)])()
    with pytest.raises(ValueError):
        result.get(timeout=RESULT_TIMEOUT_S)
    values = result.join(timeout=RESULT_TIMEOUT_S, propagate=False)
    assert values[0] == 2 and values[2] == 4
    assert isinstance(values[1], ValueError)
    assert result.ready() and result.failed() and not result.successful()
    assert result.completed_count() == 2


def test_group_result_save_and_restore(broker, start_worker, tasks):
    start_worker("-c", "2")
    result = group(tasks.add.s(i, 1) for i in range(3))()
    if broker.kind == "amqp":
        with pytest.raises(BackendError, match="redis:// or sqlite://"):
            result.save()
        return
    result.save()
    restored = GroupResult.restore(result.id, app=tasks.app)
    assert restored == result
    assert restored.get(timeout=RESULT_TIMEOUT_S) == [1, 2, 3]
    restored.delete()
    assert GroupResult.restore(result.id, app=tasks.app) is None


def test_group_result_revoke(broker, start_worker, tasks):
    start_worker("-c", "2")
    result = group(tasks.add.si(1, 1).set(countdown=2) for _ in range(3))()
    time.sleep(0.3)  # let the worker hold them on its ETA timer
    result.revoke()
    values = result.join(timeout=RESULT_TIMEOUT_S, propagate=False)
    assert all(isinstance(value, TaskRevokedError) for value in values)
    assert result.ready() and not result.successful() and result.completed_count() == 0


def test_chains_pass_each_result_on(broker, start_worker, tasks):
    start_worker("-c", "2")
    assert chain(tasks.add.s(4, 4) | tasks.mul.s(8))().get(timeout=RESULT_TIMEOUT_S) == 64
    assert chain(tasks.add.s(4) | tasks.mul.s(8))(4).get(timeout=RESULT_TIMEOUT_S) == 64
    result = (tasks.add.s(4, 4) | tasks.mul.s(8) | tasks.add.s(1))()
    assert result.get(timeout=RESULT_TIMEOUT_S) == 65
    assert result.parent.get(timeout=RESULT_TIMEOUT_S) == 64
    assert result.parent.parent.get(timeout=RESULT_TIMEOUT_S) == 8
    assert result.parent.parent.parent is None


def test_failing_step_stops_the_chain_and_calls_its_errback(broker, start_worker, tasks):
    start_worker("-c", "2")
    workflow = tasks.add.s(1, 1) | tasks.boom.s() | tasks.mark.s()
    workflow.link_error(tasks.on_error.s())
    result = workflow()
    with pytest.raises(ValueError):
        result.get(timeout=RESULT_TIMEOUT_S)
    failed = result.parent
    assert failed.state == states.FAILURE
    assert result.state == states.FAILURE  # the step that never ran is marked too
    assert result.parent.parent.get(timeout=RESULT_TIMEOUT_S) == 2
    assert wait_for_ledger(broker, f"errback:{failed.id}") == 1
    time.sleep(0.3)
    assert [line for line in ledger_lines(broker) if line.startswith("errback:")] == [
        f"errback:{failed.id}"
    ]


def test_chords_sum_their_header(broker, start_worker, tasks):
    start_worker("-c", "4")
    result = chord((tasks.add.s(i, i) for i in range(10)), tasks.xsum.s())()
    assert result.get(timeout=RESULT_TIMEOUT_S) == 90
    assert result.parent.get(timeout=RESULT_TIMEOUT_S) == [i + i for i in range(10)]
    upgraded = group(tasks.add.s(i, i) for i in range(10)) | tasks.xsum.s()
    assert isinstance(upgraded, chord)
    assert upgraded().get(timeout=RESULT_TIMEOUT_S) == 90
    assert chord([], tasks.xsum.s())().get(timeout=RESULT_TIMEOUT_S) == 0


def test_chords_chains_and_groups_nest(broker, start_worker, tasks):
    start_worker("-c", "4")
    # A chord in the middle of a chain: 2 -> [0, 2, 4] -> 6 -> 60.
    middle = tasks.add.s(1, 1) | group(tasks.mul.s(i) for i in range(3)) | tasks.xsum.s()
    assert (middle | tasks.mul.s(10))().get(timeout=RESULT_TIMEOUT_S) == 60
    # A group of chains.
    chains = group(tasks.add.s(i, i) | tasks.mul.s(2) for i in range(4))()
    assert chains.get(timeout=RESULT_TIMEOUT_S) == [0, 4, 8, 12]
    # A chain of groups: the second group is the body of a chord over the first.
    groups = chain(
        group(tasks.add.s(1, 1), tasks.add.s(2, 2)), group(tasks.xsum.s(), tasks.xsum.s())
    )()
    assert groups.get(timeout=RESULT_TIMEOUT_S) == [6, 6]
    # A chord whose header members are chains, and whose body is a chain.
    nested = chord([tasks.add.s(i, i) | tasks.mul.s(2) for i in range(3)], tasks.xsum.s())
    assert (nested | tasks.mul.s(2))().get(timeout=RESULT_TIMEOUT_S) == 24
    # A chord in a chord's header.
    inner = chord([tasks.add.s(1, 1), tasks.add.s(2, 2)], tasks.xsum.s())
    outer = chord([inner, tasks.add.s(10, 10)], tasks.xsum.s())
    assert outer().get(timeout=RESULT_TIMEOUT_S) == 26


def test_a_task_fans_out_into_a_group(broker, start_worker, tasks):
    start_worker("-c", "4")
    filters = ["blur", "sharpen", "sepia"]
    workflow = tasks.upload_document.s("cat.png") | group(
        tasks.apply_filter.s(name) for name in filters
    )
    result = workflow()
    assert isinstance(result, GroupResult)
    assert result.get(timeout=RESULT_TIMEOUT_S) == [f"{f}(doc:cat.png)" for f in filters]
    assert result.parent.get(timeout=RESULT_TIMEOUT_S) == "doc:cat.png"


def test_failing_header_task_fails_the_chord_with_chord_error(broker, start_worker, tasks):
    start_worker("-c", "4")
    workflow = chord([tasks.add.s(1, 1), tasks.boom.s(), tasks.add.s(2, 2)], tasks.xsum.s())
    workflow.link_error(tasks.on_error.s())
    result = workflow()
    # The chord's own failure: with follow_parents (the default, as in Celery) get() raises the
    # header task's ValueError instead whenever that failure is stored before get() looks.
    with pytest.raises(ChordError) as raised:
        result.get(timeout=RESULT_TIMEOUT_S, follow_parents=False)
    failed = result.parent.results[1]
    assert failed.id in str(raised.value)
    assert "ValueError('bad', 42)" in str(raised.value)
    assert result.state == states.FAILURE
    assert wait_for_ledger(broker, f"errback:{result.id}") == 1


def test_chord_body_runs_once_when_header_tasks_are_redelivered(broker, start_worker, tasks):
    start_worker("-c", "4")
    body = tasks.tally.s("once")
    body_result = body.freeze()
    group_id = "redelivered-" + body_result.id
    tasks.app.backend.set_chord_size(group_id, 3)
    headers = [(f"part-{i}", i, f"{body_result.id}-{i}") for i in range(3)]

    def send(index):
        name, value, task_id = headers[index]
        tasks.counted.apply_async(
            (name, value), task_id=task_id, group_id=group_id, group_index=index, chord=body
        )

    # Part 0 arrives twice before the chord completes, part 1 and 2 twice after it did.
    send(0)
    send(0)
    assert wait_for_ledger(broker, "part-0", count=2) == 2
    send(1)
    send(2)
    assert body_result.get(timeout=RESULT_TIMEOUT_S) == 3
    send(1)
    send(2)
    assert wait_for_ledger(broker, "part-1", count=2) == 2
    assert wait_for_ledger(broker, "part-2", count=2) == 2
    time.sleep(0.5)
    assert ledger_lines(broker).count("once:3") == 1


def test_chord_header_task_whose_worker_died_is_counted_once(broker, start_worker, tasks):
    worker = start_worker("-c", "2")
    header = [tasks.die_once.s("dies-once"), tasks.add.s(1, 1), tasks.add.s(2, 2)]
    result = chord(header, tasks.tally.s("after-death"))()
    # die_once is redelivered after its process is killed; its second run returns 2.
    assert result.get(timeout=RESULT_TIMEOUT_S) == 8
    assert ledger_lines(broker).count("dies-once") == 2
    time.sleep(0.3)
    assert ledger_lines(broker).count("after-death:8") == 1
    # A job handed to the child just as it died is not a broker failure (no reconnect).
    assert "Connection to broker lost" not in worker.log()


def test_chord_is_counted_across_worker_nodes(broker, start_worker, tasks):
    nodes = [start_worker("-c", "2"), start_worker("-c", "2")]
    header = [tasks.slow_add.s(i, i, seconds=0.05) for i in range(40)]
    result = chord(header, tasks.xsum.s())()
    assert result.get(timeout=RESULT_TIMEOUT_S) == sum(i + i for i in range(40))
    assert all("Task tqtest.tasks.slow_add" in node.log() for node in nodes)


@pytest.mark.timeout(60)
def test_thousand_member_group_and_chord_are_exact(broker, start_worker, tasks):
    start_worker("-c", "4")
    size = 1000
    members = group(tasks.add.s(i, i) for i in range(size))()
    assert members.get(timeout=45) == [i + i for i in range(size)]
    summed = chord((tasks.add.s(i, i) for i in range(size)), tasks.xsum.s())()
    assert summed.get(timeout=45) == size * (size - 1)


def test_rpc_chord_bookkeeping_leaves_no_queue_behind(amqp_broker, start_worker, tasks):
    from amqp.exceptions import NotFound
    from kombu import Connection

    from tests.conftest import BROKERS
    from tq.backends.rpc_chord import CHORD_QUEUE_PREFIX, PARTS_QUEUE_SUFFIX

    start_worker("-c", "2")
    result = chord([tasks.add.s(1, 1), tasks.add.s(2, 2)], tasks.xsum.s())()
    assert result.get(timeout=RESULT_TIMEOUT_S) == 6
    token_queue = CHORD_QUEUE_PREFIX + result.parent.id
    with Connection(BROKERS["amqp"][0]) as connection:
        for name in (token_queue, token_queue + PARTS_QUEUE_SUFFIX):
            with pytest.raises(NotFound):
                connection.channel().queue_declare(name, passive=True)
