"""ULIDs: the base32 encoding, time order and parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from journal_core.ids import _encode, is_ulid, new_ulid, normalize_ulid, ulid_time_ms

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
MAX_MS = (1 << 48) - 1


def reference_encoding(value: int) -> str:
    """The spec's encoding, digit by digit: 26 base32 digits of the 128-bit value, big-endian."""
    return "".join(CROCKFORD[(value >> (5 * (25 - i))) & 31] for i in range(26))


@given(st.integers(0, MAX_MS), st.integers(0, (1 << 80) - 1))
def test_encoding_matches_the_reference(ms: int, randomness: int) -> None:
    value = (ms << 80) | randomness
    assert _encode(value) == reference_encoding(value)


@given(st.integers(0, MAX_MS))
def test_new_ulid_carries_its_time(ms: int) -> None:
    ulid = new_ulid(ms)
    assert is_ulid(ulid)
    assert ulid_time_ms(ulid) == ms
    assert normalize_ulid(ulid.lower()) == ulid


@given(st.integers(0, MAX_MS), st.integers(0, MAX_MS))
def test_text_order_is_time_order(a: int, b: int) -> None:
    if a != b:
        assert (new_ulid(a) < new_ulid(b)) == (a < b)


def test_extremes() -> None:
    assert new_ulid(0).startswith("0000000000")
    assert new_ulid(MAX_MS).startswith("7ZZZZZZZZZ")
    for ms in (-1, MAX_MS + 1):
        with pytest.raises(ValueError, match="outside"):
            new_ulid(ms)


def test_new_ulids_differ() -> None:
    assert len({new_ulid(1) for _ in range(1000)}) == 1000
