"""The link encoding (docs/chain.md) and the verifier over in-memory rows."""

from __future__ import annotations

import hashlib
import struct

from hypothesis import given
from hypothesis import strategies as st

from journal_core.chain import (
    DOMAIN_TAG,
    LINK_COLUMNS,
    BreakCode,
    encode_value,
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
