"""celery multi's node grammar: counts, names, per-node options, placeholders, bad input."""

from __future__ import annotations

import dataclasses
import json
import signal
import sys

import pytest

from tq.errors import ConfigError
from tq.supervisor.multiwords import pop_flags, pop_signal
from tq.supervisor.nodes import (
    DEFAULT_LOGFILE,
    DEFAULT_PIDFILE,
    NodeSpec,
    app_of,
    expand_nodes,
    expand_template,
    global_words,
    split_global_options,
)
from tq.supervisor.policy import Policy

SEED = "10 -A proj -l info -Q:1-3 images,video -Q:4,5 data -Q default -L:4,5 debug -c 2"


def expand(line: str, **kwargs) -> list[NodeSpec]:
    return expand_nodes(line.split(), hostname=kwargs.pop("hostname", "vm"), **kwargs)


def files(name: str) -> list[str]:
    return [f"--pidfile=.tq/run/{name}.pid", f"--logfile=.tq/log/{name}%I.log"]


def test_seed_example_resolves_node_by_node_as_celery_wire_7_3():
    nodes = expand(SEED)
    assert [node.name for node in nodes] == [f"celery{i}@vm" for i in range(1, 11)]
    assert [node.index for node in nodes] == list(range(1, 11))
    assert [node.option("-Q", "--queues") for node in nodes] == (
        ["images,video"] * 3 + ["data"] * 2 + ["default"] * 5
    )
    # -L is its own key (it does not replace -l), and tq's worker reads `-l info -L debug` as debug
    assert [node.option("-l", "-L", "--loglevel") for node in nodes] == (
        ["info"] * 3 + ["debug"] * 2 + ["info"] * 5
    )
    assert [node.option("-l") for node in nodes] == ["info"] * 10
    assert all(node.option("-c") == "2" for node in nodes)
    assert all(node.global_args == ("-A", "proj") for node in nodes)
    assert nodes[0].worker_args == (
        "-l", "info", "-Q", "images,video", "-c", "2", "-n", "celery1@vm", *files("celery1"),
    )  # fmt: skip
    assert nodes[3].worker_args == (
        "-l", "info", "-Q", "data", "-c", "2", "-L", "debug", "-n", "celery4@vm",
        *files("celery4"),
    )  # fmt: skip
    assert nodes[9].worker_args == (
        "-l", "info", "-Q", "default", "-c", "2", "-n", "celery10@vm", *files("celery10"),
    )  # fmt: skip
    assert nodes[9].command("/py") == [
        "/py",
        "-m",
        "tq",
        "-A",
        "proj",
        "worker",
        *nodes[9].worker_args,
    ]


def test_pid_and_log_files_default_under_dot_tq_with_the_pool_index_left_to_the_worker():
    assert (DEFAULT_PIDFILE, DEFAULT_LOGFILE) == (".tq/run/%n.pid", ".tq/log/%n%I.log")
    [node] = expand("1")
    assert node.pidfile == ".tq/run/celery1.pid"
    assert node.logfile == ".tq/log/celery1%I.log"
    [node] = expand("1 --pidfile=/run/%h-%i.pid --logfile=/log/%p%I.log")
    assert node.pidfile == "/run/celery1@vm-0.pid"  # what the worker writes (%i = 0)
    assert "--pidfile=/run/celery1@vm-%i.pid" in node.worker_args
    assert node.logfile == "/log/celery1@vm%I.log"
    assert [word for word in node.worker_args if word.startswith("--")] == [
        "--pidfile=/run/celery1@vm-%i.pid",
        "--logfile=/log/celery1@vm%I.log",
    ]
    [node] = expand("1 -f /l/%n.log", pidfile="/p/%n.pid")
    assert node.logfile == "/l/celery1.log" and node.pidfile == "/p/celery1.pid"
    assert node.worker_args.count("-f") == 1 and not any("--logfile" in w for w in node.worker_args)
    [node] = expand("1", pidfile=None, logfile=None)
    assert node.worker_args == ("-n", "celery1@vm") and node.pidfile == node.logfile == ""


def test_expand_template_uses_multis_own_placeholders():
    [node, _] = expand("2")
    assert expand_template("%n-%h-%d-%N-%i-%I", node) == "celery1-celery1@vm-vm-celery1-%i-%I"
    assert expand_template("%p %% %x", node) == "celery1@vm % %x"


def test_option_values_get_placeholders_expanded_per_node():
    nodes = expand("2 -Q %n,common --hostname=vm.example.com")
    assert [node.option("-Q") for node in nodes] == ["celery1,common", "celery2,common"]
    assert nodes[0].name == "celery1@vm.example.com"


def test_node_names_prefix_suffix_hostname_and_full_names():
    assert [n.name for n in expand("image video")] == ["image@vm", "video@vm"]
    assert [n.name for n in expand("image -n box.example.com")] == ["image@box.example.com"]
    assert [n.name for n in expand("a b --prefix=web- --suffix=example.org")] == [
        "web-a@example.org",
        "web-b@example.org",
    ]
    assert [n.name for n in expand("foo@%h bar@other")] == ["foo@vm", "bar@other"]
    assert [n.name for n in expand("3 --range-prefix=w")] == ["w1@vm", "w2@vm", "w3@vm"]
    assert [n.name for n in expand("image --suffix=")] == ["image"]
    assert [n.short_name for n in expand("image video")] == ["image", "video"]
    assert expand("image", hostname=None)[0].name.startswith("image@")


def test_per_node_selectors_by_index_list_range_name_and_full_name():
    nodes = expand("image video data -c:image 10 -c:2 3 --queues:data,video=q -c 1")
    assert [n.option("-c") for n in nodes] == ["10", "3", "1"]
    assert [n.option("--queues") for n in nodes] == [None, "q", "q"]
    nodes = expand("5 -c:1-2,5 9 -c:celery3@vm 7")
    assert [n.option("-c") for n in nodes] == ["9", "9", "7", None, "9"]


def test_per_node_value_keeps_the_options_place_and_new_keys_go_last():
    [first, second] = expand("2 -l info -Q:1 x -Q y -c 2 -E:2")
    assert first.worker_args[:6] == ("-l", "info", "-Q", "x", "-c", "2")
    assert second.worker_args[:7] == ("-l", "info", "-Q", "y", "-c", "2", "-E")


def test_short_options_take_the_next_word_unless_it_is_an_option():
    [node] = expand("1 -E -c 3 -O fair")
    assert node.worker_args[:5] == ("-E", "-c", "3", "-O", "fair")
    [node] = expand("-c 3 image")
    assert node.name == "image@vm" and node.option("-c") == "3"


def test_global_options_move_before_worker():
    [node] = expand("1 -A proj -b redis://h/0 --result-backend=redis://h/1 --workdir=/srv -c 2")
    assert node.global_args == (
        "-A",
        "proj",
        "-b",
        "redis://h/0",
        "--result-backend=redis://h/1",
        "--workdir=/srv",
    )
    assert node.worker_args[:2] == ("-c", "2")
    assert app_of(node.global_args) == "proj"
    assert app_of(("--app=x", "-A", "y")) == "y" and app_of(()) is None


def test_global_words_come_first_and_the_node_words_win():
    words = global_words(app="proj", broker="redis://h", result_backend="rpc://", workdir="/srv")
    assert words == [
        "-A",
        "proj",
        "--broker=redis://h",
        "--result-backend=rpc://",
        "--workdir=/srv",
    ]
    [node] = expand_nodes([*words, "1", "-A", "other"], hostname="vm")
    assert app_of(node.global_args) == "other"
    assert node.global_args.count("-A") == 1


def test_split_global_options_keeps_everything_else_in_place():
    moved, rest = split_global_options(
        ["-A", "proj", "3", "-Q:1 x", "--workdir=/w", "-c", "2", "-A:2", "y", "--", "-A", "z"]
    )
    assert moved == ["-A", "proj", "--workdir=/w"]
    assert rest == ["3", "-Q:1 x", "-c", "2", "-A:2", "y", "--", "-A", "z"]


def test_words_after_double_dash_go_verbatim_to_every_node():
    nodes = expand("2 -c 2 -- -c:1 3 --x y -Qraw")
    for node in nodes:
        assert node.worker_args[-5:] == ("-c:1", "3", "--x", "y", "-Qraw")
    assert nodes[0].option("-Q") == "raw"  # as the worker (click) reads the attached form


def test_long_option_without_equals_before_a_word_is_refused_not_made_a_node():
    with pytest.raises(ConfigError, match=r"--logfile=/x .*node name"):
        expand("3 --logfile /x")
    [node] = expand("1 --without-gossip")  # a long flag at the end is fine
    assert "--without-gossip" in node.worker_args


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("image video -c:1-2 3", "ranges like 1-2 need a node count"),
        ("3 -c:4 2", "no node is called '4'"),
        ("3 -c:1-4 2", "range 1-4 is not within nodes 1-3"),
        ("image -c:nosuch 2", "no node is called 'nosuch'"),
        ("3 -c: 2", "empty node selector"),
        ("", "no nodes given"),
        ("0", "at least 1"),
        ("a a", "given twice"),
        ("3 -n:1 host", "names every node"),
        ("3 --cmd=celery", "does not support"),
        ("3 -A", "-A needs a value"),
        ("3 --pidfile", "--pidfile needs a value"),
    ],
)
def test_bad_grammar_is_one_clear_config_error(line, message):
    with pytest.raises(ConfigError, match=message) as caught:
        expand(line)
    assert "\n" not in str(caught.value)


def test_numeric_selectors_also_work_with_names():
    nodes = expand("image video -c:2 5")
    assert [n.option("-c") for n in nodes] == [None, "5"]


def test_pop_signal_takes_trailing_signal_words():
    assert pop_signal(["3", "-KILL"]) == (["3"], signal.SIGKILL)
    assert pop_signal(["3", "-9", "-c", "2"]) == (["3", "-c", "2"], 9)
    assert pop_signal(["3", "-SIGINT"]) == (["3"], signal.SIGINT)
    assert pop_signal(["3", "-A", "proj", "-NOSUCH"]) == (["3", "-A", "proj", "-NOSUCH"], None)
    assert pop_signal(["3", "--", "-KILL"]) == (["3", "--", "-KILL"], None)


def test_pop_flags_removes_multis_own_flags():
    assert pop_flags(["--verbose", "3", "-q", "--", "-q"], ["-q", "--verbose"]) == (
        ["3", "--", "-q"],
        {"-q", "--verbose"},
    )


def test_node_spec_is_plain_frozen_data_that_round_trips():
    [node] = expand("1 -c 2")
    assert dataclasses.asdict(node)["worker_args"] == node.worker_args
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.name = "x"  # type: ignore[misc]
    saved = json.loads(json.dumps(dataclasses.asdict(node)))  # as the node table stores it
    assert NodeSpec.from_saved(saved) == node
    del saved["policy"]  # a table written before policies were per node
    assert NodeSpec.from_saved(saved).policy == Policy()
    assert node.command()[0] == sys.executable


def test_restart_policy_is_a_node_option_like_any_other():
    nodes = expand(
        "3 -c 1 --restart=forever --restart:2=on-failure --start-secs:3=0 --backoff-start:1,2=0.05"
        " --stop-timeout:3=300"
    )
    assert [n.policy.restart for n in nodes] == ["forever", "on-failure", "forever"]
    assert [n.policy.backoff_start_s for n in nodes] == [0.05, 0.05, 1.0]
    assert [n.policy.start_secs for n in nodes] == [1.0, 1.0, 0.0]
    assert [n.policy.stop_timeout_s for n in nodes] == [60.0, 60.0, 300.0]
    # the supervisor reads them; the worker never sees them
    assert nodes[0].worker_args == ("-c", "1", "-n", "celery1@vm", *files("celery1"))
    assert expand("2 -c 1")[0].policy == Policy()


def test_restart_policy_values_are_checked():
    with pytest.raises(ConfigError, match="--restart=always: use on-failure or forever"):
        expand("2 --restart:2=always")
    with pytest.raises(ConfigError, match="--restart=VALUE"):
        expand("2 --restart:1")
    with pytest.raises(ConfigError, match="--stop-timeout=0: give seconds, more than 0"):
        expand("2 --stop-timeout=0")
    with pytest.raises(ConfigError, match="--backoff-start=soon"):
        expand("2 --backoff-start=soon")
    with pytest.raises(ConfigError, match="--start-secs=nan"):
        expand("2 --start-secs=nan")
    with pytest.raises(ConfigError, match="only as --restart=forever"):
        expand("2 --restart forever")


def test_backoff_doubles_to_its_cap_and_only_forever_never_gives_up():
    policy = Policy(backoff_start_s=1.0)
    assert [policy.retry_delay_s(n) for n in (1, 2, 3, 7, 8, 20)] == [1, 2, 4, 60, 60, 60]
    assert not policy.gives_up(5) and policy.gives_up(6)
    assert not Policy(restart="forever").gives_up(1000)
