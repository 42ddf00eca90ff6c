"""The Transcript screen: a session's runs with their lifecycle, and its tape, followed live."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from journal_core import JournalError
from journal_core.approvals import Approval, list_for_run
from journal_core.sessions import Run, get_session, list_runs, run_lifecycle
from journal_core.tape import TranscriptCursor, session_transcript
from journal_core.tool_jobs import ToolJob, list_jobs
from journal_tui import clock
from journal_tui.line_log import LineLog
from journal_tui.render import clock_time, duration, literal, short_id, state_text, timestamp
from journal_tui.source import Source
from journal_tui.tables import selected_key, sync_table
from journal_tui.transcript_lines import TranscriptLayout

PAGE = 2_000


class TranscriptScreen(Screen[None]):
    """One session: its runs (select one for its lifecycle) and its transcript."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("z", "toggle_folds", "Fold/unfold"),
        Binding("f", "follow", "Follow"),
        Binding("j", "jobs", "Run's jobs"),
        Binding("a", "approvals", "Run's approvals"),
    ]

    def __init__(self, source: Source, session_id: str) -> None:
        super().__init__()
        self.source = source
        self.session_id = session_id
        self.cursor = TranscriptCursor()
        self.transcript = TranscriptLayout()
        self.runs: dict[str, Run] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="transcript-title", classes="screen-title")
        with Horizontal(id="run-area"):
            runs: DataTable[Text | str] = DataTable(id="runs-table", cursor_type="row")
            yield runs
            yield Static("", id="run-details")
        with Vertical(id="transcript-area"):
            yield LineLog(id="transcript-log")
            yield Static("", id="transcript-status", classes="pane-status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        # Fixed widths: the table sits beside the run details and must not jump as rows come.
        for label, key, width in (
            ("#", "n", 2),
            ("Run", "run", 8),
            ("State", "state", 11),
            ("Started", "started", 12),
            ("Took", "took", 7),
            ("Tokens", "tokens", 8),
        ):
            table.add_column(label, key=key, width=width)
        self.transcript.width = max(40, self.size.width - 4)
        self.refresh_data()
        self.query_one("#transcript-log", LineLog).focus()

    def on_resize(self) -> None:
        width = max(40, self.size.width - 4)
        if width != self.transcript.width:
            self.query_one("#transcript-log", LineLog).set_lines(self.transcript.relayout(width))

    def refresh_data(self) -> None:
        """Read what is new (called on every commit while this screen is shown)."""
        self._load()

    @work(exclusive=True, group="transcript")
    async def _load(self) -> None:
        reader = self.source.reader
        try:
            session = await get_session(reader, self.session_id)
            runs = await list_runs(reader, self.session_id)
            # The cursor moves only once every page is read: a load cancelled half-way (a newer
            # one replaces it) must not skip the pages it had read.
            new_entries = []
            cursor = self.cursor
            while True:
                page = await session_transcript(
                    reader, self.session_id, after=cursor, max_entries=PAGE
                )
                new_entries.extend(page.entries)
                cursor = page.cursor
                if page.eof or not page.entries:
                    break
        except JournalError as error:
            self.query_one("#transcript-status", Static).update(literal(str(error), "bold red"))
            return
        title = Text.assemble(("Session ", "dim"))
        title.append_text(literal(session.title, "bold"))
        title.append("   ")
        title.append_text(literal(session.session_key, "dim"))
        title.append("   ")
        title.append_text(
            literal(f"{session.principal} · {session.device_id} · {session.channel or '-'}", "dim")
        )
        self.query_one("#transcript-title", Static).update(title)
        self.runs = {run.run_id: run for run in runs}
        now = clock.now_ms()
        table = self.query_one("#runs-table", DataTable)
        sync_table(
            table,
            [(run.run_id, self._run_cells(index, run, now)) for index, run in enumerate(runs, 1)],
        )
        for run in runs:
            self.transcript.run_number(run.run_id)
        self.cursor = cursor
        log = self.query_one("#transcript-log", LineLog)
        if new_entries:
            start, lines = self.transcript.add(new_entries)
            log.replace_from(start, lines)
        self._status()
        self._show_run()

    def _run_cells(self, index: int, run: Run, now: int) -> tuple[Text | str, ...]:
        end = run.completed_at_unix_ms or (
            now if run.state not in ("done", "failed", "cancelled") else None
        )
        return (
            str(index),
            short_id(run.run_id),
            state_text(run.state),
            clock_time(run.started_at_unix_ms or run.created_at_unix_ms),
            duration(None if end is None else end - run.created_at_unix_ms),
            f"{run.total_tokens:,}",
        )

    @on(DataTable.RowHighlighted, "#runs-table")
    def _run_changed(self) -> None:
        self._show_run()

    def _selected_run(self) -> Run | None:
        key = selected_key(self.query_one("#runs-table", DataTable))
        return self.runs.get(key) if key else None

    @work(exclusive=True, group="run-details")
    async def _show_run(self) -> None:
        run = self._selected_run()
        details = self.query_one("#run-details", Static)
        if run is None:
            details.update(Text("no runs yet", style="dim"))
            return
        reader = self.source.reader
        try:
            lifecycle = await run_lifecycle(reader, run.run_id)
            jobs = await list_jobs(reader, run_id=run.run_id)
            asked = await list_for_run(reader, run.run_id)
        except JournalError as error:
            details.update(literal(str(error), "bold red"))
            return
        now = clock.now_ms()
        text = Text.assemble((f"run {run.run_id}  ", "bold"))
        text.append_text(state_text(run.state))
        text.append(f"  origin {run.origin_kind}", style="dim")
        if run.cancel_requested:
            text.append("  cancel requested: ", style="magenta")
            text.append_text(literal(run.cancel_reason or "-"))
        text.append("\n")
        for index, entry in enumerate(lifecycle):
            following = (
                lifecycle[index + 1].created_at_unix_ms
                if index + 1 < len(lifecycle)
                else (None if run.state in ("done", "failed", "cancelled") else now)
            )
            spent = duration(None if following is None else following - entry.created_at_unix_ms)
            text.append(f"  {clock_time(entry.created_at_unix_ms)} ", style="dim")
            text.append_text(state_text(entry.to_state))
            text.append(f"  {spent:>8}" if following is not None else "", style="dim")
            if entry.reason:
                text.append("  ")
                text.append_text(literal(entry.reason, "dim"))
            text.append("\n")
        text.append(
            f"  tokens {run.prompt_tokens:,} in + {run.completion_tokens:,} out"
            f" = {run.total_tokens:,}\n"
        )
        if run.last_error:
            text.append("  last error: ", style="bold red")
            text.append_text(literal(run.last_error, "red"))
            text.append("\n")
        text.append_text(self._links(jobs, asked))
        details.update(text)

    def _links(self, jobs: list[ToolJob], asked: list[Approval]) -> Text:
        text = Text.assemble((f"  tool jobs ({len(jobs)}, j): ", "dim"))
        for job in jobs[:6]:
            text.append_text(literal(job.tool_name))
            text.append(" ")
            text.append_text(state_text(job.state))
            text.append("  ")
        text.append(f"\n  approvals ({len(asked)}, a): ", style="dim")
        for approval in asked[:6]:
            text.append_text(literal(approval.subject_type))
            text.append(" ")
            text.append_text(state_text(approval.decision or "pending"))
            text.append("  ")
        return text

    def _status(self) -> None:
        log = self.query_one("#transcript-log", LineLog)
        if log.follow:
            status = Text.assemble((" ● FOLLOWING new entries ", "bold green"))
        else:
            status = Text.assemble((" ❚❚ PAUSED ", "bold black on yellow"))
            status.append(f"  {log.unseen} new lines below · End or f resumes ", style="yellow")
        status.append(
            f"  {len(self.transcript.blocks)} blocks · session since "
            f"{timestamp(min((r.created_at_unix_ms for r in self.runs.values()), default=None))}",
            style="dim",
        )
        self.query_one("#transcript-status", Static).update(status)

    @on(LineLog.FollowChanged)
    def _follow_changed(self) -> None:
        self._status()

    def action_follow(self) -> None:
        """Follow new entries again."""
        self.query_one("#transcript-log", LineLog).follow = True

    def action_toggle_folds(self) -> None:
        """Unfold (or fold again) long tool arguments and results."""
        self.transcript.unfolded = not self.transcript.unfolded
        self.query_one("#transcript-log", LineLog).set_lines(self.transcript.relayout())

    def action_jobs(self) -> None:
        """Show the selected run's tool jobs."""
        run = self._selected_run()
        if run is not None:
            self.app.call_later(self.app.show_jobs_for_run, run.run_id)  # type: ignore[attr-defined]

    def action_approvals(self) -> None:
        """Show the selected run's approvals."""
        run = self._selected_run()
        if run is not None:
            self.app.call_later(self.app.show_approvals_for_run, run.run_id)  # type: ignore[attr-defined]
