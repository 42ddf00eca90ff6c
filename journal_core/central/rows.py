"""Record rows whose text PostgreSQL cannot hold as is: text with NUL characters.

A journal file's free text (a tool's output, a session label) may contain NUL, which a
PostgreSQL ``text`` value cannot. Such a row is stored centrally twice: in its table with each NUL
shown as ``␀`` (U+2400, what the inspector displays), and, exactly, in ``record_raw`` as the
concatenated tagged encoding of its values (the encoding record digests hash, ``docs/chain.md``).
Verification recomputes the digest from the exact copy and checks that the shown row is the exact
one with NUL replaced, so neither copy can be altered unnoticed.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from journal_core import records
from journal_core.chain import Value, encode_values
from journal_core.records import RecordSpec

#: What a NUL becomes in a central ``text`` value.
NUL_SHOWN = "\u2400"

_LEN = struct.Struct(">I")
_INT = struct.Struct(">q")
_REAL = struct.Struct(">d")


def has_nul(values: Sequence[Value]) -> bool:
    """True when a text value holds a NUL character."""
    return any(isinstance(value, str) and "\x00" in value for value in values)


def shown(values: Sequence[Value]) -> tuple[Value, ...]:
    """The values as the central table holds them: every NUL shown as ``␀``."""
    return tuple(
        value.replace("\x00", NUL_SHOWN) if isinstance(value, str) else value for value in values
    )


def pack(values: Sequence[Value]) -> bytes:
    """The exact values, in the tagged encoding record digests hash."""
    return encode_values(values)


def unpack(data: bytes) -> tuple[Value, ...]:
    """The values of :func:`pack` (text and blobs both come back as ``bytes``: they encode alike).

    Raises ValueError on bytes that are not such an encoding.
    """
    values: list[Value] = []
    offset = 0
    while offset < len(data):
        tag = data[offset]
        offset += 1
        if tag == 0:
            values.append(None)
        elif tag == 1:
            (size,) = _LEN.unpack_from(data, offset)
            offset += _LEN.size
            if offset + size > len(data):
                raise ValueError("a text value runs past the end")
            values.append(data[offset : offset + size])
            offset += size
        elif tag == 2:
            values.append(_INT.unpack_from(data, offset)[0])
            offset += _INT.size
        elif tag == 3:
            values.append(_REAL.unpack_from(data, offset)[0])
            offset += _REAL.size
        else:
            raise ValueError(f"unknown value tag {tag}")
    return tuple(values)


def matches_shown(exact: Sequence[Value], stored: Sequence[Value]) -> bool:
    """True when ``stored`` (the central table's row) is ``exact`` with NUL shown as ``␀``."""
    if len(exact) != len(stored):
        return False
    for raw, value in zip(exact, stored, strict=True):
        if isinstance(value, str):
            if not isinstance(raw, bytes):
                return False
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                return False
            if text.replace("\x00", NUL_SHOWN) != value:
                return False
        elif raw != value:
            return False
    return True


def key_text(spec: RecordSpec, values: Sequence[Value]) -> str:
    """The key text of a row of ``spec.columns`` (as record events name it)."""
    return records.key_text([values[spec.columns.index(column)] for column in spec.key_columns])


def split_rows(
    spec: RecordSpec, rows: Sequence[Sequence[Value]]
) -> tuple[list[tuple[Value, ...]], list[tuple[str, int, bytes]], list[str]]:
    """Rows (``spec.columns`` then ``event_seq``) as the central table takes them.

    Returns the rows to store (NUL shown as U+2400), the exact copies of those that held NUL
    (key, event seq, packed values) and the keys of the rows that did not (whose exact copies
    from an earlier state must go).
    """
    stored: list[tuple[Value, ...]] = []
    exact: list[tuple[str, int, bytes]] = []
    clean: list[str] = []
    for row in rows:
        values, event_seq = row[:-1], row[-1]
        if has_nul(values):
            assert isinstance(event_seq, int)
            stored.append((*shown(values), event_seq))
            exact.append((key_text(spec, values), event_seq, pack(values)))
        else:
            stored.append(tuple(row))
            clean.append(key_text(spec, values))
    return stored, exact, clean
