"""Columns of the console's tables: all when the terminal is wide, the essential ones when not."""

from __future__ import annotations

from collections.abc import Iterable

from textual.widgets import DataTable

#: (key, label, shown when narrow) for each column of a table.
ColumnSpec = tuple[str, str, bool]


def set_columns(table: DataTable, columns: Iterable[ColumnSpec], *, wide: bool) -> None:
    """Replace the table's columns (and rows) with those shown at this width."""
    table.clear(columns=True)
    for key, label, narrow in columns:
        if wide or narrow:
            table.add_column(label, key=key)
