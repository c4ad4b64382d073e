"""The per-task info lines skip the logging module only where its output would be the same."""

from __future__ import annotations

import io
import logging
import re

import pytest

from tq.worker import logs, tasklines

MOMENT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}")
RECEIVED = ("Task %s[%s] received", "proj.add", "id-1")
SUCCEEDED = ("Task %s[%s] succeeded in %.4fs: %s", "proj.add", "id-1", 0.00012, "3")


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level, factory = list(root.handlers), root.level, logging.getLogRecordFactory()
    yield
    logs.defer_flushes(False)
    logs.restore_caller_lookup()
    logging.setLogRecordFactory(factory)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture
def made_records(monkeypatch):
    """Count the LogRecords the logging module makes (the direct path makes none)."""
    made: list[str] = []
    make = logging.Logger.makeRecord

    def counting(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        made.append(self.name)
        return make(self, *args, **kwargs)

    monkeypatch.setattr(logging.Logger, "makeRecord", counting)
    return made


def both_ways(tmp_path, fmt: str) -> tuple[list[str], list[str]]:
    """The lines logger.info writes, then those tasklines.info writes, times blanked."""
    path = tmp_path / "worker.log"
    logs.setup_logging(logging.INFO, fmt, str(path))
    logger = logging.getLogger("tq.worker")
    logger.info(*RECEIVED)
    logger.info(*SUCCEEDED)
    tasklines.info(logger, *RECEIVED)
    tasklines.info(logger, *SUCCEEDED)
    lines = [MOMENT.sub("T", line) for line in path.read_text().splitlines()]
    return lines[:2], lines[2:]


@pytest.mark.parametrize(
    "fmt",
    [
        "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s",  # Celery's and tq's default
        "%(asctime)s %(name)s %(levelno)d %(message)-60s|100%%",
        "%(message)s",
    ],
)
def test_a_direct_line_is_the_line_logging_writes(tmp_path, restore_logging, made_records, fmt):
    standard, direct = both_ways(tmp_path, fmt)
    assert direct == standard
    assert made_records == ["tq.worker", "tq.worker"]  # the two logger.info calls only


def test_a_format_naming_other_fields_goes_through_logging(
    tmp_path, restore_logging, made_records
):
    standard, direct = both_ways(tmp_path, "%(module)s:%(lineno)d %(threadName)s %(message)s")
    assert [line.split(" ", 1)[1] for line in direct] == [
        line.split(" ", 1)[1] for line in standard
    ]
    assert len(made_records) == 4


def test_a_handler_filter_or_record_factory_added_by_a_program_sees_every_line(
    tmp_path, restore_logging, made_records
):
    logs.setup_logging(logging.INFO, "%(message)s", str(tmp_path / "worker.log"))
    logger = logging.getLogger("tq.worker")
    seen = io.StringIO()
    extra = logging.StreamHandler(seen)
    logging.getLogger("tq").addHandler(extra)
    try:
        tasklines.info(logger, *RECEIVED)
    finally:
        logging.getLogger("tq").removeHandler(extra)
    assert seen.getvalue() == "Task proj.add[id-1] received\n"

    dropped: list[str] = []
    logger.addFilter(lambda record: dropped.append(record.getMessage()) and False)
    try:
        tasklines.info(logger, *RECEIVED)
    finally:
        logger.filters.clear()
    assert dropped == ["Task proj.add[id-1] received"]

    stamped: list[logging.LogRecord] = []

    def factory(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        record = logging.LogRecord(*args, **kwargs)
        stamped.append(record)
        return record

    logging.setLogRecordFactory(factory)
    tasklines.info(logger, *SUCCEEDED)
    assert [record.getMessage() for record in stamped] == [
        "Task proj.add[id-1] succeeded in 0.0001s: 3"
    ]
    # Only the second filtered line was written: the filter dropped the other one.
    assert (tmp_path / "worker.log").read_text().splitlines() == [
        "Task proj.add[id-1] received",
        "Task proj.add[id-1] succeeded in 0.0001s: 3",
    ]
    assert len(made_records) == 3


def test_below_info_nothing_is_written(tmp_path, restore_logging, made_records):
    path = tmp_path / "worker.log"
    logs.setup_logging(logging.WARNING, "%(message)s", str(path))
    tasklines.info(logging.getLogger("tq.worker"), *RECEIVED)
    assert path.read_text() == "" and made_records == []


def test_a_reopened_log_file_gets_the_next_line(tmp_path, restore_logging):
    path = tmp_path / "worker.log"
    logs.setup_logging(logging.INFO, "%(message)s", str(path))
    path.rename(tmp_path / "worker.log.1")  # logrotate, then SIGHUP
    logs.reopen_log_files()
    tasklines.info(logging.getLogger("tq.worker"), *RECEIVED)
    assert path.read_text() == "Task proj.add[id-1] received\n"


def test_held_lines_wait_for_the_loop_turn_like_any_other(tmp_path, restore_logging):
    path = tmp_path / "worker.log"
    logs.setup_logging(logging.INFO, "%(message)s", str(path))
    logs.defer_flushes(True)
    tasklines.info(logging.getLogger("tq.worker"), *RECEIVED)
    assert path.read_text() == ""
    logs.flush_deferred()
    assert path.read_text() == "Task proj.add[id-1] received\n"


class BrokenStream(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")


def test_a_failed_write_is_reported_like_logging_reports_it(restore_logging, capsys):
    logs.setup_logging(logging.INFO, "%(message)s")
    handler = logging.getLogger().handlers[0]
    handler.setStream(BrokenStream())  # type: ignore[attr-defined]
    tasklines.info(logging.getLogger("tq.worker"), *RECEIVED)  # does not raise
    assert "No space left on device" in capsys.readouterr().err
