"""Field validation shared by every public write: each failure names the field and the rule."""

from __future__ import annotations

import re
from collections.abc import Collection

from journal_core.errors import ValidationError
from journal_core.ids import normalize_ulid

MAX_IDENTITY_BYTES = 256
# Control characters, and the bidirectional overrides that reorder what a terminal shows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def ulid(field: str, value: object) -> str:
    """A ULID (any case), returned in canonical upper case."""
    canonical = normalize_ulid(value)
    if canonical is None:
        raise ValidationError(field, f"must be a 26-character ULID, got {repr(value)[:40]}")
    return canonical


def optional_ulid(field: str, value: object) -> str | None:
    """A ULID or None."""
    return None if value is None else ulid(field, value)


def _utf8_size(field: str, value: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError(field, "is not valid Unicode (lone surrogate)") from None


def identity(field: str, value: object, *, max_bytes: int = MAX_IDENTITY_BYTES) -> str:
    """A non-empty single-line identifier (principal, device id, key, name) up to ``max_bytes``."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if not value:
        raise ValidationError(field, "must not be empty")
    size = _utf8_size(field, value)
    if size > max_bytes:
        raise ValidationError(field, f"is {size} bytes; the limit is {max_bytes}")
    if _CONTROL.search(value):
        raise ValidationError(field, "must not contain control or bidirectional characters")
    return value


def optional_identity(
    field: str, value: object, *, max_bytes: int = MAX_IDENTITY_BYTES
) -> str | None:
    """An identifier or None."""
    return None if value is None else identity(field, value, max_bytes=max_bytes)


def text(field: str, value: object, *, max_bytes: int, allow_empty: bool = False) -> str:
    """Free text (may span lines) up to ``max_bytes`` of UTF-8."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ValidationError(field, "must not be empty")
    size = _utf8_size(field, value)
    if size > max_bytes:
        raise ValidationError(field, f"is {size} bytes; the limit is {max_bytes}")
    return value


def optional_text(field: str, value: object, *, max_bytes: int) -> str | None:
    """Free text or None."""
    return None if value is None else text(field, value, max_bytes=max_bytes)


def choice(field: str, value: object, allowed: Collection[str]) -> str:
    """One of ``allowed``."""
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(
            field, f"must be one of {', '.join(sorted(allowed))}; got {repr(value)[:40]}"
        )
    return value


def integer(field: str, value: object, *, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    """An integer (not a boolean) within ``minimum..maximum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be an integer, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise ValidationError(field, f"{value} is outside {minimum}..{maximum}")
    return value


def optional_integer(
    field: str, value: object, *, minimum: int = 0, maximum: int = 2**63 - 1
) -> int | None:
    """An integer or None."""
    return None if value is None else integer(field, value, minimum=minimum, maximum=maximum)
