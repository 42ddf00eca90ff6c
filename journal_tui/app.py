"""The inspector: a Textual app over a live journal.

Four panes (Sessions, Tool jobs, Approvals, Chain) and a transcript screen per session. One poll
loop asks the journal whether anything was committed (``PRAGMA data_version``, a few
microseconds) and, only then, refreshes the pane on screen; the next poll is scheduled when the
last one finished, so refreshes never overlap. Live updates can be paused.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane

from journal_core import JournalError
from journal_tui import clock
from journal_tui.approvals_pane import ApprovalsPane
from journal_tui.chain_pane import ChainPane
from journal_tui.daemons_pane import DaemonsPane
from journal_tui.dialogs import HelpDialog
from journal_tui.jobs_pane import JobsPane
from journal_tui.render import ago, literal
from journal_tui.sessions_pane import SessionsPane
from journal_tui.source import Source
from journal_tui.transcript_screen import TranscriptScreen

POLL_SECONDS = 0.1


class JournalApp(App[None]):
    """The journal inspector."""

    CSS_PATH = "inspector.tcss"
    TITLE = "journal inspector"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("0", "pane('daemons')", "Daemons"),
        Binding("1", "pane('sessions')", "Sessions"),
        Binding("2", "pane('jobs')", "Jobs"),
        Binding("3", "pane('approvals')", "Approvals"),
        Binding("4", "pane('chain')", "Chain"),
        Binding("p", "pause", "Pause live"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, source: Source, *, poll_seconds: float = POLL_SECONDS) -> None:
        super().__init__()
        self.source = source
        self.poll_seconds = poll_seconds
        self.paused = False
        self.problem: str | None = None
        self.head_seq = 0
        self.last_commit_ms: int | None = None
        # Kept as attributes: while a transcript or a dialog is on top, queries would not
        # reach the main screen's widgets.
        self.status_line = Static("", id="status-line")
        fleet = source.multi_journal
        self.tabs = TabbedContent(initial="daemons" if fleet else "sessions", id="panes")
        self.jobs = JobsPane(source)
        self.approvals = ApprovalsPane(source)
        self.chain = ChainPane(source)
        self.panes: dict[str, DaemonsPane | SessionsPane | JobsPane | ApprovalsPane | ChainPane]
        self.panes = {"daemons": DaemonsPane(source)} if fleet else {}
        self.panes |= {
            "sessions": SessionsPane(source),
            "jobs": self.jobs,
            "approvals": self.approvals,
            "chain": self.chain,
        }

    def compose(self) -> ComposeResult:
        yield self.status_line
        with self.tabs:
            if "daemons" in self.panes:
                with TabPane("0 Daemons", id="daemons"):
                    yield self.panes["daemons"]
            with TabPane("1 Sessions", id="sessions"):
                yield self.panes["sessions"]
            with TabPane("2 Tool jobs", id="jobs"):
                yield self.panes["jobs"]
            with TabPane("3 Approvals", id="approvals"):
                yield self.panes["approvals"]
            with TabPane("4 Chain", id="chain"):
                yield self.chain
        yield Footer()

    async def on_mount(self) -> None:
        self.sub_title = self.source.label
        await self._head()
        self._status()
        self.set_timer(self.poll_seconds, self._poll)
        if "daemons" in self.panes:  # a fleet opens on its list of daemons
            self.call_after_refresh(self.action_pane, "daemons")
        # What start-up built (widgets, styles, caches) lives as long as the app: keep it out of
        # the garbage collector's way, whose full passes otherwise stall repaints under ingest.
        gc.freeze()

    async def _head(self) -> None:
        if not self.source.is_open:
            return
        head = await self.source.reader.head()
        self.head_seq = head.seq
        self.last_commit_ms = await self.source.last_commit_ms()
        self.chain.set_head(head.seq)

    async def _poll(self) -> None:
        if not self.screen_stack:  # shutting down
            return
        try:
            change = await self.source.poll()
            if change.problem != self.problem:
                self.problem = change.problem
                if change.problem:
                    self.notify(change.problem, severity="error", timeout=8, markup=False)
            if change.reopened:
                self.notify("The journal file was replaced; reopened it.", markup=False)
            if change.committed and not self.paused and self.screen_stack:
                await self._head()
                self.refresh_visible()
            self._status()
        except JournalError as error:
            self.problem = str(error)
            self._status()
        finally:
            if self.screen_stack:
                self.set_timer(self.poll_seconds, self._poll)

    def refresh_visible(self) -> None:
        """Refresh what is on screen (hidden panes refresh when shown)."""
        if not self.screen_stack:  # quitting
            return
        screen = self.screen
        if isinstance(screen, TranscriptScreen):
            screen.refresh_data()
            return
        pane = self.tabs.active
        self.panes[pane].reload()
        if pane != "chain":
            self.chain.reload()

    def _status(self) -> None:
        now = clock.now_ms()
        if self.problem:
            text = Text.assemble((" ✖ ", "bold white on red"))
            text.append_text(literal(f" {self.problem}", "bold red"))
        elif self.paused:
            text = Text.assemble((" ❚❚ PAUSED ", "bold black on yellow"))
            text.append("  live updates paused (p resumes)", style="yellow")
        else:
            text = Text.assemble((" ● LIVE ", "bold black on green"))
        text.append(f"  head seq {self.head_seq:,}", style="bold")
        text.append(f"  last commit {ago(self.last_commit_ms, now)}", style="dim")
        mode = "read-only" if self.source.read_only else f"decides as {self.source.decider}"
        text.append("   ")
        text.append_text(literal(f"{self.source.label} · {mode}", "dim"))
        self.status_line.update(text)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Only panes this source has are offered (a journal file has no Daemons pane)."""
        return not (action == "pane" and parameters and parameters[0] not in self.panes)

    def action_pane(self, name: str) -> None:
        """Show one of the panes (closing a transcript first)."""
        if name not in self.panes:
            return
        while isinstance(self.screen, TranscriptScreen):
            self.pop_screen()
        self.tabs.active = name
        self.panes[name].reload()
        self.panes[name].action_focus_main()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        """A pane came into view: bring it up to date."""
        pane = event.pane.id
        if pane in self.panes:
            self.panes[pane].reload()

    def on_sessions_pane_first_shown(self, _message: SessionsPane.FirstShown) -> None:
        self.chain.start()

    async def on_daemons_pane_scope_changed(self, message: DaemonsPane.ScopeChanged) -> None:
        """Show one daemon's journal (or all) in every pane."""
        try:
            await self.source.set_scope(message.journal_id)
        except JournalError as error:
            self.notify(str(error), severity="error", markup=False)
            return
        self.sub_title = self.source.label
        self.jobs.filter_run(None)
        self.approvals.filter_run(None)
        await self._head()
        self.chain.reset()
        self._status()
        for name, pane in self.panes.items():
            if isinstance(pane, SessionsPane):
                pane.reload_now()
            elif name != "chain":
                pane.reload()
        self.action_pane("sessions" if message.journal_id is not None else "daemons")

    def action_pause(self) -> None:
        """Pause or resume live updates."""
        self.paused = not self.paused
        self._status()
        if not self.paused:
            self.refresh_visible()

    def action_help(self) -> None:
        """Show the keys."""
        self.push_screen(HelpDialog())

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a session opens its transcript."""
        if event.data_table.id == "sessions-table" and event.row_key.value:
            self.push_screen(TranscriptScreen(self.source, event.row_key.value))

    def show_jobs_for_run(self, run_id: str) -> None:
        """Open the Tool jobs pane on one run's jobs."""
        self.action_pane("jobs")
        self.jobs.filter_run(run_id)

    def show_approvals_for_run(self, run_id: str) -> None:
        """Open the Approvals pane on one run's requests."""
        self.action_pane("approvals")
        self.approvals.filter_run(run_id)

    async def on_unmount(self) -> None:
        self.workers.cancel_all()
        await self.source.close()


def open_message(path: Path, error: JournalError) -> str:
    """The one line shown when the inspector cannot open a journal."""
    return f"journal: cannot inspect {path}: {error}"
