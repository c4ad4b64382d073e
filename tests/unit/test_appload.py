"""-A/--app discovery, as Celery searches, with one-line errors."""

from __future__ import annotations

import sys

import pytest

from tq.cli.appload import find_app
from tq.errors import AppNotFound


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith(("proja", "projb", "projc"))]:
        monkeypatch.delitem(sys.modules, name)
    (tmp_path / "proja").mkdir()
    (tmp_path / "proja" / "__init__.py").write_text("")
    (tmp_path / "proja" / "tq.py").write_text("from tq import App\napp = App('proja')\n")
    (tmp_path / "projb").mkdir()
    (tmp_path / "projb" / "__init__.py").write_text("from tq import App\nmine = App('projb')\n")
    (tmp_path / "projc.py").write_text("x = 1\n")
    return tmp_path


def test_finds_the_app_in_the_tq_submodule(project):
    assert find_app("proja", str(project)).main == "proja"
    assert find_app("proja.tq", str(project)).main == "proja"
    assert find_app("proja.tq:app", str(project)).main == "proja"


def test_finds_any_app_instance_in_the_module(project):
    assert find_app("projb", str(project)).main == "projb"


def test_errors_name_what_was_searched(project):
    with pytest.raises(AppNotFound, match="searched projc.app, projc.tq, projc.celery"):
        find_app("projc", str(project))
    with pytest.raises(AppNotFound, match="no module named 'nosuch'"):
        find_app("nosuch", str(project))
    with pytest.raises(AppNotFound, match="has no attribute"):
        find_app("proja.tq:nope", str(project))
