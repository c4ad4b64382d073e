"""tq: a distributed task queue that speaks Celery's wire protocol."""

from __future__ import annotations

from . import states
from .app import App, Celery
from .canvas import Signature, signature
from .canvas_chain import chain
from .canvas_chunks import chunks
from .canvas_group import chord, group
from .result import AsyncResult, EagerResult, GroupResult, ResultSet, result_from_tuple
from .task import Task

__version__ = "0.1.0"

__all__ = [
    "App",
    "AsyncResult",
    "Celery",
    "EagerResult",
    "GroupResult",
    "ResultSet",
    "Signature",
    "Task",
    "__version__",
    "chain",
    "chord",
    "chunks",
    "group",
    "result_from_tuple",
    "signature",
    "states",
]
