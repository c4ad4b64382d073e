"""Compare the worker's CPU per task at a git revision and in the working tree, in pairs.

    .venv/bin/python benchmarks/paired.py --base 49e9315 --broker redis [--pairs 3]
        [--tasks 10000]

On a shared two-core VM one drain can run 30-50 % slower than the next, so a change worth 10 %
shows only when the old and the new code run back to back. This checks REV out into a temporary
git work tree, then runs `profile_worker.py --cpu-only` with each in turn (PYTHONPATH picks the
tq that the benchmark and its worker import; which one goes first alternates from pair to pair),
prints every pair, and the median change of the main process's CPU per task. The work tree is
removed at the end. Exit code 1 when a run failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from brokers import PROFILES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: One profile_worker.py run drains this many tasks at most before it is given up.
RUN_TIMEOUT_S = 600

_RATE = re.compile(r"drained [\d,]+ in [\d.]+ s = ([\d,]+)/s")
_CPU = re.compile(r"CPU per task \(us\): main process (\d+), pool ([\d, ]+)")


@dataclass(frozen=True)
class Drain:
    """What one profile_worker.py --cpu-only run printed."""

    rate_per_s: float
    main_us: float
    pool_us: list[float]


def parse_drain(output: str) -> Drain | None:
    """Read profile_worker.py's two summary lines; None if they are not there."""
    rate, cpu = _RATE.search(output), _CPU.search(output)
    if rate is None or cpu is None:
        return None
    pool = [float(part) for part in cpu.group(2).split(",") if part.strip()]
    return Drain(float(rate.group(1).replace(",", "")), float(cpu.group(1)), pool)


def pair_order(pair: int) -> tuple[str, str]:
    """Which side runs first in pair number `pair` (0-based): they take turns."""
    return ("base", "work") if pair % 2 == 0 else ("work", "base")


def median_change(pairs: list[tuple[Drain, Drain]]) -> float:
    """The median relative change of the main process's CPU per task, work against base."""
    return statistics.median(work.main_us / base.main_us - 1 for base, work in pairs)


def run_drain(tree: Path, broker: str, tasks: int) -> tuple[Drain | None, str]:
    """One drain with the tq of `tree`; returns what it measured and its output."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    command = [sys.executable, str(HERE / "profile_worker.py"), "--broker", broker,
               "--cpu-only", "--tasks", str(tasks)]  # fmt: skip
    # Run from a folder without a tq in it: `python -m` puts the current folder first.
    with tempfile.TemporaryDirectory(prefix="tq-paired-") as cwd:
        done = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
    output = done.stdout + done.stderr
    return (parse_drain(output) if done.returncode == 0 else None), output


def main(argv: list[str] | None = None) -> int:
    """Measure the pairs and print them; return the exit code."""
    parser = argparse.ArgumentParser(description="Worker CPU per task: REV against the tree.")
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--broker", choices=sorted(PROFILES), required=True)
    parser.add_argument("--pairs", type=int, default=3, help="pairs of runs (default 3)")
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks a run (default 10,000)")
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.tasks < 100:
        parser.error("--pairs must be at least 1 and --tasks at least 100")
    with tempfile.TemporaryDirectory(prefix="tq-paired-base-") as holder:
        base_tree = Path(holder) / "tree"
        added = subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base_tree),
             args.base],
            capture_output=True, text=True,
        )  # fmt: skip
        if added.returncode != 0:
            parser.error(f"cannot check out {args.base!r}: {added.stderr.strip()}")
        try:
            return measure_pairs(base_tree, args)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)],
                capture_output=True,
            )


def measure_pairs(base_tree: Path, args: argparse.Namespace) -> int:
    """Run and print the pairs; 1 if a run failed."""
    trees = {"base": base_tree, "work": ROOT}
    for tree in trees.values():  # as pip does for an installed package: no compiling per start
        compileall.compile_dir(str(tree / "tq"), quiet=1)
    print(f"{args.broker}: {args.base} (base) against the working tree (work), "
          f"{args.pairs} pairs of {args.tasks:,} tasks")  # fmt: skip
    pairs: list[tuple[Drain, Drain]] = []
    for pair in range(args.pairs):
        measured: dict[str, Drain] = {}
        for side in pair_order(pair):
            drain, output = run_drain(trees[side], args.broker, args.tasks)
            if drain is None:
                print(f"pair {pair + 1}, {side}: the run failed\n{output[-2000:]}")
                return 1
            measured[side] = drain
        base, work = measured["base"], measured["work"]
        pairs.append((base, work))
        print(f"pair {pair + 1}: main process {base.main_us:.0f} -> {work.main_us:.0f} us a task "
              f"({work.main_us / base.main_us - 1:+.0%}); drain {base.rate_per_s:,.0f} -> "
              f"{work.rate_per_s:,.0f}/s; pool {'/'.join(f'{us:.0f}' for us in base.pool_us)} "
              f"-> {'/'.join(f'{us:.0f}' for us in work.pool_us)} us")  # fmt: skip
    print(f"median change of the main process's CPU per task: {median_change(pairs):+.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
