"""systemd units for tq: one Type=notify unit around `tq up --foreground`, or one unit per node.

The single unit runs the supervisor in the foreground (READY/STATUS/WATCHDOG/STOPPING over
sd_notify); `KillMode=mixed` sends TERM to the supervisor only, which warm-stops its nodes, and
`TimeoutStopSec` leaves it its --stop-timeout plus a margin before systemd SIGKILLs the cgroup.

The per-node layout is a `tq-worker@.service` template (instance = node short name) whose
worker arguments come from `%E/tq/nodes/<node>.env` (one file per node, expanded by
`expand_nodes`, so `-Q:1-3 images` still works), plus a `tq.target` that wants every node.
Only directives systemd 252 knows are written (checked with `systemd-analyze verify`).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import ConfigError, TQError
from .nodes import NodeSpec, app_of, expand_nodes, split_global_options
from .policy import POLICY_KEYS, Policy

#: tq's own warm-stop budget for its nodes (`tq up --stop-timeout`), seconds.
DEFAULT_STOP_TIMEOUT_S = 60.0
#: systemd waits this much longer than tq's budget before it SIGKILLs what is left.
STOP_MARGIN_S = 30.0
#: Base name of the units: tq.service, tq-worker@.service, tq.target.
DEFAULT_NAME = "tq"
#: Where systemd looks for system units, and for configuration (%E in a system unit).
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SYSTEM_CONFIG_DIR = Path("/etc")
#: Worker arguments go through `$TQ_WORKER_ARGS`, which systemd splits at whitespace only.
_UNSAFE_IN_ENV_FILE = re.compile(r"[\s\"'\\$]")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9:_.-]+$")
_UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.-]+$")


@dataclass(frozen=True)
class UnitSettings:
    """What goes into the units: how to run tq, for which nodes, as whom, where."""

    executable: str
    node_args: tuple[str, ...]
    working_directory: str
    name: str = DEFAULT_NAME
    user_unit: bool = False
    user: str | None = None
    group: str | None = None
    environment: tuple[str, ...] = ()
    stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S
    watchdog_s: float | None = None


@dataclass(frozen=True)
class UnitFile:
    """One file to install: a unit (`kind="unit"`) or a node's environment file (`"env"`)."""

    name: str
    text: str
    kind: str = "unit"


def render_units(
    settings: UnitSettings, *, per_node: bool, hostname: str | None = None
) -> list[UnitFile]:
    """Every file of the chosen layout; the first one is the unit to enable."""
    _check(settings)
    nodes = expand_nodes(list(settings.node_args), hostname=hostname, pidfile=None, logfile=None)
    if per_node:
        return render_per_node(settings, nodes)
    return [render_service(settings)]


def render_service(settings: UnitSettings) -> UnitFile:
    """The single `tq.service`: the supervisor in the foreground, owning every node."""
    global_args, node_args = split_global_options(settings.node_args)
    app = app_of(global_args)
    if not app:
        raise ConfigError("a tq unit needs the app: tq -A proj systemd unit 4 -c 2")
    command = [settings.executable, "-m", "tq", *global_args, "up", "--foreground"]
    command += [f"--stop-timeout={_seconds(settings.stop_timeout_s)}", *node_args]
    lines = [
        *_header(f"tq workers of {_escape(app)}", settings),
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={_exec_line(command)}",
        f"ExecReload={_exec_line([settings.executable, '-m', 'tq', 'restart'])}",
        *_process_lines(settings),
        *([f"WatchdogSec={_seconds(settings.watchdog_s)}"] if settings.watchdog_s else []),
        f"SyslogIdentifier={settings.name}",
        "",
        "[Install]",
        f"WantedBy={_wanted_by(settings)}",
    ]
    return UnitFile(f"{settings.name}.service", "\n".join(lines) + "\n")


def render_per_node(settings: UnitSettings, nodes: Sequence[NodeSpec]) -> list[UnitFile]:
    """`tq.target`, the `tq-worker@.service` template, and one environment file per node."""
    if any(node.policy != Policy() for node in nodes):
        raise ConfigError(
            f"per-node units: systemd restarts and stops each node itself (Restart=on-failure); "
            f"drop {', '.join(POLICY_KEYS)}, or use the single unit"
        )
    global_args = nodes[0].global_args
    if any(node.global_args != global_args for node in nodes):
        raise ConfigError("per-node units share one -A/-b/--result-backend: give them once")
    app = app_of(global_args)
    if not app:
        raise ConfigError("a tq unit needs the app: tq -A proj systemd unit --per-node 4 -c 2")
    template = f"{settings.name}-worker@.service"
    command = _exec_line([settings.executable, "-m", "tq", *global_args, "worker"])
    service = [
        *_header(
            f"tq worker node %i of {_escape(app)}", settings, part_of=f"{settings.name}.target"
        ),
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"EnvironmentFile=%E/{settings.name}/nodes/%i.env",
        f"ExecStart={command} $TQ_WORKER_ARGS",
        *_process_lines(settings),
        "SyslogIdentifier=%p-%i",
        "",
        "[Install]",
        f"WantedBy={settings.name}.target",
    ]
    instances = []
    env_files = []
    for node in nodes:
        if not _INSTANCE_NAME.match(node.short_name):
            raise ConfigError(
                f"{node.name}: a systemd instance name allows only A-Z a-z 0-9 : _ . -"
            )
        for word in node.worker_args:
            if _UNSAFE_IN_ENV_FILE.search(word) or not word:
                raise ConfigError(
                    f"{node.name}: {word!r} cannot go through $TQ_WORKER_ARGS "
                    "(no spaces, quotes, backslashes or $ in per-node unit arguments)"
                )
        instances.append(f"{settings.name}-worker@{node.short_name}.service")
        env_files.append(
            UnitFile(
                f"{node.short_name}.env",
                f"# tq worker node {node.name}: the words after `worker`; {_made_by()}\n"
                f"TQ_WORKER_ARGS={' '.join(node.worker_args)}\n",
                kind="env",
            )
        )
    target = [
        f"# {_made_by()}",
        "[Unit]",
        f"Description=tq worker nodes of {_escape(app)}",
        f"Wants={' '.join(instances)}",
        "",
        "[Install]",
        f"WantedBy={_wanted_by(settings)}",
    ]
    return [
        UnitFile(f"{settings.name}.target", "\n".join(target) + "\n"),
        UnitFile(template, "\n".join(service) + "\n"),
        *env_files,
    ]


def install_path(file: UnitFile, *, settings: UnitSettings, root: Path | None = None) -> Path:
    """Where a file goes: the systemd unit directory, or <config dir>/<name>/nodes for env files."""
    if settings.user_unit:
        config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        directory = config / "systemd" / "user" if file.kind == "unit" else config
    else:
        directory = SYSTEM_UNIT_DIR if file.kind == "unit" else SYSTEM_CONFIG_DIR
    if file.kind == "env":
        directory = directory / settings.name / "nodes"
    if root is not None:
        directory = root / directory.relative_to(directory.anchor)
    return directory / file.name


def write_files(
    files: Sequence[UnitFile], *, settings: UnitSettings, root: Path | None = None
) -> list[Path]:
    """Write every file where systemd looks for it; return the paths."""
    written = []
    for file in files:
        path = install_path(file, settings=settings, root=root)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(file.text)
        except OSError as exc:
            hint = "" if settings.user_unit else " (as root, or a user unit with --user)"
            raise TQError(f"cannot write {path}: {exc.strerror}{hint}") from None
        written.append(path)
    return written


def systemd_running() -> bool:
    """Is this machine booted with systemd (so systemctl can talk to it)? As sd_booted(3)."""
    return shutil.which("systemctl") is not None and Path("/run/systemd/system").is_dir()


def systemctl(*args: str, user_unit: bool) -> str | None:
    """Run one systemctl command; None on success, else what went wrong (one line)."""
    command = ["systemctl", *(["--user"] if user_unit else []), *args]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{' '.join(command)}` failed: {exc}"
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        return f"`{' '.join(command)}` exited {result.returncode}: {said[-1] if said else ''}"
    return None


def _check(settings: UnitSettings) -> None:
    if not _UNIT_NAME.match(settings.name):
        raise ConfigError(f"unit name {settings.name!r}: use only A-Z a-z 0-9 : _ . -")
    if settings.user_unit and (settings.user or settings.group):
        raise ConfigError("a user unit runs as its user: drop --run-as/--group, or drop --user")
    if not os.path.isabs(settings.working_directory):
        raise ConfigError(f"the working directory must be absolute: {settings.working_directory}")
    if settings.stop_timeout_s <= 0:
        raise ConfigError("--stop-timeout must be more than 0 seconds")
    for assignment in settings.environment:
        key, equals, _value = assignment.partition("=")
        if not equals or not _ENV_NAME.match(key):
            raise ConfigError(f"environment {assignment!r}: write NAME=VALUE")
    for text in (settings.user, settings.group, settings.working_directory, *settings.environment):
        if text is not None and "\n" in text:
            raise ConfigError(f"{text!r}: a unit setting cannot contain a newline")


def _header(description: str, settings: UnitSettings, *, part_of: str | None = None) -> list[str]:
    lines = [f"# {_made_by()}", "[Unit]", f"Description={description}"]
    if part_of:
        lines.append(f"PartOf={part_of}")
    if not settings.user_unit:  # a user manager has no network-online.target
        lines += ["After=network-online.target", "Wants=network-online.target"]
    return [*lines, ""]


def _process_lines(settings: UnitSettings) -> list[str]:
    """Who runs it, where, with what, and how it is stopped and restarted."""
    lines = [f"WorkingDirectory={_escape(settings.working_directory)}"]
    if settings.user:
        lines.append(f"User={_escape(settings.user)}")
    if settings.group:
        lines.append(f"Group={_escape(settings.group)}")
    for assignment in settings.environment:
        quoted = assignment.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'Environment="{_escape(quoted)}"')
    stop_s = math.ceil(settings.stop_timeout_s + STOP_MARGIN_S)
    return [
        *lines,
        # TERM to the main process only (it warm-stops the pool); KILL for the rest at the end
        "KillMode=mixed",
        f"TimeoutStopSec={stop_s}",
        "Restart=on-failure",
        "RestartSec=2",
    ]


def _exec_line(words: Sequence[str]) -> str:
    """Quote words for ExecStart=: specifiers (%), variables ($), quotes and spaces."""
    out = []
    for word in words:
        if "\n" in word:
            raise ConfigError(f"{word!r}: a command word cannot contain a newline")
        text = word.replace("\\", "\\\\").replace("%", "%%").replace("$", "$$")
        if not text or re.search(r"[\s\"';]", text):
            text = '"' + text.replace('"', '\\"') + '"'
        out.append(text)
    return " ".join(out)


def _escape(text: str) -> str:
    """Make % literal in a unit setting (systemd would read %n, %i ... as specifiers)."""
    return text.replace("%", "%%")


def _wanted_by(settings: UnitSettings) -> str:
    return "default.target" if settings.user_unit else "multi-user.target"


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _made_by() -> str:
    return f"generated by `tq systemd` (tq {__version__}); generate again rather than edit"
