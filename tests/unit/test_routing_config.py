"""task_routes, settings and node-name placeholders."""

from __future__ import annotations

import re

import pytest

from tq import App
from tq.config import Settings
from tq.errors import ConfigError
from tq.nodenames import host_format, node_format
from tq.routing import build_routers, route_task


def route(routes, name, **options):
    return route_task(build_routers(routes), name, (), {}, options)


def test_exact_names_win_over_patterns_and_patterns_go_in_order():
    routes = {
        "feed.tasks.*": {"queue": "feeds"},
        "feed.tasks.import_feed": "imports",
        re.compile(r"(video|image)\.tasks\..*"): {"queue": "media"},
    }
    assert route(routes, "feed.tasks.import_feed") == {"queue": "imports"}
    assert route(routes, "feed.tasks.other") == {"queue": "feeds"}
    assert route(routes, "video.tasks.encode") == {"queue": "media"}
    assert route(routes, "misc.task") == {}


def test_router_functions_and_lists_and_explicit_options():
    def router(name, args, kwargs, options, task=None, **kw):
        return {"queue": "fn", "priority": 3} if name.startswith("a.") else None

    routes = [router, {"b.*": "bq"}]
    assert route(routes, "a.x") == {"queue": "fn", "priority": 3}
    assert route(routes, "b.y") == {"queue": "bq"}
    assert route(routes, "a.x", queue="explicit", priority=None) == {
        "queue": "explicit",
        "priority": 3,
    }


def test_bad_routes_are_config_errors():
    with pytest.raises(ConfigError):
        build_routers({42: "q"})
    with pytest.raises(ConfigError, match="cannot be imported"):
        build_routers("no.such.router")


def test_environment_overrides_code(monkeypatch):
    settings = Settings({"broker_url": "redis://code"})
    assert settings.broker_url == "redis://code"
    monkeypatch.setenv("TQ_BROKER_URL", "amqp://env")
    assert settings.broker_url == "amqp://env"
    assert settings.task_default_queue == "celery"
    assert settings.changes()["broker_url"] == "amqp://env"


def test_config_from_object_reads_lowercase_settings():
    class Config:
        result_expires = 60
        task_default_queue = "jobs"
        _private = 1

    app = App("x")
    app.config_from_object(Config)
    assert app.conf.result_expires == 60 and app.conf.task_default_queue == "jobs"


def test_embedded_defaults_when_nothing_is_configured(monkeypatch, tmp_path):
    monkeypatch.delenv("TQ_BROKER_URL", raising=False)
    monkeypatch.delenv("TQ_RESULT_BACKEND", raising=False)
    monkeypatch.setenv("TQ_DATA_DIR", str(tmp_path))
    app = App("x")
    assert app.broker_url == f"sqlite://{tmp_path}/broker.db"
    assert app.result_backend_url == f"sqlite://{tmp_path}/results.db"
    assert (
        App("y", broker="redis://localhost").result_backend_url is None
    )  # as Celery: results opt-in


def test_naive_datetimes_are_read_in_the_app_timezone():
    from datetime import datetime

    app = App("x", timezone="Europe/Paris")
    assert app.to_utc(datetime(2026, 7, 1, 12, 0)).hour == 10
    with pytest.raises(ConfigError):
        _ = App("y", timezone="Mars/Base").timezone


def test_node_name_placeholders():
    assert host_format("w1@%h", "george.example.com") == "w1@george.example.com"
    assert host_format("%n-%d", "george.example.com") == "george-example.com"
    assert node_format("/var/log/%n%I.log", "w1@george.example.com", 0) == "/var/log/w1.log"
    assert node_format("/var/log/%n%I.log", "w1@george.example.com", 2) == "/var/log/w1-2.log"
    assert (
        node_format("%p %h %d %i %%", "w1@george.example.com", 1)
        == "w1@george.example.com george.example.com example.com 1 %"
    )
