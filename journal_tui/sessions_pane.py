"""The Sessions pane: every session with its last run's state and totals, searchable."""

from __future__ import annotations

import contextlib
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from journal_core import JournalError
from journal_core.sessions import RUN_STATES, SessionSummary, session_summaries
from journal_tui import clock
from journal_tui.render import ago, literal, state_text, timestamp
from journal_tui.source import Source
from journal_tui.tables import selected_key, sync_table

STATE_FILTERS: tuple[str | None, ...] = (None, *RUN_STATES)
SESSION_LIMIT = 500
RELOAD_INTERVAL_S = 1.0


class SessionsPane(Vertical):
    """Sessions, most recently active first; Enter opens the transcript."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search"),
        Binding("s", "cycle_state", "State filter"),
        Binding("down", "focus_main", show=False),
    ]

    class FirstShown(Message):
        """The first list of sessions is on screen: the start-up is over."""

    def __init__(self, source: Source) -> None:
        super().__init__(id="sessions-pane")
        self.source = source
        self.state_filter: str | None = None
        self.search_text = ""
        self.summaries: dict[str, SessionSummary] = {}
        self._loaded_at = -RELOAD_INTERVAL_S
        self._reload_scheduled = False
        self._shown = False

    def compose(self) -> ComposeResult:
        with Horizontal(classes="toolbar"):
            yield Input(placeholder="/ search titles and transcripts", id="session-search")
            yield Static(self._filter_label(), id="state-filter", classes="filter-label")
        table: DataTable[Text | str] = DataTable(
            id="sessions-table", cursor_type="row", zebra_stripes=True
        )
        yield table
        yield Static("", id="sessions-status", classes="pane-status")

    def on_mount(self) -> None:
        table = self.query_one("#sessions-table", DataTable)
        for label, key in (
            ("Title", "title"),
            ("Last run", "state"),
            ("Runs", "runs"),
            ("Started", "started"),
            ("Last activity", "activity"),
            ("Tokens", "tokens"),
            ("Pending", "pending"),
            ("Channel", "channel"),
        ):
            table.add_column(label, key=key)
        table.focus()
        self.reload()

    def action_focus_main(self) -> None:
        """Put the keyboard on the sessions list."""
        self.query_one("#sessions-table", DataTable).focus()

    def _filter_label(self) -> Text:
        return Text(f" state: {self.state_filter or 'all'} (s) ", style="bold")

    def action_search(self) -> None:
        """Focus the search box."""
        self.query_one("#session-search", Input).focus()

    def action_cycle_state(self) -> None:
        """Show only sessions whose last run is in the next state (then all again)."""
        index = STATE_FILTERS.index(self.state_filter)
        self.state_filter = STATE_FILTERS[(index + 1) % len(STATE_FILTERS)]
        self.query_one("#state-filter", Static).update(self._filter_label())
        self._load()

    @on(Input.Submitted, "#session-search")
    @on(Input.Changed, "#session-search")
    def _search(self, event: Input.Changed | Input.Submitted) -> None:
        self.search_text = event.value
        self._load()
        if isinstance(event, Input.Submitted):
            self.query_one("#sessions-table", DataTable).focus()

    def reload(self) -> None:
        """Read the sessions again (on new commits while visible), at most once a second.

        Under heavy ingest every poll finds commits; rebuilding hundreds of rows each time
        would starve the keyboard, and a list of sessions does not need 100 ms freshness.
        """
        wait = RELOAD_INTERVAL_S - (clock.monotonic() - self._loaded_at)
        if wait <= 0:
            self._load()
        elif not self._reload_scheduled:
            self._reload_scheduled = True
            self.set_timer(wait, self._scheduled_reload)

    def reload_now(self) -> None:
        """Read the sessions again at once (another journal came into view)."""
        self._load()

    def _scheduled_reload(self) -> None:
        self._reload_scheduled = False
        self._load()

    @work(exclusive=True, group="sessions")
    async def _load(self) -> None:
        if not self.source.is_open:
            return
        try:
            found = await session_summaries(
                self.source.reader,
                state=self.state_filter,
                text=self.search_text or None,
                limit=SESSION_LIMIT,
            )
        except JournalError as error:
            with contextlib.suppress(NoMatches):
                self.query_one("#sessions-status", Static).update(literal(str(error), "bold red"))
            return
        self._loaded_at = clock.monotonic()
        self.summaries = {item.session.session_id: item for item in found}
        with contextlib.suppress(NoMatches):  # the app quit while the query ran
            self._show(found)
            if not self._shown:
                self._shown = True
                self.call_after_refresh(self.post_message, self.FirstShown())

    def _show(self, found: list[SessionSummary]) -> None:
        now = clock.now_ms()
        table = self.query_one("#sessions-table", DataTable)
        sync_table(table, [(item.session.session_id, self._cells(item, now)) for item in found])
        more = " (showing the newest 500)" if len(found) == SESSION_LIMIT else ""
        self.query_one("#sessions-status", Static).update(
            Text(f" {len(found)} sessions{more}. Enter opens one.", style="dim")
        )

    def _cells(self, item: SessionSummary, now: int) -> tuple[Text | str, ...]:
        session = item.session
        pending = Text(
            str(item.pending_approvals),
            style="bold white on red" if item.pending_approvals else "dim",
        )
        return (
            literal(item.title),
            state_text(item.last_run_state),
            str(item.runs),
            timestamp(session.created_at_unix_ms),
            ago(session.updated_at_unix_ms, now),
            f"{item.total_tokens:,}",
            pending,
            literal(session.channel or "-"),
        )

    def selected_session(self) -> str | None:
        """The session under the cursor."""
        return selected_key(self.query_one("#sessions-table", DataTable))
