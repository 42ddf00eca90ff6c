"""Laying out a session transcript as lines: one block per entry, streamed tokens merged.

Consecutive ``model_token`` entries of a run form one block that grows as tokens arrive. Tool
calls and results show their arguments and output as pretty JSON, folded after a few lines.
Each entry type has its own label and colour, so a transcript can be read at a glance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text

from journal_core.tape import TapeEntry
from journal_tui.render import clock_time, json_lines, literal_line, parse_json, short_id, wrap

FOLD_AFTER = 8
FOLDED_SHOWS = 6
LABELS = {
    "message.received": ("USER", "bold cyan"),
    "message.replied": ("REPLY", "bold green"),
    "model_token": ("MODEL", "bold white"),
    "tool_proposal": ("TOOL CALL", "bold yellow"),
    "tool_result": ("TOOL RESULT", "bold magenta"),
    "tool_approval_request": ("APPROVAL ASKED", "bold red"),
    "tool_approval_response": ("APPROVAL", "bold red"),
    "status": ("STATUS", "dim"),
}
_BODY_STYLES = {
    "message.received": "cyan",
    "message.replied": "green",
    "model_token": "",
}


@dataclass(slots=True)
class Block:
    """One entry (or a run of streamed tokens) and the lines it takes."""

    event_type: str
    run_id: str
    run_number: int
    created_at_unix_ms: int
    first_of_run: bool
    payloads: list[object] = field(default_factory=list)
    start: int = 0
    lines: list[Text] = field(default_factory=list)


def _text_of(payload: object) -> str | None:
    if isinstance(payload, dict):
        for key in ("text", "content", "message"):
            value = payload.get(key)
            if isinstance(value, str):
                return value
    if isinstance(payload, str):
        return payload
    return None


class TranscriptLayout:
    """Blocks of a transcript and the lines they render to at a given width."""

    def __init__(self, width: int = 100) -> None:
        self.width = width
        self.blocks: list[Block] = []
        self.unfolded = False
        self._run_numbers: dict[str, int] = {}
        self._line_count = 0

    def run_number(self, run_id: str) -> int:
        """1 for the session's first run, 2 for the second ..."""
        if run_id not in self._run_numbers:
            self._run_numbers[run_id] = len(self._run_numbers) + 1
        return self._run_numbers[run_id]

    def add(self, entries: list[TapeEntry]) -> tuple[int, list[Text]]:
        """Take new entries; returns (first line to replace, the lines from there on)."""
        replace_from = self._line_count
        touched: set[int] = set()
        for entry in entries:
            payload = parse_json(entry.payload_json)
            last = self.blocks[-1] if self.blocks else None
            if (
                last is not None
                and entry.event_type == "model_token"
                and last.event_type == "model_token"
                and last.run_id == entry.run_id
            ):
                last.payloads.append(payload)
                if id(last) not in touched:
                    touched.add(id(last))
                    replace_from = min(replace_from, last.start)
                continue
            block = Block(
                entry.event_type,
                entry.run_id,
                self.run_number(entry.run_id),
                entry.created_at_unix_ms,
                last is None or last.run_id != entry.run_id,
                [payload],
            )
            self.blocks.append(block)
            touched.add(id(block))
        lines: list[Text] = []
        position = replace_from
        for block in self._blocks_from(replace_from):
            block.start = position
            block.lines = self._render(block)
            lines.extend(block.lines)
            position += len(block.lines)
        self._line_count = position
        return replace_from, lines

    def _blocks_from(self, line: int) -> list[Block]:
        """The blocks starting at or after ``line`` (new blocks start at the end)."""
        index = len(self.blocks)
        while index > 0 and (
            self.blocks[index - 1].start >= line or not self.blocks[index - 1].lines
        ):
            index -= 1
        return self.blocks[index:]

    def relayout(self, width: int | None = None) -> list[Text]:
        """Every line again (after a resize or a fold toggle)."""
        if width is not None:
            self.width = width
        lines: list[Text] = []
        for block in self.blocks:
            block.start = len(lines)
            block.lines = self._render(block)
            lines.extend(block.lines)
        self._line_count = len(lines)
        return lines

    def _render(self, block: Block) -> list[Text]:
        label, style = LABELS.get(block.event_type, (block.event_type.upper(), "bold"))
        lines: list[Text] = []
        if block.first_of_run:
            rule = f"── run {block.run_number} · {short_id(block.run_id)} "
            lines.append(Text(rule + "─" * max(0, self.width - len(rule)), style="dim", end=""))
        header = Text.assemble((f"{clock_time(block.created_at_unix_ms)}  ", "dim"), end="")
        header.append(f" {label} ", style=f"{style} reverse")
        lines.append(header)
        lines.extend(self._body(block))
        lines.append(Text("", end=""))
        return lines

    def _body(self, block: Block) -> list[Text]:
        kind = block.event_type
        width = self.width - 2
        if kind == "model_token":
            streamed = "".join(_text_of(payload) or "" for payload in block.payloads)
            return wrap(streamed, width, indent="  ")
        payload = block.payloads[0]
        text = _text_of(payload)
        if kind in _BODY_STYLES and text is not None:
            return wrap(text, width, _BODY_STYLES[kind], indent="  ")
        if kind == "tool_proposal" and isinstance(payload, dict):
            head = f"  {payload.get('tool', '?')}  risk {payload.get('risk', '?')}"
            return [literal_line(head, "yellow"), *self._folded(payload.get("arguments", {}))]
        if kind == "tool_approval_response" and isinstance(payload, dict):
            decision = str(payload.get("decision", "?"))
            scope = payload.get("scope") or ""
            by = payload.get("decided_by") or "nobody"
            style = "green" if decision == "allow" else "red"
            return [literal_line(f"  {decision} {scope} by {by}".rstrip(), style)]
        return self._folded(payload)

    def _folded(self, payload: object) -> list[Text]:
        body = [Text("  ", end="") + line for line in json_lines(payload)]
        if self.unfolded or len(body) <= FOLD_AFTER:
            return body
        hidden = len(body) - FOLDED_SHOWS
        marker = Text.assemble((f"  ▸ {hidden} more lines (z unfolds)", "italic dim"), end="")
        return [*body[:FOLDED_SHOWS], marker]
