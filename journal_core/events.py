"""Journal events: kinds, actors, validation and payload preparation.

An event arrives as an :class:`EventInput` (or a mapping with the same keys, as on the command
line), is validated field by field, its payload is normalised to JSON and redacted, and it leaves as
a :class:`PreparedEvent` whose every stored column is known except ``seq``, ``prev_hash`` and
``hash``, which the writer assigns inside its transaction.
"""

from __future__ import annotations

import enum
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from journal_core import validate
from journal_core.chain import Value
from journal_core.errors import PayloadTooLargeError, ValidationError
from journal_core.ids import new_ulid
from journal_core.redaction import DEFAULT_REDACTOR, Redactor

DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
MAX_TIMESTAMP_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MAX_KIND = 65_535
MAX_JSON_DEPTH = 256
_LONG_DIGITS = re.compile(r"\d{19}")


class Kind(enum.IntEnum):
    """What happened. The first eight values are the original daemon's; others are ours.

    ``RECORD_WRITTEN`` and ``RECORD_PURGED`` chain the writes of record tables (sessions, runs,
    approvals ...): see :mod:`journal_core.records`.
    """

    UNSPECIFIED = 0
    MESSAGE_RECEIVED = 1
    MODEL_TOKEN = 2
    TOOL_PROPOSED = 3
    TOOL_EXECUTED = 4
    A2UI_UPDATED = 5
    RUN_COMPLETED = 6
    RUN_FAILED = 7
    RECORD_WRITTEN = 100
    RECORD_PURGED = 101


class Actor(enum.IntEnum):
    """Who caused the event (the original daemon's values)."""

    UNSPECIFIED = 0
    USER = 1
    AGENT = 2
    SYSTEM = 3
    PLUGIN = 4


MAX_ACTOR = 255


def kind_name(kind: int) -> str:
    """The lower-case name of a kind, or ``kind_<n>`` for an extension kind."""
    try:
        return Kind(kind).name.lower()
    except ValueError:
        return f"kind_{kind}"


def actor_name(actor: int) -> str:
    """The lower-case name of an actor, or ``actor_<n>`` for an extension actor."""
    try:
        return Actor(actor).name.lower()
    except ValueError:
        return f"actor_{actor}"


@dataclass(frozen=True, slots=True)
class EventInput:
    """An event as a producer hands it to :meth:`journal_core.Journal.append`.

    ``kind`` and ``actor`` take a number or a name (``"tool_proposed"``). ``payload`` is a JSON
    object (a dict), JSON text (``str``) or raw bytes; text that is not JSON and bytes that are not
    UTF-8 are stored as a marker object saying so, never raw. ``event_id`` and
    ``timestamp_unix_ms`` are generated when omitted.
    """

    session_id: str
    run_id: str
    kind: int | str
    actor: int | str
    principal: str
    device_id: str
    payload: object = None
    channel: str | None = None
    event_id: str | None = None
    timestamp_unix_ms: int | None = None


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """A validated, redacted event: every column but the ones the writer assigns."""

    event_ulid: str
    session_ulid: str
    run_ulid: str
    kind: int
    actor: int
    timestamp_unix_ms: int
    payload_json: str
    redacted: int
    redaction_rules: str | None
    principal: str
    device_id: str
    channel: str | None

    def link_values(self, prev_hash: str, seq: int, created_at_unix_ms: int) -> tuple[Value, ...]:
        """The values its chain link hashes (``chain.LINK_COLUMNS``), once the writer has
        given it a place after ``prev_hash`` at ``seq`` and its commit time."""
        return (
            prev_hash,
            seq,
            self.event_ulid,
            self.session_ulid,
            self.run_ulid,
            self.kind,
            self.actor,
            self.timestamp_unix_ms,
            created_at_unix_ms,
            self.principal,
            self.device_id,
            self.channel,
            self.redacted,
            self.redaction_rules,
            self.payload_json,
        )


EVENT_FIELDS = (
    "session_id",
    "run_id",
    "kind",
    "actor",
    "principal",
    "device_id",
    "channel",
    "payload",
    "event_id",
    "timestamp_unix_ms",
)


def event_from_mapping(data: Mapping[str, Any]) -> EventInput:
    """An :class:`EventInput` from a mapping (one JSON Lines record); unknown keys are errors."""
    unknown = sorted(set(data) - set(EVENT_FIELDS))
    if unknown:
        raise ValidationError(unknown[0], f"unknown field (allowed: {', '.join(EVENT_FIELDS)})")
    for required in ("session_id", "run_id", "kind", "actor", "principal", "device_id"):
        if required not in data:
            raise ValidationError(required, "is required")
    return EventInput(
        session_id=data["session_id"],
        run_id=data["run_id"],
        kind=data["kind"],
        actor=data["actor"],
        principal=data["principal"],
        device_id=data["device_id"],
        payload=data.get("payload"),
        channel=data.get("channel"),
        event_id=data.get("event_id"),
        timestamp_unix_ms=data.get("timestamp_unix_ms"),
    )


def _enum_field(field: str, value: object, names: type[enum.IntEnum], maximum: int) -> int:
    if isinstance(value, bool):
        raise ValidationError(field, "must be a number or a name, not a boolean")
    if isinstance(value, int):
        if not 0 <= value <= maximum:
            raise ValidationError(field, f"{value} is outside 0..{maximum}")
        return value
    if isinstance(value, str):
        try:
            return int(names[value.strip().upper()])
        except KeyError:
            allowed = ", ".join(member.name.lower() for member in names)
            raise ValidationError(
                field, f"unknown name {value[:40]!r} (one of: {allowed})"
            ) from None
    raise ValidationError(field, f"must be a number or a name, got {type(value).__name__}")


def _timestamp_field(value: object) -> int:
    if value is None:
        return time.time_ns() // 1_000_000
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            "timestamp_unix_ms", f"must be an integer, got {type(value).__name__}"
        )
    if not 0 <= value <= MAX_TIMESTAMP_MS:
        raise ValidationError("timestamp_unix_ms", f"{value} is outside 0..{MAX_TIMESTAMP_MS}")
    return value


# Exact types that can never make a tree invalid: not pushed on the walk's stack at all.
_PLAIN_SCALARS = frozenset({str, int, bool, type(None)})


def _check_json_tree(value: object) -> None:
    """Refuse what JSON cannot carry faithfully: NaN/Infinity, non-string keys, deep nesting."""
    stack: list[tuple[object, int]] = [(value, 0)]
    push, pop, plain = stack.append, stack.pop, _PLAIN_SCALARS
    while stack:
        item, depth = pop()
        if depth > MAX_JSON_DEPTH:
            raise ValidationError("payload", f"nests deeper than {MAX_JSON_DEPTH} levels")
        child_depth = depth + 1
        # A plain scalar child cannot fail unless it sits too deep, which its parent knows.
        skip_plain = child_depth <= MAX_JSON_DEPTH
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise ValidationError("payload", f"object key {key!r} is not a string")
                if not (skip_plain and type(child) in plain):
                    push((child, child_depth))
        elif isinstance(item, list | tuple):
            for child in item:
                if not (skip_plain and type(child) in plain):
                    push((child, child_depth))
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValidationError("payload", "NaN and Infinity are not JSON numbers")
        elif item is not None and not isinstance(item, str | int | float | bool):
            raise ValidationError("payload", f"{type(item).__name__} is not a JSON value")


def dumps_json(value: object) -> str:
    """Serialise a JSON tree compactly.

    orjson refuses integers beyond 64 bits and nesting past 254 levels; those fall back to the
    stdlib, whose output must still be valid UTF-8 (a lone surrogate is refused).
    """
    try:
        return orjson.dumps(value).decode("utf-8")
    except orjson.JSONEncodeError as error:
        message = str(error)
        if "Integer exceeds" not in message and "Recursion limit" not in message:
            raise ValidationError("payload", f"cannot be serialised as JSON: {error}") from None
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("payload", "is not valid Unicode (lone surrogate)") from None
    except (TypeError, ValueError, RecursionError) as error:
        raise ValidationError("payload", f"cannot be serialised as JSON: {error}") from None
    return text


def loads_json(text: str | bytes) -> object:
    """Parse stored JSON text exactly: integers beyond 64 bits stay integers.

    orjson reads them as floats (losing digits), so text with a run of 19 or more digits goes
    through the stdlib parser. Raises ``ValueError`` for text that is not JSON.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if _LONG_DIGITS.search(text) is None:
        return orjson.loads(text)
    return json.loads(text)


def _parse_json_text(text: str) -> tuple[object, bool]:
    """Parse JSON text; returns (value, ok).

    orjson turns integers beyond 64 bits into floats (losing digits), so text with a long run of
    digits goes through the stdlib parser, which keeps them exact.
    """
    if _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text), True
        except orjson.JSONDecodeError:
            pass

    def refuse_constant(name: str) -> object:
        raise ValueError(name)

    try:
        value = json.loads(text, parse_constant=refuse_constant)
        value_text = json.dumps(value, ensure_ascii=False)
        value_text.encode("utf-8")
    except (ValueError, UnicodeEncodeError, RecursionError):
        return None, False
    return value, True


@dataclass(frozen=True, slots=True)
class _Payload:
    tree: object
    input_bytes: int  # -1 when the payload came as a tree and has not been serialised yet
    marker_reason: str | None = None


def _as_marker(reason: str, size: int) -> _Payload:
    return _Payload({"redacted": True, "reason": reason, "bytes": size}, size, reason)


def _normalise_payload(payload: object) -> _Payload:
    """Turn a payload given as a tree, text or bytes into a JSON tree."""
    if payload is None:
        return _Payload({}, 0)
    if isinstance(payload, bytes | bytearray | memoryview):
        raw = bytes(payload)
        try:
            payload = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _as_marker("binary_or_non_utf8_payload", len(raw))
    if isinstance(payload, str):
        try:
            size = len(payload.encode("utf-8"))
        except UnicodeEncodeError:
            return _as_marker(
                "binary_or_non_utf8_payload", len(payload.encode("utf-8", "surrogatepass"))
            )
        if not payload.strip():
            return _Payload({}, size)
        value, ok = _parse_json_text(payload)
        if not ok:
            return _as_marker("non_json_payload", size)
        _check_json_tree(value)
        return _Payload(value, size)
    _check_json_tree(payload)
    return _Payload(payload, -1)


@dataclass(frozen=True, slots=True)
class PreparedPayload:
    """A payload as it will be stored: redacted JSON text and the redaction rules that fired."""

    json: str
    rules: frozenset[str]

    @property
    def rules_json(self) -> str | None:
        """The fired rules as a sorted JSON array, or None when nothing fired."""
        return orjson.dumps(sorted(self.rules)).decode("ascii") if self.rules else None


def prepare_payload(
    payload: object,
    *,
    redactor: Redactor = DEFAULT_REDACTOR,
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    field: str = "payload",
) -> PreparedPayload:
    """Normalise a payload (tree, JSON text or bytes) to JSON, check its size and redact it.

    Text that is not JSON and bytes that are not UTF-8 become a marker object. Redaction fails
    closed: if the redactor raises, the payload becomes ``{"redacted": true, "reason":
    "redaction_failed"}``. Raises :class:`PayloadTooLargeError` over ``max_bytes`` (before or
    after redaction) and :class:`ValidationError` for what JSON cannot carry.
    """
    normalised = _normalise_payload(payload)
    tree, input_size = normalised.tree, normalised.input_bytes
    tree_text: str | None = None
    if input_size < 0:
        tree_text = dumps_json(tree)
        input_size = len(tree_text.encode("utf-8"))
    if input_size > max_bytes:
        raise PayloadTooLargeError(input_size, max_bytes, field=field)
    try:
        redacted_tree, rules = redactor.redact_value(tree)
    except Exception:
        redacted_tree, rules = (
            {"redacted": True, "reason": "redaction_failed"},
            frozenset({"redaction_failed"}),
        )
    # The redactor returns the very tree it was given when nothing fired: serialised already.
    if tree_text is None or redacted_tree is not tree:
        tree_text = dumps_json(redacted_tree)
    text = tree_text
    stored_size = len(text.encode("utf-8"))
    if stored_size > max_bytes:
        raise PayloadTooLargeError(stored_size, max_bytes, field=field)
    if normalised.marker_reason is not None:
        rules = rules | {normalised.marker_reason}
    return PreparedPayload(text, frozenset(rules))


def prepare_event(
    event: EventInput,
    *,
    redactor: Redactor = DEFAULT_REDACTOR,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> PreparedEvent:
    """Validate every field of ``event``, redact its payload and return the row to store.

    Raises :class:`ValidationError` (naming the field) or :class:`PayloadTooLargeError`.
    Redaction fails closed: if the redactor raises, the payload becomes a marker.
    """
    event_ulid = new_ulid() if event.event_id is None else validate.ulid("event_id", event.event_id)
    session_ulid = validate.ulid("session_id", event.session_id)
    run_ulid = validate.ulid("run_id", event.run_id)
    kind = _enum_field("kind", event.kind, Kind, MAX_KIND)
    actor = _enum_field("actor", event.actor, Actor, MAX_ACTOR)
    principal = validate.identity("principal", event.principal)
    device_id = validate.identity("device_id", event.device_id)
    channel = validate.optional_identity("channel", event.channel)
    timestamp = _timestamp_field(event.timestamp_unix_ms)

    payload = prepare_payload(event.payload, redactor=redactor, max_bytes=max_payload_bytes)
    return PreparedEvent(
        event_ulid=event_ulid,
        session_ulid=session_ulid,
        run_ulid=run_ulid,
        kind=kind,
        actor=actor,
        timestamp_unix_ms=timestamp,
        payload_json=payload.json,
        redacted=1 if payload.rules else 0,
        redaction_rules=payload.rules_json,
        principal=principal,
        device_id=device_id,
        channel=channel,
    )
