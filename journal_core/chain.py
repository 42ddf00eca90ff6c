"""The hash chain: the byte encoding of a link and the verification of a chain of rows.

The encoding is specified in ``docs/chain.md``; this module is its reference implementation.
Every stored column of an event except ``hash`` itself is bound into the link, each value with a
type tag and (for text) a length prefix, after a domain tag. The payload is hashed as the exact
UTF-8 bytes stored, never re-serialised. The first link's ``prev_hash`` is derived from the
journal id, so a chain cannot be moved from one journal to another.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

CHAIN_ALGORITHM = "journal-chain-v1/sha256"
DOMAIN_TAG = b"journal-chain-v1\x00"
GENESIS_TAG = b"journal-chain-v1/genesis\x00"

#: The stored columns bound into a link, in preimage order (``prev_hash`` first).
LINK_COLUMNS: tuple[str, ...] = (
    "prev_hash",
    "seq",
    "event_ulid",
    "session_ulid",
    "run_ulid",
    "kind",
    "actor",
    "timestamp_unix_ms",
    "created_at_unix_ms",
    "principal",
    "device_id",
    "channel",
    "redacted",
    "redaction_rules",
    "payload_json",
)

_TAG_NULL = b"\x00"
_TAG_TEXT = b"\x01"
_TAG_INT = b"\x02"
_TAG_REAL = b"\x03"
_PACK_LEN = struct.Struct(">I").pack
_PACK_INT = struct.Struct(">q").pack
_PACK_REAL = struct.Struct(">d").pack

Value = str | bytes | int | float | None


def encode_value(value: Value) -> bytes:
    """The tagged encoding of one column value (see ``docs/chain.md``)."""
    if value is None:
        return _TAG_NULL
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes):
        return _TAG_TEXT + _PACK_LEN(len(value)) + value
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 63):
            raise ValueError(f"integer {value} does not fit in 64 bits")
        return _TAG_INT + _PACK_INT(value)
    if isinstance(value, float):
        return _TAG_REAL + _PACK_REAL(value)
    raise TypeError(f"cannot encode {type(value).__name__} in a chain link")


def link_preimage(values: Sequence[Value]) -> bytes:
    """The exact bytes hashed for a link: the domain tag and every value of ``LINK_COLUMNS``."""
    if len(values) != len(LINK_COLUMNS):
        raise ValueError(f"a link has {len(LINK_COLUMNS)} values, got {len(values)}")
    return DOMAIN_TAG + encode_values(values)


# The row layout of journal_events, with each run of fixed-width parts between two texts packed
# by one call: the tag and length of a text, the tagged integers after it and the next text's
# tag and length. Calling encode_value once per column cost ~70% of a full verify.
_PACK_TEXT_HEAD = struct.Struct(">BI").pack
_PACK_SEQ_TEXT_HEAD = struct.Struct(">BqBI").pack
_PACK_FOUR_INTS_TEXT_HEAD = struct.Struct(">BqBqBqBqBI").pack
_PACK_TAGGED_INT = struct.Struct(">Bq").pack
# The tag and length of every text shorter than this, ready-made: indexing a tuple is cheaper
# than a call. Hashes, ULIDs, device ids and most payloads are shorter; a longer text (other
# than a payload, whose length is checked) raises IndexError and takes the fallback.
_TEXT_HEADS_BELOW = 4096
_TEXT_HEADS = tuple(_PACK_TEXT_HEAD(1, length) for length in range(_TEXT_HEADS_BELOW))
_EMPTY = b""


def encode_values(values: Iterable[Value]) -> bytes:
    """The encodings of ``values``, concatenated: ``b"".join(map(encode_value, values))``.

    Faster for the common types (text, integers, NULL), which are encoded here without a call
    per value; any other value (and an integer beyond 64 bits) goes through
    :func:`encode_value`, the reference. ``tests/test_chain.py`` proves the bytes identical.
    """
    parts: list[bytes] = []
    append = parts.append
    heads = _TEXT_HEADS
    for value in values:
        if type(value) is str:
            data = value.encode("utf-8", "surrogatepass")
            length = len(data)
            append(heads[length] if length < _TEXT_HEADS_BELOW else _PACK_TEXT_HEAD(1, length))
            append(data)
        elif type(value) is int and -(1 << 63) <= value < (1 << 63):
            append(_PACK_TAGGED_INT(2, value))
        elif value is None:
            append(_TAG_NULL)
        else:
            append(encode_value(value))
    return b"".join(parts)


def _layout_preimage(row: Sequence[Any]) -> bytes:
    """:func:`link_preimage` of a row in the column types of ``journal_events``, faster.

    The first ``len(LINK_COLUMNS)`` values of ``row`` are used (a stored hash after them is
    ignored). TEXT must be ``bytes``; ``channel`` and ``redaction_rules`` may be None. A value of
    any other type that sqlite3 can return (a ``str``, an integer or float where text belongs,
    text or a float where an integer belongs, NULL in a NOT NULL column, an integer beyond 64
    bits) raises ``TypeError`` or ``struct.error`` rather than encoding differently, so callers
    fall back to :func:`link_preimage`: ``bytes.join`` refuses ``str``, ``len`` refuses numbers
    and None, ``struct`` refuses non-integers and out-of-range integers. A text of 4 KiB or
    more in a column whose head is ready-made raises ``IndexError`` (falls back too). (Types
    sqlite3 never returns, such as ``bytearray``, are not screened.) ``tests/test_chain.py``
    proves the bytes identical to :func:`link_preimage`.
    """
    (
        prev_hash,
        seq,
        event_ulid,
        session_ulid,
        run_ulid,
        kind,
        actor,
        timestamp_unix_ms,
        created_at_unix_ms,
        principal,
        device_id,
        channel,
        redacted,
        redaction_rules,
        payload_json,
    ) = row[:15]
    heads = _TEXT_HEADS
    payload_length = len(payload_json)
    return b"".join(
        (
            DOMAIN_TAG,
            heads[len(prev_hash)],
            prev_hash,
            _PACK_SEQ_TEXT_HEAD(2, seq, 1, len(event_ulid)),
            event_ulid,
            heads[len(session_ulid)],
            session_ulid,
            heads[len(run_ulid)],
            run_ulid,
            _PACK_FOUR_INTS_TEXT_HEAD(
                2,
                kind,
                2,
                actor,
                2,
                timestamp_unix_ms,
                2,
                created_at_unix_ms,
                1,
                len(principal),
            ),
            principal,
            heads[len(device_id)],
            device_id,
            _TAG_NULL if channel is None else heads[len(channel)],
            _EMPTY if channel is None else channel,
            _PACK_TAGGED_INT(2, redacted),
            _TAG_NULL if redaction_rules is None else heads[len(redaction_rules)],
            _EMPTY if redaction_rules is None else redaction_rules,
            heads[payload_length]
            if payload_length < _TEXT_HEADS_BELOW
            else _PACK_TEXT_HEAD(1, payload_length),
            payload_json,
        )
    )


def link_hash(values: Sequence[Value]) -> str:
    """Lower-case hex SHA-256 of :func:`link_preimage`."""
    if len(values) != len(LINK_COLUMNS):
        raise ValueError(f"a link has {len(LINK_COLUMNS)} values, got {len(values)}")
    try:
        # The writer's values are str: encoded as encode_value encodes them.
        preimage = _layout_preimage(
            [
                value.encode("utf-8", "surrogatepass") if type(value) is str else value
                for value in values
            ]
        )
    except (TypeError, IndexError, struct.error):
        preimage = link_preimage(values)
    return hashlib.sha256(preimage).hexdigest()


def genesis_prev_hash(journal_id: str) -> str:
    """The ``prev_hash`` of a journal's first event, bound to the journal id."""
    return hashlib.sha256(GENESIS_TAG + encode_value(journal_id)).hexdigest()


class BreakCode(enum.StrEnum):
    """Why a link is broken. The names are the original's, so reports can be compared."""

    MISSING_EVENT = "missing_event"
    PREV_HASH_MISMATCH = "prev_hash_mismatch"
    HASH_MISMATCH = "hash_mismatch"
    MISSING_GENESIS = "missing_genesis"
    GENESIS_PREV_HASH_MISMATCH = "genesis_prev_hash_mismatch"


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """One broken link. ``seq`` is where the problem shows; ``event_id`` is None for a gap."""

    code: BreakCode
    seq: int
    event_id: str | None
    expected: str | None
    found: str | None
    summary: str

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view (no payload text is ever part of a break)."""
        return {
            "code": self.code.value,
            "seq": self.seq,
            "event_id": self.event_id,
            "expected": self.expected,
            "found": self.found,
            "summary": self.summary,
        }


@dataclass(frozen=True, slots=True)
class RecordBreak:
    """A record row that does not match the chain (or a chained record that is not there)."""

    code: str
    table: str
    key: str
    event_seq: int | None
    summary: str

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view (never any row content)."""
        return {
            "code": self.code,
            "table": self.table,
            "key": self.key,
            "event_seq": self.event_seq,
            "summary": self.summary,
        }


@dataclass(slots=True)
class VerifyReport:
    """The outcome of a verification. ``ok`` only when no link is broken."""

    scope: str
    from_seq: int
    checked_events: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str | None = None
    breaks: list[ChainBreak] = field(default_factory=list)
    breaks_truncated: int = 0
    records_checked: int = 0
    records_purged: int = 0
    record_breaks: list[RecordBreak] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every checked link holds and every record row matches the chain."""
        return not self.breaks and self.breaks_truncated == 0 and not self.record_breaks

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view of the report."""
        return {
            "status": "ok" if self.ok else "broken",
            "scope": self.scope,
            "from_seq": self.from_seq,
            "checked_events": self.checked_events,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "head_hash": self.head_hash,
            "broken_links": len(self.breaks) + self.breaks_truncated,
            "breaks": [item.to_dict() for item in self.breaks],
            "records_checked": self.records_checked,
            "records_purged": self.records_purged,
            "record_breaks": [item.to_dict() for item in self.record_breaks],
        }


ProgressCallback = Callable[[int, int], None]
_NOTHING_READ = object()


def _text(value: Value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _our_digest(row: Sequence[Value]) -> str | None:
    """The hash a row of ``LINK_COLUMNS`` (then its stored hash) should carry; None if it
    holds a value the encoding cannot take (a tampered type)."""
    try:
        return hashlib.sha256(_layout_preimage(row)).hexdigest()
    except (TypeError, IndexError, struct.error):
        pass
    try:
        return hashlib.sha256(link_preimage(row[:-1])).hexdigest()
    except (TypeError, ValueError):
        return None


def verify_rows(
    rows: Iterable[Sequence[Value]],
    *,
    journal_id: str,
    from_seq: int = 1,
    anchor_hash: str | None = None,
    max_breaks: int = 10_000,
    progress: ProgressCallback | None = None,
    progress_every: int = 50_000,
) -> VerifyReport:
    """Check every link of ``rows`` and report every break, in one streaming pass.

    ``rows`` yields ``LINK_COLUMNS`` values followed by the stored ``hash``, in ascending seq
    order, starting at ``from_seq``. When ``from_seq`` > 1, ``anchor_hash`` is the stored hash of
    event ``from_seq - 1`` (None if that row is missing, which is then reported as a gap). Each
    link is checked on its own against the *stored* hash of its predecessor, so one edited row
    yields one break rather than a cascade. ``progress(checked, last_seq)`` is called every
    ``progress_every`` rows. Memory stays bounded whatever the number of rows; at most
    ``max_breaks`` breaks are kept (the rest are counted).
    """
    return walk_links(
        rows,
        digest=_our_digest,
        genesis_prev=genesis_prev_hash(journal_id),
        genesis_summary="the first event is not bound to this journal's id",
        from_seq=from_seq,
        anchor_hash=anchor_hash,
        max_breaks=max_breaks,
        progress=progress,
        progress_every=progress_every,
    )


def walk_links(
    rows: Iterable[Sequence[Value]],
    *,
    digest: Callable[[Sequence[Value]], str | None],
    genesis_prev: str,
    genesis_summary: str,
    from_seq: int = 1,
    anchor_hash: str | None = None,
    check_prev_after_missing_start: bool = True,
    max_breaks: int = 10_000,
    progress: ProgressCallback | None = None,
    progress_every: int = 50_000,
) -> VerifyReport:
    """The link-by-link walk shared by every chain format (ours, Palyra's).

    Rows are ``(prev_hash, seq, event_id, ..., hash)``; ``digest(row)`` recomputes the hash the
    row should carry, and ``genesis_prev`` is what seq 1's prev_hash must be. When the chain does
    not start at seq 1, ``check_prev_after_missing_start`` says whether its first row's prev_hash
    is still checked against the genesis value (ours: yes; Palyra's reports only the gap).
    """
    report = VerifyReport(scope="full" if from_seq <= 1 else "from_seq", from_seq=from_seq)
    expected_seq = max(from_seq, 1)
    expected_prev = genesis_prev if from_seq <= 1 else anchor_hash

    def add(item: ChainBreak) -> None:
        if len(report.breaks) < max_breaks:
            report.breaks.append(item)
        else:
            report.breaks_truncated += 1

    checked = 0
    first_seq: int | None = None
    # The stored hash of the row before, exactly as read: when a row's prev_hash is the same
    # text and its seq is the next one, the link to its predecessor holds without decoding
    # anything. (Only text compares raw: 5 == 5.0 although "5" != "5.0".)
    prev_raw: object = _NOTHING_READ
    for row in rows:
        seq = row[1]
        stored_prev_raw = row[0]
        if not (
            type(seq) is int
            and seq == expected_seq
            and seq != 1
            and (type(stored_prev_raw) is bytes or type(stored_prev_raw) is str)
            and stored_prev_raw == prev_raw
        ):
            event_id = _text(row[2])
            stored_prev = _text(stored_prev_raw)
            if not isinstance(seq, int):
                add(
                    ChainBreak(
                        BreakCode.HASH_MISMATCH,
                        expected_seq,
                        event_id,
                        None,
                        _text(seq),
                        "seq is not an integer",
                    )
                )
                continue
            if first_seq is None:
                first_seq = seq
            missing_start = checked == 0 and from_seq <= 1 and seq != 1
            if missing_start:
                add(
                    ChainBreak(
                        BreakCode.MISSING_GENESIS,
                        seq,
                        event_id,
                        "1",
                        str(seq),
                        f"the chain starts at seq {seq}, not 1: its first events are missing",
                    )
                )
            elif seq != expected_seq:
                add(
                    ChainBreak(
                        BreakCode.MISSING_EVENT,
                        expected_seq,
                        None,
                        str(expected_seq),
                        str(seq),
                        f"events {expected_seq}..{seq - 1} are missing"
                        if seq > expected_seq + 1
                        else f"event {expected_seq} is missing",
                    )
                )
            if seq == 1 and stored_prev != expected_prev:
                add(
                    ChainBreak(
                        BreakCode.GENESIS_PREV_HASH_MISMATCH,
                        seq,
                        event_id,
                        expected_prev,
                        stored_prev,
                        genesis_summary,
                    )
                )
            elif (
                seq != 1
                and stored_prev != expected_prev
                and (check_prev_after_missing_start or not missing_start)
            ):
                add(
                    ChainBreak(
                        BreakCode.PREV_HASH_MISMATCH,
                        seq,
                        event_id,
                        expected_prev,
                        stored_prev,
                        "prev_hash does not match the hash of the event before it",
                    )
                )
        computed = digest(row)
        prev_raw = row[-1]
        stored_hash = (
            prev_raw.decode("utf-8", "replace") if type(prev_raw) is bytes else _text(prev_raw)
        )
        if computed != stored_hash:
            add(
                ChainBreak(
                    BreakCode.HASH_MISMATCH,
                    seq,
                    _text(row[2]),
                    computed,
                    stored_hash,
                    "the stored hash does not match the event's content",
                )
            )
        expected_prev = stored_hash
        expected_seq = seq + 1
        checked += 1
        if progress is not None and checked % progress_every == 0:
            progress(checked, seq)
    # Only a checked row advances expected_seq, so the last checked seq is the one before it.
    last_seq = expected_seq - 1 if checked else None
    report.checked_events = checked
    report.first_seq = first_seq
    report.last_seq = last_seq
    report.head_hash = expected_prev if checked else None
    if progress is not None:
        progress(checked, last_seq or 0)
    return report


def iter_chunks(fetch: Callable[[], Sequence[Sequence[Value]]]) -> Iterator[Sequence[Value]]:
    """Yield rows from a ``fetchmany``-like callable until it returns an empty chunk."""
    while True:
        chunk = fetch()
        if not chunk:
            return
        yield from chunk
