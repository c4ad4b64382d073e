"""Logging set-up for a worker process: level, format and file."""

from __future__ import annotations

import logging
import sys

from ..errors import ConfigError

LEVELS = {"DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL"}


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
            handler: logging.Handler = logging.FileHandler(logfile, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot open log file {logfile}: {exc.strerror}") from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def reopen_log_files() -> None:
    """Close file handlers so their next record reopens the file (after rotation or logrotate)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.close()
