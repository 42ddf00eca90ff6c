"""Tool result artifacts: large tool outputs, kept apart from events, with an audited read path.

An artifact's content is stored once (text redacted, binary as is) with its SHA-256. Every read
recomputes that digest, and checks the row against the chained event that committed it, so
content altered in the file is refused (``digest_mismatch``) instead of served. Every read
attempt, served or refused, appends a chained row to ``artifact_read_audit``; so does every
removal by retention (outcome ``purged``), which is how a later read can tell ``purged`` from
``not_found``.

Retention removes artifacts past their expiry time or whose purge was requested, never those
under legal hold, through chained tombstones and with ``secure_delete`` on, so the content is
really gone from the file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from journal_core import validate
from journal_core.errors import ArtifactUnavailableError, RecordNotFoundError, ValidationError
from journal_core.events import Actor, Kind
from journal_core.ids import new_ulid
from journal_core.reader import JournalReader
from journal_core.records import (
    ARTIFACT_READS,
    ARTIFACTS,
    RecordContext,
    purge_records,
    read_row,
    record_digest,
    write_record,
)
from journal_core.store import Journal, WriteContext

SENSITIVITIES = ("public", "internal", "confidential", "secret")
MAX_ARTIFACT_BYTES = 16 * 1024 * 1024
MAX_MIME_BYTES = 255
#: Read audit outcomes: a read served, a read refused, a removal by retention.
AUDIT_OUTCOMES = ("ok", "refused", "purged")
UNAVAILABLE_REASONS = ("not_found", "purged", "expired", "digest_mismatch")
SYSTEM_PRINCIPAL = "system"
SYSTEM_DEVICE = "journal"
RETENTION_READER = "journal:retention"

_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*(\s*;.*)?")
_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/xml",
        "application/yaml",
        "application/x-yaml",
        "application/javascript",
        "application/toml",
    }
)
_META_COLUMNS = (
    "artifact_ulid, job_ulid, session_ulid, run_ulid, tool_name, mime_type, sensitivity,"
    " byte_len, sha256, created_at_unix_ms, expires_at_unix_ms, legal_hold, purge_requested"
)


@dataclass(frozen=True, slots=True)
class Artifact:
    """An artifact's description (never its content; read that with :func:`read_artifact`)."""

    artifact_id: str
    job_id: str | None
    session_id: str | None
    run_id: str | None
    tool_name: str
    mime_type: str
    sensitivity: str
    byte_len: int
    sha256: str
    created_at_unix_ms: int
    expires_at_unix_ms: int | None
    legal_hold: bool
    purge_requested: bool

    def expired(self, at_unix_ms: int) -> bool:
        """True when the artifact's expiry time has passed at ``at_unix_ms``."""
        return self.expires_at_unix_ms is not None and self.expires_at_unix_ms <= at_unix_ms


@dataclass(frozen=True, slots=True)
class ArtifactReadEntry:
    """One row of the read audit: who tried to read which artifact, and what happened."""

    id: int
    artifact_id: str
    reader: str
    channel: str | None
    outcome: str
    reason: str | None
    created_at_unix_ms: int


def is_text_mime(mime_type: str) -> bool:
    """True for content types whose bytes are text (and so are redacted before storing)."""
    base = mime_type.split(";", 1)[0].strip().lower()
    return (
        base.startswith("text/")
        or base in _TEXT_TYPES
        or base.endswith("+json")
        or base.endswith("+xml")
    )


def _meta(row: Sequence[object]) -> Artifact:
    values = list(row)
    values[11] = bool(values[11])
    values[12] = bool(values[12])
    return Artifact(*values)  # type: ignore[arg-type]


def _read_meta(ctx: WriteContext, artifact_ulid: str) -> Artifact:
    row = ctx.execute(
        f"SELECT {_META_COLUMNS} FROM tool_result_artifacts WHERE artifact_ulid = ?",
        (artifact_ulid,),
    ).fetchone()
    if row is None:
        raise RecordNotFoundError("artifact", artifact_ulid)
    return _meta(row)


def _who(meta: Artifact | None, principal: str, channel: str | None = None) -> RecordContext:
    return RecordContext(
        principal,
        SYSTEM_DEVICE,
        None if meta is None else meta.session_id,
        None if meta is None else meta.run_id,
        channel,
        Actor.SYSTEM,
    )


def _audit(
    ctx: WriteContext,
    who: RecordContext,
    *,
    artifact_ulid: str,
    reader_name: str,
    outcome: str,
    reason: str | None,
    at: int,
) -> None:
    write_record(
        ctx,
        ARTIFACT_READS,
        None,
        "insert",
        "INSERT INTO artifact_read_audit (artifact_ulid, reader, channel, outcome, reason,"
        " created_at_unix_ms, event_seq) VALUES (:artifact, :reader, :channel, :outcome,"
        " :reason, :at, :event_seq)",
        {
            "artifact": artifact_ulid,
            "reader": reader_name,
            "channel": who.channel,
            "outcome": outcome,
            "reason": reason,
            "at": at,
        },
        who,
    )


def _clean_content(journal: Journal, content: bytes | str, mime_type: str) -> bytes:
    """The bytes to store: text redacted (it must be UTF-8), binary unchanged."""
    if isinstance(content, str):
        text = validate.text("content", content, max_bytes=MAX_ARTIFACT_BYTES, allow_empty=True)
        return journal.redactor.redact_text(text)[0].encode("utf-8")
    if not isinstance(content, bytes | bytearray | memoryview):
        raise ValidationError("content", f"must be bytes or str, got {type(content).__name__}")
    data = bytes(content)
    if len(data) > MAX_ARTIFACT_BYTES:
        raise ValidationError("content", f"is {len(data)} bytes; the limit is {MAX_ARTIFACT_BYTES}")
    if not is_text_mime(mime_type):
        return data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Text that cannot be decoded cannot be redacted; it must not slip through as text.
        raise ValidationError(
            "content",
            f"is declared {mime_type} but is not valid UTF-8"
            " (decode it first, or store it as application/octet-stream)",
        ) from None
    return journal.redactor.redact_text(text)[0].encode("utf-8")


def _optional_now(now_ms: int | None) -> int | None:
    return validate.optional_integer("now_ms", now_ms, maximum=(1 << 48) - 1)


def _erase_freed_content(ctx: WriteContext) -> None:
    """Make SQLite zero every cell and page this transaction frees.

    A connection setting, allowed inside the transaction. Updates need it too: rewriting a
    row may move it and free the pages of the old copy, content included.
    """
    ctx.execute("PRAGMA secure_delete = ON")


# --- writes -----------------------------------------------------------------------------------


async def store_artifact(
    journal: Journal,
    *,
    tool_name: str,
    content: bytes | str,
    mime_type: str,
    sensitivity: str,
    job_id: str | None = None,
    session_id: str | None = None,
    run_id: str | None = None,
    expires_at_unix_ms: int | None = None,
    legal_hold: bool = False,
    artifact_id: str | None = None,
    now_ms: int | None = None,
) -> Artifact:
    """Store a tool's output (at most 16 MiB) and return its description.

    Text (a ``str``, or bytes of a text type such as ``text/*`` or ``application/json``) is
    redacted before it is stored and must be UTF-8; other bytes are stored as given. The
    SHA-256 is of the bytes as stored. Raises ValidationError naming the field; nothing is
    written then.
    """
    tool = validate.identity("tool_name", tool_name)
    mime = validate.identity("mime_type", mime_type, max_bytes=MAX_MIME_BYTES).lower()
    if not _MIME.fullmatch(mime):
        raise ValidationError("mime_type", f"{mime!r} is not a type/subtype media type")
    level = validate.choice("sensitivity", sensitivity, SENSITIVITIES)
    job = validate.optional_ulid("job_id", job_id)
    session_ulid = validate.optional_ulid("session_id", session_id)
    run_ulid = validate.optional_ulid("run_id", run_id)
    expires = validate.optional_integer("expires_at_unix_ms", expires_at_unix_ms)
    if not isinstance(legal_hold, bool):
        raise ValidationError("legal_hold", f"must be a bool, got {type(legal_hold).__name__}")
    artifact_ulid = validate.optional_ulid("artifact_id", artifact_id) or new_ulid()
    at_override = _optional_now(now_ms)
    data = _clean_content(journal, content, mime)
    digest = hashlib.sha256(data).hexdigest()
    who = RecordContext(SYSTEM_PRINCIPAL, SYSTEM_DEVICE, session_ulid, run_ulid, None, Actor.SYSTEM)

    def work(ctx: WriteContext) -> Artifact:
        at = ctx.now_ms if at_override is None else at_override
        if ctx.execute(
            "SELECT 1 FROM tool_result_artifacts WHERE artifact_ulid = ?", (artifact_ulid,)
        ).fetchone():
            raise ValidationError("artifact_id", f"artifact {artifact_ulid} exists")
        write_record(
            ctx,
            ARTIFACTS,
            (artifact_ulid,),
            "insert",
            "INSERT INTO tool_result_artifacts (artifact_ulid, job_ulid, session_ulid, run_ulid,"
            " tool_name, mime_type, sensitivity, content, byte_len, sha256, created_at_unix_ms,"
            " expires_at_unix_ms, legal_hold, purge_requested, event_seq) VALUES (:id, :job,"
            " :session, :run, :tool, :mime, :sensitivity, :content, :len, :sha, :at, :expires,"
            " :hold, 0, :event_seq)",
            {
                "id": artifact_ulid,
                "job": job,
                "session": session_ulid,
                "run": run_ulid,
                "tool": tool,
                "mime": mime,
                "sensitivity": level,
                "content": data,
                "len": len(data),
                "sha": digest,
                "at": at,
                "expires": expires,
                "hold": int(legal_hold),
            },
            who,
        )
        return _read_meta(ctx, artifact_ulid)

    return await journal.transact(work)


def _matches_chain(ctx: WriteContext, artifact_ulid: str, event_seq: int) -> bool:
    """True when the row is exactly what its chained record event committed to."""
    stored = read_row(ctx, ARTIFACTS, (artifact_ulid,))
    event = ctx.execute(
        "SELECT kind, payload_json FROM journal_events WHERE seq = ?", (event_seq,)
    ).fetchone()
    if stored is None or event is None or event[0] != Kind.RECORD_WRITTEN:
        return False
    try:
        payload = orjson.loads(event[1])
    except orjson.JSONDecodeError:
        return False
    return (
        isinstance(payload, dict)
        and payload.get("table") == ARTIFACTS.table
        and payload.get("key") == artifact_ulid
        and payload.get("digest") == record_digest(ARTIFACTS, stored)
    )


async def read_artifact(
    journal: Journal,
    artifact_id: str,
    *,
    reader_name: str,
    channel: str | None = None,
    now_ms: int | None = None,
) -> bytes:
    """The artifact's content, after checking its digest; every attempt is audited.

    Raises :class:`ArtifactUnavailableError` with reason ``not_found``, ``purged``,
    ``expired`` or ``digest_mismatch``; the refused attempt's audit row is committed first.
    """
    artifact_ulid = validate.ulid("artifact_id", artifact_id)
    name = validate.identity("reader_name", reader_name)
    where = validate.optional_identity("channel", channel)
    at_override = _optional_now(now_ms)

    def work(ctx: WriteContext) -> tuple[bytes | None, str | None]:
        at = ctx.now_ms if at_override is None else at_override
        row = ctx.execute(
            f"SELECT {_META_COLUMNS}, content, event_seq FROM tool_result_artifacts"
            " WHERE artifact_ulid = ?",
            (artifact_ulid,),
        ).fetchone()
        meta = None if row is None else _meta(row[:13])
        content: bytes | None = None
        reason: str | None = None
        if meta is None:
            removed = ctx.execute(
                "SELECT 1 FROM artifact_read_audit WHERE artifact_ulid = ? AND outcome = 'purged'"
                " LIMIT 1",
                (artifact_ulid,),
            ).fetchone()
            reason = "purged" if removed else "not_found"
        elif meta.purge_requested:
            reason = "purged"
        elif meta.expired(at):
            reason = "expired"
        else:
            content = bytes(row[13])
            if (
                len(content) != meta.byte_len
                or hashlib.sha256(content).hexdigest() != meta.sha256
                or not _matches_chain(ctx, artifact_ulid, int(row[14]))
            ):
                content, reason = None, "digest_mismatch"
        outcome = "ok" if reason is None else "refused"
        _audit(
            ctx,
            _who(meta, name, where),
            artifact_ulid=artifact_ulid,
            reader_name=name,
            outcome=outcome,
            reason=reason,
            at=at,
        )
        return content, reason

    content, reason = await journal.transact(work)
    if content is None:
        raise ArtifactUnavailableError(reason or "not_found", artifact_ulid)
    return content


async def request_purge(journal: Journal, artifact_id: str) -> Artifact:
    """Mark an artifact for removal: reads are refused from now on, retention deletes it.

    An artifact under legal hold stays stored (and unreadable) until the hold is released.
    """
    artifact_ulid = validate.ulid("artifact_id", artifact_id)

    def work(ctx: WriteContext) -> Artifact:
        meta = _read_meta(ctx, artifact_ulid)
        if meta.purge_requested:
            return meta
        _erase_freed_content(ctx)
        write_record(
            ctx,
            ARTIFACTS,
            (artifact_ulid,),
            "purge_requested",
            "UPDATE tool_result_artifacts SET purge_requested = 1, event_seq = :event_seq"
            " WHERE artifact_ulid = :id",
            {"id": artifact_ulid},
            _who(meta, SYSTEM_PRINCIPAL),
        )
        return _read_meta(ctx, artifact_ulid)

    return await journal.transact(work)


async def set_legal_hold(journal: Journal, artifact_id: str, hold: bool) -> Artifact:
    """Put an artifact under legal hold (retention never removes it) or release it."""
    artifact_ulid = validate.ulid("artifact_id", artifact_id)
    if not isinstance(hold, bool):
        raise ValidationError("hold", f"must be a bool, got {type(hold).__name__}")

    def work(ctx: WriteContext) -> Artifact:
        meta = _read_meta(ctx, artifact_ulid)
        if meta.legal_hold == hold:
            return meta
        _erase_freed_content(ctx)
        write_record(
            ctx,
            ARTIFACTS,
            (artifact_ulid,),
            "legal_hold" if hold else "legal_hold_released",
            "UPDATE tool_result_artifacts SET legal_hold = :hold, event_seq = :event_seq"
            " WHERE artifact_ulid = :id",
            {"hold": int(hold), "id": artifact_ulid},
            _who(meta, SYSTEM_PRINCIPAL),
        )
        return _read_meta(ctx, artifact_ulid)

    return await journal.transact(work)


async def run_artifact_retention(journal: Journal, *, now_ms: int | None = None) -> list[str]:
    """Remove expired and purge-requested artifacts not under legal hold; returns their ids.

    Each removal is announced by a chained tombstone and an audit row (outcome ``purged``);
    the content is overwritten in the file, not just unlinked.
    """
    at_override = _optional_now(now_ms)

    def work(ctx: WriteContext) -> list[str]:
        at = ctx.now_ms if at_override is None else at_override
        rows = ctx.execute(
            f"SELECT {_META_COLUMNS} FROM tool_result_artifacts WHERE legal_hold = 0"
            " AND (purge_requested = 1 OR (expires_at_unix_ms IS NOT NULL"
            " AND expires_at_unix_ms <= ?)) ORDER BY created_at_unix_ms, artifact_ulid",
            (at,),
        ).fetchall()
        if not rows:
            return []
        _erase_freed_content(ctx)
        removed: list[str] = []
        for reason in ("purge_requested", "expired"):
            doomed = [
                meta
                for meta in map(_meta, rows)
                if (reason == "purge_requested") == meta.purge_requested
            ]
            if not doomed:
                continue
            who = RecordContext(SYSTEM_PRINCIPAL, SYSTEM_DEVICE)
            for meta in doomed:
                _audit(
                    ctx,
                    _who(meta, SYSTEM_PRINCIPAL),
                    artifact_ulid=meta.artifact_id,
                    reader_name=RETENTION_READER,
                    outcome="purged",
                    reason=reason,
                    at=at,
                )
            purge_records(ctx, ARTIFACTS, [(meta.artifact_id,) for meta in doomed], reason, who)
            removed.extend(meta.artifact_id for meta in doomed)
        return removed

    return await journal.transact(work)


# --- reads ------------------------------------------------------------------------------------


async def get_artifact_meta(reader: JournalReader, artifact_id: str) -> Artifact:
    """An artifact's description (no content, and no audit row: nothing was read)."""
    artifact_ulid = validate.ulid("artifact_id", artifact_id)
    rows = await reader.fetchall(
        f"SELECT {_META_COLUMNS} FROM tool_result_artifacts WHERE artifact_ulid = ?",
        (artifact_ulid,),
    )
    if not rows:
        raise RecordNotFoundError("artifact", artifact_ulid)
    return _meta(rows[0])


async def list_artifacts(
    reader: JournalReader,
    *,
    session_id: str | None = None,
    run_id: str | None = None,
    job_id: str | None = None,
    limit: int = 500,
) -> list[Artifact]:
    """Artifact descriptions, newest first, optionally of one session, run and/or job."""
    where: list[str] = []
    params: list[object] = []
    for column, field, value in (
        ("session_ulid", "session_id", session_id),
        ("run_ulid", "run_id", run_id),
        ("job_ulid", "job_id", job_id),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(validate.ulid(field, value))
    params.append(validate.integer("limit", limit, minimum=1, maximum=100_000))
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = await reader.fetchall(
        f"SELECT {_META_COLUMNS} FROM tool_result_artifacts{clause}"
        " ORDER BY created_at_unix_ms DESC, artifact_ulid DESC LIMIT ?",
        tuple(params),
    )
    return [_meta(row) for row in rows]


async def read_audit(reader: JournalReader, artifact_id: str) -> list[ArtifactReadEntry]:
    """Every audited read attempt (and removal) of an artifact, oldest first."""
    artifact_ulid = validate.ulid("artifact_id", artifact_id)
    rows = await reader.fetchall(
        "SELECT id, artifact_ulid, reader, channel, outcome, reason, created_at_unix_ms"
        " FROM artifact_read_audit WHERE artifact_ulid = ? ORDER BY id",
        (artifact_ulid,),
    )
    return [ArtifactReadEntry(*row) for row in rows]
