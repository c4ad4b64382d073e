"""LiveTable: a DataTable whose rows come and change many times a second, measured and drawn cheaply.

DataTable measures every cell of every row it adds (through rich, ~13 us a cell) and draws
each visible cell again after any change to the table (~100 us a cell through rich's
Padding and Styled). With a thousand rows arriving a second both dominate the console's
frame. Cells made as `Cell` know their width, and a one-line Cell that fits its column is
drawn straight into the segments DataTable would have produced; anything else (row labels,
fixed rows or columns, taller rows, other renderables) goes DataTable's own way. Rows are
added and removed in bulk, and the row styles and the column order are worked out once
instead of for every row and line.

This leans on DataTable's private attributes and methods (as of Textual 8.2):
tests/tui/test_live_table.py draws the same cells in a stock DataTable and checks, line by
line, that both draw the same, so an upgrade that changes them fails there first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import zip_longest
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.widgets import DataTable
from textual.widgets.data_table import (
    CellKey,
    Column,
    DuplicateKey,
    Row,
    RowDoesNotExist,
    RowKey,
)

if TYPE_CHECKING:
    from rich.console import JustifyMethod

#: Justifications drawn directly (others, e.g. center or full, go DataTable's way).
_DIRECT_JUSTIFY = frozenset({None, "default", "left", "right"})


class Cell(Text):
    """A cell's text with its width known; never changed once made (a new value is a new cell)."""

    __slots__ = ("width", "one_line")

    def __init__(
        self, text: str = "", style: str = "", justify: JustifyMethod | None = None
    ) -> None:
        super().__init__(text, style=style, justify=justify)
        plain = self.plain
        if plain.isascii() and plain.isprintable():  # most cells: one cell a character
            self.one_line, self.width = True, len(plain)
            return
        self.one_line = "\n" not in plain and "\t" not in plain
        # As rich's Text measure: the widest line.
        self.width = max((cell_len(line) for line in plain.splitlines()), default=0)


class LiveTable(DataTable[Text]):
    """A DataTable that measures and draws rows of `Cell`s without going through rich."""

    #: (column locations, column count, the columns in order) as last listed.
    _ordered_columns: tuple[object, int, list[Column]] | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: (row kind, base style, pseudo classes) -> the row's style; DataTable works it out
        #: from the CSS for every line it draws. Cleared when styles change.
        self._row_styles: dict[tuple[Any, ...], Style] = {}

    @property
    def ordered_columns(self) -> list[Column]:
        """The columns in the order shown (DataTable lists them afresh for every row and line)."""
        locations, count = self._column_locations, len(self.columns)
        cached = self._ordered_columns
        # Columns are only added (the count grows) or rebuilt (a new locations object).
        if cached is None or cached[0] is not locations or cached[1] != count:
            cached = self._ordered_columns = (locations, count, super().ordered_columns)
        return cached[2]

    def add_keyed_rows(self, rows: Iterable[tuple[str, Sequence[Text]]]) -> None:
        """Add rows of (key, cells) at the bottom as add_row does, checking the cursor once."""
        columns = self.ordered_columns
        was_empty = self.row_count == 0
        for key, cells in rows:
            row_key = RowKey(key)
            if row_key in self._row_locations:
                raise DuplicateKey(f"The row key {row_key!r} already exists.")
            if len(cells) > len(columns):
                raise ValueError("More values provided than there are columns.")
            self._row_locations[row_key] = self.row_count
            self._data[row_key] = {column.key: cell for column, cell in zip_longest(columns, cells)}
            self.rows[row_key] = Row(row_key, 1, None, False)
            self._new_rows.add(row_key)
        self._require_update_dimensions = True
        self.cursor_coordinate = self.cursor_coordinate
        if was_empty and self.row_count and self.columns:
            if self.show_cursor and self.cursor_type != "none":
                self._highlight_cursor()
        self._update_count += 1
        self.check_idle()

    def notify_style_update(self) -> None:
        self._row_styles.clear()
        super().notify_style_update()

    def _get_row_style(self, row_index: int, base_style: Style) -> Style:
        """The style of the row at this index, as DataTable works it out, once per kind of row."""
        if row_index == -1 or row_index < self.fixed_rows:
            kind: object = "header" if row_index == -1 else "fixed"
        else:
            kind = row_index % 2 if self.zebra_stripes else "plain"
        key = (kind, base_style, self._pseudo_class_state, self.app.theme)
        style = self._row_styles.get(key)
        if style is None:
            style = self._row_styles[key] = super()._get_row_style(row_index, base_style)
        return style

    def remove_rows(self, row_keys: Iterable[RowKey | str]) -> None:
        """Remove these rows in one pass (DataTable.remove_row re-indexes every row for each)."""
        leaving = {RowKey(key) if isinstance(key, str) else key for key in row_keys}
        leaving &= self.rows.keys()
        if not leaving:
            return
        locations = self._row_locations
        ordered: list[RowKey | None] = [None] * len(locations)
        for row_key in locations:
            index = locations.get(row_key)
            assert index is not None
            ordered[index] = row_key
        staying = [key for key in ordered if key is not None and key not in leaving]
        self._row_locations = TwoWayDict({key: index for index, key in enumerate(staying)})
        # The rest as remove_row does it for one row.
        updated_cells = self._updated_cells
        for row_key in leaving:
            if updated_cells:
                for column_key in self._data[row_key]:
                    updated_cells.discard(CellKey(row_key, column_key))
            del self.rows[row_key]
            del self._data[row_key]
        self._require_update_dimensions = True
        self.check_idle()
        self.cursor_coordinate = self.cursor_coordinate
        self.hover_coordinate = self.hover_coordinate
        self._update_count += 1
        self.refresh(layout=True)

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        """Widen the columns for new rows of Cells by their known widths; others as DataTable does."""
        columns = self.ordered_columns
        others: list[RowKey] = []
        for row_key in new_rows:
            try:
                cells = self.get_row(row_key)
            except RowDoesNotExist:
                continue  # removed before the table went idle
            row = self.rows[row_key]
            if row.label is not None or row.auto_height:
                others.append(row_key)
                continue
            for column, cell in zip(columns, cells, strict=False):
                if not isinstance(cell, Cell):
                    others.append(row_key)
                    break
                if cell.width > column.content_width:
                    column.content_width = cell.width
        super()._update_dimensions(others)

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        """One cell's lines: a one-line Cell that fits directly, anything else as DataTable does."""
        if row_index < self.fixed_rows or column_index < self.fixed_columns:
            # (also the header row, -1, and the row labels, column -1)
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        if row_key is None or column_key is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        cell = self._data[row_key].get(column_key)
        padding = self.cell_padding
        inner = width - 2 * padding
        if (
            not isinstance(cell, Cell)
            or not cell.one_line
            or cell.width > inner
            or cell.justify not in _DIRECT_JUSTIFY
            or self.rows[row_key].height != 1
        ):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        component_style, post_style = self._get_styles_to_render_cell(
            False,
            False,
            False,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        # The same sums as DataTable's Styled(Padding(cell)): row style with the cell's
        # coordinates, then the cursor's, then the cell's own, then the cursor's priority.
        pre_style = base_style + Style.from_meta({"row": row_index, "column": column_index})
        pre_style += component_style
        blank_style = pre_style + post_style
        text_style = (
            pre_style + self.app.console.get_style(cell.style) + post_style
            if cell.style
            else blank_style
        )
        fill = " " * (inner - cell.width)
        segments = [Segment(" " * padding, blank_style)] if padding else []
        if cell.justify == "right":  # rich pads the text itself: the fill takes its style
            segments.append(Segment(fill + cell.plain, text_style))
        else:
            segments.append(Segment(cell.plain, text_style))
            if fill:
                segments.append(
                    Segment(fill, text_style if cell.justify == "left" else blank_style)
                )
        if padding:
            segments.append(Segment(" " * padding, blank_style))
        return [segments]
