"""`tq multi`: celery multi's commands (start, stop, stopwait, restart, kill, show ...) for tq.

Differences from Celery 5, on purpose:

* Exit codes: 0 when every node did what was asked, 1 when any node failed (or `get` names no
  node), 2 for a usage error (bad grammar, unknown command). Celery's click wrapper always exits 0.
* `start` launches `python -m tq worker` in its own session and says OK once the worker's pid
  file names that live process, or FAILED with the reason: the exit code and the last line the
  worker wrote. The worker's stderr goes to its main log file (Celery's detached child's is lost).
* A pid file naming a dead process, or a live process that is not a tq worker (a recycled
  pid), is stale: start and stop remove it instead of refusing to start or signalling a stranger.
* `kill` SIGKILLs the node's process group and removes its pid file once it is gone.

The grammar (node counts and names, `-Q:1-3 x`, `--opt=value`, `--`) is tq/supervisor/nodes.py.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import psutil

from .. import __version__
from ..errors import ConfigError
from ..nodenames import node_format
from ..supervisor.multiwords import pop_flags, pop_signal
from ..supervisor.nodes import (
    NodeSpec,
    app_of,
    expand_nodes,
    expand_template,
    global_words,
)
from ..supervisor.policy import POLICY_KEYS, Policy
from ..supervisor.process import hide_urls
from ..worker.pidfile import Pidfile

#: How long `start` waits for a worker to write its pid file before calling it FAILED.
START_TIMEOUT_S = 30.0
#: How long `kill` waits for a SIGKILLed node to be gone, to remove its pid file.
KILL_WAIT_S = 5.0
#: How often pid files and processes are looked at while waiting.
POLL_S = 0.1
#: stopwait prints one dot per this many seconds of waiting, as Celery does per poll.
DOT_EVERY_S = 1.0

_ARGV = "tq.multi.argv"
#: multi's own flags; everything else belongs to the nodes.
_OWN_FLAGS = ("--nosplash", "--verbose", "--no-color", "-q", "--quiet")
_NODE_COMMANDS = ("start", "stop", "stopwait", "stop_verify", "restart", "kill")
_QUERY_COMMANDS = ("show", "names", "expand", "get")

HELP = """Start, stop and show worker nodes as celery multi does.

\b
  tq -A proj multi start 3 -c 2 -l info     celery1@HOST .. celery3@HOST
  tq -A proj multi start image video -Q:image images
  tq multi start 10 -Q:1-3 images,video -Q:4,5 data -Q default
  tq multi stop 3 [-KILL|-INT|-9]           signal the nodes (TERM = warm shutdown)
  tq multi stopwait 3                       stop, and wait until they are gone
  tq multi restart 3 -c 2                   stopwait, then start
  tq multi kill 3                           SIGKILL
  tq multi show|names 3 ...                 command lines, node names
  tq multi expand '%n.log' 3                expand a template per node
  tq multi get celery2@HOST 3 ...           one node's command line

\b
Short options take the next word (-c 3); long ones only take `=` (--logfile=/x).
Per-node options: -Q:1-3 x, -c:image 10, --queues:2,4=x. Words after -- go to every node.
Pid and log files default to .tq/run/%n.pid and .tq/log/%n%I.log; give stop and restart the
same --pidfile as start. Flags of multi itself: --verbose, -q/--quiet, --nosplash, --no-color.
Exit: 0 ok, 1 a node failed, 2 usage error.
"""


class _RawArgvCommand(click.Command):
    """A command whose words reach the hand-written grammar untouched (click would drop `--`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        words, asked = pop_flags(args, ctx.help_option_names)
        if asked:  # anywhere before `--`: never hand --help to the workers
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit()
        ctx.meta[_ARGV] = words
        return []


@dataclass(frozen=True)
class _Say:
    """Where multi's progress lines go, and how."""

    quiet: bool
    verbose: bool
    color: bool | None

    def line(self, text: str = "", *, newline: bool = True) -> None:
        if not self.quiet:
            click.echo(text, nl=newline, color=self.color)

    def node(self, name: str, problem: str | None) -> None:
        verdict = (
            click.style("OK", fg="green")
            if problem is None
            else click.style("FAILED", fg="red") + f": {problem}"
        )
        if problem is not None and self.quiet:
            click.echo(f"{name}: FAILED: {problem}", err=True)
        self.line(f"\t> {name}: {verdict}")


@click.command(
    cls=_RawArgvCommand,
    help=HELP,
    short_help="Start/stop worker nodes as celery multi does.",
    options_metavar="COMMAND NODES [OPTIONS] [-- WORKER WORDS]",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.pass_context
def multi(ctx: click.Context) -> None:
    """Run one celery multi command against the nodes its words describe."""
    words, flags = pop_flags(ctx.meta.get(_ARGV, []), _OWN_FLAGS)
    quiet = bool(flags & {"-q", "--quiet"})
    say = _Say(
        quiet=quiet, verbose="--verbose" in flags, color=False if "--no-color" in flags else None
    )
    if not words or words[0] == "help":
        click.echo(ctx.get_help(), color=say.color)
        sys.exit(0 if words else 2)
    command, words = words[0], words[1:]
    if command not in _NODE_COMMANDS + _QUERY_COMMANDS:
        known = ", ".join((*_NODE_COMMANDS, *_QUERY_COMMANDS, "help"))
        raise click.UsageError(f"unknown multi command {command!r} (one of: {known})")
    if command in _QUERY_COMMANDS:
        sys.exit(_query(command, words, ctx.obj))
    words, signum = pop_signal(words)
    nodes = _nodes(words, ctx.obj)
    if command in ("start", "restart") and not app_of(nodes[0].global_args):
        raise click.UsageError(f"tq multi {command} needs the app: tq -A proj multi {command} 3")
    if "--nosplash" not in flags:
        say.line(f"tq multi v{__version__}")
    if command == "start":
        code = _start(nodes, say)
    elif command in ("stop", "stopwait", "stop_verify"):
        code = _stop(nodes, signum or signal.SIGTERM, say, wait=command != "stop")
    elif command == "restart":
        code = max(_stop(nodes, signum or signal.SIGTERM, say, wait=True), _start(nodes, say))
    else:
        code = _kill(nodes, say)
    sys.exit(code)


def context_words(obj: Any) -> list[str]:
    """The -A/-b/--result-backend/--workdir given to `tq` (a CLIContext), as node words."""
    return global_words(
        app=getattr(obj, "app_spec", None),
        broker=getattr(obj, "broker", None),
        result_backend=getattr(obj, "result_backend", None),
        workdir=getattr(obj, "workdir", None),
    )


def _nodes(words: list[str], obj: Any) -> list[NodeSpec]:
    """Expand the words, with the -A/-b/... given to `tq` in front (the words' own win)."""
    nodes = expand_nodes([*context_words(obj), *words])
    for node in nodes:
        if not node.pidfile:
            raise ConfigError(f"{node.name}: tq multi needs a pid file per node (--pidfile=PATH)")
        if node.policy != Policy():
            raise ConfigError(
                f"{node.name}: {', '.join(POLICY_KEYS)} are options of the supervisor (tq up); "
                "tq multi starts nodes without watching them"
            )
    return nodes


def _query(command: str, words: list[str], obj: Any) -> int:
    """show, names, expand TEMPLATE, get NODENAME: print, start nothing."""
    if command in ("expand", "get"):
        if not words:
            what = "TEMPLATE" if command == "expand" else "NODENAME"
            raise click.UsageError(f"tq multi {command} needs a {what} before the nodes")
        first, words = words[0], words[1:]
    nodes = _nodes(words, obj)
    if command == "show":
        for node in nodes:
            click.echo(shlex.join(node.command()))
    elif command == "names":
        for node in nodes:
            click.echo(node.name)
    elif command == "expand":
        for node in nodes:
            click.echo(expand_template(first, node))
    else:
        found = [node for node in nodes if first in (node.name, node.short_name)]
        if not found:
            click.echo(f"no node named {first!r}", err=True)
            return 1
        click.echo(shlex.join(found[0].command()[1:]))
    return 0


def _start(nodes: list[NodeSpec], say: _Say) -> int:
    """Launch every node not already running; OK once its pid file names the live worker."""
    say.line("> Starting nodes...")
    launched: list[tuple[NodeSpec, subprocess.Popen[bytes] | None, str | None, int]] = []
    for node in nodes:
        pid, stale = _node_pid(node)
        if pid is not None:
            launched.append((node, None, f"already running (pid {pid})", 0))
            continue
        if stale is not None:
            _remove_pidfile(node, stale)
            if say.verbose:
                say.line(f"\t> {node.name}: removed stale pid file {node.pidfile} (pid {stale})")
        process, problem, offset = _launch(node, say)
        launched.append((node, process, problem, offset))
    deadline = time.monotonic() + START_TIMEOUT_S
    failed = 0
    for node, process, problem, offset in launched:
        if process is not None:
            problem = _await_pidfile(node, process, offset, deadline)
        failed += problem is not None
        say.node(node.name, problem)
    return 1 if failed else 0


def _launch(node: NodeSpec, say: _Say) -> tuple[subprocess.Popen[bytes] | None, str | None, int]:
    """Start one worker in its own session: (process, why it could not start, log offset)."""
    command, urls = hide_urls(node.command())
    env = {**os.environ, **urls}
    if say.verbose:
        say.line(f"\t> {node.name}: {shlex.join(command)}")
    log_path = _main_log(node)
    try:
        Path(node.pidfile).parent.mkdir(parents=True, exist_ok=True)
        if log_path is None:
            return _spawn(command, subprocess.DEVNULL, env), None, 0
        log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:
            # stderr to the log: a worker that dies before logging (bad option, bad app) says why
            return _spawn(command, log, env), None, offset
    except OSError as exc:
        return None, f"cannot start: {exc}", 0


def _spawn(command: list[str], stderr: Any, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,  # the node outlives this command and its terminal
        close_fds=True,
    )


def _await_pidfile(
    node: NodeSpec, process: subprocess.Popen[bytes], offset: int, deadline: float
) -> str | None:
    """None once the worker's pid file names it; otherwise why the start failed."""
    while True:
        code = process.poll()
        if code is not None:
            reason = f"exited with code {code}" if code >= 0 else f"killed by signal {-code}"
            said = _last_line(_main_log(node), offset)
            return f"{reason}: {said}" if said else reason
        if Pidfile(node.pidfile).read_pid() == process.pid:
            return None
        if time.monotonic() > deadline:
            process.terminate()
            return f"no pid file {node.pidfile} after {START_TIMEOUT_S:.0f}s (sent it TERM)"
        time.sleep(POLL_S)


def _stop(nodes: list[NodeSpec], signum: int, say: _Say, *, wait: bool) -> int:
    """Signal each running node's main process; with wait, until every one is gone."""
    running = _running(nodes, say)
    if not running:
        return 0
    say.line("> Stopping nodes...")
    name = signal.Signals(signum).name.removeprefix("SIG")
    signalled, failed = [], 0
    for node, pid in running:
        try:
            os.kill(pid, signum)  # the main process only: TERM to the pool would lose its work
        except ProcessLookupError:
            say.line(f"\t> {node.name}: DOWN")
            continue
        except PermissionError as exc:
            say.node(node.name, f"cannot signal pid {pid}: {exc.strerror}")
            failed += 1
            continue
        say.line(f"\t> {node.name}: {name} -> {pid}")
        signalled.append((node, pid))
    if wait and signalled:
        _wait_gone(signalled, say)
    return 1 if failed else 0


def _wait_gone(signalled: list[tuple[NodeSpec, int]], say: _Say) -> None:
    """Print dots until every signalled node has exited (as long as that takes, as Celery)."""
    noun = "node" if len(signalled) == 1 else "nodes"
    pids = ", ".join(str(pid) for _, pid in signalled)
    say.line(f"> Waiting for {len(signalled)} {noun} -> {pids}....", newline=False)
    pending = list(signalled)
    next_dot = time.monotonic() + DOT_EVERY_S
    while pending:
        for node, pid in list(pending):
            if not _is_node_process(pid, node):
                pending.remove((node, pid))
                _remove_pidfile(node, pid)  # a warm exit removes it; a crash or kill does not
                say.line(f"\n\t> {node.name}: OK", newline=False)
        if pending:
            time.sleep(POLL_S)
            if time.monotonic() >= next_dot:
                say.line(".", newline=False)
                next_dot += DOT_EVERY_S
    say.line()


def _kill(nodes: list[NodeSpec], say: _Say) -> int:
    """SIGKILL each running node with its process group; remove the pid files it leaves."""
    killed = []
    for node, pid in _running(nodes, say):
        say.line(f"Sending SIGKILL to node {node.name} ({pid})")
        try:
            # a node started by multi leads its own group: take its pool down with it
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        killed.append((node, pid))
    deadline = time.monotonic() + KILL_WAIT_S
    failed = 0
    for node, pid in killed:
        while _is_node_process(pid, node) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if _is_node_process(pid, node):
            say.node(node.name, f"pid {pid} still alive {KILL_WAIT_S:.0f}s after SIGKILL")
            failed += 1
        else:
            _remove_pidfile(node, pid)
    return 1 if failed else 0


def _running(nodes: list[NodeSpec], say: _Say) -> list[tuple[NodeSpec, int]]:
    """The nodes whose pid file names their live process; say DOWN for the others."""
    running = []
    for node in nodes:
        pid, stale = _node_pid(node)
        if pid is None:
            if stale is not None:
                _remove_pidfile(node, stale)
            say.line(f"> {node.name}: DOWN")
        else:
            running.append((node, pid))
    return running


def _node_pid(node: NodeSpec) -> tuple[int | None, int | None]:
    """(pid of the node's live process, or None; a pid in its pid file that is not the node)."""
    pid = Pidfile(node.pidfile).read_pid()
    if pid is None:
        return None, None
    return (pid, None) if _is_node_process(pid, node) else (None, pid)


def _is_node_process(pid: int, node: NodeSpec) -> bool:
    """Is pid alive and this node (or at least a tq worker), not a stranger that got the pid?"""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = process.cmdline()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # cannot tell: never start a second copy, never call it gone
    if any(word == node.name or word.endswith("=" + node.name) for word in cmdline):
        return True
    return "worker" in cmdline and ("tq" in cmdline or Path(cmdline[0]).name == "tq")


def _remove_pidfile(node: NodeSpec, pid: int) -> None:
    """Remove the node's pid file if it still names pid (a new worker may have replaced it)."""
    if Pidfile(node.pidfile).read_pid() == pid:
        try:
            os.unlink(node.pidfile)
        except FileNotFoundError:
            pass


def _main_log(node: NodeSpec) -> Path | None:
    return Path(node_format(node.logfile, node.name, 0)) if node.logfile else None


def _last_line(path: Path | None, offset: int) -> str:
    """The last non-empty line written to a log after offset ("" if none)."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            text = log.read()[-4096:].decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
