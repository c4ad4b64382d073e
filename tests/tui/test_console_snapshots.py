"""SVG snapshots of the tasks view over seeded data (update with `pytest --snapshot-update`)."""

from __future__ import annotations

import pytest

from .seed import seeded_app


@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_tasks_view_snapshot(snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(seeded_app(), terminal_size=size)


@pytest.mark.timeout(60)
def test_detail_view_snapshot(snap_compare) -> None:
    assert snap_compare(seeded_app(), press=["j", "j", "i"], terminal_size=(80, 24))
