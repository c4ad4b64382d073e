"""Message signing (HMAC-SHA256 header) and the masking of secrets in shown settings."""

from __future__ import annotations

import pytest
from kombu import Connection, Consumer, Queue

from tq.broker import Publisher
from tq.config import Settings, mask_secrets
from tq.errors import ConfigError
from tq.protocol import build_task_message
from tq.signing import (
    SIGNATURE_HEADER,
    SigningPolicy,
    refusal_reason,
    signed_headers,
    signing_policy,
)

KEY = "k" * 32
POLICY = SigningPolicy(KEY.encode())


def signed_message(policy: SigningPolicy = POLICY, **overrides):
    message = build_task_message(task_id="id-1", name="proj.add", args=[2, 2])
    body = '[[2, 2], {}, {"callbacks": null}]'
    headers = signed_headers(
        policy,
        message.headers,
        body=body,
        content_type="application/json",
        content_encoding="utf-8",
    )
    fields = {
        "headers": headers,
        "body": body.encode(),
        "content_type": "application/json",
        "content_encoding": "utf-8",
    }
    fields.update(overrides)
    return fields


def test_signed_message_passes_and_the_signature_names_its_scheme():
    fields = signed_message()
    assert fields["headers"][SIGNATURE_HEADER].startswith("hmac-sha256-v1:")
    assert refusal_reason(POLICY, **fields) is None


@pytest.mark.parametrize(
    "change",
    [
        {"body": b'[[2, 3], {}, {"callbacks": null}]'},
        {"content_type": "application/x-python-serialize"},
    ],
)
def test_changed_body_or_content_type_is_refused(change):
    assert "does not match" in refusal_reason(POLICY, **signed_message(**change))


@pytest.mark.parametrize("header", ["id", "task", "eta", "retries", "timelimit", "group"])
def test_changed_deciding_header_is_refused(header):
    fields = signed_message()
    fields["headers"] = dict(fields["headers"], **{header: "changed"})
    assert "does not match" in refusal_reason(POLICY, **fields)


def test_display_headers_are_not_signed():
    fields = signed_message()
    fields["headers"] = dict(fields["headers"], argsrepr="(9, 9)", origin="elsewhere")
    assert refusal_reason(POLICY, **fields) is None


def test_another_key_or_a_garbage_signature_is_refused():
    other = signed_message(SigningPolicy(b"o" * 32))
    assert "does not match" in refusal_reason(POLICY, **other)
    fields = signed_message()
    for garbage in (None, 42, "", "hmac-sha256-v1:00", "\ud800"):
        fields["headers"] = dict(fields["headers"], **{SIGNATURE_HEADER: garbage})
        assert refusal_reason(POLICY, **fields) is not None


def test_unsigned_is_refused_unless_accepted_and_anything_runs_with_signing_off():
    unsigned = signed_message(SigningPolicy())
    assert SIGNATURE_HEADER not in unsigned["headers"]
    assert "not signed" in refusal_reason(POLICY, **unsigned)
    assert refusal_reason(SigningPolicy(KEY.encode(), accept_unsigned=True), **unsigned) is None
    tampered = dict(signed_message(), body=b"[]")
    assert refusal_reason(SigningPolicy(KEY.encode(), accept_unsigned=True), **tampered)
    assert refusal_reason(SigningPolicy(), **tampered) is None
    assert "no headers" in refusal_reason(POLICY, **dict(unsigned, headers=None))


def test_settings_and_environment_give_the_policy_and_short_keys_are_refused(monkeypatch):
    monkeypatch.delenv("TQ_MESSAGE_SIGNING_KEY", raising=False)
    monkeypatch.delenv("TQ_MESSAGE_SIGNING_ACCEPT_UNSIGNED", raising=False)
    assert not signing_policy(Settings()).enabled
    assert signing_policy(Settings({"message_signing_key": KEY})).key == KEY.encode()
    monkeypatch.setenv("TQ_MESSAGE_SIGNING_KEY", "0123456789012345678")
    monkeypatch.setenv("TQ_MESSAGE_SIGNING_ACCEPT_UNSIGNED", "yes")
    policy = signing_policy(Settings())
    assert policy.key == b"0123456789012345678" and policy.accept_unsigned  # digits stay a string
    assert KEY not in repr(policy) and "0123456789" not in repr(policy)
    monkeypatch.setenv("TQ_MESSAGE_SIGNING_KEY", "short")
    with pytest.raises(ConfigError, match="at least 16"):
        signing_policy(Settings())


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("serializer", ["json", "pickle"])
def test_published_message_verifies_after_kombu_carries_it(serializer, compression, monkeypatch):
    monkeypatch.delenv("TQ_MESSAGE_SIGNING_KEY", raising=False)
    conf = Settings(
        {
            "broker_url": "memory://",
            "message_signing_key": KEY,
            "task_serializer": serializer,
            "task_compression": compression,
        }
    )
    publisher = Publisher(conf)
    queue = Queue(f"signing-{serializer}-{compression}")
    message = build_task_message(task_id="id-2", name="proj.add", args=[1, "é"], kwargs={"y": 2})
    publisher.publish(message, queue=queue)
    received = []
    with Connection("memory://") as connection:
        consumer = Consumer(
            connection, [queue], accept=["json", "pickle"], on_message=received.append
        )
        with consumer:
            connection.drain_events(timeout=2)
    [got] = received
    assert got.headers[SIGNATURE_HEADER].startswith("hmac-sha256-v1:")
    policy = signing_policy(conf)
    fields = {
        "headers": got.headers,
        "body": got.body,
        "content_type": got.content_type,
        "content_encoding": got.content_encoding,
    }
    assert refusal_reason(policy, **fields) is None
    assert got.decode()[0] == [1, "é"]
    publisher.close()


def test_secrets_are_masked_wherever_a_setting_is_shown():
    shown = mask_secrets(
        {
            "broker_url": "amqp://user:hunter2@host:5672//",
            "result_backend": "redis://:hunter2@host:6379/1",
            "message_signing_key": KEY,
            "broker_transport_options": {"sentinel_kwargs": {"password": "hunter2"}},
            "broker_failover": ["amqp://u:hunter2@a//", "amqp://b//"],
            "task_default_queue": "celery",
            "unset_token": None,
        }
    )
    assert "hunter2" not in repr(shown) and KEY not in repr(shown)
    assert shown["broker_url"] == "amqp://user:**@host:5672//"
    assert shown["result_backend"] == "redis://:**@host:6379/1"
    assert shown["message_signing_key"] == "**"
    assert shown["task_default_queue"] == "celery" and shown["unset_token"] is None
