"""tq: a distributed task queue that speaks Celery's wire protocol."""

from __future__ import annotations

from . import states
from .app import App, Celery
from .canvas import Signature, signature
from .result import AsyncResult, EagerResult
from .task import Task

__version__ = "0.1.0"

__all__ = [
    "App",
    "AsyncResult",
    "Celery",
    "EagerResult",
    "Signature",
    "Task",
    "__version__",
    "signature",
    "states",
]
