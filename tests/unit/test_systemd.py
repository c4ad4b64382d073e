"""systemd: sd_notify over a real datagram socket, and generated units that systemd-analyze accepts."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import REQUIRE_BROKERS
from tq import sdnotify
from tq.cli import systemd as systemd_cli
from tq.cli.main import cli
from tq.errors import ConfigError
from tq.supervisor.sdstatus import SystemdStatus
from tq.supervisor.systemd import UnitFile, UnitSettings, install_path, render_units

#: Debian 12's systemd; later directives (RestartSteps=, ...) would only warn there.
ANALYZE_TIMEOUT_S = 60


@pytest.fixture
def listener(tmp_path, monkeypatch):
    """A datagram socket bound in tmp_path and named by NOTIFY_SOCKET, as systemd does."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_sd_notify_sends_each_state_as_one_datagram(listener):
    assert sdnotify.notify("STATUS=hello")
    assert listener.recv(4096) == b"STATUS=hello"
    assert sdnotify.ready("3/3 nodes up")
    assert listener.recv(4096).decode().split("\n") == [
        "READY=1",
        f"MAINPID={os.getpid()}",
        "STATUS=3/3 nodes up",
    ]
    assert sdnotify.status("2/3 nodes up") and listener.recv(4096) == b"STATUS=2/3 nodes up"
    assert sdnotify.stopping() and listener.recv(4096) == b"STOPPING=1"
    assert sdnotify.watchdog() and listener.recv(4096) == b"WATCHDOG=1"
    assert sdnotify.extend_timeout(5_000_000)
    assert listener.recv(4096) == b"EXTEND_TIMEOUT_USEC=5000000"


def test_sd_notify_reaches_an_abstract_socket(monkeypatch):
    name = f"tq-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready()
        assert sock.recv(4096).startswith(b"READY=1\n")


def test_sd_notify_without_a_listener_says_false(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody.sock"))
    assert sdnotify.notify("READY=1") is False


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(monkeypatch):
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sdnotify.watchdog_interval_s() is None
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    assert sdnotify.watchdog_interval_s() == 10.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval_s() == 10.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert sdnotify.watchdog_interval_s() is None


def heard(sock: socket.socket) -> list[str]:
    """Every datagram waiting on the socket (sd_notify sends synchronously)."""
    sock.setblocking(False)
    said = []
    try:
        while True:
            said.append(sock.recv(4096).decode())
    except BlockingIOError:
        return said
    finally:
        sock.settimeout(5)


def test_supervisor_status_watchdog_at_half_the_period_ready_once_and_drain(listener, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    now = [100.0]
    status = SystemdStatus(enabled=True, clock=lambda: now[0])
    status.report(["STARTING", "STARTING"])
    assert heard(listener) == ["STATUS=2 starting", "WATCHDOG=1"]
    now[0] += 0.3
    status.report(["STARTING", "RUNNING"])  # a change, but no watchdog yet (every 0.5 s)
    assert heard(listener) == ["STATUS=1 running, 1 starting"]
    now[0] += 0.3
    status.report(["RUNNING", "FATAL"])
    ready = f"READY=1\nMAINPID={os.getpid()}\nSTATUS=1 fatal, 1 running"
    assert heard(listener) == ["STATUS=1 fatal, 1 running", ready, "WATCHDOG=1"]
    now[0] += 0.6
    status.report(["RUNNING", "FATAL"])  # READY only once; same counts: no STATUS
    assert heard(listener) == ["WATCHDOG=1"]
    status.stopping()
    status.draining()
    status.draining()  # EXTEND_TIMEOUT_USEC at most once a second
    now[0] += 1.0
    status.draining()
    assert heard(listener) == ["STOPPING=1", *["EXTEND_TIMEOUT_USEC=5000000"] * 2]


def test_supervisor_status_is_silent_unless_in_the_foreground_and_pings_only_with_a_watchdog(
    listener, monkeypatch
):
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    status = SystemdStatus(enabled=True)
    status.report([])  # no nodes at all: nothing to wait for
    assert heard(listener) == [
        "STATUS=no nodes",
        f"READY=1\nMAINPID={os.getpid()}\nSTATUS=no nodes",
    ]
    status.report(["RUNNING"])
    assert heard(listener) == ["STATUS=1 running"]
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    quiet = SystemdStatus(enabled=False)
    quiet.report(["RUNNING"])
    quiet.stopping()
    quiet.draining()
    assert heard(listener) == []


@pytest.fixture(scope="module")
def analyze() -> str:
    """systemd-analyze, installed from Debian's `systemd` package if missing.

    Where it cannot be installed or run, the unit checks skip, except in CI (TQ_REQUIRE_BROKERS=1,
    set by .ci/run), where they fail: there a missing check must not pass unnoticed.
    """
    found = shutil.which("systemd-analyze")
    problem = "systemd-analyze is not installed"
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        for command in (
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "systemd"],
            ["apt-get", "update", "-q"],  # stale package lists: refresh, then try once more
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "systemd"],
        ):
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
            found = shutil.which("systemd-analyze")
            if found:
                break
            if result.returncode:
                said = (result.stderr or result.stdout).strip().splitlines()
                problem = f"`{' '.join(command)}` failed: {said[-1] if said else result.returncode}"
    elif found is None:
        problem += " (install Debian's `systemd` package as root: apt-get install systemd)"
    if found is not None:
        probe = subprocess.run(
            [found, "--version"], capture_output=True, text=True, timeout=ANALYZE_TIMEOUT_S
        )
        if probe.returncode == 0:
            return found
        problem = f"systemd-analyze cannot run here: {probe.stderr.strip()}"
    if REQUIRE_BROKERS:
        pytest.fail(f"{problem} (TQ_REQUIRE_BROKERS=1: CI must verify the units)")
    pytest.skip(problem)


def verify(analyze: str, *units: Path) -> str:
    """Everything systemd-analyze verify says about the units ("" when it accepts them)."""
    result = subprocess.run(
        [analyze, "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=ANALYZE_TIMEOUT_S,
        cwd=units[0].parent,
    )
    return f"{result.stdout}{result.stderr}".strip() + (
        f"\n(exit {result.returncode})" if result.returncode else ""
    )


def settings(*node_args: str, **kwargs) -> UnitSettings:
    return UnitSettings(
        executable=sys.executable,
        node_args=("-A", "proj", *node_args),
        working_directory=kwargs.pop("working_directory", "/srv/proj"),
        **kwargs,
    )


def write(directory: Path, files) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for file in files:
        path = directory / file.name
        path.write_text(file.text)
        paths.append(path)
    return paths


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_service_unit_runs_the_supervisor_as_type_notify(analyze, tmp_path):
    unit_settings = settings(
        "4",
        "-Q:1,2",
        "images",
        "-c",
        "2",
        user="tq",
        group="tq",
        environment=("TQ_BROKER_URL=redis://127.0.0.1:6379/0", "GREETING=hello world"),
        stop_timeout_s=120,
        watchdog_s=30,
    )
    [unit] = render_units(unit_settings, per_node=False)
    assert unit.name == "tq.service"
    found = directives(unit.text)
    assert found["Type"] == ["notify"]
    assert found["ExecStart"] == [
        f"{sys.executable} -m tq -A proj up --foreground --stop-timeout=120 4 -Q:1,2 images -c 2"
    ]
    assert found["ExecReload"] == [f"{sys.executable} -m tq restart"]
    assert found["KillMode"] == ["mixed"]
    assert found["TimeoutStopSec"] == ["150"]
    assert found["Restart"] == ["on-failure"]
    assert found["User"] == ["tq"] and found["Group"] == ["tq"]
    assert found["WorkingDirectory"] == ["/srv/proj"]
    assert found["Environment"] == [
        '"TQ_BROKER_URL=redis://127.0.0.1:6379/0"',
        '"GREETING=hello world"',
    ]
    assert found["WatchdogSec"] == ["30"]
    assert found["WantedBy"] == ["multi-user.target"]
    [path] = write(tmp_path / "units", [unit])
    assert verify(analyze, path) == ""
    # and the check is not vacuous: systemd-analyze does speak up about a bad unit
    [bad] = write(tmp_path / "bad", [UnitFile("tq.service", unit.text + "Bogus=1\n")])
    assert "Unknown key 'Bogus'" in verify(analyze, bad)


def test_default_stop_timeout_leaves_systemd_90_seconds():
    [unit] = render_units(settings("2"), per_node=False)
    assert "--stop-timeout=60 2" in unit.text
    assert "TimeoutStopSec=90\n" in unit.text


def test_percent_dollar_and_spaces_are_escaped_for_systemd(analyze, tmp_path):
    [unit] = render_units(
        settings("2", "--logfile=/var/log/tq/%n%I.log", "-Q", "$HOME", environment=("P=50%",)),
        per_node=False,
    )
    assert "--logfile=/var/log/tq/%%n%%I.log -Q $$HOME" in unit.text
    assert 'Environment="P=50%%"' in unit.text
    [unit] = render_units(
        settings("2", working_directory=str(tmp_path)), per_node=False, hostname="vm"
    )
    [path] = write(tmp_path / "units", [unit])
    assert verify(analyze, path) == ""


def test_user_unit_wants_default_target_and_has_no_user_line(analyze, tmp_path):
    [unit] = render_units(settings("2", user_unit=True), per_node=False)
    assert "WantedBy=default.target" in unit.text
    assert "User=" not in unit.text and "network-online" not in unit.text
    [path] = write(tmp_path / "units", [unit])
    assert verify(analyze, path) == ""
    with pytest.raises(ConfigError, match="user unit"):
        render_units(settings("2", user_unit=True, user="tq"), per_node=False)


def test_per_node_template_target_and_env_files(analyze, tmp_path):
    files = render_units(
        settings("3", "-Q:1,2", "images", "-c", "2", "-l", "info"), per_node=True, hostname="vm"
    )
    assert [file.name for file in files] == [
        "tq.target",
        "tq-worker@.service",
        "celery1.env",
        "celery2.env",
        "celery3.env",
    ]
    target, template, *env_files = files
    assert directives(target.text)["Wants"] == [
        "tq-worker@celery1.service tq-worker@celery2.service tq-worker@celery3.service"
    ]
    found = directives(template.text)
    assert found["Type"] == ["notify"] and found["KillMode"] == ["mixed"]
    assert found["PartOf"] == ["tq.target"] and found["WantedBy"] == ["tq.target"]
    assert found["EnvironmentFile"] == ["%E/tq/nodes/%i.env"]
    assert found["ExecStart"] == [f"{sys.executable} -m tq -A proj worker $TQ_WORKER_ARGS"]
    assert directives(env_files[0].text)["TQ_WORKER_ARGS"] == [
        "-c 2 -l info -Q images -n celery1@vm"
    ]
    assert directives(env_files[2].text)["TQ_WORKER_ARGS"] == ["-c 2 -l info -n celery3@vm"]
    assert all(file.kind == "env" for file in env_files)
    unit_paths = write(tmp_path / "units", [target, template])
    # an instance is what systemd really loads; the target pulls in all three
    instance = write(tmp_path / "units", [UnitFile("tq-worker@celery1.service", template.text)])
    assert verify(analyze, *unit_paths, *instance) == ""


def test_restart_policy_goes_to_the_supervisor_and_is_refused_per_node():
    [unit] = render_units(settings("2", "--restart:2=forever"), per_node=False)
    assert " up --foreground --stop-timeout=60 2 --restart:2=forever\n" in unit.text
    with pytest.raises(ConfigError, match="systemd restarts and stops each node itself"):
        render_units(settings("2", "--restart:2=forever"), per_node=True)


def test_per_node_refuses_arguments_that_env_files_cannot_carry():
    with pytest.raises(ConfigError, match=r"\$TQ_WORKER_ARGS"):
        render_units(settings("2", "--logfile=/var/log/my logs/%n.log"), per_node=True)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"environment": ("1BAD=x",)}, "NAME=VALUE"),
        ({"working_directory": "relative/dir"}, "absolute"),
        ({"name": "tq service"}, "unit name"),
        ({"stop_timeout_s": 0}, "stop-timeout"),
    ],
)
def test_bad_unit_settings_are_config_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        render_units(settings("2", **changes), per_node=False)


def test_unit_needs_the_app_and_the_nodes():
    with pytest.raises(ConfigError, match="needs the app"):
        render_units(UnitSettings(sys.executable, ("2",), "/srv"), per_node=False)
    with pytest.raises(ConfigError, match="no nodes given"):
        render_units(settings(), per_node=False)


def test_cli_unit_reads_app_before_or_after_the_subcommand():
    runner = CliRunner()
    before = runner.invoke(cli, ["-A", "proj", "systemd", "unit", "2", "-c", "2"])
    after = runner.invoke(cli, ["systemd", "unit", "-A", "proj", "2", "-c", "2"])
    assert before.exit_code == after.exit_code == 0, before.output + after.output
    assert before.output == after.output
    assert f"ExecStart={sys.executable} -m tq -A proj up --foreground" in before.output


def test_cli_install_writes_units_under_root_and_says_what_to_run(tmp_path):
    result = CliRunner().invoke(
        cli, ["-A", "proj", "systemd", "install", "--root", str(tmp_path), "--per-node", "2"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "etc/systemd/system/tq-worker@.service").exists()
    assert (tmp_path / "etc/systemd/system/tq.target").exists()
    assert (tmp_path / "etc/tq/nodes/celery2.env").exists()
    assert "systemctl daemon-reload && systemctl enable --now tq.target" in result.output


def test_cli_install_user_unit_says_clearly_when_systemd_is_not_running(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(systemd_cli, "systemd_running", lambda: False)
    result = CliRunner().invoke(cli, ["-A", "proj", "systemd", "install", "--user", "2"])
    assert result.exit_code == 0, result.output
    unit = tmp_path / "config/systemd/user/tq.service"
    assert unit.exists() and "WantedBy=default.target" in unit.read_text()
    assert "systemd is not running on this machine" in result.output
    assert "systemctl --user daemon-reload" in result.output


def test_install_path_for_system_and_user_units(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    [unit] = render_units(settings("1"), per_node=False)
    assert install_path(unit, settings=settings("1")) == Path("/etc/systemd/system/tq.service")
    assert install_path(unit, settings=settings("1", user_unit=True)) == (
        tmp_path / "systemd/user/tq.service"
    )
