"""Find the App that -A/--app names, searched as Celery searches."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Any

from ..app import App
from ..errors import AppNotFound

#: Attributes and submodules looked at, in order, when -A names a module.
APP_ATTRIBUTES = ("app", "tq", "celery")
APP_SUBMODULES = ("tq", "celery")


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise AppNotFound(
                f"-A {name}: no module named {exc.name!r} (run from the directory "
                "that contains it, or use --workdir)"
            ) from None
        raise AppNotFound(f"-A {name}: importing it failed: {exc}") from None
    except Exception as exc:
        raise AppNotFound(f"-A {name}: importing it raised {exc!r}") from None


def _app_in_module(module: ModuleType, searched: list[str], *, recurse: bool = True) -> App | None:
    for attr in APP_ATTRIBUTES:
        searched.append(f"{module.__name__}.{attr}")
        value = getattr(module, attr, None)
        if isinstance(value, App):
            return value
    searched.append(f"any App in {module.__name__}")
    for value in vars(module).values():
        if isinstance(value, App):
            return value
    if not (recurse and hasattr(module, "__path__")):
        return None
    for sub in APP_SUBMODULES:
        name = f"{module.__name__}.{sub}"
        try:
            submodule = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                searched.append(f"module {name} (absent)")
                continue
            raise AppNotFound(f"importing {name} failed: {exc}") from None
        found = _app_in_module(submodule, searched, recurse=False)
        if found is not None:
            return found
    return None


def find_app(spec: str, workdir: str | None = None) -> App:
    """Return the App named by `module:attr`, `module.attr` or a module to search."""
    directory = os.path.abspath(workdir or os.getcwd())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        target: Any = _import(module_name)
        for part in attr.split("."):
            if not hasattr(target, part):
                raise AppNotFound(f"-A {spec}: module {module_name!r} has no attribute {attr!r}")
            target = getattr(target, part)
        if isinstance(target, App):
            return target
        raise AppNotFound(f"-A {spec}: {attr!r} is a {type(target).__name__}, not a tq App")
    module_name, _, attr = spec.rpartition(".")
    if module_name and attr:
        try:
            parent = importlib.import_module(module_name)
        except ImportError:
            parent = None
        if parent is not None and isinstance(getattr(parent, attr, None), App):
            return getattr(parent, attr)
    module = _import(spec)
    searched: list[str] = []
    found = _app_in_module(module, searched)
    if found is None:
        raise AppNotFound(f"-A {spec}: no tq App found; searched {', '.join(searched)}")
    return found
