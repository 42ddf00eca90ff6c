"""Turning untrusted journal content into literal, styled terminal text.

Everything shown came from an agent, a tool or a user. It is always wrapped in Rich ``Text``
objects (never parsed as markup), and control characters (which carry ANSI and OSC escape
sequences) are made visible by :func:`journal_core.terminal_text.printable` first. Redaction
markers are highlighted so an operator sees at a glance what was removed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import orjson
from rich.style import Style
from rich.text import Text

from journal_core.terminal_text import printable

REDACTED_STYLE = Style(color="black", bgcolor="yellow", bold=True)
_MARKER = re.compile(r"<redacted:[a-z0-9_]+>|<redacted>")
_JSON_TOKEN = re.compile(
    r'(?P<key>"(?:[^"\\]|\\.)*"(?=\s*:))|(?P<string>"(?:[^"\\]|\\.)*")'
    r"|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<literal>\btrue\b|\bfalse\b|\bnull\b)"
)
_JSON_STYLES = {
    "key": Style(color="bright_blue"),
    "string": Style(color="green"),
    "number": Style(color="cyan"),
    "literal": Style(color="magenta", italic=True),
}
MAX_LINE_CHARS = 4_000


def literal(text: str, style: Style | str | None = None) -> Text:
    """``text`` as one line of literal terminal text, control characters made visible."""
    shown = printable(text[:MAX_LINE_CHARS] + ("…" if len(text) > MAX_LINE_CHARS else ""))
    result = Text(shown, style=style or "", no_wrap=True, end="")
    mark_redactions(result)
    return result


def mark_redactions(text: Text) -> Text:
    """Highlight ``<redacted:rule>`` markers in place; returns ``text``."""
    for match in _MARKER.finditer(text.plain):
        text.stylize(REDACTED_STYLE, match.start(), match.end())
    return text


def wrap(text: str, width: int, style: Style | str | None = None, indent: str = "") -> list[Text]:
    """Literal text cut into lines of at most ``width`` cells (on spaces where possible)."""
    width = max(10, width)
    lines: list[Text] = []
    for paragraph in text.split("\n"):
        shown = printable(paragraph)
        while True:
            room = width - len(indent)
            if len(shown) <= room:
                lines.append(literal_line(indent + shown, style))
                break
            cut = shown.rfind(" ", 0, room)
            cut = room if cut <= room // 2 else cut
            lines.append(literal_line(indent + shown[:cut], style))
            shown = shown[cut:].lstrip(" ")
    return lines


def literal_line(text: str, style: Style | str | None = None) -> Text:
    """A string as one styled Text line, control characters made visible, redactions marked."""
    result = Text(printable(text), style=style or "", no_wrap=True, end="")
    return mark_redactions(result)


def json_lines(payload: object) -> list[Text]:
    """``payload`` pretty-printed as JSON, one coloured, literal Text per line."""
    try:
        pretty = orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode("utf-8")
    except TypeError:
        pretty = repr(payload)
    lines = []
    for raw in pretty.split("\n"):
        line = Text(printable(raw), no_wrap=True, end="")
        for match in _JSON_TOKEN.finditer(line.plain):
            kind = match.lastgroup
            if kind is not None:
                line.stylize(_JSON_STYLES[kind], match.start(), match.end())
        lines.append(mark_redactions(line))
    return lines


def parse_json(text: str) -> object:
    """Stored JSON text parsed, or the text itself when it is not JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def clock_time(unix_ms: int | None) -> str:
    """``HH:MM:SS.mmm`` (UTC) of a unix-millisecond time, or ``-``."""
    if unix_ms is None:
        return "-"
    return datetime.fromtimestamp(unix_ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]


def timestamp(unix_ms: int | None) -> str:
    """``YYYY-MM-DD HH:MM:SS`` (UTC), or ``-``."""
    if unix_ms is None:
        return "-"
    return datetime.fromtimestamp(unix_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(ms: int | None) -> str:
    """A compact duration: ``850ms``, ``12.3s``, ``4m05s``, ``2h03m``, or ``-``."""
    if ms is None or ms < 0:
        return "-"
    if ms < 1_000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, second = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{second:02d}s"
    hours, minute = divmod(minutes, 60)
    return f"{hours}h{minute:02d}m"


def ago(unix_ms: int | None, now_ms: int) -> str:
    """How long before ``now_ms`` (``3s ago``), or ``-``."""
    if unix_ms is None:
        return "-"
    return f"{duration(max(0, now_ms - unix_ms))} ago"


def short_id(ulid: str | None) -> str:
    """The last eight characters of a ULID (its random part), enough to tell runs apart."""
    return "-" if not ulid else ulid[-8:]


STATE_STYLES = {
    "pending": "yellow",
    "accepted": "yellow",
    "in_progress": "bold cyan",
    "done": "green",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "magenta",
    "cancelling": "magenta",
    "queued": "yellow",
    "starting": "cyan",
    "running": "bold cyan",
    "draining": "cyan",
    "expired": "dim",
    "orphaned": "bold red",
    "allow": "green",
    "deny": "bold red",
    "timeout": "magenta",
    "error": "bold red",
}
RISK_STYLES = {
    "low": "green",
    "medium": "yellow",
    "high": "bold red",
    "critical": "bold white on red",
}


def state_text(state: str | None) -> Text:
    """A state name styled by what it means."""
    if not state:
        return Text("-", style="dim")
    return Text(printable(state), style=STATE_STYLES.get(state, ""))


def risk_text(risk: str) -> Text:
    """A risk level styled by how dangerous it is."""
    return Text(printable(risk.upper()), style=RISK_STYLES.get(risk, "bold"))
