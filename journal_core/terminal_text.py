"""Making untrusted text safe to print on a terminal.

Everything in a journal came from an agent, a tool or a user. Before any of it reaches a
terminal, control characters (C0, DEL, C1, which carry ANSI and OSC escape sequences) and
bidirectional overrides are made visible as escapes, so they can neither style, move, retitle
nor copy anything, and the operator still sees that they were there.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff]")
_UNSAFE_WITH_NEWLINES = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control or direction-changing character shown as an escape.

    Tabs are kept; newlines are kept only with ``keep_newlines`` (otherwise shown as ``\\x0a``,
    so that one record stays on one line).
    """
    pattern = _UNSAFE if keep_newlines else _UNSAFE_WITH_NEWLINES
    if text.isascii() and text.isprintable():
        return text
    return pattern.sub(_escape, text)


_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff]")


def safe_json_text(text: str) -> str:
    """Serialised JSON with the characters a terminal acts on written as ``\\u`` escapes.

    orjson already escapes C0 control characters; DEL, C1 controls and direction overrides are
    valid raw in JSON strings, so they are escaped here. The result is equivalent JSON.
    """
    return _UNSAFE_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
