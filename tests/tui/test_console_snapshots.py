"""SVG snapshots of every view over seeded data (update with `pytest --snapshot-update`).

Each view at 80x24 and 160x48 in the dark theme, and the tasks view once in the light one.
The seeded console has a stopped clock and a supervisor that always answers the same.
"""

from __future__ import annotations

import pytest

from .seed import seeded_app

SIZES = {"80x24": (80, 24), "160x48": (160, 48)}
#: view -> the keys that open it from the start.
VIEWS = {
    "tasks": [],
    "detail": ["j", "j", "i"],  # tasks.boom, newest first: mul, sleep_then, boom
    "nodes": ["2"],
    "queues": ["3"],
    "events": ["4"],
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", SIZES, ids=list(SIZES))
@pytest.mark.parametrize("view", VIEWS, ids=list(VIEWS))
def test_view_snapshot(snap_compare, view: str, size: str) -> None:
    assert snap_compare(seeded_app(supervised=True), press=VIEWS[view], terminal_size=SIZES[size])


@pytest.mark.timeout(60)
def test_light_theme_snapshot(snap_compare) -> None:
    app = seeded_app(supervised=True)

    async def light(pilot) -> None:
        app.theme = "textual-light"
        await pilot.pause()

    assert snap_compare(app, run_before=light, terminal_size=SIZES["160x48"])
