"""Every setting tq reads: its name, default, environment override and check."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: Environment variables that override a setting, whatever the code set.
ENV_PREFIX = "TQ_"
_UNSET = object()


@dataclass(frozen=True)
class Setting:
    """One setting: its default and the environment variable that overrides it."""

    default: Any
    env: str | None = None
    kind: type | tuple[type, ...] | None = None


DEFAULTS: dict[str, Setting] = {
    # broker
    "broker_url": Setting(None, env="TQ_BROKER_URL"),
    "broker_transport_options": Setting({}),
    "broker_connection_retry": Setting(True),
    "broker_connection_retry_on_startup": Setting(True),
    "broker_connection_max_retries": Setting(100),
    "broker_connection_timeout": Setting(4.0),
    "broker_heartbeat": Setting(None, env="TQ_BROKER_HEARTBEAT"),
    # redis:// URLs: "tq" (tq's Redis transport, same keys as kombu's) or "kombu" (kombu's own)
    "broker_redis_transport": Setting("tq", env="TQ_BROKER_REDIS_TRANSPORT"),
    # amqp:// URLs: "tq" (py-amqp with buffered socket reads) or "kombu" (kombu's py-amqp)
    "broker_amqp_transport": Setting("tq", env="TQ_BROKER_AMQP_TRANSPORT"),
    # results
    "result_backend": Setting(None, env="TQ_RESULT_BACKEND"),
    "result_serializer": Setting("json"),
    "result_accept_content": Setting(None),
    "result_expires": Setting(timedelta(days=1)),
    "result_extended": Setting(False),
    "result_persistent": Setting(False),
    "result_backend_transport_options": Setting({}),
    # tasks
    "task_serializer": Setting("json"),
    "accept_content": Setting(["json"]),
    "task_compression": Setting(None),
    "task_default_queue": Setting("celery", env="TQ_DEFAULT_QUEUE"),
    "task_default_exchange": Setting(None),
    "task_default_exchange_type": Setting("direct"),
    "task_default_routing_key": Setting(None),
    "task_default_delivery_mode": Setting(2),
    "task_default_priority": Setting(None),
    "task_queue_max_priority": Setting(None),
    "task_create_missing_queues": Setting(True),
    "task_queues": Setting(None),
    "task_routes": Setting(None),
    "task_ignore_result": Setting(False),
    "task_track_started": Setting(False),
    "task_acks_late": Setting(False),
    "task_acks_on_failure_or_timeout": Setting(True),
    "task_reject_on_worker_lost": Setting(False),
    "task_time_limit": Setting(None),
    "task_soft_time_limit": Setting(None),
    "task_default_rate_limit": Setting(None),
    "task_always_eager": Setting(False),
    "task_eager_propagates": Setting(False),
    "task_publish_retry": Setting(True),
    "task_publish_retry_policy": Setting(
        {"max_retries": 3, "interval_start": 0, "interval_step": 0.2, "interval_max": 1}
    ),
    "task_send_sent_event": Setting(False),
    "task_default_retry_delay": Setting(180),
    "task_max_retries": Setting(3),
    # worker
    "worker_concurrency": Setting(None, env="TQ_CONCURRENCY"),
    "worker_prefetch_multiplier": Setting(4),
    "worker_max_tasks_per_child": Setting(None),
    "worker_max_memory_per_child": Setting(None),
    "worker_send_task_events": Setting(False),
    "worker_lost_wait": Setting(10.0),
    # reject_on_worker_lost: times a task whose pool process died running it is requeued (the
    # count travels in the message, tq.worker.copies) before it fails instead (0: for ever).
    "worker_lost_requeue_limit": Setting(3),
    # On RabbitMQ: seconds a worker holds an ETA task before it hands it back to its queue
    # (tq.worker.eta), under RabbitMQ's consumer_timeout (30 min); 0: hold until due.
    "worker_eta_republish_after": Setting(900.0),
    "worker_log_format": Setting("[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"),
    "worker_hijack_root_logger": Setting(True),
    "worker_disable_remote_control": Setting(False),
    "worker_allow_destructive_control": Setting(True, env="TQ_WORKER_ALLOW_DESTRUCTIVE_CONTROL"),
    "worker_heartbeat_interval": Setting(2.0),
    # time
    "timezone": Setting(None, env="TQ_TIMEZONE"),
    "enable_utc": Setting(True),
    # events and remote control
    "event_exchange": Setting("celeryev", env="TQ_EVENT_EXCHANGE"),
    "event_serializer": Setting("json"),
    "control_exchange": Setting("celery", env="TQ_CONTROL_EXCHANGE"),
    # embedded store
    "data_dir": Setting(".tq", env="TQ_DATA_DIR"),
    # security ("" = no key: a str default keeps a digits-only key from becoming an int)
    "message_signing_key": Setting("", env="TQ_MESSAGE_SIGNING_KEY"),
    "message_signing_accept_unsigned": Setting(False, env="TQ_MESSAGE_SIGNING_ACCEPT_UNSIGNED"),
    "worker_max_message_bytes": Setting(64 << 20, env="TQ_WORKER_MAX_MESSAGE_BYTES"),
}

#: Words that make a setting (or a key inside a setting's dict) a secret, shown as "**".
SECRET_WORDS = ("password", "passwd", "secret", "token", "signing_key")

#: Old or Celery-style upper-case names accepted by config_from_object.
_UPPER_ALIASES = {
    "BROKER_URL": "broker_url",
    "CELERY_RESULT_BACKEND": "result_backend",
    "CELERY_TASK_SERIALIZER": "task_serializer",
    "CELERY_ACCEPT_CONTENT": "accept_content",
}


def mask_url(url: str) -> str:
    """Return the URL with its password replaced by **."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, _, location = rest.rpartition("@")
    if ":" in credentials:
        user = credentials.split(":", 1)[0]
        credentials = f"{user}:**"
    return f"{scheme}://{credentials}@{location}"


def mask_secrets(value: Any, name: str = "") -> Any:
    """Return a setting's value as it may be shown: secrets as **, URL passwords masked."""
    if any(word in name.lower() for word in SECRET_WORDS) and value is not None and value != "":
        return "**"
    if isinstance(value, str):
        return mask_url(value) if "://" in value else value
    if isinstance(value, Mapping):
        return {key: mask_secrets(item, str(key)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_secrets(item, name) for item in value]
    return value


def coerce_seconds(value: Any, name: str) -> float | None:
    """Turn a number or timedelta into seconds, or None."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"setting {name!r} must be seconds or a timedelta, not {value!r}")


class Settings(MutableMapping[str, Any]):
    """The app's configuration: user values over defaults, environment over both.

    A client reads a dozen settings per task sent, so the value of a setting that no
    environment variable can override is kept once read, until a setting is written; it is
    also kept as an instance attribute, so that `conf.name` finds it without __getattr__.
    A setting with an environment variable (TQ_*) reads the environment every time.
    """

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = {}
        # Values read before: settings without an environment variable, except dict and list
        # defaults (each read gets its own copy, so a caller's change cannot alter the default).
        self._resolved: dict[str, Any] = {}
        if initial:
            self.update(initial)

    def _remember(self, key: str, value: Any) -> None:
        self._resolved[key] = value
        if not key.startswith("_") and not hasattr(type(self), key):
            self.__dict__[key] = value

    def _forget_resolved(self) -> None:
        for key in self._resolved:
            self.__dict__.pop(key, None)
        self._resolved.clear()

    def __getitem__(self, key: str) -> Any:
        value = self._resolved.get(key, _UNSET)  # no KeyError: the TQ_* settings always miss
        if value is not _UNSET:
            return value
        setting = DEFAULTS.get(key)
        if setting is not None and setting.env:
            from_env = os.environ.get(setting.env)
            if from_env:
                return _parse_env(from_env, setting.default)
        if key in self._values:
            value = self._values[key]
        elif setting is None:
            raise KeyError(key)
        elif isinstance(setting.default, (dict, list)):
            return setting.default.copy()
        else:
            value = setting.default
        if setting is None or not setting.env:
            self._remember(key, value)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._values[_UPPER_ALIASES.get(key, key)] = value
        self._forget_resolved()

    def __delitem__(self, key: str) -> None:
        del self._values[key]
        self._forget_resolved()

    def __iter__(self) -> Iterator[str]:
        return iter(set(DEFAULTS) | set(self._values))

    def __len__(self) -> int:
        return len(set(DEFAULTS) | set(self._values))

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"no setting named {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        if key.startswith("_"):
            object.__setattr__(self, key, value)
        else:
            self[key] = value

    def changes(self) -> dict[str, Any]:
        """Return the settings that differ from their defaults."""
        return {key: self[key] for key in self if key in self._values or _from_env(key)}

    def setdefault_value(self, key: str, value: Any) -> None:
        """Set a value only if the user has not set one."""
        if key not in self._values and value is not None:
            self._values[key] = value
            self._forget_resolved()

    def load_object(self, source: object | str) -> None:
        """Read lower-case (or known upper-case) attributes of a module or object."""
        if isinstance(source, str):
            try:
                source = importlib.import_module(source)
            except ImportError as exc:
                raise ConfigError(f"cannot import config module {source!r}: {exc}") from None
        for key in dir(source):
            if key.startswith("_"):
                continue
            if key in DEFAULTS or key in _UPPER_ALIASES or key.islower():
                value = getattr(source, key)
                if callable(value) and not isinstance(value, type) and key not in DEFAULTS:
                    continue
                if key in DEFAULTS or key in _UPPER_ALIASES:
                    self[key] = value

    def data_dir(self) -> Path:
        """Return the directory of the embedded broker and result store."""
        return Path(self["data_dir"]).expanduser().resolve()


def _from_env(key: str) -> bool:
    setting = DEFAULTS.get(key)
    return bool(setting and setting.env and os.environ.get(setting.env))


def _parse_env(raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int) or default is None and raw.isdigit():
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"environment value {raw!r} must be a whole number") from None
    return raw
