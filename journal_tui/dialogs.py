"""Modal dialogs: an approval decision (reason, time box, confirmation), help, event details."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from journal_core.approvals import Approval
from journal_core.reader import StoredEvent
from journal_tui.render import json_lines, literal, parse_json, risk_text, timestamp

DECISIONS = {
    "allow_once": ("allow", "once", "Allow once"),
    "allow_session": ("allow", "session", "Allow for this session"),
    "allow_timeboxed": ("allow", "timeboxed", "Allow for a time box"),
    "deny": ("deny", "once", "Deny"),
}


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    """What the operator chose in the decision dialog."""

    decision: str
    scope: str
    reason: str | None
    ttl_ms: int | None


class DecisionDialog(ModalScreen[DecisionRequest | None]):
    """Confirm a decision: optional reason, minutes for a time box, and for an allow of a high or
    critical risk request an explicit confirmation."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, approval: Approval, choice: str) -> None:
        super().__init__()
        self.approval = approval
        self.choice = choice
        self.decision, self.scope, self.label = DECISIONS[choice]
        self.dangerous = self.decision == "allow" and approval.prompt.risk_level in (
            "high",
            "critical",
        )

    def compose(self) -> ComposeResult:
        prompt = self.approval.prompt
        with Vertical(id="decision-dialog", classes="dialog"):
            title = Text.assemble((f"{self.label}: ", "bold"))
            title.append_text(literal(prompt.title or self.approval.request_summary))
            yield Static(title, classes="dialog-title")
            risk = Text("risk ")
            risk.append_text(risk_text(prompt.risk_level))
            risk.append(f"   subject {self.approval.subject_type}")
            yield Static(risk)
            yield Static(literal(self.approval.request_summary), classes="dialog-summary")
            if self.scope == "timeboxed":
                yield Label("Allow for how many minutes?")
                yield Input("15", id="ttl", type="integer", max_length=6)
            yield Label("Reason (optional)")
            yield Input(placeholder="why, for the audit trail", id="reason", max_length=500)
            if self.dangerous:
                yield Static(
                    Text(
                        f"This allows a {prompt.risk_level.upper()} risk action. Press the red"
                        " button (or Enter on it) to confirm.",
                        style="bold red",
                    ),
                    id="danger",
                )
            with Horizontal(classes="dialog-buttons"):
                yield Button(
                    self.label,
                    id="confirm",
                    variant="error" if self.dangerous or self.decision == "deny" else "success",
                )
                yield Button("Cancel", id="cancel")
            yield Static("", id="dialog-error")

    def on_mount(self) -> None:
        self.query_one("#ttl" if self.scope == "timeboxed" else "#reason", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "ttl":
            self.query_one("#reason", Input).focus()
        elif self.dangerous:
            self.query_one("#confirm", Button).focus()
        else:
            self._confirm()

    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        ttl_ms: int | None = None
        if self.scope == "timeboxed":
            raw = self.query_one("#ttl", Input).value.strip()
            if not raw.isdigit() or not 1 <= int(raw) <= 525_600:
                self.query_one("#dialog-error", Static).update(
                    Text("Minutes must be a whole number from 1 to 525600.", style="bold red")
                )
                self.query_one("#ttl", Input).focus()
                return
            ttl_ms = int(raw) * 60_000
        reason = self.query_one("#reason", Input).value.strip() or None
        self.dismiss(DecisionRequest(self.decision, self.scope, reason, ttl_ms))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without deciding."""
        self.dismiss(None)


HELP = """\
Global
  1 2 3 4     Sessions / Tool jobs / Approvals / Chain
  ?           this help          q  quit          p  pause or resume live updates
Lists
  ↑ ↓  Enter  move, open          /  search sessions and transcripts    s  filter by state
Transcript and output views
  End / G     follow new lines    Home / g  top     ↑ PgUp  scroll (pauses following)
  z           unfold / fold long tool arguments     Esc  back
Approvals (pending queue)
  a  allow once    s  allow for the session    t  allow for a time box    d  deny
  Each asks for an optional reason; allowing a high or critical risk asks for confirmation.
Chain
  v  verify the whole chain again    Enter  show the event of a broken link and its neighbours
"""


class HelpDialog(ModalScreen[None]):
    """The keys, on one page."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="help-dialog"):
            yield Static(Text("Keys", style="bold"), classes="dialog-title")
            yield Static(Text(HELP))
            yield Button("Close", id="close")

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        """Close the help."""
        self.dismiss(None)


class EventDialog(ModalScreen[None]):
    """A journal event with every stored field, and its neighbours in the chain."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "close", "Close")]

    def __init__(self, events: list[StoredEvent], focus_seq: int) -> None:
        super().__init__()
        self.events = events
        self.focus_seq = focus_seq

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="event-dialog"):
            yield Static(
                Text(f"Event {self.focus_seq} and its neighbours", style="bold"),
                classes="dialog-title",
            )
            with VerticalScroll(id="event-body"):
                if not any(event.seq == self.focus_seq for event in self.events):
                    yield Static(
                        Text(
                            f"seq {self.focus_seq} is not in the journal (a gap)", style="bold red"
                        )
                    )
                for event in self.events:
                    card = Static(self._describe(event), classes="event-card")
                    if event.seq == self.focus_seq:
                        card.id = "focused-event"
                    yield card
            yield Button("Close", id="close")

    def on_mount(self) -> None:
        """Bring the broken link's card into view."""
        for card in self.query("#focused-event"):
            self.call_after_refresh(card.scroll_visible, animate=False, top=True)

    def _describe(self, event: StoredEvent) -> Text:
        focus = event.seq == self.focus_seq
        text = Text(
            f"seq {event.seq}{'  ◀ the broken link' if focus else ''}\n",
            style="bold red" if focus else "bold",
        )
        fields = [
            ("event_id", event.event_id),
            ("kind", f"{event.kind} {event.kind_name}"),
            ("actor", f"{event.actor} {event.actor_name}"),
            ("session", event.session_id),
            ("run", event.run_id),
            ("principal", event.principal),
            ("device", event.device_id),
            ("channel", event.channel or "-"),
            ("time", timestamp(event.timestamp_unix_ms)),
            ("committed", timestamp(event.created_at_unix_ms)),
            ("redacted", ", ".join(event.redaction_rules) or "no"),
            ("prev_hash", event.prev_hash),
            ("hash", event.hash),
        ]
        for name, value in fields:
            text.append(f"  {name:<10} ", style="dim")
            text.append_text(literal(value))
            text.append("\n")
        text.append("  payload\n", style="dim")
        for line in json_lines(parse_json(event.payload_json)):
            text.append("    ")
            text.append_text(line)
            text.append("\n")
        return text

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        """Close the dialog."""
        self.dismiss(None)
