"""Turning user text into a safe FTS5 MATCH expression.

Whatever a user types into a search box (operators, quotes, column filters, ``NEAR(``, ``*``)
must be searched for as words, never run as FTS5 syntax.
"""

from __future__ import annotations

import re

MAX_QUERY_WORDS = 32
_WORD = re.compile(r"\w+")


def match_expression(
    text: str, *, every_word: bool, max_words: int = MAX_QUERY_WORDS
) -> str | None:
    """Each distinct word of ``text`` quoted, joined so that every word (AND) or any (OR) matches.

    None when ``text`` has no word. ``\\w`` never matches ``"``, so a quoted word can neither end
    early nor carry an operator.
    """
    words: list[str] = []
    for word in _WORD.findall(text):
        if word not in words:
            words.append(word)
        if len(words) == max_words:
            break
    if not words:
        return None
    return (" " if every_word else " OR ").join(f'"{word}"' for word in words)
