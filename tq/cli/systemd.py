"""`tq systemd unit|install`: systemd units that run tq's supervisor, or one unit per node."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import TQError
from ..supervisor.systemd import (
    DEFAULT_NAME,
    DEFAULT_STOP_TIMEOUT_S,
    UnitSettings,
    install_path,
    render_units,
    systemctl,
    systemd_running,
    write_files,
)
from .multi import context_words

_RAW = {"ignore_unknown_options": True, "allow_extra_args": True}


@click.group()
def systemd() -> None:
    """Write systemd units: one Type=notify unit around `tq up`, or one unit per node."""


def _unit_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options `unit` and `install` share; the rest are node arguments as for `tq up`."""
    options = [
        click.argument("node_args", nargs=-1, type=click.UNPROCESSED),
        click.option(
            "--per-node",
            is_flag=True,
            help="A tq-worker@.service template, one env file per node, and a tq.target.",
        ),
        click.option("--user", "user_unit", is_flag=True, help="A user unit (systemctl --user)."),
        click.option("--name", default=DEFAULT_NAME, show_default=True, help="Unit base name."),
        click.option("--run-as", "run_as", metavar="USER", help="User= of the service."),
        click.option("--group", metavar="GROUP", help="Group= of the service."),
        click.option(
            "--working-directory",
            type=click.Path(file_okay=False),
            help="WorkingDirectory= (default: here); pid and log files go under its .tq/.",
        ),
        click.option(
            "-e", "--env", "environment", multiple=True, metavar="NAME=VALUE", help="Environment=."
        ),
        click.option(
            "--stop-timeout",
            type=float,
            default=DEFAULT_STOP_TIMEOUT_S,
            show_default=True,
            help="Warm-stop budget, seconds; TimeoutStopSec is 30 s more.",
        ),
        click.option("--watchdog", type=float, help="WatchdogSec= for the supervisor, seconds."),
        click.option(
            "--executable", default=sys.executable, show_default=True, help="Python to run tq."
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _settings(obj: Any, node_args: tuple[str, ...], options: dict[str, Any]) -> UnitSettings:
    if not node_args:
        raise click.UsageError("give the nodes, as for tq up: tq -A proj systemd unit 4 -c 2")
    return UnitSettings(
        executable=options["executable"],
        node_args=(*context_words(obj), *node_args),
        working_directory=os.path.abspath(options["working_directory"] or os.getcwd()),
        name=options["name"],
        user_unit=options["user_unit"],
        user=options["run_as"],
        group=options["group"],
        environment=tuple(options["environment"]),
        stop_timeout_s=options["stop_timeout"],
        watchdog_s=options["watchdog"],
    )


@systemd.command(context_settings=_RAW)
@_unit_options
@click.pass_obj
def unit(obj: Any, node_args: tuple[str, ...], per_node: bool, **options: Any) -> None:
    """Print the unit(s): tq -A proj systemd unit [--per-node] 4 -Q:1,2 images -c 2."""
    settings = _settings(obj, node_args, options)
    files = render_units(settings, per_node=per_node)
    if len(files) == 1:
        click.echo(files[0].text, nl=False)
        return
    for position, file in enumerate(files):
        if position:
            click.echo()
        click.echo(f"# ==> {install_path(file, settings=settings)} <==")
        click.echo(file.text, nl=False)


@systemd.command(context_settings=_RAW)
@_unit_options
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write under this directory instead of / (for packaging); systemctl is not run.",
)
@click.pass_obj
def install(
    obj: Any, node_args: tuple[str, ...], per_node: bool, root: Path | None, **options: Any
) -> None:
    """Write the unit(s), then `systemctl daemon-reload` and `enable` when systemd runs here."""
    settings = _settings(obj, node_args, options)
    files = render_units(settings, per_node=per_node)
    for path in write_files(files, settings=settings, root=root):
        click.echo(f"wrote {path}")
    main_unit = files[0].name
    scope = "systemctl --user" if settings.user_unit else "systemctl"
    todo = f"{scope} daemon-reload && {scope} enable --now {main_unit}"
    if root is not None:
        click.echo(f"not running systemctl (--root); on the target machine: {todo}")
        return
    if not systemd_running():
        click.secho(
            f"systemd is not running on this machine (no /run/systemd/system), so the units are "
            f"written but not enabled; where systemd runs: {todo}",
            fg="yellow",
            err=True,
        )
        return
    for words in (("daemon-reload",), ("enable", main_unit)):
        problem = systemctl(*words, user_unit=settings.user_unit)
        if problem:
            raise TQError(f"{problem}; the units are written, finish with: {todo}")
    click.echo(f"enabled {main_unit}; start it with: {scope} start {main_unit}")
