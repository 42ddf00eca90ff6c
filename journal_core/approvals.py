"""Approvals: the agent asks a human before a risky action, and the first answer wins.

The daemon :func:`request_approval` (a pending row with an expiry), an inspector :func:`decide`
(allow or deny, for once, the session or a time box) and the daemon :func:`wait_for_decision`
from its own process. Unanswered requests are closed by :func:`expire_pending` as ``timeout``.

The original daemon let a second answer overwrite the first. Here a decision is a compare-and-set
inside the write transaction: the UPDATE only matches a row that is still undecided and not yet
expired, so of several inspectors (or processes) answering at once exactly one wins and the
others get :class:`ApprovalAlreadyDecidedError` carrying the standing decision. Every write is
chained (:mod:`journal_core.records`); free text and JSON details are redacted before storage.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from journal_core import validate
from journal_core.errors import (
    ApprovalAlreadyDecidedError,
    ApprovalExpiredError,
    ApprovalWaitTimeout,
    RecordNotFoundError,
    ValidationError,
)
from journal_core.events import Actor
from journal_core.ids import new_ulid
from journal_core.reader import JournalReader
from journal_core.reads import Reads
from journal_core.records import APPROVALS, RecordContext, read_row, write_record
from journal_core.schema import now_ms as wall_clock_ms
from journal_core.store import Journal, WriteContext

SUBJECT_TYPES = (
    "tool",
    "channel_send",
    "secret_access",
    "browser_action",
    "node_capability",
    "device_pairing",
)
RISK_LEVELS = ("low", "medium", "high", "critical")
OPTIONS = ("allow_once", "allow_session", "allow_timeboxed", "deny_once")
DEFAULT_OPTIONS = ("allow_once", "allow_session", "deny_once")
DECISIONS = ("allow", "deny")
#: Every value the ``decision`` column can hold (``error`` comes from the original daemon).
STORED_DECISIONS = ("allow", "deny", "timeout", "error")
SCOPES = ("once", "session", "timeboxed")
TIMEOUT_REASON = "approval_response_timeout"
SYSTEM_PRINCIPAL = "system"

MAX_SUMMARY_BYTES = 1_024
MAX_TITLE_BYTES = 256
MAX_EXPLANATION_BYTES = 4_096
MAX_REASON_BYTES = 4_096
MAX_JSON_BYTES = 64 * 1024
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
MAX_TTL_MS = 366 * 24 * 3600 * 1000
_ELLIPSIS = "…"
_RISK_RANK = {level: rank for rank, level in enumerate(RISK_LEVELS)}


@dataclass(frozen=True, slots=True)
class ApprovalPrompt:
    """What the human is shown: a title, the risk, a summary, the answers offered and details.

    ``timeout_seconds`` None on a request means "the request's timeout"; a stored prompt always
    has it. ``details`` is a JSON object (a tool's arguments, say), redacted before storage.
    """

    title: str
    risk_level: str
    summary: str
    options: tuple[str, ...] = DEFAULT_OPTIONS
    timeout_seconds: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    policy_explanation: str | None = None


@dataclass(frozen=True, slots=True)
class Approval:
    """One approval request and, once answered, its decision."""

    approval_id: str
    session_id: str | None
    run_id: str | None
    principal: str
    device_id: str
    channel: str | None
    requested_at_unix_ms: int
    expires_at_unix_ms: int
    resolved_at_unix_ms: int | None
    subject_type: str
    subject_id: str
    request_summary: str
    decision: str | None
    decision_scope: str | None
    decision_reason: str | None
    decision_scope_ttl_ms: int | None
    decided_by: str | None
    decision_channel: str | None
    policy_snapshot: Mapping[str, Any]
    prompt: ApprovalPrompt
    created_at_unix_ms: int
    updated_at_unix_ms: int

    @property
    def is_pending(self) -> bool:
        """True while no decision (nor timeout) is recorded."""
        return self.decision is None

    def is_expired(self, now_ms: int) -> bool:
        """True when the request can no longer be decided at ``now_ms``."""
        return self.decision == "timeout" or (
            self.decision is None and self.expires_at_unix_ms <= now_ms
        )

    @property
    def grant_expires_at_unix_ms(self) -> int | None:
        """When a time-boxed allow stops applying; None for every other decision."""
        if (
            self.decision == "allow"
            and self.decision_scope == "timeboxed"
            and self.resolved_at_unix_ms is not None
            and self.decision_scope_ttl_ms is not None
        ):
            return self.resolved_at_unix_ms + self.decision_scope_ttl_ms
        return None


_COLUMNS = ", ".join(APPROVALS.columns)


def _load_json(text: object) -> object:
    """Stored JSON parsed, or None when the row is damaged (``verify_file`` reports that)."""
    if not isinstance(text, str):
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _stored_prompt(text: object) -> ApprovalPrompt:
    """The prompt as stored, read leniently so a damaged row still lists.

    Anything unreadable is shown as the highest risk with no options, never as harmless.
    """
    data = _load_json(text)
    if not isinstance(data, dict):
        data = {}
    risk = data.get("risk_level")
    options = data.get("options")
    timeout = data.get("timeout_seconds")
    details = data.get("details")
    explanation = data.get("policy_explanation")
    return ApprovalPrompt(
        title=str(data.get("title", "")),
        risk_level=risk if risk in RISK_LEVELS else "critical",
        summary=str(data.get("summary", "")),
        options=tuple(o for o in options if o in OPTIONS) if isinstance(options, list) else (),
        timeout_seconds=timeout if isinstance(timeout, int) else None,
        details=details if isinstance(details, dict) else {},
        policy_explanation=explanation if isinstance(explanation, str) else None,
    )


def _approval(row: Sequence[object]) -> Approval:
    values: list[Any] = list(row)
    snapshot = _load_json(values[18])
    values[18] = snapshot if isinstance(snapshot, dict) else {}
    values[19] = _stored_prompt(values[19])
    return Approval(*values)


# --- validation (on the caller's side, before any write) ---------------------------------------


def _fit(text: str, max_bytes: int) -> str:
    """Shorten ``text`` to ``max_bytes`` of UTF-8, ending in an ellipsis when cut.

    Redaction markers can be longer than the secret they replace, so a summary that passed the
    limit may exceed it once redacted; the stored column still keeps the limit.
    """
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    room = max_bytes - len(_ELLIPSIS.encode("utf-8"))
    return data[:room].decode("utf-8", "ignore") + _ELLIPSIS


def _redact_text(journal: Journal, value: str, max_bytes: int) -> str:
    return _fit(journal.redactor.redact_text(value)[0], max_bytes)


def _json_object(journal: Journal, field_name: str, value: object) -> dict[str, Any]:
    """A JSON object (string keys, JSON values) up to 64 KiB, redacted."""
    if not isinstance(value, Mapping):
        raise ValidationError(field_name, f"must be a JSON object, got {type(value).__name__}")
    try:
        size = len(orjson.dumps(value))
    except (orjson.JSONEncodeError, TypeError) as error:
        raise ValidationError(field_name, f"is not representable as JSON ({error})") from None
    if size > MAX_JSON_BYTES:
        raise ValidationError(field_name, f"is {size} bytes of JSON; the limit is {MAX_JSON_BYTES}")
    redacted = journal.redactor.redact_value(dict(value))[0]
    assert isinstance(redacted, dict)
    return redacted


def _options(value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValidationError("prompt.options", "must be a list of options")
    chosen: list[str] = []
    for item in value:
        option = validate.choice("prompt.options", item, OPTIONS)
        if option in chosen:
            raise ValidationError("prompt.options", f"lists {option} twice")
        chosen.append(option)
    if not chosen:
        raise ValidationError("prompt.options", "must offer at least one option")
    return chosen


_PROMPT_FIELDS = frozenset(ApprovalPrompt.__dataclass_fields__)


def _prompt_json(journal: Journal, prompt: object, timeout_seconds: int) -> str:
    """The validated, redacted prompt as the JSON text stored in ``prompt_json``."""
    if isinstance(prompt, ApprovalPrompt):
        fields: Mapping[str, object] = {
            name: getattr(prompt, name) for name in ApprovalPrompt.__dataclass_fields__
        }
    elif isinstance(prompt, Mapping):
        unknown = sorted(str(key) for key in prompt if key not in _PROMPT_FIELDS)
        if unknown:
            raise ValidationError("prompt", f"unknown field {unknown[0]!r}")
        fields = prompt
    else:
        raise ValidationError(
            "prompt", f"must be an ApprovalPrompt or a mapping, got {type(prompt).__name__}"
        )
    for required in ("title", "risk_level", "summary"):
        if required not in fields:
            raise ValidationError(f"prompt.{required}", "is required")
    prompt_timeout = fields.get("timeout_seconds")
    if prompt_timeout is not None and prompt_timeout != timeout_seconds:
        raise ValidationError(
            "prompt.timeout_seconds",
            f"is {prompt_timeout!r} but the request times out after {timeout_seconds} s;"
            " omit it or make them equal",
        )
    explanation = validate.optional_text(
        "prompt.policy_explanation",
        fields.get("policy_explanation"),
        max_bytes=MAX_EXPLANATION_BYTES,
    )
    stored = {
        "title": _redact_text(
            journal,
            validate.text("prompt.title", fields["title"], max_bytes=MAX_TITLE_BYTES),
            MAX_TITLE_BYTES,
        ),
        "risk_level": validate.choice("prompt.risk_level", fields["risk_level"], RISK_LEVELS),
        "summary": _redact_text(
            journal,
            validate.text("prompt.summary", fields["summary"], max_bytes=MAX_SUMMARY_BYTES),
            MAX_SUMMARY_BYTES,
        ),
        "options": _options(fields.get("options", DEFAULT_OPTIONS)),
        "timeout_seconds": timeout_seconds,
        "details": _json_object(journal, "prompt.details", fields.get("details", {})),
        "policy_explanation": None
        if explanation is None
        else _redact_text(journal, explanation, MAX_EXPLANATION_BYTES),
    }
    return orjson.dumps(stored).decode("utf-8")


# --- writes -----------------------------------------------------------------------------------


async def request_approval(
    journal: Journal,
    *,
    principal: str,
    device_id: str,
    subject_type: str,
    subject_id: str,
    summary: str,
    prompt: ApprovalPrompt | Mapping[str, Any],
    policy_snapshot: Mapping[str, Any] | None = None,
    session_id: str | None = None,
    run_id: str | None = None,
    channel: str | None = None,
    timeout_seconds: int = 60,
    approval_id: str | None = None,
    now_ms: int | None = None,
) -> Approval:
    """Record a pending approval request that expires ``timeout_seconds`` after ``now_ms``.

    ``now_ms`` defaults to the commit time. Every field is validated (a
    :class:`ValidationError` names it; nothing is written); the summary, the prompt's text and
    details and the policy snapshot are redacted before they are stored.
    """
    who = RecordContext(
        validate.identity("principal", principal),
        validate.identity("device_id", device_id),
        validate.optional_ulid("session_id", session_id),
        validate.optional_ulid("run_id", run_id),
        validate.optional_identity("channel", channel),
        Actor.SYSTEM,
    )
    kind = validate.choice("subject_type", subject_type, SUBJECT_TYPES)
    subject = validate.identity("subject_id", subject_id)
    clean_summary = _redact_text(
        journal, validate.text("summary", summary, max_bytes=MAX_SUMMARY_BYTES), MAX_SUMMARY_BYTES
    )
    timeout = validate.integer(
        "timeout_seconds", timeout_seconds, minimum=1, maximum=MAX_TIMEOUT_SECONDS
    )
    prompt_text = _prompt_json(journal, prompt, timeout)
    snapshot_text = orjson.dumps(
        _json_object(journal, "policy_snapshot", {} if policy_snapshot is None else policy_snapshot)
    ).decode("utf-8")
    approval_ulid = validate.optional_ulid("approval_id", approval_id) or new_ulid()
    requested = validate.optional_integer("now_ms", now_ms)

    def work(ctx: WriteContext) -> Approval:
        if read_row(ctx, APPROVALS, (approval_ulid,)) is not None:
            raise ValidationError("approval_id", f"approval {approval_ulid} exists")
        at = ctx.now_ms if requested is None else requested
        write_record(
            ctx,
            APPROVALS,
            (approval_ulid,),
            "approval.requested",
            "INSERT INTO approvals (approval_ulid, session_ulid, run_ulid, principal, device_id,"
            " channel, requested_at_unix_ms, expires_at_unix_ms, subject_type, subject_id,"
            " request_summary, policy_snapshot_json, prompt_json, created_at_unix_ms,"
            " updated_at_unix_ms, event_seq) VALUES (:id, :session, :run, :principal, :device,"
            " :channel, :at, :expires, :kind, :subject, :summary, :snapshot, :prompt, :now, :now,"
            " :event_seq)",
            {
                "id": approval_ulid,
                "session": who.session_ulid,
                "run": who.run_ulid,
                "principal": who.principal,
                "device": who.device_id,
                "channel": who.channel,
                "at": at,
                "expires": at + timeout * 1000,
                "kind": kind,
                "subject": subject,
                "summary": clean_summary,
                "snapshot": snapshot_text,
                "prompt": prompt_text,
                "now": ctx.now_ms,
            },
            who,
        )
        return _read(ctx, approval_ulid)

    return await journal.transact(work)


def _read(ctx: WriteContext, approval_ulid: str) -> Approval:
    row = read_row(ctx, APPROVALS, (approval_ulid,))
    if row is None:
        raise RecordNotFoundError("approval", approval_ulid)
    return _approval(row)


def refusal(approval: Approval, now: int) -> Exception:
    """The error that says why ``approval``, as stored, cannot take a decision at ``now``.

    :class:`ApprovalAlreadyDecidedError` carrying the standing decision, or
    :class:`ApprovalExpiredError` when it timed out. For a decision that lost the
    compare-and-set, here or (through the central store) on another host.
    """
    if approval.decision is not None and approval.decision != "timeout":
        return ApprovalAlreadyDecidedError(
            approval.approval_id,
            approval.decision,
            approval.decision_scope,
            approval.decided_by,
            approval.resolved_at_unix_ms,
            approval.decision_channel,
        )
    closed_at = approval.expires_at_unix_ms
    if approval.decision == "timeout" and approval.resolved_at_unix_ms is not None:
        closed_at = min(closed_at, approval.resolved_at_unix_ms)
    return ApprovalExpiredError(approval.approval_id, closed_at, now)


async def decide(
    journal: Journal,
    approval_id: str,
    *,
    decision: str,
    scope: str,
    decided_by: str,
    channel: str,
    reason: str | None = None,
    ttl_ms: int | None = None,
    now_ms: int | None = None,
) -> Approval:
    """Answer a pending approval; the first answer wins, and nothing is written otherwise.

    ``ttl_ms`` (> 0) is required for scope ``timeboxed`` and refused for the others. An allow
    must be among the prompt's options (``allow_<scope>``); a deny is always accepted, since
    refusing can never widen what the agent may do. Raises
    :class:`ApprovalAlreadyDecidedError` (with the standing decision) when another answer came
    first, :class:`ApprovalExpiredError` when the request timed out (``now_ms``, default the
    commit time, at or past its expiry) and :class:`RecordNotFoundError` for an unknown id.
    """
    approval_ulid = validate.ulid("approval_id", approval_id)
    verdict = validate.choice("decision", decision, DECISIONS)
    chosen_scope = validate.choice("scope", scope, SCOPES)
    decider = validate.identity("decided_by", decided_by)
    decision_channel = validate.identity("channel", channel)
    if chosen_scope == "timeboxed":
        if ttl_ms is None:
            raise ValidationError("ttl_ms", "is required for scope timeboxed")
        ttl: int | None = validate.integer("ttl_ms", ttl_ms, minimum=1, maximum=MAX_TTL_MS)
    elif ttl_ms is not None:
        raise ValidationError("ttl_ms", f"only applies to scope timeboxed, not {chosen_scope}")
    else:
        ttl = None
    clean_reason = (
        None
        if reason is None
        else _redact_text(
            journal, validate.text("reason", reason, max_bytes=MAX_REASON_BYTES), MAX_REASON_BYTES
        )
    )
    decided_at = validate.optional_integer("now_ms", now_ms)

    def work(ctx: WriteContext) -> Approval:
        current = _read(ctx, approval_ulid)
        option = f"allow_{chosen_scope}"
        # Only a pending request is checked here: for a decided one the caller needs to
        # learn who answered first, which the compare-and-set below reports.
        if verdict == "allow" and current.is_pending and option not in current.prompt.options:
            raise ValidationError(
                "scope",
                f"{option} was not offered for approval {approval_ulid}"
                f" (offered: {', '.join(current.prompt.options) or 'none'})",
            )
        now = ctx.now_ms if decided_at is None else decided_at
        who = RecordContext(
            decider,
            current.device_id,
            current.session_id,
            current.run_id,
            decision_channel,
            Actor.USER,
        )
        # The compare-and-set: the WHERE clause, not the read above, decides who wins, so the
        # rule holds even if this code ever ran outside the writer's exclusive transaction.
        try:
            write_record(
                ctx,
                APPROVALS,
                (approval_ulid,),
                "approval.resolved",
                "UPDATE approvals SET decision = :decision, decision_scope = :scope,"
                " decision_reason = :reason, decision_scope_ttl_ms = :ttl,"
                " decided_by = :decided_by, decision_channel = :channel,"
                " resolved_at_unix_ms = :now, updated_at_unix_ms = :commit,"
                " event_seq = :event_seq WHERE approval_ulid = :id AND decision IS NULL"
                " AND expires_at_unix_ms > :now",
                {
                    "decision": verdict,
                    "scope": chosen_scope,
                    "reason": clean_reason,
                    "ttl": ttl,
                    "decided_by": decider,
                    "channel": decision_channel,
                    "now": now,
                    "commit": ctx.now_ms,
                    "id": approval_ulid,
                },
                who,
            )
        except LookupError:
            raise refusal(current, now) from None
        return _read(ctx, approval_ulid)

    return await journal.transact(work)


async def expire_pending(journal: Journal, *, now_ms: int | None = None) -> list[str]:
    """Record ``timeout`` on every unanswered request past its expiry; returns their ids.

    The decision is ``timeout``, the reason ``approval_response_timeout``, decided by
    ``system``. ``now_ms`` defaults to the commit time. All of one sweep commits together.
    """
    swept_at = validate.optional_integer("now_ms", now_ms)

    def work(ctx: WriteContext) -> list[str]:
        now = ctx.now_ms if swept_at is None else swept_at
        rows = ctx.execute(
            "SELECT approval_ulid, session_ulid, run_ulid, device_id, channel FROM approvals"
            " WHERE decision IS NULL AND expires_at_unix_ms <= ?"
            " ORDER BY expires_at_unix_ms, approval_ulid",
            (now,),
        ).fetchall()
        expired: list[str] = []
        for approval_ulid, session_ulid, run_ulid, device, channel in rows:
            who = RecordContext(
                SYSTEM_PRINCIPAL, device, session_ulid, run_ulid, channel, Actor.SYSTEM
            )
            write_record(
                ctx,
                APPROVALS,
                (approval_ulid,),
                "approval.resolved",
                "UPDATE approvals SET decision = 'timeout', decision_reason = :reason,"
                " decided_by = :system, resolved_at_unix_ms = :now,"
                " updated_at_unix_ms = :commit, event_seq = :event_seq"
                " WHERE approval_ulid = :id AND decision IS NULL",
                {
                    "reason": TIMEOUT_REASON,
                    "system": SYSTEM_PRINCIPAL,
                    "now": now,
                    "commit": ctx.now_ms,
                    "id": approval_ulid,
                },
                who,
            )
            expired.append(str(approval_ulid))
        return expired

    return await journal.transact(work)


# --- reads ------------------------------------------------------------------------------------


async def get_approval(reader: Reads, approval_id: str) -> Approval:
    """The approval with ``approval_id``."""
    approval_ulid = validate.ulid("approval_id", approval_id)
    rows = await reader.fetchall(
        f"SELECT {_COLUMNS} FROM approvals WHERE approval_ulid = ?", (approval_ulid,)
    )
    if not rows:
        raise RecordNotFoundError("approval", approval_ulid)
    return _approval(rows[0])


_RISK_ORDER = (
    "CASE CASE WHEN json_valid(prompt_json) THEN json_extract(prompt_json, '$.risk_level') END"
    + "".join(f" WHEN '{level}' THEN {rank}" for level, rank in _RISK_RANK.items())
    + f" ELSE {_RISK_RANK['critical']} END"
)


async def list_pending(
    reader: Reads, *, now_ms: int | None = None, limit: int = 500
) -> list[Approval]:
    """Undecided requests not yet expired at ``now_ms`` (default: now), most urgent first.

    Most urgent is the earliest expiry, then the highest risk.
    """
    now = wall_clock_ms() if now_ms is None else validate.integer("now_ms", now_ms)
    rows = await reader.fetchall(
        f"SELECT {_COLUMNS} FROM approvals WHERE decision IS NULL AND expires_at_unix_ms > ?"
        f" ORDER BY expires_at_unix_ms, {_RISK_ORDER} DESC, approval_ulid LIMIT ?",
        (now, validate.integer("limit", limit, minimum=1, maximum=100_000)),
    )
    return [_approval(row) for row in rows]


async def list_decided(reader: Reads, *, limit: int = 200) -> list[Approval]:
    """Answered and timed-out requests, newest decision first (the history)."""
    rows = await reader.fetchall(
        f"SELECT {_COLUMNS} FROM approvals WHERE decision IS NOT NULL"
        " ORDER BY resolved_at_unix_ms DESC, approval_ulid DESC LIMIT ?",
        (validate.integer("limit", limit, minimum=1, maximum=100_000),),
    )
    return [_approval(row) for row in rows]


async def list_for_run(reader: Reads, run_id: str) -> list[Approval]:
    """A run's approval requests in the order they were made."""
    run_ulid = validate.ulid("run_id", run_id)
    rows = await reader.fetchall(
        f"SELECT {_COLUMNS} FROM approvals WHERE run_ulid = ?"
        " ORDER BY requested_at_unix_ms, approval_ulid",
        (run_ulid,),
    )
    return [_approval(row) for row in rows]


async def wait_for_decision(
    reader_or_path: JournalReader | str | os.PathLike[str],
    approval_id: str,
    *,
    timeout_s: float,
    poll_interval_s: float = 0.05,
) -> Approval:
    """Wait until the approval is decided (or timed out), typically by another process.

    Every ``poll_interval_s`` this asks SQLite for ``PRAGMA data_version`` and re-reads the row
    only when it changed. The pragma is cheap: it returns a counter SQLite keeps for the
    connection (bumped when another connection commits, seen through the WAL index in shared
    memory); it reads no table and no page of the database. Between polls the task sleeps with
    ``asyncio.sleep``, so waiting costs no CPU. Raises :class:`ApprovalWaitTimeout` once
    ``timeout_s`` has passed without a decision, :class:`RecordNotFoundError` for an unknown id.
    """
    approval_ulid = validate.ulid("approval_id", approval_id)
    if not timeout_s >= 0:
        raise ValidationError("timeout_s", f"must be >= 0, got {timeout_s!r}")
    if not poll_interval_s > 0:
        raise ValidationError("poll_interval_s", f"must be > 0, got {poll_interval_s!r}")
    if isinstance(reader_or_path, JournalReader):
        return await _wait(reader_or_path, approval_ulid, timeout_s, poll_interval_s)
    async with await JournalReader.open(reader_or_path) as reader:
        return await _wait(reader, approval_ulid, timeout_s, poll_interval_s)


async def _wait(
    reader: JournalReader, approval_ulid: str, timeout_s: float, poll_interval_s: float
) -> Approval:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    # The version is taken before the row is read: a decision committed in between then shows
    # as a changed version on the next poll instead of being missed.
    version = await reader.data_version()
    approval = await get_approval(reader, approval_ulid)
    while approval.is_pending:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise ApprovalWaitTimeout(approval_ulid, timeout_s)
        await asyncio.sleep(min(poll_interval_s, remaining))
        latest = await reader.data_version()
        if latest != version:
            version = latest
            approval = await get_approval(reader, approval_ulid)
    return approval


__all__ = [
    "DECISIONS",
    "DEFAULT_OPTIONS",
    "OPTIONS",
    "RISK_LEVELS",
    "SCOPES",
    "STORED_DECISIONS",
    "SUBJECT_TYPES",
    "TIMEOUT_REASON",
    "Approval",
    "ApprovalPrompt",
    "decide",
    "expire_pending",
    "get_approval",
    "list_decided",
    "list_for_run",
    "list_pending",
    "refusal",
    "request_approval",
    "wait_for_decision",
]
