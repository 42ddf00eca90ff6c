"""The Tool jobs pane: jobs with state, attempts, duration and exit; the selected job's output live.

Output is read from the end first (the last 64 KiB), earlier pages come in as the operator
scrolls to the top, and new chunks stream in while the view follows. stdout and stderr are told
apart by a gutter mark and colour.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.widgets import DataTable, Static

from journal_core import JournalError
from journal_core.tool_jobs import (
    FINAL_STATES,
    TailEntry,
    ToolJob,
    list_jobs,
    read_output,
    read_output_before,
)
from journal_tui import clock
from journal_tui.line_log import LineLog
from journal_tui.render import clock_time, duration, literal, literal_line, short_id, state_text
from journal_tui.source import Source
from journal_tui.tables import selected_key, sync_table

JOB_LIMIT = 300
_STREAM_MARKS = {"stdout": ("│", ""), "stderr": ("┃", "red"), "event": ("◆", "cyan")}


def output_lines(entries: tuple[TailEntry, ...] | list[TailEntry]) -> list[Text]:
    """Output chunks as lines, each marked with its stream."""
    lines: list[Text] = []
    for entry in entries:
        mark, style = _STREAM_MARKS.get(entry.stream, ("?", "bold"))
        chunk = entry.chunk[:-1] if entry.chunk.endswith("\n") else entry.chunk
        for raw in chunk.split("\n"):
            line = Text.assemble((f"{mark} ", style or "dim"), end="")
            line.append_text(literal_line(raw, style or None))
            lines.append(line)
    return lines


class JobsPane(Vertical):
    """Tool jobs, newest first, and the output of the one under the cursor."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("c", "clear_filter", "All runs")]

    def __init__(self, source: Source) -> None:
        super().__init__(id="jobs-pane")
        self.source = source
        self.run_filter: str | None = None
        self.jobs: dict[str, ToolJob] = {}
        self.shown_job: str | None = None
        self.first_seq = 0
        self.last_seq = 0
        self.at_start = True
        # Both a refresh and a cursor move read output; one at a time keeps the view whole.
        self._output_lock = asyncio.Lock()

    def compose(self) -> ComposeResult:
        yield Static("", id="jobs-filter", classes="pane-status")
        table: DataTable[Text | str] = DataTable(
            id="jobs-table", cursor_type="row", zebra_stripes=True
        )
        yield table
        yield Static("", id="output-title", classes="pane-status")
        yield LineLog(id="job-output")
        yield Static("", id="output-status", classes="pane-status")

    def on_mount(self) -> None:
        table = self.query_one("#jobs-table", DataTable)
        for label, key in (
            ("Job", "job"),
            ("Tool", "tool"),
            ("State", "state"),
            ("Attempts", "attempts"),
            ("Started", "started"),
            ("Duration", "duration"),
            ("Exit", "exit"),
            ("Run", "run"),
        ):
            table.add_column(label, key=key)
        self._show_filter()
        self.reload()

    def action_focus_main(self) -> None:
        """Put the keyboard on the jobs list."""
        self.query_one("#jobs-table", DataTable).focus()

    def filter_run(self, run_id: str | None) -> None:
        """Show only the jobs of ``run_id`` (None: every job)."""
        self.run_filter = run_id
        self._show_filter()
        self.reload()

    def action_clear_filter(self) -> None:
        """Show the jobs of every run."""
        self.filter_run(None)

    def _show_filter(self) -> None:
        text = Text.assemble((" jobs of run ", "dim"))
        if self.run_filter:
            text.append(short_id(self.run_filter), style="bold")
            text.append("  (c shows all)", style="dim")
        else:
            text = Text.assemble((" all tool jobs, newest first", "dim"))
        self.query_one("#jobs-filter", Static).update(text)

    def reload(self) -> None:
        """Read jobs and new output again (on every commit while visible)."""
        self._load()

    @work(exclusive=True, group="jobs")
    async def _load(self) -> None:
        if not self.source.is_open:
            return
        try:
            jobs = await list_jobs(self.source.reader, run_id=self.run_filter, limit=JOB_LIMIT)
        except JournalError as error:
            self.query_one("#output-status", Static).update(literal(str(error), "bold red"))
            return
        now = clock.now_ms()
        self.jobs = {job.job_id: job for job in jobs}
        with contextlib.suppress(NoMatches):  # the app quit while the query ran
            table = self.query_one("#jobs-table", DataTable)
            sync_table(table, [(job.job_id, self._cells(job, now)) for job in jobs])
            await self._output()

    def _cells(self, job: ToolJob, now: int) -> tuple[Text | str, ...]:
        start = job.started_at_unix_ms
        end = job.completed_at_unix_ms or (None if job.state in FINAL_STATES else now)
        return (
            short_id(job.job_id),
            literal(job.tool_name),
            state_text(job.state),
            f"{job.attempt_count}/{job.max_attempts}",
            clock_time(start),
            duration(None if start is None or end is None else end - start),
            "-"
            if job.exit_code is None
            else Text(str(job.exit_code), style="green" if job.exit_code == 0 else "red"),
            short_id(job.run_id),
        )

    @on(DataTable.RowHighlighted, "#jobs-table")
    def _job_changed(self) -> None:
        self._show_output()

    @work(exclusive=True, group="job-output")
    async def _show_output(self) -> None:
        await self._output()

    async def _output(self) -> None:
        async with self._output_lock:
            await self._read_output()

    async def _read_output(self) -> None:
        """Bring the output view up to date. State changes only after every read succeeded,
        so a cancelled read (the cursor moved on) never leaves a mixed view."""
        job_id = selected_key(self.query_one("#jobs-table", DataTable))
        log = self.query_one("#job-output", LineLog)
        reader = self.source.reader
        try:
            if job_id is None:
                self.shown_job = None
                log.clear()
            elif job_id != self.shown_job:
                tail = await read_output_before(reader, job_id)
                self.shown_job = job_id
                self.first_seq = tail.first_seq
                self.at_start = tail.at_start
                self.last_seq = tail.entries[-1].seq if tail.entries else 0
                log.follow = True
                log.set_lines(output_lines(tail.entries))
            else:
                fresh: list[TailEntry] = []
                after = self.last_seq
                while True:
                    page = await read_output(reader, job_id, after_seq=after, max_bytes=256 * 1024)
                    fresh.extend(page.entries)
                    after = page.next_offset
                    if page.eof:
                        break
                if job_id == self.shown_job and after > self.last_seq:
                    self.last_seq = after
                    log.append(output_lines(fresh))
        except JournalError as error:
            self.query_one("#output-status", Static).update(literal(str(error), "bold red"))
            return
        self._title()
        self._status()

    def _title(self) -> None:
        job = self.jobs.get(self.shown_job or "")
        title = Text.assemble((" output ", "bold"))
        if job is not None:
            title.append_text(literal(job.tool_name, "bold"))
            title.append(f"  job {job.job_id}  ", style="dim")
            title.append_text(state_text(job.state))
            if job.last_error:
                title.append("  ")
                title.append_text(literal(job.last_error, "red"))
            title.append("   │ stdout  ", style="dim")
            title.append("┃ stderr", style="red")
        self.query_one("#output-title", Static).update(title)

    def _status(self) -> None:
        log = self.query_one("#job-output", LineLog)
        if log.follow:
            status = Text.assemble((" ● FOLLOWING output ", "bold green"))
        else:
            status = Text.assemble((" ❚❚ PAUSED ", "bold black on yellow"))
            status.append(f"  {log.unseen} new lines below · End resumes ", style="yellow")
        if not self.at_start:
            status.append("  earlier output loads when you reach the top", style="dim")
        self.query_one("#output-status", Static).update(status)

    @on(LineLog.FollowChanged, "#job-output")
    def _follow_changed(self) -> None:
        self._status()

    @on(LineLog.TopReached, "#job-output")
    def _top(self) -> None:
        if not self.at_start and self.shown_job:
            self._earlier(self.shown_job)

    @work(exclusive=True, group="job-earlier")
    async def _earlier(self, job_id: str) -> None:
        try:
            page = await read_output_before(self.source.reader, job_id, before_seq=self.first_seq)
        except JournalError:
            return
        if job_id != self.shown_job:
            return
        self.first_seq = page.first_seq
        self.at_start = page.at_start
        self.query_one("#job-output", LineLog).prepend(output_lines(page.entries))
        self._status()
