"""The worker's log set-up skips what its format does not show, and nothing it shows."""

from __future__ import annotations

import logging
import os

import pytest

from tq.worker import logs


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    logs.restore_caller_lookup()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def one_line(tmp_path, fmt: str) -> str:
    path = tmp_path / "worker.log"
    logs.setup_logging(logging.INFO, fmt, str(path))
    logging.getLogger("tq.worker").info("Task %s[%s] received", "add", "id-1")
    for handler in logging.getLogger().handlers:
        handler.flush()
    return path.read_text().strip()


def test_the_default_format_still_shows_everything_it_names(tmp_path, restore_logging):
    line = one_line(tmp_path, "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s")
    assert line.endswith("INFO/MainProcess] Task add[id-1] received"), line
    assert logging._srcfile is None and not logging.logThreads  # skipped: not in the format


def test_a_format_naming_the_caller_or_thread_keeps_them(tmp_path, restore_logging):
    line = one_line(tmp_path, "%(funcName)s:%(lineno)d %(threadName)s %(process)d %(message)s")
    name, thread, process = line.split()[:3]
    assert name.startswith("one_line:") and name.split(":")[1] != "0", line
    assert thread == "MainThread" and process.isdigit() and process != "None", line


def test_pool_processes_collect_everything_again(tmp_path, restore_logging):
    one_line(tmp_path, "%(message)s")
    logs.restore_caller_lookup()
    record = logging.getLogger("x").makeRecord("x", logging.INFO, "f", 1, "m", (), None)
    assert logging._srcfile is not None and logging.logThreads and logging.logProcesses
    assert record.threadName == "MainThread" and record.process is not None


def test_while_the_loop_runs_lines_are_written_once_per_turn(tmp_path, restore_logging):
    path = tmp_path / "worker.log"
    logs.setup_logging(logging.INFO, "%(message)s", str(path))
    logger = logging.getLogger("tq.worker")
    logs.defer_flushes(True)
    try:
        logger.info("Task add[1] received")
        logger.info("Task add[1] succeeded")
        assert path.read_text() == ""  # held in the handler's buffer until the turn ends
        logs.flush_deferred()
        assert path.read_text() == "Task add[1] received\nTask add[1] succeeded\n"
        logger.warning("consumer: Connection to broker lost")
    finally:
        logs.defer_flushes(False)
    # Leaving the loop writes what is held, and from then on every line is written at once.
    assert path.read_text().endswith("Connection to broker lost\n")
    logger.info("worker: Warm shutdown")
    assert path.read_text().endswith("Warm shutdown\n")


def test_a_pool_process_writes_every_line_at_once(tmp_path, restore_logging):
    path = tmp_path / "worker.log"
    logs.setup_logging(logging.INFO, "%(message)s", str(path))
    logs.defer_flushes(True)  # the parent's state, inherited by a forked pool process
    logs.restore_caller_lookup()  # what a pool process does first
    logging.getLogger("proj.tasks").info("resizing")
    assert path.read_text() == "resizing\n"


def test_what_the_parent_logged_is_on_disk_before_a_pool_process_gets_a_job(
    tmp_path, restore_logging
):
    from types import SimpleNamespace

    from tq.protocol import TaskRequest
    from tq.worker import handoff
    from tq.worker.pool import Child
    from tq.worker.request import Held

    path = tmp_path / "worker.log"
    logs.setup_logging(logging.INFO, "%(message)s", str(path))
    on_disk_at_send: list[str] = []
    pool = SimpleNamespace(
        encode=lambda job: job,
        can_wait=lambda encoded: True,
        send=lambda child, job_id, job: on_disk_at_send.append(path.read_text()),
    )
    worker = SimpleNamespace(
        pool=pool,
        active={},
        queued={},
        next_job_id=lambda: 1,
        events=SimpleNamespace(task=lambda *args, **kwargs: None),
    )
    request = TaskRequest(id="t1", name="proj.tasks.resize", args=[], kwargs={})
    held = Held(request=request, message=None, acks_late=True, reject_on_worker_lost=False,
                acks_on_failure=True)  # fmt: skip
    logs.defer_flushes(True)
    try:
        logging.getLogger("tq.worker").warning("Refused task 'x'[y]: it is not signed")
        handoff.hand(worker, held, Child(index=0, pid=0))  # type: ignore[arg-type]
    finally:
        logs.defer_flushes(False)
    assert on_disk_at_send == ["Refused task 'x'[y]: it is not signed\n"]


def test_a_full_disk_is_reported_on_stderr_not_raised_into_the_loop(restore_logging, capsys):
    class FullDisk:
        def __init__(self) -> None:
            self.held: list[str] = []

        def write(self, text: str) -> None:
            self.held.append(text)

        def flush(self) -> None:
            raise OSError(28, "No space left on device")

    logs.setup_logging(logging.INFO, "%(message)s")
    handler = logging.getLogger().handlers[0]
    handler.setStream(FullDisk())  # type: ignore[attr-defined]
    logs.defer_flushes(True)
    try:
        logging.getLogger("tq.worker").info("Task add[1] received")
        logs.flush_deferred()  # the loop's turn: must not raise
        logging.getLogger("tq.worker").info("Task add[1] succeeded")
    finally:
        logs.defer_flushes(False)  # neither must this
    assert "No space left on device" in capsys.readouterr().err


def test_a_process_forked_while_lines_are_held_does_not_write_them_again(
    tmp_path, restore_logging
):
    path = tmp_path / "worker.log"
    logs.setup_logging(logging.INFO, "%(message)s", str(path))
    logs.defer_flushes(True)
    try:
        logging.getLogger("tq.worker").info("Task add[1] received")
        pid = os.fork()
        if pid == 0:  # what a pool process does first, then it leaves
            logs.restore_caller_lookup()
            os._exit(0)
        os.waitpid(pid, 0)
    finally:
        logs.defer_flushes(False)
    assert path.read_text() == "Task add[1] received\n"
