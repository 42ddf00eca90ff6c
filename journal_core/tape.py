"""Run transcripts (``orchestrator_tape``): append-only entries per run, paged and tailed.

The store assigns each entry the next ``seq`` of its run inside the write transaction, so
concurrent writers never collide. Payloads are JSON, redacted like event payloads, and every
entry is a chained record. Reads page by ``after_seq`` with an entry limit and a byte limit
(1,000 entries / 2 MiB by default, as the original); a session transcript walks all runs of a
session in the order they were created.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from journal_core import validate
from journal_core.errors import RecordNotFoundError, ValidationError
from journal_core.events import loads_json, prepare_payload
from journal_core.reads import Reads
from journal_core.records import TAPE, RecordContext, write_record
from journal_core.store import Journal, WriteContext

TAPE_EVENT_TYPES = (
    "status",
    "model_token",
    "tool_proposal",
    "tool_approval_request",
    "tool_approval_response",
    "tool_result",
    "message.received",
    "message.replied",
)
MAX_TAPE_PAYLOAD_BYTES = 256 * 1024
DEFAULT_PAGE_ENTRIES = 1_000
DEFAULT_PAGE_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TapeEntry:
    """One transcript entry."""

    run_id: str
    seq: int
    event_type: str
    payload_json: str
    created_at_unix_ms: int
    event_seq: int

    def payload(self) -> object:
        """The payload parsed from its stored JSON text."""
        return loads_json(self.payload_json)


@dataclass(frozen=True, slots=True)
class TapePage:
    """A page of entries. Pass ``next_after_seq`` back to continue; ``eof`` when none remain."""

    entries: list[TapeEntry]
    next_after_seq: int
    eof: bool
    truncated: bool


@dataclass(frozen=True, slots=True)
class TranscriptCursor:
    """A position in a session transcript: after entry ``seq`` of the run ``run_id``."""

    run_created_at_unix_ms: int = -1
    run_id: str = ""
    seq: int = 0


@dataclass(frozen=True, slots=True)
class TranscriptPage:
    """A page of a session transcript; ``cursor`` continues after its last entry."""

    entries: list[TapeEntry]
    cursor: TranscriptCursor
    eof: bool
    truncated: bool


async def append_entries(
    journal: Journal, run_id: str, entries: Sequence[tuple[str, object]]
) -> list[TapeEntry]:
    """Append ``(event_type, payload)`` entries to a run's tape, atomically and in order."""
    run_ulid = validate.ulid("run_id", run_id)
    if not entries:
        raise ValidationError("entries", "must not be empty")
    prepared: list[tuple[str, str]] = []
    for event_type, payload in entries:
        kind = validate.choice("event_type", event_type, TAPE_EVENT_TYPES)
        text = prepare_payload(
            payload, redactor=journal.redactor, max_bytes=MAX_TAPE_PAYLOAD_BYTES
        ).json
        prepared.append((kind, text))

    def work(ctx: WriteContext) -> list[TapeEntry]:
        row = ctx.execute(
            "SELECT s.principal, s.device_id, s.channel, s.session_ulid,"
            " (SELECT COALESCE(MAX(seq), 0) FROM orchestrator_tape WHERE run_ulid = r.run_ulid)"
            " FROM orchestrator_runs AS r JOIN orchestrator_sessions AS s USING (session_ulid)"
            " WHERE r.run_ulid = ?",
            (run_ulid,),
        ).fetchone()
        if row is None:
            raise RecordNotFoundError("run", run_ulid)
        who = RecordContext(row[0], row[1], row[3], run_ulid, row[2])
        seq = int(row[4])
        written: list[TapeEntry] = []
        for kind, text in prepared:
            seq += 1
            event_seq = write_record(
                ctx,
                TAPE,
                (run_ulid, seq),
                "insert",
                "INSERT INTO orchestrator_tape (run_ulid, seq, event_type, payload_json,"
                " created_at_unix_ms, event_seq) VALUES (:run, :seq, :type, :payload, :now,"
                " :event_seq)",
                {"run": run_ulid, "seq": seq, "type": kind, "payload": text, "now": ctx.now_ms},
                who,
            )
            written.append(TapeEntry(run_ulid, seq, kind, text, ctx.now_ms, event_seq))
        return written

    return await journal.transact(work)


async def append_entry(
    journal: Journal, run_id: str, event_type: str, payload: object
) -> TapeEntry:
    """Append one entry to a run's tape; the store assigns its seq."""
    return (await append_entries(journal, run_id, [(event_type, payload)]))[0]


_ENTRY_COLUMNS = (
    "t.run_ulid, t.seq, t.event_type, t.payload_json, t.created_at_unix_ms, t.event_seq"
)


def _page_limits(max_entries: int, max_bytes: int) -> tuple[int, int]:
    return (
        validate.integer("max_entries", max_entries, minimum=1, maximum=100_000),
        validate.integer("max_bytes", max_bytes, minimum=1, maximum=64 * 1024 * 1024),
    )


def _cut(
    rows: list[tuple[object, ...]], max_entries: int, max_bytes: int
) -> tuple[list[TapeEntry], bool]:
    """Entries within the limits (at least one), and whether more rows were available."""
    entries: list[TapeEntry] = []
    used = 0
    for row in rows[:max_entries]:
        size = len(str(row[3]).encode("utf-8"))
        if entries and used + size > max_bytes:
            return entries, True
        used += size
        entries.append(TapeEntry(*row))  # type: ignore[arg-type]
    return entries, len(rows) > max_entries


async def read_tape(
    reader: Reads,
    run_id: str,
    *,
    after_seq: int = 0,
    max_entries: int = DEFAULT_PAGE_ENTRIES,
    max_bytes: int = DEFAULT_PAGE_BYTES,
) -> TapePage:
    """A run's entries after ``after_seq``, within the entry and byte limits."""
    run_ulid = validate.ulid("run_id", run_id)
    after = validate.integer("after_seq", after_seq)
    limit, byte_limit = _page_limits(max_entries, max_bytes)
    rows = await reader.fetchall(
        f"SELECT {_ENTRY_COLUMNS} FROM orchestrator_tape AS t WHERE t.run_ulid = ? AND t.seq > ?"
        " ORDER BY t.seq LIMIT ?",
        (run_ulid, after, limit + 1),
    )
    entries, more = _cut(rows, limit, byte_limit)
    return TapePage(entries, entries[-1].seq if entries else after, not more, more)


async def session_transcript(
    reader: Reads,
    session_id: str,
    *,
    after: TranscriptCursor | None = None,
    max_entries: int = DEFAULT_PAGE_ENTRIES,
    max_bytes: int = DEFAULT_PAGE_BYTES,
) -> TranscriptPage:
    """All runs of a session in creation order, then each run's entries by seq, paged.

    Passing the returned ``cursor`` back yields what was appended since: this is how a live view
    follows a session.
    """
    session_ulid = validate.ulid("session_id", session_id)
    cursor = after or TranscriptCursor()
    limit, byte_limit = _page_limits(max_entries, max_bytes)
    rows: list[tuple[object, ...]] = []
    if cursor.run_id:
        # The rest of the cursor's run by primary-key range: live tailing stays cheap however
        # long the current run is.
        rows = [
            (*row, cursor.run_created_at_unix_ms)
            for row in await reader.fetchall(
                f"SELECT {_ENTRY_COLUMNS} FROM orchestrator_tape AS t"
                " WHERE t.run_ulid = ? AND t.seq > ? ORDER BY t.seq LIMIT ?",
                (cursor.run_id, cursor.seq, limit + 1),
            )
        ]
    if len(rows) <= limit:
        rows += await reader.fetchall(
            f"SELECT {_ENTRY_COLUMNS}, r.created_at_unix_ms FROM orchestrator_runs AS r"
            " JOIN orchestrator_tape AS t ON t.run_ulid = r.run_ulid"
            " WHERE r.session_ulid = ? AND (r.created_at_unix_ms, r.run_ulid) > (?, ?)"
            " ORDER BY r.created_at_unix_ms, r.run_ulid, t.seq LIMIT ?",
            (session_ulid, cursor.run_created_at_unix_ms, cursor.run_id, limit + 1 - len(rows)),
        )
    created = {str(row[0]): int(row[6]) for row in rows}  # type: ignore[call-overload]
    entries, more = _cut([row[:6] for row in rows], limit, byte_limit)
    if entries:
        last = entries[-1]
        cursor = TranscriptCursor(created[last.run_id], last.run_id, last.seq)
    return TranscriptPage(entries, cursor, not more, more)
