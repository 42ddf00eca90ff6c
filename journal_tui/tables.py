"""Keeping a DataTable in step with fresh rows without rebuilding it on every refresh."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowKey

Cells = tuple[Text | str, ...]


def sync_table(table: DataTable[Text | str], rows: Sequence[tuple[str, Cells]]) -> None:
    """Make ``table`` show ``rows`` (key, cells) in that order, touching only what changed.

    When the keys are the same and in the same order, only changed cells are updated; otherwise
    the rows are rebuilt and the cursor stays on the row it was on.
    """
    keys = [key for key, _ in rows]
    current = [row_key.value for row_key in table.rows]
    if keys == current:
        columns = list(table.columns)
        for key, cells in rows:
            for column, value in zip(columns, cells, strict=False):
                try:
                    if table.get_cell(key, column) != value:
                        table.update_cell(key, column, value)
                except CellDoesNotExist:
                    continue
        return
    selected = selected_key(table)
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if selected is not None and selected in keys:
        table.move_cursor(row=keys.index(selected), animate=False)


def selected_key(table: DataTable[Text | str]) -> str | None:
    """The key of the row under the cursor, or None when the table is empty."""
    if table.row_count == 0:
        return None
    try:
        row_key: RowKey = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
    except CellDoesNotExist:
        return None
    return row_key.value
