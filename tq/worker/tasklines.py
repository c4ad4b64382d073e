"""The worker main process's per-task info lines ("received", "succeeded"), written straight to
the worker's log handler when the logging module would do exactly that and nothing more.

A busy node logs two lines per task, and the logging module spends ~13 us on each here (a
LogRecord of twenty fields, the logger and handler chains, filters, the formatter), a tenth of
the main process's time per task. When the record would go to the worker's own handler alone,
unfiltered, through the default record factory, and the worker's format names only fields such
a line knows, `info` formats the same text itself and writes it under the handler's lock.
Anything else (a handler or filter a program added, a custom record factory, another format, a
closed log file) goes through `logger.info` as usual, so the output is the same either way.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from typing import Any

from .logs import WorkerFileHandler, WorkerFormatter, WorkerStreamHandler

_INFO = logging.INFO


def _direct_handler(logger: logging.Logger) -> Any:
    """The worker's handler if an info record of logger would reach it and nothing else."""
    if logging.getLogRecordFactory() is not logging.LogRecord:
        return None
    node: Any = logger
    while node is not None:
        if node.filters or node.disabled:
            return None
        if node.parent is None:  # the root: exactly the worker's handler
            handlers = node.handlers
            if len(handlers) != 1:
                return None
            handler = handlers[0]
            if (
                not isinstance(handler, (WorkerStreamHandler, WorkerFileHandler))
                or handler.filters
                or handler.level > _INFO
                or getattr(handler, "stream", None) is None
            ):
                return None
            return handler
        if node.handlers or not node.propagate:
            return None
        node = node.parent
    return None


def info(logger: logging.Logger, msg: str, *args: Any) -> None:
    """logger.info(msg, *args), straight to the worker's handler where that is the same."""
    if not logger.isEnabledFor(_INFO):
        return
    handler = _direct_handler(logger)
    formatter = None if handler is None else handler.formatter
    if type(formatter) is not WorkerFormatter or formatter.direct_fmt is None:
        logger.info(msg, *args)
        return
    created = time.time()
    fields = {
        "asctime": formatter.time_text(created),
        "levelname": logging.getLevelName(_INFO),
        "levelno": _INFO,
        "message": msg % args,
        "name": logger.name,
        "processName": (
            multiprocessing.current_process().name if logging.logMultiprocessing else None
        ),
    }
    handler.acquire()
    try:
        handler.stream.write(formatter.direct_fmt % fields + handler.terminator)
        handler.flush()
    except RecursionError:
        raise
    except Exception:
        handler.handleError(logger.makeRecord(logger.name, _INFO, "", 0, msg, args, None))
    finally:
        handler.release()
