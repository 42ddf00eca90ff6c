"""ULIDs: 128-bit, time-ordered identifiers in Crockford base32 (26 characters).

The journal stores every identifier as an upper-case ULID in a TEXT column named ``*_ulid``.
"""

from __future__ import annotations

import os
import re
import time
from typing import Final

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ULID_RE = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
_MAX_TIME_MS = (1 << 48) - 1


# Every 10-bit value as its two base32 digits: a 130-bit ULID is 13 look-ups, which is twice as
# fast as ``base64.b32encode`` (pure Python in 3.11) and a translation.
_PAIRS: Final = tuple(high + low for high in _ALPHABET for low in _ALPHABET)


def _encode(value: int) -> str:
    p = _PAIRS
    return (
        p[value >> 120] + p[(value >> 110) & 1023] + p[(value >> 100) & 1023]
        + p[(value >> 90) & 1023] + p[(value >> 80) & 1023] + p[(value >> 70) & 1023]
        + p[(value >> 60) & 1023] + p[(value >> 50) & 1023] + p[(value >> 40) & 1023]
        + p[(value >> 30) & 1023] + p[(value >> 20) & 1023] + p[(value >> 10) & 1023]
        + p[value & 1023]
    )  # fmt: skip


def new_ulid(timestamp_ms: int | None = None) -> str:
    """Return a new ULID for ``timestamp_ms`` (now when omitted) with 80 random bits."""
    ms = time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms
    if not 0 <= ms <= _MAX_TIME_MS:
        raise ValueError(f"ULID time {ms} is outside 0..{_MAX_TIME_MS}")
    return _encode((ms << 80) | int.from_bytes(os.urandom(10), "big"))


def is_ulid(value: object) -> bool:
    """True when ``value`` is a canonical (upper-case) ULID string."""
    return isinstance(value, str) and _ULID_RE.fullmatch(value) is not None


def normalize_ulid(value: object) -> str | None:
    """``value`` as a canonical ULID (ULIDs are case-insensitive), or None if it is not one."""
    if not isinstance(value, str) or len(value) != 26:
        return None
    upper = value.upper()
    return upper if _ULID_RE.fullmatch(upper) else None


def ulid_time_ms(value: str) -> int:
    """The millisecond timestamp encoded in a ULID."""
    number = 0
    for char in value[:10]:
        number = number * 32 + _ALPHABET.index(char)
    return number
