"""Worker processes under test: their command lines, start, stop and resident memory."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

APPS_DIR = Path(__file__).resolve().parent / "apps"
#: How long a warm shutdown (TERM) may take before the worker is killed.
WARM_SHUTDOWN_TIMEOUT_S = 15.0
#: How long to wait for a killed process to be reaped.
KILL_WAIT_S = 5.0
#: Lines of the worker's log quoted when something fails.
LOG_TAIL_LINES = 25


class WorkerFailed(Exception):
    """The worker under test exited, hung or never did what was measured."""


def worker_argv(system: str, *, queue: str, logfile: Path) -> list[str]:
    """Return the command line of a 2-process node of tq, Celery (prefork) or Dramatiq."""
    if system == "tq":
        return [
            sys.executable, "-m", "tq", "-A", "tq_app", "--workdir", str(APPS_DIR),
            "worker", "-c", "2", "-P", "prefork", "-l", "info", "--logfile", str(logfile),
            "-n", "bench@%h", "-Q", queue,
        ]  # fmt: skip
    if system == "dramatiq":
        # One thread per process: two tasks at a time, as the prefork pools of the others.
        return [
            sys.executable, "-m", "dramatiq", "--processes", "2", "--threads", "1",
            "--path", str(APPS_DIR), "--queues", queue, "--log-file", str(logfile),
            "dramatiq_app",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "celery", "-A", "celery_app", "worker",
        "-c", "2", "-P", "prefork", "--without-mingle", "--without-gossip",
        "-l", "info", "--logfile", str(logfile), "-n", "bench@%h", "-Q", queue,
    ]  # fmt: skip


@dataclass
class WorkerProcess:
    """A running worker node: its process, log file and captured output."""

    popen: subprocess.Popen[bytes]
    logfile: Path
    outfile: Path

    def check_alive(self) -> None:
        """Raise WorkerFailed if the node has exited."""
        code = self.popen.poll()
        if code is not None:
            raise WorkerFailed(f"worker exited with code {code}\n{self.log_tail()}")

    def log_tail(self) -> str:
        """Return the last lines of the worker's log and of its stdout/stderr."""
        parts = []
        for path in (self.logfile, self.outfile):
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                if lines:
                    parts.append(f"--- {path}\n" + "\n".join(lines))
        return "\n".join(parts) or "(the worker wrote nothing)"


@contextmanager
def running_worker(
    system: str, *, queue: str, run_dir: Path, label: str, env: dict[str, str]
) -> Iterator[WorkerProcess]:
    """Start a node, yield it, and always stop it: TERM, wait, then KILL what is left."""
    logfile = run_dir / f"{label}.log"
    outfile = run_dir / f"{label}.out"
    argv = worker_argv(system, queue=queue, logfile=logfile)
    (run_dir / f"{label}.cmd").write_text(" ".join(argv) + "\n")
    with open(outfile, "wb") as output:
        popen = subprocess.Popen(
            argv, cwd=APPS_DIR, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output
        )
    worker = WorkerProcess(popen, logfile, outfile)
    try:
        yield worker
    finally:
        stop_worker(worker)


def stop_worker(worker: WorkerProcess) -> None:
    """Warm-stop the node; kill it, and any pool process it leaves behind, if it lingers."""
    popen = worker.popen
    # Remember the pool now: once the parent is gone its children cannot be found from it.
    try:
        pool = psutil.Process(popen.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        pool = []
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(WARM_SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(
                f"worker {popen.pid} ignored TERM for {WARM_SHUTDOWN_TIMEOUT_S:.0f} s: killing it"
            )
            popen.kill()
            popen.wait(KILL_WAIT_S)
    for child in pool:
        # is_running() compares creation times, so a recycled pid is never killed.
        if child.is_running():
            try:
                child.kill()
                child.wait(KILL_WAIT_S)
            except psutil.Error:
                pass


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """Return the RSS and PSS (MB) of a process plus all its descendants."""
    root = psutil.Process(pid)
    rss = pss = 0
    for process in [root, *root.children(recursive=True)]:
        info = process.memory_full_info()
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss / 2**20, pss / 2**20
