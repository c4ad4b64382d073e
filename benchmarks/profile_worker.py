"""Profile a tq worker's main process with cProfile while it drains a backlog of no-op tasks.

    .venv/bin/python benchmarks/profile_worker.py --broker redis [--tasks 5000] [--top 25]
        [--out PATH]

Enqueues the tasks with no worker running, starts one node (2 prefork processes) under
cProfile, waits until every task ran, stops it with TERM (cProfile writes on exit) and prints
the drain rate (slowed by cProfile), the CPU each process used, and the top functions.
"""

from __future__ import annotations

import argparse
import pstats
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from brokers import PROFILES, delete_run_queues, run_queue_name
from run import tq_alone
from workers import APPS_DIR, WARM_SHUTDOWN_TIMEOUT_S, worker_argv

#: A drain that makes no progress for this long has hung.
STALL_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.01


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description="cProfile a tq worker draining no-op tasks.")
    parser.add_argument("--broker", choices=sorted(PROFILES), required=True)
    parser.add_argument("--tasks", type=int, default=5000, help="no-op tasks (default 5,000)")
    parser.add_argument("--top", type=int, default=25, help="functions to print (default 25)")
    parser.add_argument("--out", type=Path, help="keep the profile here (default: a temp file)")
    parser.add_argument(
        "--cpu-only",
        action="store_true",
        help="no cProfile: print the CPU time per task of the main process and the pool "
        "(steadier than a rate on a busy machine)",
    )
    parser.add_argument(
        "--syscalls",
        action="store_true",
        help="no cProfile: count the main process's system calls during the drain with "
        "strace -c and print them per task (exact, unlike times; strace slows the drain)",
    )
    parser.add_argument(
        "--py-spy",
        action="store_true",
        help="no cProfile: sample the main process with py-spy during the drain and print the "
        "functions with the most samples, their own and with their callees",
    )
    parser.add_argument(
        "--process",
        choices=["main", "pool"],
        default="main",
        help="what --py-spy and --syscalls watch: the node's main process (default) or its "
        "first pool process (which runs about half the tasks)",
    )
    return parser.parse_args(argv)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def start_py_spy(pid: int, out: Path) -> subprocess.Popen:
    """Sample pid's Python stacks (500 a second, without stopping it) into out, collapsed."""
    py_spy = Path(sys.executable).with_name("py-spy")
    argv = [
        str(py_spy),
        "record",
        "-p",
        str(pid),
        "-r",
        "500",
        "--nonblocking",
        "-f",
        "raw",
        "-o",
        str(out),
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_strace(pid: int, out: Path) -> subprocess.Popen:
    """Count pid's system calls (its main thread and any other) into out until SIGINT."""
    argv = ["strace", "-c", "-q", "-p", str(pid), "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def print_syscalls(path: Path, tasks: int, watched: str) -> None:
    """Print strace -c's counts per task of the whole drain, most frequent first."""
    counts = []
    for line in path.read_text().splitlines():
        fields = line.split()
        # % time, seconds, usecs/call, calls, [errors,] syscall
        if len(fields) >= 5 and fields[3].isdigit() and fields[-1] != "total":
            counts.append((int(fields[3]), fields[-1]))
    total = sum(calls for calls, _ in counts)
    print(f"system calls of {watched} per task drained: {total / tasks:.2f}")
    for calls, name in sorted(counts, reverse=True):
        print(f"{calls / tasks:8.2f}  {name}")


def function_of(frame: str) -> str:
    """'name (path/file.py:12)' -> 'name (file.py)': a function's samples from all its lines."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rpartition('/')[2].partition(':')[0]})"


def print_samples(path: Path, top: int, watched: str) -> None:
    """Print the top functions of a collapsed-stack file: share of samples own and inclusive."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = [function_of(frame) for frame in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    print(f"{total:,} samples of {watched} (py-spy, 500/s): own %, with callees %")
    for frame, count in sorted(own.items(), key=lambda item: -item[1])[:top]:
        print(f"{count / total:6.1%} {inclusive[frame] / total:6.1%}  {frame}")


def main(argv: list[str] | None = None) -> int:
    """Profile one drain; return 0 when every task ran."""
    args = parse_args(argv)
    profile, run_id, run_dir, system = tq_alone(args.broker)
    out = args.out or run_dir / "worker.prof"
    try:
        for _ in range(args.tasks):
            system.noop.delay()
        command = worker_argv("tq", queue=system.queue, logfile=run_dir / "worker.log")
        if not (args.cpu_only or args.py_spy or args.syscalls):
            command[1:1] = ["-m", "cProfile", "-o", str(out)]
        with open(run_dir / "worker.out", "wb") as output:
            popen = subprocess.Popen(
                command, cwd=APPS_DIR, env=system.worker_env, stdout=output, stderr=output
            )
        parent = psutil.Process(popen.pid)
        progress, progress_at = 0, time.perf_counter()
        started = children = None
        sampler = None
        while (done := system.counter.read()) < args.tasks:
            now = time.perf_counter()
            if done and started is None:
                started, children = now, parent.children()
                cpu_start = [cpu_seconds(p) for p in (parent, *children)]
                watched = children[0].pid if args.process == "pool" and children else popen.pid
                if args.py_spy:
                    sampler = start_py_spy(watched, run_dir / "watched.spy")
                elif args.syscalls:
                    sampler = start_strace(watched, run_dir / "watched.strace")
            if done != progress:
                progress, progress_at = done, now
            if popen.poll() is not None or now - progress_at > STALL_TIMEOUT_S:
                print(f"the worker stopped or stalled at {done} of {args.tasks} tasks")
                return 1
            time.sleep(POLL_INTERVAL_S)
        elapsed = time.perf_counter() - (started or time.perf_counter())
        if sampler is not None:
            sampler.send_signal(signal.SIGINT)
            sampler.wait(30)
        cpu_end = [cpu_seconds(p) for p in (parent, *(children or []))]
        shares = [
            f"{(end - begin) / elapsed:.0%}" for begin, end in zip(cpu_start, cpu_end, strict=True)
        ]
        if args.syscalls:
            how = "under strace"
        elif args.cpu_only or args.py_spy:
            how = "without cProfile"
        else:
            how = "under cProfile"
        print(f"drained {args.tasks:,} in {elapsed:.2f} s = {args.tasks / elapsed:,.0f}/s "
              f"{how}; CPU of main process, pool: {', '.join(shares)}")  # fmt: skip
        used = [end - begin for begin, end in zip(cpu_start, cpu_end, strict=True)]
        per_task = [f"{seconds / args.tasks * 1e6:.0f}" for seconds in used]
        print(f"CPU per task (us): main process {per_task[0]}, pool {', '.join(per_task[1:])}")
        popen.send_signal(signal.SIGTERM)
        popen.wait(WARM_SHUTDOWN_TIMEOUT_S)
    finally:
        system.counter.close()
        delete_run_queues(profile, queue_names=[run_queue_name(run_id, "tq")], run_id=run_id)
    watched = "the first pool process" if args.process == "pool" else "the main process"
    if args.py_spy:
        print_samples(run_dir / "watched.spy", args.top, watched)
        return 0
    if args.syscalls:
        print_syscalls(run_dir / "watched.strace", args.tasks, watched)
        return 0
    if args.cpu_only:
        return 0
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(args.top)
    print(f"profile kept in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
