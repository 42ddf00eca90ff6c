"""The link encoding (docs/chain.md) and the verifier over in-memory rows."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from journal_core.chain import (
    DOMAIN_TAG,
    LINK_COLUMNS,
    BreakCode,
    _layout_preimage,
    encode_value,
    encode_values,
    genesis_prev_hash,
    link_hash,
    link_preimage,
    verify_rows,
)

JOURNAL_ID = "01JZ0000000000000000000000"
GENESIS = "844d500434e1fcbfef0351cff1971b5c313605a921a7545879206b0343ab1ddd"


def _spec_encode(value: object) -> bytes:
    """An independent transcription of docs/chain.md's value encoding."""
    if value is None:
        return b"\x00"
    if isinstance(value, str):
        data = value.encode("utf-8")
        return b"\x01" + struct.pack(">I", len(data)) + data
    if isinstance(value, int):
        return b"\x02" + struct.pack(">q", value)
    raise AssertionError(type(value))


def _vector_row() -> tuple[object, ...]:
    return (
        GENESIS,
        1,
        "01JZ0000000000000000000001",
        "01JZ0000000000000000000002",
        "01JZ0000000000000000000003",
        1,
        1,
        1_700_000_000_000,
        1_700_000_000_001,
        "alice",
        "laptop",
        None,
        0,
        None,
        '{"text":"hello"}',
    )


def test_genesis_vector_matches_the_spec() -> None:
    expected = hashlib.sha256(b"journal-chain-v1/genesis\x00" + _spec_encode(JOURNAL_ID))
    assert genesis_prev_hash(JOURNAL_ID) == expected.hexdigest() == GENESIS


def test_row_vector_matches_the_spec() -> None:
    row = _vector_row()
    preimage = b"journal-chain-v1\x00" + b"".join(_spec_encode(value) for value in row)
    assert DOMAIN_TAG == b"journal-chain-v1\x00"
    assert link_preimage(row) == preimage  # type: ignore[arg-type]
    assert link_hash(row) == hashlib.sha256(preimage).hexdigest()  # type: ignore[arg-type]
    assert link_hash(row) == (  # type: ignore[arg-type]
        "4861f3812eaabccd823b6b8bd94da763feb8ea67cf4ee7072b0335754820a848"
    )


def test_null_empty_text_and_integer_text_encode_differently() -> None:
    encodings = {encode_value(None), encode_value(""), encode_value(3), encode_value("3")}
    assert len(encodings) == 4


def test_pipe_inside_a_field_cannot_move_a_boundary() -> None:
    base = list(_vector_row())
    left, right = list(base), list(base)
    left[9], left[10] = "a|b", "c"
    right[9], right[10] = "a", "b|c"
    assert link_hash(left) != link_hash(right)  # type: ignore[arg-type]


def _decode(preimage: bytes) -> list[object]:
    """Parse a preimage back into values: if this always works, the encoding is injective."""
    assert preimage.startswith(DOMAIN_TAG)
    position = len(DOMAIN_TAG)
    values: list[object] = []
    while position < len(preimage):
        tag = preimage[position]
        position += 1
        if tag == 0:
            values.append(None)
        elif tag == 1:
            (length,) = struct.unpack_from(">I", preimage, position)
            position += 4
            values.append(preimage[position : position + length].decode("utf-8"))
            position += length
        elif tag == 2:
            values.append(struct.unpack_from(">q", preimage, position)[0])
            position += 8
        else:
            raise AssertionError(tag)
    return values


_field = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
_rows = st.lists(_field, min_size=len(LINK_COLUMNS), max_size=len(LINK_COLUMNS))


@given(_rows)
def test_preimage_decodes_back_to_the_same_values(row: list[object]) -> None:
    assert _decode(link_preimage(row)) == row  # type: ignore[arg-type]


@given(_rows, _rows)
def test_different_rows_never_share_a_preimage(left: list[object], right: list[object]) -> None:
    if left != right:
        assert link_preimage(left) != link_preimage(right)  # type: ignore[arg-type]


# Rows in the column types of journal_events, as the writer has them (str) and as a verifier
# reads them (bytes): the specialised encoder must give link_preimage's bytes for every one.
# Lone surrogates included: both encoders encode str with surrogatepass.
_text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=300)
_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_layout_rows = st.tuples(
    _text,  # prev_hash
    _int64,  # seq
    _text,  # event_ulid
    _text,  # session_ulid
    _text,  # run_ulid
    _int64,  # kind
    _int64,  # actor
    _int64,  # timestamp_unix_ms
    _int64,  # created_at_unix_ms
    _text,  # principal
    _text,  # device_id
    st.none() | _text,  # channel
    _int64,  # redacted
    st.none() | _text,  # redaction_rules
    _text,  # payload_json
)


# Every type a record row or a link can hold, and some it cannot.
_any_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # beyond 64 bits too: refused alike
    st.floats(allow_nan=False),
    st.text(alphabet=st.characters(blacklist_categories=()), max_size=5_000),
    st.binary(max_size=5_000),
    st.sampled_from([[], {}, object()]),
)


def _reference_or_error(values: list[object]) -> bytes | type[Exception]:
    try:
        return b"".join(encode_value(value) for value in values)  # type: ignore[arg-type]
    except (TypeError, ValueError) as error:
        return type(error)


@given(st.lists(_any_value, max_size=12))
@example([2**63 - 1, -(2**63), "x" * 4_096, b"y" * 4_095, True, 0.5])
@example([2**63])  # one past 64 bits: refused, as by the reference
@example([-(2**63) - 1])
def test_encode_values_is_byte_identical_to_the_reference(values: list[object]) -> None:
    expected = _reference_or_error(values)
    if isinstance(expected, bytes):
        assert encode_values(values) == expected  # type: ignore[arg-type]
    else:
        with pytest.raises(expected):
            encode_values(values)  # type: ignore[arg-type]


def _as_stored(row: tuple[object, ...]) -> list[object]:
    return [
        value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value for value in row
    ]


@given(_layout_rows)
def test_layout_encoder_is_byte_identical_to_the_reference(row: tuple[object, ...]) -> None:
    reference = link_preimage(row)  # type: ignore[arg-type]
    stored = _as_stored(row)
    assert _layout_preimage(stored) == reference
    assert _layout_preimage([*stored, b"f" * 64]) == reference  # a trailing stored hash
    assert link_preimage(stored) == reference  # type: ignore[arg-type]
    assert link_hash(row) == hashlib.sha256(reference).hexdigest()  # type: ignore[arg-type]


def test_layout_encoder_vector_and_edges() -> None:
    stored = _as_stored(_vector_row())
    assert hashlib.sha256(_layout_preimage(stored)).hexdigest() == (
        "4861f3812eaabccd823b6b8bd94da763feb8ea67cf4ee7072b0335754820a848"
    )
    edges = list(_vector_row())
    edges[9], edges[10], edges[11], edges[13] = "", "ü→😀", "", "[]"  # '' is not NULL
    edges[1], edges[7] = 2**63 - 1, -(2**63)
    assert _layout_preimage(_as_stored(tuple(edges))) == link_preimage(edges)  # type: ignore[arg-type]
    for length in (4095, 4096, 70_000):  # around the ready-made text heads, and far beyond
        edges[14] = "p" * length
        assert _layout_preimage(_as_stored(tuple(edges))) == link_preimage(edges)  # type: ignore[arg-type]
    edges[10] = "x" * 4096  # a long device id: the fallback encodes it
    with pytest.raises(IndexError):
        _layout_preimage(_as_stored(tuple(edges)))
    assert link_hash(edges) == hashlib.sha256(link_preimage(edges)).hexdigest()  # type: ignore[arg-type]


@given(_rows)
def test_link_hash_of_any_row_is_sha256_of_the_reference(row: list[object]) -> None:
    """Rows of the wrong types (a tampered column) take the reference encoder's path."""
    assert link_hash(row) == hashlib.sha256(link_preimage(row)).hexdigest()  # type: ignore[arg-type]
    stored = _as_stored(tuple(row))
    try:
        fast = _layout_preimage(stored)
    except (TypeError, IndexError, struct.error):
        return
    assert fast == link_preimage(row)  # type: ignore[arg-type]


def _chain(count: int) -> list[list[object]]:
    rows: list[list[object]] = []
    prev = genesis_prev_hash(JOURNAL_ID)
    for seq in range(1, count + 1):
        values: list[object] = [
            prev,
            seq,
            f"01JZ00000000000000000{seq:05d}",
            "S" * 26,
            "R" * 26,
            2,
            2,
            1_700_000_000_000 + seq,
            1_700_000_000_000 + seq,
            "p",
            "d",
            None,
            0,
            None,
            f'{{"n":{seq}}}',
        ]
        digest = link_hash(values)  # type: ignore[arg-type]
        rows.append([*values, digest])
        prev = digest
    return rows


def _codes(rows: list[list[object]], **kwargs: object) -> list[tuple[str, int]]:
    report = verify_rows(rows, journal_id=JOURNAL_ID, **kwargs)  # type: ignore[arg-type]
    return [(item.code.value, item.seq) for item in report.breaks]


def test_intact_chain_verifies_with_progress() -> None:
    seen: list[tuple[int, int]] = []
    rows = _chain(25)
    report = verify_rows(
        rows,  # type: ignore[arg-type]
        journal_id=JOURNAL_ID,
        progress=lambda checked, seq: seen.append((checked, seq)),
        progress_every=10,
    )
    assert report.ok
    assert report.checked_events == 25
    assert report.head_hash == rows[-1][-1]
    assert seen == [(10, 10), (20, 20), (25, 25)]


def test_every_break_is_reported_not_only_the_first() -> None:
    rows = _chain(30)
    for index in (4, 14, 24):
        rows[index][14] = '{"n":"edited"}'
    assert _codes(rows) == [("hash_mismatch", 5), ("hash_mismatch", 15), ("hash_mismatch", 25)]


def test_gap_is_reported_once_with_the_next_link() -> None:
    rows = _chain(10)
    del rows[3:6]
    assert _codes(rows) == [("missing_event", 4), ("prev_hash_mismatch", 7)]


def test_missing_start_and_foreign_genesis() -> None:
    rows = _chain(5)
    assert _codes(rows[2:]) == [("missing_genesis", 3), ("prev_hash_mismatch", 3)]
    report = verify_rows(rows, journal_id="01JZ0000000000000000000009")  # type: ignore[arg-type]
    assert [item.code for item in report.breaks] == [BreakCode.GENESIS_PREV_HASH_MISMATCH]


def test_from_seq_scope_uses_the_anchor_hash() -> None:
    rows = _chain(10)
    rows[1][14] = '{"n":"edited before the scope"}'
    assert _codes(rows[5:], from_seq=6, anchor_hash=rows[4][-1]) == []
    assert _codes(rows[5:], from_seq=6, anchor_hash="0" * 64) == [("prev_hash_mismatch", 6)]


def test_breaks_never_carry_payload_text() -> None:
    rows = _chain(3)
    rows[1][14] = '{"secret":"do-not-print-me"}'
    report = verify_rows(rows, journal_id=JOURNAL_ID)  # type: ignore[arg-type]
    assert "do-not-print-me" not in repr(report.to_dict())


def test_rows_read_as_bytes_verify_like_the_writers_rows() -> None:
    """A verifier reads TEXT as bytes (the fast path of the walk); every break is the same."""

    def stored(rows: list[list[object]]) -> list[list[object]]:
        return [_as_stored(tuple(row)) for row in rows]

    edited = _chain(12)
    edited[3][14] = '{"n":"edited"}'
    edited[7][0] = "0" * 64
    edited[9][1] = "10"  # seq tampered into text
    gap = _chain(10)
    del gap[3:6]
    scenarios: list[tuple[list[list[object]], dict[str, object]]] = [
        (_chain(12), {}),
        (edited, {}),
        (gap, {}),
        (_chain(5)[2:], {}),
        (_chain(10)[5:], {"from_seq": 6, "anchor_hash": _chain(10)[4][-1]}),
        (_chain(10)[5:], {"from_seq": 6, "anchor_hash": "0" * 64}),
    ]
    for rows, kwargs in scenarios:
        as_str = verify_rows(rows, journal_id=JOURNAL_ID, **kwargs)  # type: ignore[arg-type]
        as_bytes = verify_rows(stored(rows), journal_id=JOURNAL_ID, **kwargs)  # type: ignore[arg-type]
        assert as_bytes.to_dict() == as_str.to_dict()
    report = verify_rows(stored(edited), journal_id=JOURNAL_ID)  # type: ignore[arg-type]
    assert [(item.code.value, item.seq) for item in report.breaks] == [
        ("hash_mismatch", 4),
        ("prev_hash_mismatch", 8),
        ("hash_mismatch", 8),
        ("hash_mismatch", 10),  # seq 10 is not an integer: the row is skipped ...
        ("missing_event", 10),  # ... so seq 10 is missing and 11 does not link to 9
        ("prev_hash_mismatch", 11),
    ]
