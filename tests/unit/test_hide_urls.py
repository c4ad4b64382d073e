"""Broker and backend URLs travel to supervised nodes in their environment, not argv."""

from tq.supervisor.process import hide_urls


def test_broker_and_backend_urls_move_into_the_environment():
    command = [
        "python", "-m", "tq", "-A", "proj", "-b", "amqp://u:secret@h//",
        "--result-backend=redis://:pw@h/1", "worker", "-c", "2",
    ]  # fmt: skip
    kept, env = hide_urls(command)
    assert kept == ["python", "-m", "tq", "-A", "proj", "worker", "-c", "2"]
    assert env == {"TQ_BROKER_URL": "amqp://u:secret@h//", "TQ_RESULT_BACKEND": "redis://:pw@h/1"}


def test_worker_options_and_a_command_without_urls_are_left_alone():
    command = ["python", "-m", "tq", "--broker=x://", "worker", "-b", "not-a-global"]
    assert hide_urls(command) == (
        ["python", "-m", "tq", "worker", "-b", "not-a-global"],
        {"TQ_BROKER_URL": "x://"},
    )
    assert hide_urls(["tq", "worker"]) == (["tq", "worker"], {})
