"""Settings keep what they read until a setting is written; TQ_* variables are read every time."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from kombu import Connection

from tq import App
from tq.config import Settings


@pytest.fixture(autouse=True)
def no_tq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TQ_DEFAULT_QUEUE", "TQ_BROKER_URL", "TQ_RESULT_BACKEND", "TQ_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_a_setting_written_after_it_was_read_is_what_the_next_read_sees():
    conf = Settings()
    assert conf.task_serializer == conf["task_serializer"] == "json"
    conf.task_serializer = "pickle"
    assert conf.task_serializer == conf["task_serializer"] == "pickle"
    conf["task_serializer"] = "yaml"
    assert conf.task_serializer == "yaml"
    conf.update(task_serializer="msgpack")
    assert conf.task_serializer == "msgpack"
    del conf["task_serializer"]
    assert conf.task_serializer == "json"
    conf.setdefault_value("task_serializer", "pickle")
    assert conf.task_serializer == "pickle"
    conf.load_object(types.SimpleNamespace(task_serializer="json", task_compression="gzip"))
    assert (conf.task_serializer, conf.task_compression) == ("json", "gzip")


def test_an_environment_variable_set_after_a_read_takes_effect(monkeypatch):
    conf = Settings()
    assert conf.task_default_queue == "celery"
    monkeypatch.setenv("TQ_DEFAULT_QUEUE", "from-env")
    assert conf.task_default_queue == conf["task_default_queue"] == "from-env"
    conf.task_default_queue = "from-code"
    assert conf.task_default_queue == "from-env"  # the environment wins over code
    monkeypatch.delenv("TQ_DEFAULT_QUEUE")
    assert conf.task_default_queue == "from-code"


def test_each_read_of_a_dict_default_is_a_copy_of_its_own():
    conf = Settings()
    conf.task_publish_retry_policy["max_retries"] = 99
    assert conf.task_publish_retry_policy["max_retries"] == 3


def test_a_remembered_setting_never_hides_a_method_or_the_settings_own_state():
    conf = Settings({"changes": "a user key", "_values": "another"})
    assert conf["changes"] == "a user key" and conf["_values"] == "another"
    assert conf.changes()["changes"] == "a user key"  # still the method
    assert conf.task_serializer == "json"  # _values is still the settings' own dict


def test_send_task_follows_a_changed_setting_and_environment(tmp_path: Path, monkeypatch):
    app = App("cache", data_dir=str(tmp_path / "data"))
    app.send_task("cache.job")
    monkeypatch.setenv("TQ_DEFAULT_QUEUE", "env-queue")
    app.send_task("cache.job")
    app.conf.task_routes = {"cache.job": "routed-queue"}
    app.send_task("cache.job")
    app.conf.task_routes = None
    app.conf.task_ignore_result = True
    monkeypatch.delenv("TQ_DEFAULT_QUEUE")
    app.send_task("cache.job")
    with Connection(app.broker_url) as connection:
        channel = connection.default_channel
        sizes = {
            name: channel.queue_declare(name, passive=True).message_count
            for name in ("celery", "env-queue", "routed-queue")
        }
        message = channel.basic_get("celery", no_ack=True)
        message = channel.basic_get("celery", no_ack=True)
    assert sizes == {"celery": 2, "env-queue": 1, "routed-queue": 1}
    assert message.headers["ignore_result"] is True
    app.publisher.close()
