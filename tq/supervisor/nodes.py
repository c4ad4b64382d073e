"""celery multi's node grammar: expand `10 -Q:1-3 images -c 2` into one NodeSpec per node.

This is the one place tq reads that grammar; `tq multi`, `tq up` and `tq systemd` all call
`expand_nodes`. It follows Celery 5 (count or names, `--range-prefix`, `-n/--hostname`,
`--prefix/--suffix`, per-node `-Q:1-3 x` and `--opt:SEL=value`, `--` passthrough), with these
deliberate differences:

* A long option takes a value only through `=` (`--logfile=/x`), as in Celery. Celery silently
  turns the word in `--logfile /x` into a node name; tq raises ConfigError instead whenever a
  long option without `=` is followed by a plain word. Write `--opt=value`, or name nodes first.
* Default pid and log files are `.tq/run/%n.pid` and `.tq/log/%n%I.log`, relative to the
  working directory, not Celery's /var/run/celery and /var/log/celery (which need root).
  `expand_nodes(..., pidfile=None)` adds no --pidfile (same for logfile).
* `-l`, `-L` and `--loglevel` are three option keys, as in Celery, so `-L:4,5 debug` does not
  replace `-l info`. Celery 5's worker rejects `-L`; tq's accepts it as `-l` and keeps the last,
  so the old docs' `-l info -L:4,5 debug` gives nodes 4 and 5 debug logging, as intended.
* A selector naming no node (`-c:7` with 3 nodes, `-c:nosuch`) and a range with node names
  are errors; Celery ignores them. A numeric selector also works with node names (1-based).
* Per-node `-n`, `--hostname`, `--prefix`, `--suffix` and `--range-prefix` are errors: they
  name every node. `--cmd`, `--append`, `--executable`, `--loader` and `--config` are refused.
* `--suffix=` (or `--suffix='""'`) gives node names without a host (`image`); the worker then
  adds its own host name. Celery only honours the quoted form.
* The supervisor's policy options (`--restart`, `--start-secs`, `--stop-timeout`,
  `--backoff-start`, see policy.py) are node options too (`--restart:3=forever`): they go into
  NodeSpec.policy, never to the worker.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..nodenames import host_format, node_format
from .policy import POLICY_KEYS, Policy, policy_from_dict, policy_from_options

#: Pid file of each node, relative to the working directory (Celery: /var/run/celery/%n.pid).
DEFAULT_PIDFILE = ".tq/run/%n.pid"
#: Log file of each node; the worker turns %I into "" (main process) or -N (pool child N).
DEFAULT_LOGFILE = ".tq/log/%n%I.log"
#: Name prefix of counted nodes: `3` gives celery1, celery2, celery3.
DEFAULT_RANGE_PREFIX = "celery"

#: Options of `tq` itself: moved before `worker` (Celery's list, less what tq does not have).
GLOBAL_KEYS = frozenset({"-A", "--app", "-b", "--broker", "--result-backend", "--workdir"})
#: Options that name the nodes; multi consumes them, the worker never sees them.
_NAMING = {
    "-n": "hostname",
    "--hostname": "hostname",
    "--prefix": "prefix",
    "--suffix": "suffix",
    "--range-prefix": "range_prefix",
}
_PIDFILE_KEYS = ("--pidfile",)
_LOGFILE_KEYS = ("--logfile", "-f")
#: celery multi options tq has no use for: refused rather than handed to a worker that fails.
_UNSUPPORTED_KEYS = frozenset({"--cmd", "--append", "--executable", "--loader", "--config"})
#: The spellings of "no host part" for --suffix (Celery wants the quoted one).
_EMPTY_SUFFIXES = ("", '""', "''")
_RANGE = re.compile(r"^(\d+)-(\d+)$")


@dataclass(frozen=True)
class NodeSpec:
    """One node of a multi/up command line: its name and the exact tq command that runs it."""

    name: str
    index: int
    worker_args: tuple[str, ...]
    global_args: tuple[str, ...]
    pidfile: str
    logfile: str
    policy: Policy = Policy()  # how the supervisor keeps it alive

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> NodeSpec:
        """Rebuild a spec from its `dataclasses.asdict` form (as the node table stores it)."""
        fields: dict[str, Any] = {
            key: tuple(value) if isinstance(value, list) else value for key, value in saved.items()
        }
        fields["policy"] = policy_from_dict(saved.get("policy"))
        return cls(**fields)

    def command(self, executable: str = sys.executable) -> list[str]:
        """The full command line: `python -m tq [global options] worker [worker options]`."""
        return [executable, "-m", "tq", *self.global_args, "worker", *self.worker_args]

    def option(self, *names: str) -> str | None:
        """The last value given to any of these worker options (e.g. "-Q", "--queues")."""
        found = None
        for position, word in enumerate(self.worker_args):
            for name in names:
                if word == name:
                    following = self.worker_args[position + 1 : position + 2]
                    if following and not following[0].startswith("-"):
                        found = following[0]
                elif name.startswith("--") and word.startswith(name + "="):
                    found = word[len(name) + 1 :]
                elif len(name) == 2 and word.startswith(name) and not word.startswith("--"):
                    found = word[2:]  # click's attached form, `-Qimages` (only from `--` words)
        return found

    @property
    def short_name(self) -> str:
        """The name before the `@`: `celery1` for `celery1@vm`."""
        return self.name.partition("@")[0]


@dataclass(frozen=True)
class _Option:
    """One option word (with its value) as written: `-Q:1-3 images` is ("-Q", "images", "1-3")."""

    key: str
    value: str | None
    selector: str | None
    span: tuple[int, int]  # where its words are in argv


@dataclass(frozen=True)
class _Name:
    """A node's name and every word a selector may use for it."""

    full: str
    aliases: frozenset[str]


def expand_nodes(
    argv: Sequence[str],
    *,
    hostname: str | None = None,
    pidfile: str | None = DEFAULT_PIDFILE,
    logfile: str | None = DEFAULT_LOGFILE,
) -> list[NodeSpec]:
    """Expand a multi command line (`10 -A proj -Q:1-3 images -c 2`) into its nodes, in order."""
    words, options, passthrough = _parse(list(argv))
    for option in options:
        if option.key in _UNSUPPORTED_KEYS:
            raise ConfigError(f"{option.key} is a celery multi option that tq does not support")
        if option.selector is not None and option.key in _NAMING:
            raise ConfigError(
                f"{option.key}:{option.selector}: {option.key} names every node; "
                "it cannot be given per node"
            )
    naming: dict[str, str] = {}
    shared: dict[str, str | None] = {}
    for option in options:
        if option.selector is not None:
            continue
        if option.key in _NAMING:
            naming[_NAMING[option.key]] = _required(option.key, option.value)
        else:
            shared[option.key] = option.value
    names, counted = _node_names(words, naming, hostname or socket.gethostname())
    chosen: list[list[_Option]] = [[] for _ in names]
    for option in options:
        if option.selector is not None:
            for position in _resolve(option, names, counted):
                chosen[position].append(option)
    specs = []
    for position, name in enumerate(names):
        merged = dict(shared)  # a per-node value keeps the option's place; a new key goes last
        for option in chosen[position]:
            merged[option.key] = option.value
        specs.append(_build(name.full, position + 1, merged, passthrough, pidfile, logfile))
    return specs


def expand_template(template: str, node: NodeSpec) -> str:
    """Expand multi's placeholders for one node: %h/%p full name, %n/%N short name, %d host."""
    return _expand(template, node.name, for_worker=False)


def app_of(global_args: Sequence[str]) -> str | None:
    """The app (-A/--app value) among global options, or None."""
    found = None
    for position, word in enumerate(global_args):
        if word in ("-A", "--app") and position + 1 < len(global_args):
            found = global_args[position + 1]
        elif word.startswith("--app="):
            found = word.partition("=")[2]
    return found


def global_words(
    *,
    app: str | None,
    broker: str | None = None,
    result_backend: str | None = None,
    workdir: str | None = None,
) -> list[str]:
    """tq's global options (-A, -b, ...) as words of the grammar, to put before the node words."""
    words = ["-A", app] if app else []
    if broker:
        words.append(f"--broker={broker}")
    if result_backend:
        words.append(f"--result-backend={result_backend}")
    if workdir:
        words.append(f"--workdir={os.path.abspath(workdir)}")
    return words


def split_global_options(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Move tq's own options (-A, -b, --result-backend, --workdir) out: (those, the rest)."""
    moved: list[str] = []
    rest = list(argv)
    _words, options, _passthrough = _parse(rest)
    for option in reversed(options):  # from the end, so earlier spans keep their positions
        if option.selector is None and option.key in GLOBAL_KEYS:
            start, stop = option.span
            moved[:0] = rest[start:stop]
            del rest[start:stop]
    return moved, rest


def _parse(argv: list[str]) -> tuple[list[str], list[_Option], list[str]]:
    """Split words into node words, options (with values and selectors) and `--` passthrough."""
    words: list[str] = []
    options: list[_Option] = []
    position = 0
    while position < len(argv):
        start = position
        token = argv[position]
        position += 1
        following = argv[position] if position < len(argv) else None
        if token == "--":
            return words, options, argv[position:]
        if token.startswith("--"):
            head, equals, value = token.partition("=")
            if not equals and following is not None and not following.startswith("-"):
                raise ConfigError(
                    f"`{token} {following}`: a long option takes a value only as "
                    f"{head}={following} (celery multi would make {following!r} a node name); "
                    "write it with `=`, or give node names before options"
                )
            options.append(_option(head, value if equals else None, (start, position)))
        elif token.startswith("-") and len(token) > 1:
            value = None
            if following is not None and not following.startswith("-"):
                value = following
                position += 1
            options.append(_option(token, value, (start, position)))
        else:
            words.append(token)
    return words, options, []


def _option(head: str, value: str | None, span: tuple[int, int]) -> _Option:
    key, colon, selector = head.partition(":")
    if colon and not selector:
        raise ConfigError(f"{head}: empty node selector (write {key}:1-3, {key}:2,4 or {key}:name)")
    return _Option(key, value, selector if colon else None, span)


def _required(key: str, value: str | None) -> str:
    if value is None:
        hint = f"{key}=VALUE" if key.startswith("--") else f"{key} VALUE"
        raise ConfigError(f"{key} needs a value: write {hint}")
    return value


def _node_names(words: list[str], naming: dict[str, str], host: str) -> tuple[list[_Name], bool]:
    """The nodes' names, and whether they were counted (only then may selectors be ranges)."""
    host = naming.get("hostname") or host
    suffix = naming.get("suffix", host)
    suffix = "" if suffix in _EMPTY_SUFFIXES else suffix
    if not words:
        raise ConfigError("no nodes given: give a count (3) or node names (image video)")
    counted = len(words) == 1 and words[0].isascii() and words[0].isdigit()
    if counted:
        count = int(words[0])
        if count < 1:
            raise ConfigError("the node count must be at least 1")
        prefix = naming.get("range_prefix") or DEFAULT_RANGE_PREFIX
        pairs = [(str(number), f"{prefix}{number}") for number in range(1, count + 1)]
    else:
        prefix = naming.get("prefix", "")
        pairs = [(word, word if "@" in word else prefix + word) for word in words]
    names: list[_Name] = []
    for word, short in pairs:
        full = host_format(short if "@" in short or not suffix else f"{short}@{suffix}", host)
        if any(name.full == full for name in names):
            raise ConfigError(f"node {full} is given twice")
        names.append(_Name(full, frozenset({word, full, full.partition("@")[0]})))
    return names, counted


def _resolve(option: _Option, names: list[_Name], counted: bool) -> list[int]:
    """The positions of the nodes a selector (`1-3`, `4,5`, `image`, `celery1@vm`) names."""
    label = f"{option.key}:{option.selector}"
    positions: list[int] = []
    for item in (option.selector or "").split(","):
        matches = [position for position, name in enumerate(names) if item in name.aliases]
        span = _RANGE.match(item)
        if matches:
            positions.extend(matches)
        elif span:
            low, high = int(span[1]), int(span[2])
            if not counted:
                raise ConfigError(
                    f"{label}: ranges like {item} need a node count (`start 10 ...`), not names"
                )
            if not 1 <= low <= high <= len(names):
                raise ConfigError(f"{label}: range {item} is not within nodes 1-{len(names)}")
            positions.extend(range(low - 1, high))
        elif item.isascii() and item.isdigit() and 1 <= int(item) <= len(names):
            positions.append(int(item) - 1)
        else:
            known = ", ".join(name.full for name in names)
            raise ConfigError(f"{label}: no node is called {item!r} (nodes: {known})")
    return positions


def _build(
    nodename: str,
    index: int,
    options: dict[str, str | None],
    passthrough: list[str],
    pidfile: str | None,
    logfile: str | None,
) -> NodeSpec:
    """Lay out one node's command line; option values get multi's placeholders expanded."""
    global_args: list[str] = []
    worker_args: list[str] = []
    given_pidfile = given_logfile = None
    policy_options: dict[str, str | None] = {}
    for key, raw in options.items():
        if key in POLICY_KEYS:
            policy_options[key] = raw
            continue
        value = None if raw is None else _expand(raw, nodename, for_worker=True)
        if key in GLOBAL_KEYS or key in _PIDFILE_KEYS or key in _LOGFILE_KEYS:
            value = _required(key, value)
        if key in _PIDFILE_KEYS:
            given_pidfile = value
        if key in _LOGFILE_KEYS:
            given_logfile = value
        target = global_args if key in GLOBAL_KEYS else worker_args
        if value is None:
            target.append(key)
        elif key.startswith("--"):
            target.append(f"{key}={value}")
        else:
            target.extend([key, value])
    worker_args.extend(["-n", nodename])
    if given_pidfile is None and pidfile:
        given_pidfile = _expand(pidfile, nodename, for_worker=True)
        worker_args.append(f"--pidfile={given_pidfile}")
    if given_logfile is None and logfile:
        given_logfile = _expand(logfile, nodename, for_worker=True)
        worker_args.append(f"--logfile={given_logfile}")
    worker_args.extend(passthrough)
    return NodeSpec(
        name=nodename,
        index=index,
        worker_args=tuple(worker_args),
        global_args=tuple(global_args),
        # what the worker will write: it expands %i to 0 (and %% to %) for its main process
        pidfile=node_format(given_pidfile, nodename, 0) if given_pidfile else "",
        logfile=given_logfile or "",
        policy=policy_from_options(nodename, policy_options),
    )


def _expand(template: str, nodename: str, *, for_worker: bool) -> str:
    """Replace %h %p (full name), %n %N (short name), %d (host); keep %i %I for the worker.

    For a worker option `%%` stays `%%`, because the worker expands the value once more.
    """
    short, _, host = nodename.partition("@")
    values = {"h": nodename, "p": nodename, "n": short, "N": short, "d": host}
    out: list[str] = []
    position = 0
    while position < len(template):
        pair = template[position : position + 2]
        if len(pair) == 2 and pair[0] == "%":
            if pair[1] in values:
                out.append(values[pair[1]])
            elif pair == "%%" and not for_worker:
                out.append("%")
            else:
                out.append(pair)
            position += 2
        else:
            out.append(template[position])
            position += 1
    return "".join(out)
