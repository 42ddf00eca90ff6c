"""The Daemons pane: every journal a fleet source holds, and which one the other panes show.

Each row is one daemon's journal: where it lives (host and path), its newest shipped event, how
far the central copy is behind its host, and what the witness says of it. Enter scopes every
other pane to that daemon; ``a`` shows all daemons again.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import DataTable, Static

from journal_core import JournalError
from journal_core.reads import DaemonStatus
from journal_tui import clock
from journal_tui.render import ago, literal
from journal_tui.source import Source
from journal_tui.tables import sync_table


class DaemonsPane(Vertical):
    """The journals of the fleet; Enter scopes the inspector to one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "all_daemons", "All daemons"),
        Binding("down", "focus_main", show=False),
    ]

    class ScopeChanged(Message):
        """The operator chose a daemon (its journal id) or all of them (None)."""

        def __init__(self, journal_id: str | None) -> None:
            super().__init__()
            self.journal_id = journal_id

    def __init__(self, source: Source) -> None:
        super().__init__(id="daemons-pane")
        self.source = source
        self.daemons: dict[str, DaemonStatus] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="daemons-banner", classes="pane-status")
        table: DataTable[Text | str] = DataTable(
            id="daemons-table", cursor_type="row", zebra_stripes=True
        )
        yield table
        yield Static("", id="daemons-status", classes="pane-status")

    def on_mount(self) -> None:
        table = self.query_one("#daemons-table", DataTable)
        for label, key in (
            ("Journal", "journal"),
            ("Host", "host"),
            ("Chain (witness)", "witness"),
            ("Last event", "last"),
            ("Behind host", "behind"),
            ("Shipped", "shipped"),
            ("Path on host", "path"),
        ):
            table.add_column(label, key=key)
        self._banner()
        self.reload()

    def action_focus_main(self) -> None:
        """Put the keyboard on the daemons list."""
        self.query_one("#daemons-table", DataTable).focus()

    def _banner(self) -> None:
        scope = self.source.scope
        text = Text(" showing ", style="bold")
        if scope is None:
            text.append("all daemons", style="bold cyan")
        else:
            daemon = self.daemons.get(scope)
            text.append_text(literal(scope, "bold cyan"))
            if daemon is not None:
                text.append_text(literal(f" on {daemon.host}", "cyan"))
        text.append("   Enter shows one daemon in every pane · a shows all", style="dim")
        with contextlib.suppress(NoMatches):
            self.query_one("#daemons-banner", Static).update(text)

    def reload(self) -> None:
        """Read the list of daemons again."""
        self._load()

    @work(exclusive=True, group="daemons")
    async def _load(self) -> None:
        if not self.source.is_open:
            return
        try:
            found = await self.source.daemons()
        except JournalError as error:
            with contextlib.suppress(NoMatches):
                self.query_one("#daemons-status", Static).update(literal(str(error), "bold red"))
            return
        self.daemons = {item.journal_id: item for item in found}
        with contextlib.suppress(NoMatches):  # the app quit while the query ran
            self._show(found)

    def _show(self, found: list[DaemonStatus]) -> None:
        now = clock.now_ms()
        table = self.query_one("#daemons-table", DataTable)
        sync_table(table, [(item.journal_id, self._cells(item, now)) for item in found])
        refused = [item for item in found if item.refused_code]
        status = Text(f" {len(found)} daemons", style="dim")
        if refused:
            status.append(f"   {len(refused)} refused by the witness:", style="bold red")
        for item in refused:
            status.append("\n  ")
            status.append_text(
                literal(f"{item.journal_id} {item.refused_code}: {item.refused_detail}", "red")
            )
        self.query_one("#daemons-status", Static).update(status)
        self._banner()

    def _cells(self, item: DaemonStatus, now: int) -> tuple[Text | str, ...]:
        behind = item.events_behind
        if item.refused_code:
            where = f" at seq {item.refused_seq}" if item.refused_seq is not None else ""
            witness = literal(f"REFUSED{where}", "bold white on red")
        elif behind:
            witness = Text(f"ok to seq {item.head_seq:,}", style="yellow")
        else:
            witness = Text(f"ok to seq {item.head_seq:,}", style="green")
        marker = "▶ " if item.journal_id == self.source.scope else "  "
        return (
            literal(marker + item.journal_id, "bold" if marker.strip() else None),
            literal(item.host),
            witness,
            ago(item.head_created_at_unix_ms, now),
            Text(f"{behind:,}", style="bold yellow" if behind else "dim"),
            ago(item.shipped_at_unix_ms, now),
            literal(item.source_path),
        )

    @on(DataTable.RowSelected, "#daemons-table")
    def _chosen(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.post_message(self.ScopeChanged(event.row_key.value))

    def action_all_daemons(self) -> None:
        """Show every daemon in every pane."""
        self.post_message(self.ScopeChanged(None))
