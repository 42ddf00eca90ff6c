"""FTS5: safe MATCH expressions from user text, and keeping an index's structure openable.

Whatever a user types into a search box (operators, quotes, column filters, ``NEAR(``, ``*``)
must be searched for as words, never run as FTS5 syntax.

An FTS5 index lists its segments, level by level, in a *structure record* (row 10 of the
``<table>_data`` shadow table). SQLite before 3.42 (the 3.40 that Python 3.11 ships with among
them) adds a level at every ``'optimize'`` that has work to do and never removes one. Past
2,000 levels FTS5 takes the record for corrupt: the table can then no longer be opened ("vtable
constructor failed"), not even to be rebuilt or dropped. The memory index is optimised at every
purge, so a daemon reached that after about 1,400 purges (found at 1.6M events of the demo
daemon). :func:`structure_levels` reads the level count and :func:`restart_index` starts the
structure over.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from typing import Protocol

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


#: More levels than this and FTS5 refuses the structure record (``FTS5_MAX_SEGMENT``).
STRUCTURE_LEVEL_LIMIT = 2_000
#: Restart a structure deeper than this (``FTS5_MAX_LEVEL``: fixed SQLite versions stay below).
RESTART_LEVELS = 64
_STRUCTURE_ROWID = 10
_STRUCTURE_V2_MARK = b"\xff\x00\x00\x01"  # after the cookie, from SQLite 3.44 on
_EMPTY_STRUCTURE = bytes(7)  # cookie 0, then varints: no levels, no segments, write counter 0


class Executes(Protocol):
    """A connection or a write transaction: anything that runs one statement."""

    def execute(self, sql: str, parameters: Sequence[object] = ..., /) -> sqlite3.Cursor: ...


def structure_levels(conn: Executes, table: str) -> int | None:
    """The number of levels in the structure record of the FTS5 table ``table``.

    Read from the shadow table, so it works on an index too deep to open. None when the record
    is missing or cannot be decoded.
    """
    sql = f"SELECT block FROM {table}_data WHERE id = ?"
    row = conn.execute(sql, (_STRUCTURE_ROWID,)).fetchone()
    if row is None or not isinstance(row[0], bytes):
        return None
    block: bytes = row[0]
    offset = 8 if block[4:8] == _STRUCTURE_V2_MARK else 4
    value = 0
    # An SQLite varint: big-endian groups of 7 bits, the high bit set on all but the last byte.
    for byte in block[offset : offset + 8]:
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value
    return None


def needs_restart(conn: Executes, table: str) -> bool:
    """Whether the structure of ``table`` is deeper than :data:`RESTART_LEVELS` or unreadable."""
    levels = structure_levels(conn, table)
    return levels is None or levels > RESTART_LEVELS


def restart_index(conn: Executes, table: str) -> None:
    """Empty the structure record of the external-content FTS5 table ``table``, then rebuild
    the index from its content table.

    A plain ``'rebuild'`` also starts the structure over, but it has to open the table first,
    which an index past :data:`STRUCTURE_LEVEL_LIMIT` refuses. Runs in the caller's
    transaction; the rebuild deletes every old segment (zeroed with ``secure_delete``).
    """
    conn.execute(
        f"UPDATE {table}_data SET block = ? WHERE id = ?", (_EMPTY_STRUCTURE, _STRUCTURE_ROWID)
    )
    conn.execute(f"INSERT INTO {table} ({table}) VALUES ('rebuild')")


def repair_structure(conn: sqlite3.Connection, table: str) -> bool:
    """Restart the structure of ``table`` if it is deeper than :data:`RESTART_LEVELS` or
    unreadable, in its own IMMEDIATE transaction. True when it did.

    Writers run this when they open a journal, which mends an index that an earlier version
    let grow past :data:`STRUCTURE_LEVEL_LIMIT`.
    """
    if not needs_restart(conn, table):
        return False
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not needs_restart(conn, table):  # another writer restarted it meanwhile
            conn.execute("ROLLBACK")
            return False
        restart_index(conn, table)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return True
