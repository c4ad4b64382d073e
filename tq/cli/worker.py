"""`tq worker`: start a worker node in the foreground."""

from __future__ import annotations

import os
import socket
import sys

import click

from .. import __version__
from ..errors import ConfigError
from ..nodenames import DEFAULT_NODENAME, host_format, node_format
from ..worker.banner import render_banner
from ..worker.consumer import Worker, WorkerOptions
from ..worker.logs import parse_level, setup_logging
from ..worker.pidfile import Pidfile


def _split(values: tuple[str, ...]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _parse_autoscale(value: str) -> tuple[int, int]:
    parts = [part.strip() for part in value.split(",")]
    try:
        high, low = (int(parts[0]), int(parts[1]) if len(parts) > 1 else 1)
    except (ValueError, IndexError):
        raise click.BadParameter(
            f"expected MAX,MIN like 10,3, got {value!r}", param_hint="--autoscale"
        ) from None
    if low < 1 or high < low:
        raise click.BadParameter(f"need 1 <= MIN <= MAX, got {value!r}", param_hint="--autoscale")
    return high, low


@click.command()
@click.option(
    "-c", "--concurrency", type=click.IntRange(min=1), help="Pool size (default: CPU count)."
)
@click.option(
    "-P",
    "--pool",
    type=click.Choice(["prefork", "threads", "solo"]),
    default="prefork",
    show_default=True,
)
@click.option("-Q", "--queues", multiple=True, help="Queues to consume, comma-separated.")
@click.option("-X", "--exclude-queues", multiple=True, help="Queues not to consume.")
@click.option(
    "-n", "--hostname", default=DEFAULT_NODENAME, show_default=True, help="Node name (%h, %n, %d)."
)
@click.option("-l", "-L", "--loglevel", default="WARNING", show_default=True)
@click.option("-E", "--task-events", is_flag=True, help="Send task events (for monitors).")
@click.option("--pidfile", help="Write the pid here; refuse to start if it names a live process.")
@click.option("-f", "--logfile", help="Log file (%n %h %i %I placeholders).")
@click.option("--max-tasks-per-child", type=click.IntRange(min=1))
@click.option("--max-memory-per-child", type=click.IntRange(min=1), help="KiB.")
@click.option(
    "--time-limit", type=click.FloatRange(min=0, min_open=True), help="Hard limit, seconds."
)
@click.option(
    "--soft-time-limit", type=click.FloatRange(min=0, min_open=True), help="Soft limit, seconds."
)
@click.option("--prefetch-multiplier", type=click.IntRange(min=0))
@click.option(
    "--autoscale", metavar="MAX,MIN", help="Grow the pool up to MAX while work waits, down to MIN."
)
@click.pass_obj
def worker(
    obj: object,
    concurrency: int | None,
    pool: str,
    queues: tuple[str, ...],
    exclude_queues: tuple[str, ...],
    hostname: str,
    loglevel: str,
    task_events: bool,
    pidfile: str | None,
    logfile: str | None,
    max_tasks_per_child: int | None,
    max_memory_per_child: int | None,
    time_limit: float | None,
    soft_time_limit: float | None,
    prefetch_multiplier: int | None,
    autoscale: str | None,
) -> None:
    """Start a worker node (warm shutdown on TERM or Ctrl-C, cold on QUIT or a second one)."""
    app = obj.app  # type: ignore[attr-defined]
    try:
        level = parse_level(loglevel)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="-l/--loglevel") from None
    conf = app.conf
    scale = _parse_autoscale(autoscale) if autoscale else None
    nodename = host_format(hostname)
    if "@" not in nodename:
        nodename = f"{nodename}@{socket.gethostname()}"
    setup_logging(
        level, conf.worker_log_format, node_format(logfile, nodename, 0) if logfile else None
    )
    app.import_includes()
    options = WorkerOptions(
        hostname=nodename,
        concurrency=(
            scale[1]
            if scale
            else concurrency or int(conf.worker_concurrency or 0) or os.cpu_count() or 1
        ),
        pool=pool,
        queues=_split(queues),
        exclude_queues=_split(exclude_queues),
        prefetch_multiplier=conf.worker_prefetch_multiplier
        if prefetch_multiplier is None
        else prefetch_multiplier,
        max_tasks_per_child=max_tasks_per_child or conf.worker_max_tasks_per_child,
        max_memory_per_child=max_memory_per_child or conf.worker_max_memory_per_child,
        time_limit=time_limit,
        soft_time_limit=soft_time_limit,
        send_events=task_events or bool(conf.worker_send_task_events),
        autoscale=scale,
    )
    node = Worker(app, options)
    lock = Pidfile(node_format(pidfile, nodename, 0)) if pidfile else None
    if lock is not None:
        lock.acquire()
    try:
        out = sys.stderr if logfile is None else sys.stdout
        if not logfile or level <= 20:
            try:
                print(
                    render_banner(node, version=__version__, show_tasks=level <= 20),
                    file=out,
                    flush=True,
                )
            except OSError:
                pass  # a full or broken log disk must not keep the node from working
        code = node.run()
    finally:
        if lock is not None:
            lock.release()
    sys.exit(code)
