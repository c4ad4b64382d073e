"""Benchmark tq against Celery 5 and Dramatiq on one broker: enqueue, drain, round trip, ...

    .venv/bin/python benchmarks/run.py --broker redis|amqp|embedded [--quick] [--tasks N]
        [--rtt R] [--only tq|celery|dramatiq] [--json PATH]

Dramatiq runs where it is installed (the bench extra installs it), on Redis and RabbitMQ.

See benchmarks/README.md for what each figure means and how it is taken.
"""

from __future__ import annotations

import argparse
import compileall
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

from rich.console import Console

from brokers import (
    PROFILES,
    BrokerProfile,
    check_broker,
    declared_queue_names,
    delete_run_queues,
    dramatiq_broker_url,
    dramatiq_namespace,
    embedded_broker_missing,
    make_counter,
    run_queue_name,
)
from measure import Figures, SystemUnderTest, combine_rounds, measure_system
from report import command_line, machine_description, print_report, print_rounds, write_json
from workers import APPS_DIR

DEFAULT_TASKS = 10_000
DEFAULT_ROUND_TRIPS = 300
#: --quick: about 30 s per broker for both systems.
QUICK_TASKS = 1_000
QUICK_ROUND_TRIPS = 50
#: Each figure is the median of this many rounds: on a shared two-core VM one drain can come
#: out 30 % slower than the next, and a single sample per system decided the ratio.
DEFAULT_ROUNDS = 3
QUICK_ROUNDS = 1
#: A 1-minute load average above this on 2 cores means something else competes for the CPU.
BUSY_LOAD_AVERAGE = 0.5
SYSTEMS = ("tq", "celery", "dramatiq")
LABELS = {"tq": "tq", "celery": "Celery", "dramatiq": "Dramatiq"}
APP_MODULES = {"tq": "tq_app", "celery": "celery_app", "dramatiq": "dramatiq_app"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        description="Benchmark tq against Celery 5 and Dramatiq on one broker (127.0.0.1 only)."
    )
    parser.add_argument("--broker", choices=sorted(PROFILES), required=True)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_TASKS:,} tasks and {QUICK_ROUND_TRIPS} round trips (~30 s per broker)",
    )
    parser.add_argument(
        "--tasks", type=int, help=f"no-op tasks to enqueue and drain (default {DEFAULT_TASKS:,})"
    )
    parser.add_argument(
        "--rtt", type=int, help=f"timed sequential round trips (default {DEFAULT_ROUND_TRIPS})"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help=f"measure every system this many times, the figures being medians "
        f"(default {DEFAULT_ROUNDS}, {QUICK_ROUNDS} with --quick)",
    )
    parser.add_argument("--only", choices=SYSTEMS, help="measure one system only")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.tasks is None:
        args.tasks = QUICK_TASKS if args.quick else DEFAULT_TASKS
    if args.rtt is None:
        args.rtt = QUICK_ROUND_TRIPS if args.quick else DEFAULT_ROUND_TRIPS
    if args.rounds is None:
        args.rounds = QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS
    if args.tasks < 10 or args.rtt < 1 or args.rounds < 1:
        parser.error("--tasks must be at least 10, --rtt and --rounds at least 1")
    return args


def configure_environment(profile: BrokerProfile, *, run_id: str, run_dir: Path) -> None:
    """Point the apps (here and in the workers, which inherit it) at this run's broker."""
    for name in list(os.environ):
        # A TQ_* or BENCH_* variable from the shell would override what is measured.
        if name.startswith(("TQ_", "BENCH_")):
            del os.environ[name]
    os.environ["TQ_DEFAULT_QUEUE"] = run_queue_name(run_id, "tq")
    if profile.broker_url is None:
        os.environ["TQ_DATA_DIR"] = str(run_dir / "tq-data")
    else:
        os.environ["TQ_BROKER_URL"] = profile.broker_url
        os.environ["TQ_RESULT_BACKEND"] = str(profile.result_backend)
        os.environ["BENCH_CELERY_BROKER_URL"] = profile.broker_url
        os.environ["BENCH_CELERY_RESULT_BACKEND"] = str(profile.result_backend)
    os.environ["BENCH_CELERY_QUEUE"] = run_queue_name(run_id, "celery")
    if profile.broker_url is not None:
        os.environ["BENCH_DRAMATIQ_BROKER_URL"] = dramatiq_broker_url(profile)
        os.environ["BENCH_DRAMATIQ_QUEUE"] = run_queue_name(run_id, "dramatiq")
        os.environ["BENCH_DRAMATIQ_NAMESPACE"] = dramatiq_namespace(run_id)
    if profile.name == "redis":
        # Dramatiq's result backends are Redis and Memcached: on RabbitMQ it has none to
        # match rpc://, so its round trip is measured on Redis only.
        os.environ["BENCH_DRAMATIQ_RESULT_BACKEND"] = str(profile.result_backend)
    if str(APPS_DIR) not in sys.path:
        sys.path.insert(0, str(APPS_DIR))


def load_system(
    name: str, profile: BrokerProfile, *, run_id: str, run_dir: Path, counter: str = ""
) -> SystemUnderTest:
    """Import one system's benchmark app and give it a fresh completion counter (`counter`
    names it; each round of a run counts from zero on its own)."""
    module = importlib.import_module(APP_MODULES[name])
    completions = make_counter(profile, run_dir=run_dir, run_id=run_id, system=counter or name)
    # Dramatiq's actors have send(), not delay(): its app wraps them (add is None without a
    # result backend).
    dramatiq = name == "dramatiq"
    return SystemUnderTest(
        name=name,
        queue=run_queue_name(run_id, name),
        noop=module.noop_task if dramatiq else module.noop,
        add=module.add_task if dramatiq else module.add,
        counter=completions,
        worker_env={**os.environ, **completions.worker_env()},
    )


def byte_compile_tq() -> None:
    """Write the bytecode of tq and of the benchmark apps, as `pip install` does for a package.

    Run from a checkout with PYTHONDONTWRITEBYTECODE set (CI and this machine set it), every
    tq module would be compiled again at each start while Celery and Dramatiq load the
    bytecode pip wrote for them: start-up would time the compiler (~35 ms), not the worker.
    """
    spec = importlib.util.find_spec("tq")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        compileall.compile_dir(folder, quiet=1)
    compileall.compile_dir(str(APPS_DIR), quiet=1, maxlevels=0)


def tq_alone(broker: str) -> tuple[BrokerProfile, str, Path, SystemUnderTest]:
    """Set up a run of tq alone on a broker (the profiling scripts): check the broker, make
    the run's id and directory, set the environment and load the app."""
    profile = PROFILES[broker]
    print(f"{profile.name}: {check_broker(profile)}")
    run_id = f"bench-{uuid4().hex[:12]}"
    run_dir = Path(tempfile.mkdtemp(prefix=f"tq-{run_id}-"))
    configure_environment(profile, run_id=run_id, run_dir=run_dir)
    byte_compile_tq()
    return profile, run_id, run_dir, load_system("tq", profile, run_id=run_id, run_dir=run_dir)


def progress_printer(console: Console, label: str) -> Callable[[str], None]:
    """Return a function printing one progress line of a system."""

    def print_progress(line: str) -> None:
        console.print(f"  {label:<8} {line}")

    return print_progress


def run_systems(
    names: list[str],
    profile: BrokerProfile,
    rounds: dict[str, list[Figures]],
    *,
    tasks: int,
    round_trips: int,
    round_count: int,
    run_id: str,
    run_dir: Path,
    console: Console,
) -> None:
    """Measure every system once per round into `rounds`; always delete the run's queues after.

    Each round starts with a different system, so a machine that grows busier or quieter during
    the run does not always favour the same one. A system that fails sits out later rounds.
    """
    systems: list[SystemUnderTest] = []
    try:
        for index in range(round_count):
            shift = index % len(names)
            label = f"-round{index + 1}" if round_count > 1 else ""
            if round_count > 1:
                console.print(f"[bold]round {index + 1} of {round_count}[/bold]")
            for name in names[shift:] + names[:shift]:
                if any(one.error for one in rounds[name]):
                    continue
                try:
                    system = load_system(
                        name, profile, run_id=run_id, run_dir=run_dir, counter=f"{name}{label}"
                    )
                except Exception as exc:
                    error = f"cannot load {name}'s app: {type(exc).__name__}: {exc}"
                    rounds[name].append(Figures(error=error))
                    console.print(f"  {LABELS[name]:<8} [red]failed[/red]: {error}")
                    continue
                systems.append(system)
                rounds[name].append(
                    measure_system(
                        system,
                        tasks=tasks,
                        round_trips=round_trips,
                        run_dir=run_dir,
                        report=progress_printer(console, LABELS[name]),
                        # Its tasks stay queued (no node drains them): only the last round.
                        group_enqueue=index == round_count - 1,
                        label=label,
                    )
                )
    finally:
        for system in systems:
            system.counter.close()
        try:
            queue_names = [queue for name in names for queue in declared_queue_names(run_id, name)]
            delete_run_queues(profile, queue_names=queue_names, run_id=run_id)
        except Exception as exc:
            console.print(f"[yellow]could not delete the queues {run_id}-*[/yellow]: {exc}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 0 if every requested figure was measured."""
    args = parse_args(argv)
    console = Console(highlight=False)
    profile = PROFILES[args.broker]
    command = command_line()
    try:
        missing = embedded_broker_missing() if profile.broker_url is None else None
    except Exception as exc:
        console.print(f"[red]tq does not import[/red]: {type(exc).__name__}: {exc}")
        return 1
    if missing:
        console.print(
            f"[yellow]skipped[/yellow]: --broker embedded needs tq's embedded broker: {missing}"
        )
        return 0
    try:
        server = check_broker(profile)
    except Exception as exc:
        console.print(
            f"[red]cannot reach the {profile.name} broker[/red] ({profile.broker_url}): {exc}"
        )
        return 1

    names = [name for name in SYSTEMS if args.only in (None, name)]
    for name in [name for name in names if name not in profile.systems]:
        console.print(f"{LABELS[name]}: n/a ({LABELS[name]} has no {profile.name} broker)")
        names.remove(name)
    if "dramatiq" in names and importlib.util.find_spec("dramatiq") is None:
        console.print(
            "Dramatiq: skipped, not installed (pip install -e '.[bench]' installs it)", markup=False
        )
        names.remove("dramatiq")
    if not names:
        console.print(f"[red]nothing to run[/red]: --only {args.only} on {profile.name}")
        return 2

    run_id = f"bench-{uuid4().hex[:12]}"
    run_dir = Path(tempfile.mkdtemp(prefix=f"tq-{run_id}-"))
    configure_environment(profile, run_id=run_id, run_dir=run_dir)
    byte_compile_tq()
    rounds_text = f", {args.rounds} rounds" if args.rounds > 1 else ""
    console.print(
        f"[bold]{profile.name}[/bold] ({server}): {args.tasks:,} tasks, {args.rtt} round trips"
        f"{rounds_text}, queues {run_id}-*, logs in {run_dir}"
    )
    rounds: dict[str, list[Figures]] = {name: [] for name in names}
    machine = machine_description()
    if machine["load_average_1m"] > BUSY_LOAD_AVERAGE:
        console.print(
            f"[yellow]the machine is busy[/yellow] (load average {machine['load_average_1m']}): "
            "the figures will be low and noisy"
        )
    started = time.perf_counter()
    interrupted = False
    try:
        run_systems(
            names, profile, rounds, tasks=args.tasks, round_trips=args.rtt,
            round_count=args.rounds, run_id=run_id, run_dir=run_dir, console=console,
        )  # fmt: skip
    except KeyboardInterrupt:
        # The workers were stopped and the queues deleted on the way out of run_systems.
        interrupted = True
        console.print("[yellow]interrupted[/yellow]: the figures below are partial")
    elapsed_s = time.perf_counter() - started
    figures: dict[str, Figures | None] = {name: None for name in SYSTEMS}
    for name, measured in rounds.items():
        figures[name] = combine_rounds(measured) if measured else None

    sizes = f"{args.tasks:,} tasks, {args.rtt} round trips{rounds_text}, {elapsed_s:.0f} s"
    print_report(
        console,
        figures,
        broker=profile.name,
        server=server,
        sizes=sizes,
        machine=machine,
        command=command,
    )
    if args.rounds > 1:
        print_rounds(console, rounds)
    if args.json:
        settings = {
            "tasks": args.tasks, "round_trips": args.rtt, "rounds": args.rounds,
            "elapsed_s": round(elapsed_s, 1),
        }  # fmt: skip
        write_json(
            args.json, figures, broker=profile.name, server=server, settings=settings,
            machine=machine, command=command, rounds=rounds,
        )  # fmt: skip
    failed = any(system_figures and system_figures.error for system_figures in figures.values())
    if failed:
        console.print(f"worker logs kept in {run_dir}")
        return 1
    shutil.rmtree(run_dir, ignore_errors=True)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
