"""LiveTable draws and measures exactly as DataTable does, only faster (tq/tui/widgets/live_table.py).

Its shortcuts lean on DataTable's internals; these tests compare every line with a stock
DataTable holding the same cells, so a Textual or Rich upgrade that changes either way
fails here instead of drawing a different console.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.coordinate import Coordinate
from textual.strip import Strip
from textual.widgets import DataTable

from tq.tui.widgets.live_table import Cell, LiveTable

COLUMNS = ("id", "name", "state", "args", "runtime")


def rows() -> list[tuple[object, ...]]:
    """Cells as the console makes them, and a few it never makes (they go DataTable's way)."""
    made = [
        (
            Cell(f"{n:08x}"),
            Cell(f"tasks.job{n % 7}" if n % 5 else ""),
            Cell(("RECEIVED", "STARTED", "SUCCESS", "FAILURE")[n % 4], style=("blue", "cyan", "green", "bold red")[n % 4]),
            Cell(repr((n,) if n % 3 else ("画像", "x" * 30))),
            Cell(f"{n / 1000:.3f}s" if n % 2 else "", justify="right"),
        )
        for n in range(14)
    ]  # fmt: skip
    made.append(
        (
            Cell("left"),
            Cell("padded", justify="left", style="dim"),
            "plain str",
            Text("a"),
            Cell("two\nlines"),
        )
    )
    made.append((Cell("tab"), Cell("a\tb"), Cell("x", style="reverse"), Cell(""), Cell("1", justify="center")))  # fmt: skip
    return made


class TwoTables(App[None]):
    """A stock DataTable and a LiveTable given the same cells (the LiveTable in bulk)."""

    def __init__(self) -> None:
        super().__init__()
        self.highlighted: dict[str | None, list[int]] = {"stock": [], "live": []}

    def compose(self) -> ComposeResult:
        yield DataTable(id="stock", cursor_type="row", zebra_stripes=True)
        yield LiveTable(id="live", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        for table in self.query(DataTable):
            for key in COLUMNS:
                table.add_column(key.title(), key=key)
        self.add_rows([(str(index), cells) for index, cells in enumerate(rows())])

    def add_rows(self, keyed: list[tuple[str, Sequence[object]]]) -> None:
        for key, cells in keyed:
            self.query_one("#stock", DataTable).add_row(*cells, key=key)
        self.query_one("#live", LiveTable).add_keyed_rows(keyed)  # type: ignore[arg-type]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.highlighted[event.data_table.id].append(event.cursor_row)


def drawn(table: DataTable) -> tuple[list[int], list[Strip]]:
    """Column widths and every line the table draws now."""
    table._clear_caches()  # draw afresh, as after any change
    widths = [column.get_render_width(table) for column in table.ordered_columns]
    return widths, [table.render_line(y) for y in range(table.size.height)]


async def assert_same(app: TwoTables, pilot) -> None:
    await pilot.pause()
    stock, live = app.query_one("#stock", DataTable), app.query_one("#live", LiveTable)
    for table in (stock, live):
        table.focus()
        await pilot.pause()
        if table is stock:
            expected = drawn(stock)
        else:
            got = drawn(live)
    assert got[0] == expected[0]
    assert (live.row_count, live.cursor_coordinate) == (stock.row_count, stock.cursor_coordinate)
    for y, (line, want) in enumerate(zip(got[1], expected[1], strict=True)):
        assert list(line) == list(want), f"line {y} differs"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("theme", ["textual-dark", "textual-light"])
def test_live_table_draws_every_line_as_data_table_does(theme: str) -> None:
    async def scenario() -> None:
        app = TwoTables()
        async with app.run_test(size=(100, 44)) as pilot:
            app.theme = theme
            await assert_same(app, pilot)
            for table in app.query(DataTable):
                table.move_cursor(row=3)
                table._set_hover_cursor(True)
                table.hover_coordinate = Coordinate(5, 1)
            await assert_same(app, pilot)
            app.theme = "textual-light" if theme == "textual-dark" else "textual-dark"
            await assert_same(app, pilot)  # styles worked out again

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_live_table_matches_data_table_after_updates_and_removals() -> None:
    async def scenario() -> None:
        app = TwoTables()
        async with app.run_test(size=(100, 44)) as pilot:
            for table in app.query(DataTable):
                table.move_cursor(row=16)  # past the end once rows leave: clamped
            app.add_rows([("new", [Cell(f"new {key}") for key in COLUMNS])])
            for table in app.query(DataTable):
                table.update_cell("2", "args", Cell("x" * 80))  # wider than its column: cropped
                table.update_cell("4", "name", Cell("tasks.renamed", style="yellow"))
                if isinstance(table, LiveTable):
                    table.remove_rows(["0", "5", "15", "9", "absent"])
                else:
                    for key in ("0", "5", "15", "9"):
                        table.remove_row(key)
            await assert_same(app, pilot)
            for table in app.query(DataTable):
                table.sort("id", key=lambda cell: cell.plain, reverse=True)
            await assert_same(app, pilot)
            app.add_rows([("wide", [Cell("w" * 40)])])  # widens a column once measured
            await assert_same(app, pilot)
            for table in app.query(DataTable):
                table.clear()
            app.add_rows([("a", [Cell("a")]), ("b", [Cell("b")])])  # into an empty table
            await assert_same(app, pilot)
            # The stock table's highlights, in order, less those of removing rows one by one.
            live, stock = app.highlighted["live"], app.highlighted["stock"]
            remaining = iter(stock)
            assert all(row in remaining for row in live)
            assert live[-1] == stock[-1] == 0 and len(live) > 1

    asyncio.run(scenario())


def test_cell_width_is_rich_measure() -> None:
    for text in ("", "abc", "画像", "a\nlonger line", "tab\there", "esc\x1b[0m", "é"):
        cell = Cell(text)
        assert cell.width == Text(text).__rich_measure__(None, None).maximum  # type: ignore[arg-type]
