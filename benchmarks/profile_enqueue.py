"""Profile tq's client with cProfile while it enqueues no-op tasks with delay().

    .venv/bin/python benchmarks/profile_enqueue.py --broker amqp [--tasks 5000] [--top 25]
        [--bulk] [--out PATH]

Publishes the tasks with no worker running (``--bulk``: in one ``app.send_many`` call),
first untimed and unprofiled for the rate, then again under cProfile, and prints both rates
and the top functions by own time. The run's queue is deleted at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

from brokers import PROFILES, delete_run_queues, run_queue_name
from run import tq_alone


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description="cProfile tq's delay() on one broker.")
    parser.add_argument("--broker", choices=sorted(PROFILES), required=True)
    parser.add_argument("--tasks", type=int, default=5000, help="tasks (default 5,000)")
    parser.add_argument("--top", type=int, default=25, help="functions to print (default 25)")
    parser.add_argument("--bulk", action="store_true", help="one app.send_many() call")
    parser.add_argument("--out", type=Path, help="keep the profile here (default: a temp file)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Time and profile one enqueue; return 0."""
    args = parse_args(argv)
    profile, run_id, run_dir, system = tq_alone(args.broker)
    out = args.out or run_dir / "enqueue.prof"
    noop = system.noop

    def enqueue() -> None:
        if args.bulk:
            noop.app.send_many([noop.s() for _ in range(args.tasks)])
        else:
            for _ in range(args.tasks):
                noop.delay()

    try:
        noop.delay()  # connect and declare outside the figures
        started = time.perf_counter()
        enqueue()
        rate = args.tasks / (time.perf_counter() - started)
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.runcall(enqueue)
        profiled_rate = args.tasks / (time.perf_counter() - started)
        profiler.dump_stats(str(out))
    finally:
        system.counter.close()
        delete_run_queues(profile, queue_names=[run_queue_name(run_id, "tq")], run_id=run_id)
    print(f"{args.tasks:,} tasks: {rate:,.0f}/s; under cProfile {profiled_rate:,.0f}/s")
    pstats.Stats(str(out)).sort_stats("tottime").print_stats(args.top)
    print(f"profile kept in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
