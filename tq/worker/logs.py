"""Logging set-up for a worker process: level, format and file."""

from __future__ import annotations

import logging
import os
import re
import sys
import time

from ..errors import ConfigError

LEVELS = {"DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL"}

#: What a log record collects that the worker's format may not show, and the fields that need
#: it. Without them in the format the worker's main process skips collecting it for every
#: record: the logging HOWTO's "Optimization" switches. Pool processes, which run the tasks and
#: their own logging, keep everything.
_RECORD_SWITCHES = {
    "_srcfile": re.compile(r"%\((pathname|filename|module|funcName|lineno|stack_info)\)"),
    "logThreads": re.compile(r"%\((thread|threadName)\)"),
    "logProcesses": re.compile(r"%\(process\)"),
}
_DEFAULTS = {name: getattr(logging, name) for name in _RECORD_SWITCHES}


#: The record fields the worker's per-task lines fill themselves (tasklines.py).
DIRECT_FIELDS = frozenset({"asctime", "levelname", "levelno", "message", "name", "processName"})
_FIELD = re.compile(r"%\((\w+)\)")


class WorkerFormatter(logging.Formatter):
    """The worker's formatter: the time text is built once a second, not once a record."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second = -1
        self._text = ""
        #: fmt, if a line can be formatted without a LogRecord (it names only DIRECT_FIELDS).
        self.direct_fmt = fmt if set(_FIELD.findall(fmt)) <= DIRECT_FIELDS else None

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if datefmt:
            return super().formatTime(record, datefmt)
        return self.time_text(record.created)

    def time_text(self, created: float) -> str:
        """The default asctime of a record created at this time.time()."""
        second = int(created)
        if second != self._second:
            self._text = time.strftime(self.default_time_format, self.converter(created))
            self._second = second
        return f"{self._text},{int((created - second) * 1000):03d}"


class _FlushPerLoopTurn:
    """What the worker's handlers add: while the worker's loop runs (`defer_flushes`), a record
    goes to the stream's buffer and `flush_deferred` writes the buffer once per turn of the loop
    and before each job goes to a pool process (which may log to the same file), instead of one
    write per record (a busy node logs two lines per task). Off, as in a pool process or once
    the loop has ended, every record is flushed as it is written."""

    deferring = False
    dirty = False

    def flush(self) -> None:
        if self.deferring:
            self.dirty = True
            return
        self.flush_now()

    def flush_now(self) -> None:
        """Write what the stream holds; a failure (a full disk) is reported as logging reports
        a failed record, on stderr, and never raised into the worker's loop."""
        self.dirty = False
        try:
            super().flush()  # type: ignore[misc]
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "(writing the held log lines)"}))  # type: ignore[attr-defined]


class WorkerStreamHandler(_FlushPerLoopTurn, logging.StreamHandler):  # type: ignore[type-arg]
    """The worker's handler for stderr."""


class WorkerFileHandler(_FlushPerLoopTurn, logging.FileHandler):
    """The worker's handler for its --logfile."""


#: The worker's handlers while its loop defers their flushes (flush_deferred runs once per turn
#: and per hand-off: it looks at these, not at the root logger's handlers).
_deferring: list[_FlushPerLoopTurn] = []


def _worker_handlers() -> list[_FlushPerLoopTurn]:
    return [h for h in logging.getLogger().handlers if isinstance(h, _FlushPerLoopTurn)]


def defer_flushes(deferring: bool) -> None:
    """Flush the worker's log handlers once per loop turn (True), or per record (False: what
    they hold is written now)."""
    handlers = _worker_handlers()
    for handler in handlers:
        handler.deferring = deferring
        if not deferring:
            handler.flush_now()
    _deferring[:] = handlers if deferring else []


def flush_deferred() -> None:
    """Write what the worker's handlers hold (the loop calls this once per turn)."""
    for handler in _deferring:
        if handler.dirty:
            handler.flush_now()


# A forked process (a pool process started or replaced while the loop runs) would inherit the
# held lines in its copy of the buffer and write them a second time.
os.register_at_fork(before=flush_deferred)


def parse_level(name: str) -> int:
    """Return the logging level for a -l value, or raise ConfigError."""
    upper = name.upper()
    if upper not in LEVELS:
        raise ConfigError(
            f"-l/--loglevel {name!r} is not one of debug, info, warning, error, critical"
        )
    return logging.getLevelName(
        "WARNING" if upper == "WARN" else "CRITICAL" if upper == "FATAL" else upper
    )


def setup_logging(level: int, fmt: str, logfile: str | None = None) -> None:
    """Send tq's and the tasks' log records to stderr or a file, in the worker's format."""
    if logfile:
        try:
            handler: logging.Handler = WorkerFileHandler(logfile, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot open log file {logfile}: {exc.strerror}") from None
    else:
        handler = WorkerStreamHandler(sys.stderr)
    handler.setFormatter(WorkerFormatter(fmt))
    for name, fields in _RECORD_SWITCHES.items():
        if not fields.search(fmt):
            setattr(logging, name, None if name == "_srcfile" else False)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def restore_caller_lookup() -> None:
    """In a pool process: records collect everything again (tasks may log %(lineno)d), and
    each is flushed as it is written (no loop here flushes them)."""
    defer_flushes(False)
    for name, value in _DEFAULTS.items():
        setattr(logging, name, value)


def reopen_log_files() -> None:
    """Close file handlers so their next record reopens the file (after rotation or logrotate)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.close()
