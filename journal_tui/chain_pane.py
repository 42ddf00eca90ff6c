"""The Chain pane: verification with progress, a strip of links with broken ones in red, and
every break with its code, seq, event id, expected and found values.

A full verification checks every link and every record row; afterwards new events are verified
incrementally as they arrive (from the last verified seq on), so a live journal always shows its
current status. Enter on a break opens the event and its neighbours.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, RenderResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import DataTable, ProgressBar, Static
from textual.worker import get_current_worker

from journal_core import ChainBreak, JournalError
from journal_core.chain import RecordBreak, VerifyReport
from journal_tui import clock
from journal_tui.dialogs import EventDialog
from journal_tui.render import literal, timestamp
from journal_tui.source import Source
from journal_tui.tables import selected_key, sync_table

#: When the start-up checks begin if the sessions never come on screen (seconds after mount).
START_FALLBACK_S = 2.0


@dataclass(slots=True)
class ChainState:
    """What is known about the chain: how far it is verified and what is broken."""

    verified_seq: int = 0
    head_hash: str | None = None
    breaks: list[ChainBreak] = field(default_factory=list)
    record_breaks: list[RecordBreak] = field(default_factory=list)
    records_checked: int = 0
    records_purged: int = 0
    full_at_unix_ms: int | None = None
    last_rate: float = 0.0
    signed_up_to: int = 0  # before a full check: links up to here are vouched for by a signature


class ChainStrip(Widget):
    """The chain as a strip: each cell stands for a range of seqs, red if a link in it broke."""

    DEFAULT_CSS = """
    ChainStrip { height: 3; }
    """

    selected_seq: reactive[int | None] = reactive(None)

    def __init__(self, state: ChainState, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = state
        self.head_seq = 0

    def render(self) -> RenderResult:
        width = max(10, self.size.width - 2)
        head = max(self.head_seq, self.state.verified_seq)
        if head == 0:
            return Text("the journal is empty", style="dim")
        per_cell = max(1, -(-head // width))
        cells = -(-head // per_cell)
        broken = {item.seq for item in self.state.breaks}
        broken_cells = {(seq - 1) // per_cell for seq in broken}
        verified_cells = self.state.verified_seq // per_cell
        strip = Text(" ", end="")
        for cell in range(cells):
            if cell in broken_cells:
                strip.append("█", style="bold red")
            elif cell < verified_cells or (cell + 1) * per_cell <= self.state.verified_seq:
                strip.append("█", style="green")
            else:
                strip.append("░", style="dim")
        marker = Text(" ", end="")
        if self.selected_seq is not None:
            position = min(cells - 1, (self.selected_seq - 1) // per_cell)
            marker.append(" " * position + "▲", style="bold yellow")
        legend = f"one cell = {per_cell:,} event{'s' if per_cell > 1 else ''}"
        gap = max(2, cells - len(str(head)) - 1 - len(legend))
        axis = Text.assemble(
            (f" 1{' ' * (gap // 2)}", "dim"),
            (legend, "dim italic"),
            (f"{' ' * (gap - gap // 2)}{head}", "dim"),
            end="",
        )
        return Text("\n").join([strip, marker, axis])


class ChainPane(Vertical):
    """Verification status, progress, the strip and the list of breaks."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("v", "verify", "Verify all")]

    def __init__(self, source: Source) -> None:
        super().__init__(id="chain-pane")
        self.source = source
        self.state = ChainState()
        self.running = False
        self.strip = ChainStrip(self.state, id="chain-strip")
        # Bumped when the journal in view changes: results of a check of the previous one drop.
        self.generation = 0
        self._started = False

    def compose(self) -> ComposeResult:
        yield Static("", id="chain-summary", classes="chain-summary")
        yield ProgressBar(id="verify-progress", show_eta=False)
        yield Static("", id="verify-rate", classes="pane-status")
        yield self.strip
        breaks: DataTable[Text | str] = DataTable(id="breaks-table", cursor_type="row")
        yield breaks
        yield Static("", id="record-breaks", classes="pane-status")

    def on_mount(self) -> None:
        table = self.query_one("#breaks-table", DataTable)
        for label, key in (
            ("Seq", "seq"),
            ("Code", "code"),
            ("Event", "event"),
            ("Expected", "expected"),
            ("Found", "found"),
            ("What", "summary"),
        ):
            table.add_column(label, key=key)
        # Once the first screen is up (the app calls start; this timer only stands in if the
        # sessions never show): first the cheap check from the newest signed checkpoint
        # (seconds become milliseconds on a large journal), then every link and record. Begun
        # earlier, the checks' thread competed with the first screen for the GIL.
        self.running = True
        self.set_timer(START_FALLBACK_S, self.start)

    def start(self) -> None:
        """Begin the start-up checks, once."""
        if self._started:
            return
        self._started = True
        self._first_check()

    def reset(self) -> None:
        """Another journal is in view: forget what was verified and check it afresh."""
        self.generation += 1
        self.workers.cancel_group(self, "verify")
        self.state = ChainState()
        self.strip.state = self.state
        self.strip.head_seq = 0
        self.running = False
        self._show()
        self.running = True
        self._started = True
        self._first_check()

    def _first_check(self) -> None:
        if self.source.is_open:
            self._verify(1, full=False, incremental=True)
        else:
            self.running = False

    def action_focus_main(self) -> None:
        """Put the keyboard on the list of breaks."""
        self.query_one("#breaks-table", DataTable).focus()

    def action_verify(self) -> None:
        """Verify the whole chain and every record again."""
        if self.running or not self.source.is_open:
            return
        self.state.breaks.clear()
        self.state.record_breaks.clear()
        self.state.verified_seq = 0
        self._verify(1, full=True)

    def reload(self) -> None:
        """New events arrived: verify just them (once a first verification has run)."""
        if not self.running and self.state.verified_seq and self.source.is_open:
            self._verify(self.state.verified_seq + 1, full=False)

    @work(thread=True, exclusive=True, group="verify")
    def _verify(self, from_seq: int, *, full: bool, incremental: bool = False) -> None:
        self.running = True
        worker = get_current_worker()
        started = time.perf_counter()
        generation = self.generation

        def progress(checked: int, seq: int) -> None:
            if not worker.is_cancelled and generation == self.generation:
                elapsed = max(1e-6, time.perf_counter() - started)
                self._from_thread(self._progress, checked, seq, checked / elapsed)

        try:
            report = self.source.verify(
                from_seq=from_seq, records=full, incremental=incremental, progress=progress
            )
        except (JournalError, ValueError) as error:
            if generation == self.generation:
                self._from_thread(self._failed, str(error))
            return
        finally:
            if generation == self.generation:
                self.running = False
        if generation != self.generation:
            return
        elapsed = max(1e-6, time.perf_counter() - started)
        self._from_thread(
            self._finished, report, full, report.checked_events / elapsed, incremental
        )

    def _from_thread(self, callback: Callable[..., object], *args: object) -> None:
        """Run ``callback`` on the app's loop, unless the app has quit meanwhile (Textual then
        raises a RuntimeError: no active app, or its loop is closed)."""
        with contextlib.suppress(RuntimeError):
            self.app.call_from_thread(callback, *args)

    def _progress(self, checked: int, seq: int, rate: float) -> None:
        bar = self.query_one("#verify-progress", ProgressBar)
        strip = self.strip
        total = max(strip.head_seq, seq, 1)
        bar.update(total=total, progress=seq)
        self.query_one("#verify-rate", Static).update(
            Text(f" verifying: {checked:,} events checked, {rate:,.0f} events/s", style="dim")
        )

    def _failed(self, message: str) -> None:
        self.query_one("#chain-summary", Static).update(
            literal(f"cannot verify: {message}", "bold red")
        )

    def _finished(self, report: VerifyReport, full: bool, rate: float, first: bool) -> None:
        state = self.state
        if report.scope == "incremental":
            state.signed_up_to = report.from_seq
        if report.last_seq is not None:
            state.verified_seq = max(state.verified_seq, report.last_seq)
            state.head_hash = report.head_hash
        state.breaks.extend(report.breaks)
        if full:
            state.record_breaks = list(report.record_breaks)
            state.records_checked = report.records_checked
            state.records_purged = report.records_purged
            state.full_at_unix_ms = clock.now_ms()
            state.last_rate = rate
            state.signed_up_to = 0
        strip = self.strip
        strip.head_seq = max(strip.head_seq, state.verified_seq)
        bar = self.query_one("#verify-progress", ProgressBar)
        bar.update(total=max(1, state.verified_seq), progress=state.verified_seq)
        self.query_one("#verify-rate", Static).update(
            Text(
                f" last full verification: {state.last_rate:,.0f} events/s;"
                f" new events are verified as they arrive (v verifies everything again)",
                style="dim",
            )
        )
        self._show()
        if first:
            self.action_verify()

    def _show(self) -> None:
        state = self.state
        strip = self.strip
        strip.refresh()
        broken = len(state.breaks) + len(state.record_breaks)
        if broken:
            summary = Text.assemble(
                (
                    f" BROKEN: {len(state.breaks)} broken links,"
                    f" {len(state.record_breaks)} record rows not matching the chain ",
                    "bold white on red",
                )
            )
        else:
            summary = Text.assemble((" INTACT ", "bold black on green"))
        summary.append(f"  verified up to seq {state.verified_seq:,}", style="bold")
        if state.full_at_unix_ms is None:
            done = (
                f"links after the signed checkpoint at seq {state.signed_up_to:,} checked"
                if state.signed_up_to
                else "every link checked"
            )
            summary.append(
                f"  ·  {done}; the full check of every link and record row is running",
                style="dim",
            )
        else:
            summary.append(
                f"  ·  {state.records_checked:,} record rows checked,"
                f" {state.records_purged:,} purged on purpose"
                f"  ·  full check at {timestamp(state.full_at_unix_ms)}",
                style="dim",
            )
        if state.head_hash:
            summary.append(f"\n  head hash {state.head_hash}", style="dim")
        self.query_one("#chain-summary", Static).update(summary)
        table = self.query_one("#breaks-table", DataTable)
        sync_table(
            table,
            [(f"{index}:{item.seq}", self._cells(item)) for index, item in enumerate(state.breaks)],
        )
        self._highlighted()
        records = Text(
            f" record rows not matching the chain: {len(state.record_breaks)}",
            style="bold red" if state.record_breaks else "dim",
        )
        for item in state.record_breaks[:20]:
            records.append("\n  ")
            records.append_text(
                literal(
                    f"{item.table} key {item.key}: {item.code}"
                    f" (event {item.event_seq}) {item.summary}",
                    "red",
                )
            )
        self.query_one("#record-breaks", Static).update(records)

    def _cells(self, item: ChainBreak) -> tuple[Text | str, ...]:
        return (
            Text(str(item.seq), style="bold red"),
            Text(item.code.value, style="red"),
            literal(item.event_id or "-"),
            literal((item.expected or "-")[:16]),
            literal((item.found or "-")[:16]),
            literal(item.summary),
        )

    def set_head(self, seq: int) -> None:
        """The journal's head, so the strip shows what is not verified yet."""
        if seq != self.strip.head_seq:
            self.strip.head_seq = seq
            self.strip.refresh()

    @on(DataTable.RowHighlighted, "#breaks-table")
    def _highlighted(self) -> None:
        key = selected_key(self.query_one("#breaks-table", DataTable))
        self.strip.selected_seq = int(key.split(":")[1]) if key else None

    @on(DataTable.RowSelected, "#breaks-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if key:
            self._show_event(int(key.split(":")[1]))

    @work(group="event")
    async def _show_event(self, seq: int) -> None:
        try:
            events = await self.source.reader.events_after(max(0, seq - 3), limit=5)
        except JournalError as error:
            self.app.notify(str(error), severity="error", markup=False)
            return
        self.app.push_screen(EventDialog(events, seq))
