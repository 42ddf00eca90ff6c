"""The Approvals pane: the pending queue with live countdowns, the selected request, decisions,
and the history of decided requests.

A decision goes through the core API as the configured decider on the channel ``tui``. A decision
that lost a race (another inspector decided first, or the request expired) is shown as exactly
that, never as success.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import Button, DataTable, Static

from journal_core import JournalError
from journal_core.approvals import Approval, list_decided, list_pending
from journal_core.errors import ApprovalAlreadyDecidedError, ApprovalExpiredError
from journal_tui import clock
from journal_tui.dialogs import DecisionDialog, DecisionRequest
from journal_tui.render import (
    clock_time,
    duration,
    json_lines,
    literal,
    risk_text,
    short_id,
    state_text,
    timestamp,
)
from journal_tui.source import Source
from journal_tui.tables import selected_key, sync_table


def countdown(approval: Approval, now: int) -> Text:
    """Time left before the request expires, red when under ten seconds."""
    left = approval.expires_at_unix_ms - now
    if left <= 0:
        return Text("expired", style="bold magenta")
    seconds = left // 1000
    style = "bold red" if seconds < 10 else "yellow" if seconds < 30 else ""
    return Text(f"{seconds // 60}:{seconds % 60:02d}", style=style)


class ApprovalsPane(Vertical):
    """Pending requests (most urgent first), the selected one in full, and the history."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "decide('allow_once')", "Allow once"),
        Binding("s", "decide('allow_session')", "Allow session"),
        Binding("t", "decide('allow_timeboxed')", "Allow time box"),
        Binding("d", "decide('deny')", "Deny"),
        Binding("c", "clear_filter", "All runs", show=False),
    ]

    def __init__(self, source: Source) -> None:
        super().__init__(id="approvals-pane")
        self.source = source
        self.pending: dict[str, Approval] = {}
        self.run_filter: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="approvals-banner", classes="pane-status")
        with Horizontal(id="approvals-top"):
            queue: DataTable[Text | str] = DataTable(id="pending-table", cursor_type="row")
            yield queue
            with VerticalScroll(id="approval-details-scroll"):
                yield Static("", id="approval-details")
        with Horizontal(id="decision-buttons"):
            yield Button("Allow once (a)", id="decide-allow_once", variant="success")
            yield Button("Allow for session (s)", id="decide-allow_session", variant="primary")
            yield Button("Allow time box (t)", id="decide-allow_timeboxed", variant="primary")
            yield Button("Deny (d)", id="decide-deny", variant="error")
        yield Static(Text(" decided (newest first)", style="bold"), classes="pane-status")
        history: DataTable[Text | str] = DataTable(
            id="history-table", cursor_type="row", zebra_stripes=True
        )
        yield history
        yield Static("", id="approvals-result", classes="pane-status")

    def on_mount(self) -> None:
        queue = self.query_one("#pending-table", DataTable)
        for label, key in (
            ("Expires in", "left"),
            ("Risk", "risk"),
            ("Subject", "subject"),
            ("Summary", "summary"),
            ("Run", "run"),
        ):
            queue.add_column(label, key=key)
        history = self.query_one("#history-table", DataTable)
        for label, key in (
            ("Decided", "at"),
            ("Decision", "decision"),
            ("Scope", "scope"),
            ("By", "by"),
            ("Via", "via"),
            ("Risk", "risk"),
            ("Summary", "summary"),
            ("Reason", "reason"),
        ):
            history.add_column(label, key=key)
        self._banner()
        if self.source.read_only:
            for button in self.query("#decision-buttons Button").results(Button):
                button.disabled = True
        self.set_interval(1.0, self._tick)
        self.reload()

    def _banner(self) -> None:
        if self.source.read_only:
            text = Text.assemble((" read-only: decisions are disabled", "bold yellow"))
        else:
            text = Text(
                " a allow once · s allow for the session · t allow for a time box · d deny",
                style="bold",
            )
            text.append(
                f"    deciding as {self.source.decider} via {self.source.decision_channel}",
                style="dim",
            )
        if self.run_filter:
            text.append(f"   run {short_id(self.run_filter)} only (c shows all)", style="cyan")
        self.query_one("#approvals-banner", Static).update(text)

    def action_focus_main(self) -> None:
        """Put the keyboard on the pending queue."""
        self.query_one("#pending-table", DataTable).focus()

    def filter_run(self, run_id: str | None) -> None:
        """Show only the requests of ``run_id`` (None: all)."""
        self.run_filter = run_id
        self._banner()
        self.reload()

    def action_clear_filter(self) -> None:
        """Show the requests of every run."""
        self.filter_run(None)

    def reload(self) -> None:
        """Read the queue and the history again."""
        self._load()

    @work(exclusive=True, group="approvals")
    async def _load(self) -> None:
        if not self.source.is_open:
            return
        reader = self.source.reader
        try:
            pending = await list_pending(reader, now_ms=clock.now_ms())
            decided = await list_decided(reader, limit=200)
        except JournalError as error:
            self.query_one("#approvals-result", Static).update(literal(str(error), "bold red"))
            return
        if self.run_filter:
            pending = [a for a in pending if a.run_id == self.run_filter]
            decided = [a for a in decided if a.run_id == self.run_filter]
        now = clock.now_ms()
        self.pending = {approval.approval_id: approval for approval in pending}
        with contextlib.suppress(NoMatches):  # the app quit while the query ran
            sync_table(
                self.query_one("#pending-table", DataTable),
                [(a.approval_id, self._pending_cells(a, now)) for a in pending],
            )
            sync_table(
                self.query_one("#history-table", DataTable),
                [(a.approval_id, self._history_cells(a)) for a in decided],
            )
            self._details()

    def _pending_cells(self, approval: Approval, now: int) -> tuple[Text | str, ...]:
        return (
            countdown(approval, now),
            risk_text(approval.prompt.risk_level),
            literal(approval.subject_type),
            literal(approval.request_summary),
            short_id(approval.run_id),
        )

    def _history_cells(self, approval: Approval) -> tuple[Text | str, ...]:
        return (
            clock_time(approval.resolved_at_unix_ms),
            state_text(approval.decision),
            literal(approval.decision_scope or "-"),
            literal(approval.decided_by or "-"),
            literal(approval.decision_channel or "-"),
            risk_text(approval.prompt.risk_level),
            literal(approval.request_summary),
            literal(approval.decision_reason or ""),
        )

    def _tick(self) -> None:
        """Move the countdowns on, without a query."""
        now = clock.now_ms()
        table = self.query_one("#pending-table", DataTable)
        for key, approval in self.pending.items():
            try:
                table.update_cell(key, "left", countdown(approval, now))
            except Exception:
                continue

    @on(DataTable.RowHighlighted, "#pending-table")
    def _selected(self) -> None:
        self._details()

    def _selected_approval(self) -> Approval | None:
        key = selected_key(self.query_one("#pending-table", DataTable))
        return self.pending.get(key) if key else None

    def _details(self) -> None:
        approval = self._selected_approval()
        details = self.query_one("#approval-details", Static)
        if approval is None:
            details.update(Text("No pending approvals.", style="dim"))
            return
        prompt = approval.prompt
        text = Text()
        text.append_text(literal(prompt.title or approval.request_summary, "bold"))
        text.append("\n")
        text.append("risk ", style="dim")
        text.append_text(risk_text(prompt.risk_level))
        text.append(f"   {approval.subject_type} ", style="dim")
        text.append_text(literal(approval.subject_id))
        text.append("\n")
        text.append_text(literal(prompt.summary or approval.request_summary))
        text.append("\n")
        text.append(f"requested {timestamp(approval.requested_at_unix_ms)} by ", style="dim")
        text.append_text(literal(approval.principal))
        text.append(
            f"   session {short_id(approval.session_id)}  run {short_id(approval.run_id)}",
            style="dim",
        )
        text.append(
            f"   expires {timestamp(approval.expires_at_unix_ms)}"
            f" ({duration(approval.expires_at_unix_ms - approval.requested_at_unix_ms)})\n",
            style="dim",
        )
        text.append("options: ", style="dim")
        text.append(", ".join(prompt.options))
        text.append("\n")
        if prompt.policy_explanation:
            text.append("policy: ", style="dim")
            text.append_text(literal(prompt.policy_explanation))
            text.append("\n")
        text.append("arguments and details:\n", style="dim")
        for line in json_lines(dict(prompt.details)):
            text.append("  ")
            text.append_text(line)
            text.append("\n")
        details.update(text)

    @on(Button.Pressed, "#decision-buttons Button")
    def _clicked(self, event: Button.Pressed) -> None:
        if event.button.id:
            self.action_decide(event.button.id.removeprefix("decide-"))

    def action_decide(self, choice: str) -> None:
        """Open the decision dialog for the selected request."""
        approval = self._selected_approval()
        result = self.query_one("#approvals-result", Static)
        if self.source.read_only:
            result.update(Text(" read-only: decisions are disabled", style="bold yellow"))
            return
        if approval is None:
            result.update(Text(" no pending request is selected", style="yellow"))
            return
        offered = {
            "allow_once": "allow_once",
            "allow_session": "allow_session",
            "allow_timeboxed": "allow_timeboxed",
        }
        if choice in offered and offered[choice] not in approval.prompt.options:
            result.update(
                Text(f" this request does not offer {choice.replace('_', ' ')}", style="yellow")
            )
            return

        def chosen(request: DecisionRequest | None) -> None:
            if request is not None:
                self._decide(approval, request)

        self.app.push_screen(DecisionDialog(approval, choice), chosen)

    @work(group="decide")
    async def _decide(self, approval: Approval, request: DecisionRequest) -> None:
        result = self.query_one("#approvals-result", Static)
        try:
            decided = await self.source.decide(
                approval.approval_id,
                decision=request.decision,
                scope=request.scope,
                reason=request.reason,
                ttl_ms=request.ttl_ms,
            )
        except ApprovalAlreadyDecidedError as error:
            text = Text.assemble(
                (" NOT RECORDED: someone else decided first: ", "bold white on red")
            )
            text.append(" ")
            text.append_text(
                literal(
                    f"{error.decision} ({error.scope}) by {error.decided_by} via {error.channel}"
                )
            )
            result.update(text)
            self.app.notify(
                f"Another inspector decided first: {error.decision}", severity="error", markup=False
            )
        except ApprovalExpiredError:
            result.update(
                Text(
                    " NOT RECORDED: the request expired before the decision",
                    style="bold white on red",
                )
            )
            self.app.notify(
                "The request had expired; nothing was recorded", severity="error", markup=False
            )
        except JournalError as error:
            result.update(literal(f" NOT RECORDED: {error}", "bold red"))
        else:
            if decided.decision is None:
                result.update(
                    Text(
                        " sent: the daemon's shipper applies it to the daemon's journal when it"
                        " next runs (the first decision there wins)",
                        style="bold yellow",
                    )
                )
                self.reload()
                return
            text = Text.assemble((" recorded: ", "bold green"))
            text.append_text(state_text(decided.decision))
            text.append(f" {decided.decision_scope} for ")
            text.append_text(literal(decided.request_summary))
            result.update(text)
        self.reload()
