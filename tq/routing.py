"""task_routes: map a task name (and call) to a queue and its publish options."""

from __future__ import annotations

import fnmatch
import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError

Route = dict[str, Any]
RouterFunction = Callable[..., Any]


def _as_route(value: Any) -> Route | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"queue": value}
    if isinstance(value, Mapping):
        return dict(value)
    raise ConfigError(f"a route must be a queue name or a dict of options, not {value!r}")


class MapRouter:
    """A dict router: exact names first, then glob and regex keys in order."""

    def __init__(self, table: Mapping[Any, Any]) -> None:
        self.exact: dict[str, Any] = {}
        self.patterns: list[tuple[re.Pattern[str], Any]] = []
        for key, value in table.items():
            if isinstance(key, re.Pattern):
                self.patterns.append((key, value))
            elif isinstance(key, str) and any(ch in key for ch in "*?["):
                self.patterns.append((re.compile(fnmatch.translate(key)), value))
            elif isinstance(key, str):
                self.exact[key] = value
            else:
                raise ConfigError(f"task_routes key must be a name, glob or regex, not {key!r}")

    def __call__(self, name: str, *_args: Any, **_kw: Any) -> Route | None:
        if name in self.exact:
            return _as_route(self.exact[name])
        for pattern, value in self.patterns:
            if pattern.match(name):
                return _as_route(value)
        return None


def _load_router(spec: Any) -> RouterFunction:
    if isinstance(spec, str):
        module_name, _, attr = spec.rpartition(".")
        try:
            spec = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(
                f"task_routes names {spec!r}, which cannot be imported: {exc}"
            ) from None
        if isinstance(spec, type):
            spec = spec()
    if isinstance(spec, Mapping):
        return MapRouter(spec)
    if hasattr(spec, "route_for_task"):
        obj = spec
        return lambda name, args, kwargs, options, task=None, **kw: obj.route_for_task(
            name, args, kwargs
        )
    if callable(spec):
        return spec
    raise ConfigError(f"task_routes entry {spec!r} is not a dict, router function or router object")


def build_routers(task_routes: Any) -> list[RouterFunction]:
    """Turn the task_routes setting into an ordered list of router functions."""
    if not task_routes:
        return []
    if isinstance(task_routes, (list, tuple)):
        return [_load_router(entry) for entry in task_routes]
    return [_load_router(task_routes)]


def route_task(
    routers: list[RouterFunction],
    name: str,
    args: Any,
    kwargs: Any,
    options: dict[str, Any],
    task: Any = None,
) -> Route:
    """Return the publish options for a call: the first router's route under explicit options."""
    explicit = {key: value for key, value in options.items() if value is not None}
    for router in routers:
        found = _as_route(router(name, args, kwargs, options, task=task))
        if found:
            return {**found, **explicit}
    return explicit
