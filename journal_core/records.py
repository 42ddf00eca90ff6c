"""One chain covers every table: record writes commit to chained events, and are checked.

Every write of a record row (a session, a run's state, a transcript entry, a tool job ...) happens
in the same transaction as a chained ``record_written`` event whose payload names the table, the
row's key, the operation and the SHA-256 *digest* of the row as stored. The row keeps the seq of
that event in ``event_seq``. Rows removed on purpose (retention, purge requests) are announced by a
chained ``record_purged`` tombstone listing their keys.

Verification (:func:`verify_records`) then checks, table by table:

- each row against its event: the event exists, is a record event for this table and key, and
  the digest recomputed from the row matches (``record_digest_mismatch``,
  ``record_event_mismatch``);
- each record's newest event against the table: the row exists unless a later tombstone purged it
  (``record_missing``), points at that newest event rather than an older one (``record_stale``),
  and a purged row is really gone (``record_not_purged``).

The digest encoding is specified in ``docs/chain.md``.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from journal_core.chain import RecordBreak, Value, encode_value, encode_values
from journal_core.events import Actor, Kind, PreparedEvent
from journal_core.ids import new_ulid
from journal_core.store import WriteContext

RECORD_DIGEST_TAG = b"journal-record-v1\x00"
NO_ULID = "00000000000000000000000000"
_PURGE_KEYS_PER_EVENT = 1_000


@dataclass(frozen=True, slots=True)
class RecordSpec:
    """How a table takes part in the chain: its key and the columns its digest covers."""

    table: str
    key_columns: tuple[str, ...]
    columns: tuple[str, ...]

    @property
    def key_where(self) -> str:
        """``col = ? AND ...`` over the key columns."""
        return " AND ".join(f"{column} = ?" for column in self.key_columns)

    def key_sql(self, alias: str) -> str:
        """A SQL expression giving the key text (key values joined with ``:``)."""
        return " || ':' || ".join(f"CAST({alias}.{column} AS TEXT)" for column in self.key_columns)


def _spec(table: str, key: tuple[str, ...], columns: str) -> RecordSpec:
    return RecordSpec(table, key, tuple(columns.split()))


SESSIONS = _spec(
    "orchestrator_sessions",
    ("session_ulid",),
    "session_ulid session_key session_label auto_title principal device_id channel"
    " created_at_unix_ms updated_at_unix_ms last_run_ulid archived_at_unix_ms",
)
RUNS = _spec(
    "orchestrator_runs",
    ("run_ulid",),
    "run_ulid session_ulid state cancel_requested cancel_reason created_at_unix_ms"
    " started_at_unix_ms completed_at_unix_ms updated_at_unix_ms prompt_tokens"
    " completion_tokens total_tokens last_error origin_kind parent_run_ulid",
)
RUN_LIFECYCLE = _spec(
    "run_lifecycle_events",
    ("id",),
    "id run_ulid from_state to_state actor reason created_at_unix_ms",
)
TAPE = _spec(
    "orchestrator_tape",
    ("run_ulid", "seq"),
    "run_ulid seq event_type payload_json created_at_unix_ms",
)
TOOL_JOBS = _spec(
    "tool_jobs",
    ("job_ulid",),
    "job_ulid owner_principal device_id channel session_ulid run_ulid tool_call_id tool_name"
    " backend command_sha256 state attempt_count max_attempts retry_allowed idempotency_key"
    " tail_preview last_error state_reason exit_code created_at_unix_ms updated_at_unix_ms"
    " started_at_unix_ms heartbeat_at_unix_ms completed_at_unix_ms expires_at_unix_ms"
    " legal_hold active_ref_count lease_expires_at_unix_ms",
)
TOOL_JOB_TAIL = _spec(
    "tool_job_tail_entries",
    ("seq",),
    "seq job_ulid stream chunk_redacted chunk_sha256 byte_len created_at_unix_ms",
)
APPROVALS = _spec(
    "approvals",
    ("approval_ulid",),
    "approval_ulid session_ulid run_ulid principal device_id channel requested_at_unix_ms"
    " expires_at_unix_ms resolved_at_unix_ms subject_type subject_id request_summary decision"
    " decision_scope decision_reason decision_scope_ttl_ms decided_by decision_channel"
    " policy_snapshot_json prompt_json created_at_unix_ms updated_at_unix_ms",
)
MEMORY_ITEMS = _spec(
    "memory_items",
    ("memory_ulid",),
    "memory_ulid principal channel session_ulid source content_text content_hash tags_json"
    " confidence ttl_unix_ms created_at_unix_ms updated_at_unix_ms",
)
MEMORY_VECTORS = _spec(
    "memory_vectors",
    ("memory_ulid",),
    "memory_ulid model_id dims version vector created_at_unix_ms",
)
ARTIFACTS = _spec(
    "tool_result_artifacts",
    ("artifact_ulid",),
    "artifact_ulid job_ulid session_ulid run_ulid tool_name mime_type sensitivity content"
    " byte_len sha256 created_at_unix_ms expires_at_unix_ms legal_hold purge_requested",
)
ARTIFACT_READS = _spec(
    "artifact_read_audit",
    ("id",),
    "id artifact_ulid reader channel outcome reason created_at_unix_ms",
)

#: Every table that takes part in the chain, in verification order.
RECORD_SPECS: tuple[RecordSpec, ...] = (
    SESSIONS,
    RUNS,
    RUN_LIFECYCLE,
    TAPE,
    TOOL_JOBS,
    TOOL_JOB_TAIL,
    APPROVALS,
    MEMORY_ITEMS,
    MEMORY_VECTORS,
    ARTIFACTS,
    ARTIFACT_READS,
)
SPECS_BY_TABLE: Mapping[str, RecordSpec] = {spec.table: spec for spec in RECORD_SPECS}


def key_text(key: Sequence[Value]) -> str:
    """A record's key as record events name it: the key values joined with ``:``."""
    return ":".join(str(value) for value in key)


def record_digest(spec: RecordSpec, values: Sequence[Value]) -> str:
    """Hex SHA-256 of a row: the tag, the table name, then every digest column's value."""
    return hashlib.sha256(
        RECORD_DIGEST_TAG + encode_value(spec.table) + encode_values(values)
    ).hexdigest()


@dataclass(frozen=True, slots=True)
class RecordContext:
    """The chain identity fields a record event carries (who and where)."""

    principal: str
    device_id: str
    session_ulid: str | None = None
    run_ulid: str | None = None
    channel: str | None = None
    actor: int = Actor.SYSTEM


def _record_event(
    ctx: WriteContext, who: RecordContext, kind: Kind, payload: object
) -> PreparedEvent:
    return PreparedEvent(
        event_ulid=new_ulid(ctx.now_ms),
        session_ulid=who.session_ulid or NO_ULID,
        run_ulid=who.run_ulid or NO_ULID,
        kind=int(kind),
        actor=int(who.actor),
        timestamp_unix_ms=ctx.now_ms,
        payload_json=orjson.dumps(payload).decode("utf-8"),
        redacted=0,
        redaction_rules=None,
        principal=who.principal,
        device_id=who.device_id,
        channel=who.channel,
    )


def read_row(
    ctx: WriteContext | sqlite3.Connection, spec: RecordSpec, key: Sequence[Value]
) -> tuple[Value, ...] | None:
    """The digest columns of the row with ``key``, as stored, or None."""
    conn = ctx.connection if isinstance(ctx, WriteContext) else ctx
    row = conn.execute(
        f"SELECT {', '.join(spec.columns)} FROM {spec.table} WHERE {spec.key_where}",
        tuple(key),
    ).fetchone()
    return None if row is None else tuple(row)


def write_record(
    ctx: WriteContext,
    spec: RecordSpec,
    key: Sequence[Value] | None,
    op: str,
    sql: str,
    params: Mapping[str, object],
    who: RecordContext,
) -> int:
    """Run ``sql`` (an INSERT or UPDATE of one row of ``spec.table``) and chain it.

    ``sql`` takes named parameters and must set ``event_seq = :event_seq``. ``key`` None means
    the row's key is the rowid SQLite just assigned (append-only logs). The row is read back as
    stored, so its digest is what a verifier will recompute; the record event gets exactly the
    seq the row points at. Returns that seq.
    """
    event_seq = ctx.next_seq
    cursor = ctx.execute(sql, {**params, "event_seq": event_seq})
    if cursor.rowcount != 1:
        raise LookupError(f"{spec.table}: {op} matched {cursor.rowcount} rows, expected 1")
    if key is None:
        key = (cursor.lastrowid,)
    stored = read_row(ctx, spec, key)
    assert stored is not None
    payload = {
        "table": spec.table,
        "key": key_text(key),
        "op": op,
        "digest": record_digest(spec, stored),
    }
    result = ctx.append(_record_event(ctx, who, Kind.RECORD_WRITTEN, payload))
    assert result.seq == event_seq, "the record event must take the seq its row points at"
    return event_seq


def purge_records(
    ctx: WriteContext,
    spec: RecordSpec,
    keys: Sequence[Sequence[Value]],
    reason: str,
    who: RecordContext,
) -> int:
    """Delete rows on purpose, announcing them first in chained ``record_purged`` tombstones.

    Returns the number of rows deleted.
    """
    deleted = 0
    for start in range(0, len(keys), _PURGE_KEYS_PER_EVENT):
        chunk = keys[start : start + _PURGE_KEYS_PER_EVENT]
        payload = {
            "table": spec.table,
            "keys": [key_text(key) for key in chunk],
            "reason": reason,
        }
        ctx.append(_record_event(ctx, who, Kind.RECORD_PURGED, payload))
        for key in chunk:
            cursor = ctx.execute(f"DELETE FROM {spec.table} WHERE {spec.key_where}", tuple(key))
            deleted += cursor.rowcount
    return deleted


@dataclass(slots=True)
class RecordsReport:
    """What :func:`verify_records` found: rows checked, purges honoured, and breaks."""

    checked_rows: int = 0
    purged_rows: int = 0
    breaks: list[RecordBreak] = field(default_factory=list)


def _row_checks(
    conn: sqlite3.Connection, spec: RecordSpec, up_to_seq: int
) -> Iterator[RecordBreak | None]:
    """Check every row of ``spec.table`` against the event it points at."""
    query = (
        f"SELECT {spec.key_sql('r')}, r.event_seq, e.kind, e.payload_json, "
        + ", ".join(f"r.{column}" for column in spec.columns)
        + f" FROM {spec.table} AS r LEFT JOIN journal_events AS e ON e.seq = r.event_seq"
        + " WHERE r.event_seq <= ? OR e.seq IS NULL"
    )
    return check_rows(spec, conn.execute(query, (up_to_seq,)))


def check_rows(spec: RecordSpec, rows: Iterable[Sequence[Any]]) -> Iterator[RecordBreak | None]:
    """Judge record rows against the events they point at: a break, or None for a good row.

    Each row is ``(key text, event_seq, the event's kind, its payload_json, *spec.columns)``,
    with None for the event's fields when no event has that seq. Shared by every store that
    holds record rows (the journal file, the central store).
    """
    for row in rows:
        key, event_seq, kind, payload_text = row[0], row[1], row[2], row[3]
        key_text = str(key)
        if kind is None:
            yield RecordBreak(
                "record_event_missing",
                spec.table,
                key_text,
                event_seq,
                "the row points at an event that is not in the journal",
            )
            continue
        try:
            payload = orjson.loads(payload_text)
        except orjson.JSONDecodeError:
            payload = None
        if (
            kind != Kind.RECORD_WRITTEN
            or not isinstance(payload, dict)
            or payload.get("table") != spec.table
            or payload.get("key") != key_text
        ):
            yield RecordBreak(
                "record_event_mismatch",
                spec.table,
                key_text,
                event_seq,
                "the event the row points at is not this row's record event",
            )
            continue
        if payload.get("digest") != record_digest(spec, row[4:]):
            yield RecordBreak(
                "record_digest_mismatch",
                spec.table,
                key_text,
                event_seq,
                "the row's content differs from what its chained event committed to",
            )
            continue
        yield None


_LATEST = """
CREATE TEMP TABLE record_latest AS
SELECT json_extract(payload_json, '$.table') AS tbl, json_extract(payload_json, '$.key') AS k,
       MAX(seq) AS seq
FROM journal_events WHERE kind = ? AND seq <= ? GROUP BY 1, 2
"""
_PURGED = """
CREATE TEMP TABLE record_purged AS
SELECT json_extract(e.payload_json, '$.table') AS tbl, CAST(j.value AS TEXT) AS k,
       MAX(e.seq) AS seq
FROM journal_events AS e, json_each(e.payload_json, '$.keys') AS j
WHERE e.kind = ? AND e.seq <= ? GROUP BY 1, 2
"""
_TEMP_TABLES = ("record_latest", "record_purged", "record_rows")


def _drop_temp(conn: sqlite3.Connection) -> None:
    for name in _TEMP_TABLES:
        conn.execute(f"DROP TABLE IF EXISTS temp.{name}")


def verify_records(conn: sqlite3.Connection, up_to_seq: int) -> RecordsReport:
    """Check every record table against the chain up to ``up_to_seq`` (read-only).

    ``conn`` must return TEXT as ``str``. Uses TEMP tables, which read-only connections allow;
    every join goes through an index, so the cost grows as n log n with the number of rows.
    """
    report = RecordsReport()
    breaks = report.breaks
    for spec in RECORD_SPECS:
        for item in _row_checks(conn, spec, up_to_seq):
            report.checked_rows += 1
            if item is not None:
                breaks.append(item)
    _drop_temp(conn)
    try:
        conn.execute(_LATEST, (int(Kind.RECORD_WRITTEN), up_to_seq))
        conn.execute("CREATE INDEX temp.record_latest_tbl ON record_latest (tbl, k)")
        conn.execute(_PURGED, (int(Kind.RECORD_PURGED), up_to_seq))
        conn.execute("CREATE INDEX temp.record_purged_key ON record_purged (tbl, k)")
        for spec in RECORD_SPECS:
            conn.execute("DROP TABLE IF EXISTS temp.record_rows")
            conn.execute(
                f"CREATE TEMP TABLE record_rows AS SELECT {spec.key_sql('r')} AS k,"
                f" r.event_seq AS seq FROM {spec.table} AS r"
            )
            conn.execute("CREATE INDEX temp.record_rows_key ON record_rows (k)")
            rows = conn.execute(
                "SELECT l.k, l.seq, r.seq, p.seq FROM temp.record_latest AS l"
                " LEFT JOIN temp.record_rows AS r ON r.k = l.k"
                " LEFT JOIN temp.record_purged AS p ON p.tbl = l.tbl AND p.k = l.k"
                " WHERE l.tbl = ?",
                (spec.table,),
            )
            for key, latest, row_seq, purged_seq in rows:
                judge_latest(report, spec, str(key), latest, row_seq, purged_seq)
    finally:
        _drop_temp(conn)
    return report


def judge_latest(
    report: RecordsReport,
    spec: RecordSpec,
    key: str,
    latest: int,
    row_seq: int | None,
    purged_seq: int | None,
) -> None:
    """Compare a record's newest chained event with the row (if any) and its tombstone.

    ``latest`` is the seq of the record's newest ``record_written`` event, ``row_seq`` the
    ``event_seq`` of the stored row (None: no row), ``purged_seq`` the newest tombstone naming it.
    """
    purged = purged_seq is not None and purged_seq > latest
    if purged and row_seq is None:
        report.purged_rows += 1
    elif purged:
        report.breaks.append(
            RecordBreak(
                "record_not_purged",
                spec.table,
                key,
                row_seq,
                "a tombstone says this row was purged, but it is still stored",
            )
        )
    elif row_seq is None:
        report.breaks.append(
            RecordBreak(
                "record_missing",
                spec.table,
                key,
                latest,
                "the chain records this row but it is gone, with no tombstone",
            )
        )
    elif row_seq < latest:
        report.breaks.append(
            RecordBreak(
                "record_stale",
                spec.table,
                key,
                row_seq,
                f"the row is an older state; the chain's newest is event {latest}",
            )
        )
