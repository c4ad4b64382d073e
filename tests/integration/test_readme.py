"""Every call the README shows, run against a real worker of examples/proj."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys

import pytest

from tests.conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def proj(broker, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from proj.tq import app

    app._reset_clients()
    yield app
    app._reset_clients()


def test_readme_python_examples(broker, proj, start_worker):
    start_worker("-c", "2", app="proj", workdir=EXAMPLES)
    failures, tried = doctest.testfile(
        str(ROOT / "README.md"),
        module_relative=False,
        verbose=False,
        optionflags=doctest.ELLIPSIS
        | doctest.IGNORE_EXCEPTION_DETAIL
        | doctest.NORMALIZE_WHITESPACE,
    )
    assert tried >= 20
    assert failures == 0


def test_readme_shell_commands(broker, proj, start_worker):
    start_worker("-c", "1", app="proj", workdir=EXAMPLES)
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def tq(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "tq", "-A", "proj", *args],
            cwd=EXAMPLES,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert tq("call", "proj.tasks.add", "--args", "[2, 2]", "--wait") == "4"
    if broker.kind != "amqp":  # rpc results belong to the client process that sent the task
        task_id = tq("call", "proj.tasks.mul", "--args", "[3, 3]")
        assert tq("result", task_id, "--timeout", "10") == "SUCCESS 9"
    assert tq("purge", "-Q", broker.queue, "-f").startswith("Purged ")
