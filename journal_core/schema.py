"""The journal's SQLite schema: versioned forward migrations and recognising a journal file.

A journal is recognised by its ``application_id`` (``JRNL``) and its ``journal_meta`` table.
Migrations run forward only, each in its own transaction, and are recorded in
``schema_migrations``. A file whose schema is newer than this code knows is refused, never
downgraded.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from journal_core.errors import NotAJournalError, SchemaTooNewError

APPLICATION_ID = 0x4A524E4C  # "JRNL"
SQLITE_HEADER = b"SQLite format 3\x00"


#: Every stored column of ``journal_events``, in the order readers and copies use.
#: The FTS5 index of memory_items (see journal_core.fts for its upkeep).
MEMORY_INDEX = "memory_items_fts"
EVENT_COLUMNS: tuple[str, ...] = (
    "seq",
    "event_ulid",
    "session_ulid",
    "run_ulid",
    "kind",
    "actor",
    "timestamp_unix_ms",
    "payload_json",
    "redacted",
    "redaction_rules",
    "hash",
    "prev_hash",
    "principal",
    "device_id",
    "channel",
    "created_at_unix_ms",
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One forward step of the schema."""

    version: int
    name: str
    sql: str


_APPEND_ONLY = """
CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END;
CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END;
"""

_RECORDS_SQL = """
CREATE TABLE orchestrator_sessions (
    session_ulid TEXT PRIMARY KEY NOT NULL,
    session_key TEXT NOT NULL UNIQUE,
    session_label TEXT,
    auto_title TEXT,
    principal TEXT NOT NULL,
    device_id TEXT NOT NULL,
    channel TEXT,
    created_at_unix_ms INTEGER NOT NULL,
    updated_at_unix_ms INTEGER NOT NULL,
    last_run_ulid TEXT,
    archived_at_unix_ms INTEGER,
    event_seq INTEGER NOT NULL
);

CREATE TABLE orchestrator_runs (
    run_ulid TEXT PRIMARY KEY NOT NULL,
    session_ulid TEXT NOT NULL REFERENCES orchestrator_sessions (session_ulid),
    state TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    cancel_reason TEXT,
    created_at_unix_ms INTEGER NOT NULL,
    started_at_unix_ms INTEGER,
    completed_at_unix_ms INTEGER,
    updated_at_unix_ms INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    origin_kind TEXT NOT NULL,
    parent_run_ulid TEXT,
    event_seq INTEGER NOT NULL
);
CREATE INDEX orchestrator_runs_session ON orchestrator_runs (session_ulid, created_at_unix_ms);
CREATE INDEX orchestrator_runs_state ON orchestrator_runs (state);
CREATE INDEX orchestrator_sessions_updated ON orchestrator_sessions (updated_at_unix_ms);

CREATE TABLE run_lifecycle_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_ulid TEXT NOT NULL REFERENCES orchestrator_runs (run_ulid),
    from_state TEXT,
    to_state TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT,
    created_at_unix_ms INTEGER NOT NULL,
    event_seq INTEGER NOT NULL
);
CREATE INDEX run_lifecycle_events_run ON run_lifecycle_events (run_ulid, id);

CREATE TABLE orchestrator_tape (
    run_ulid TEXT NOT NULL REFERENCES orchestrator_runs (run_ulid),
    seq INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    created_at_unix_ms INTEGER NOT NULL,
    event_seq INTEGER NOT NULL,
    PRIMARY KEY (run_ulid, seq)
);
CREATE VIRTUAL TABLE orchestrator_tape_fts USING fts5 (
    payload_json, content='orchestrator_tape', content_rowid='rowid'
);
CREATE TRIGGER orchestrator_tape_fts_insert AFTER INSERT ON orchestrator_tape BEGIN
    INSERT INTO orchestrator_tape_fts (rowid, payload_json) VALUES (NEW.rowid, NEW.payload_json);
END;

CREATE TABLE tool_jobs (
    job_ulid TEXT PRIMARY KEY NOT NULL,
    owner_principal TEXT NOT NULL,
    device_id TEXT NOT NULL,
    channel TEXT,
    session_ulid TEXT,
    run_ulid TEXT,
    tool_call_id TEXT,
    tool_name TEXT NOT NULL,
    backend TEXT NOT NULL,
    command_sha256 TEXT,
    state TEXT NOT NULL,
    attempt_count INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 1,
    retry_allowed INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT UNIQUE,
    tail_preview TEXT NOT NULL DEFAULT '',
    last_error TEXT,
    state_reason TEXT,
    exit_code INTEGER,
    created_at_unix_ms INTEGER NOT NULL,
    updated_at_unix_ms INTEGER NOT NULL,
    started_at_unix_ms INTEGER,
    heartbeat_at_unix_ms INTEGER,
    completed_at_unix_ms INTEGER,
    expires_at_unix_ms INTEGER,
    legal_hold INTEGER NOT NULL DEFAULT 0,
    active_ref_count INTEGER NOT NULL DEFAULT 0,
    lease_expires_at_unix_ms INTEGER,
    event_seq INTEGER NOT NULL
);
CREATE INDEX tool_jobs_state ON tool_jobs (state, updated_at_unix_ms);
CREATE INDEX tool_jobs_run ON tool_jobs (run_ulid);

CREATE TABLE tool_job_tail_entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_ulid TEXT NOT NULL REFERENCES tool_jobs (job_ulid),
    stream TEXT NOT NULL,
    chunk_redacted TEXT NOT NULL,
    chunk_sha256 TEXT NOT NULL,
    byte_len INTEGER NOT NULL,
    created_at_unix_ms INTEGER NOT NULL,
    event_seq INTEGER NOT NULL
);
CREATE INDEX tool_job_tail_entries_job ON tool_job_tail_entries (job_ulid, seq);

CREATE TABLE approvals (
    approval_ulid TEXT PRIMARY KEY NOT NULL,
    session_ulid TEXT,
    run_ulid TEXT,
    principal TEXT NOT NULL,
    device_id TEXT NOT NULL,
    channel TEXT,
    requested_at_unix_ms INTEGER NOT NULL,
    expires_at_unix_ms INTEGER NOT NULL,
    resolved_at_unix_ms INTEGER,
    subject_type TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    request_summary TEXT NOT NULL,
    decision TEXT,
    decision_scope TEXT,
    decision_reason TEXT,
    decision_scope_ttl_ms INTEGER,
    decided_by TEXT,
    decision_channel TEXT,
    policy_snapshot_json TEXT NOT NULL,
    prompt_json TEXT NOT NULL,
    created_at_unix_ms INTEGER NOT NULL,
    updated_at_unix_ms INTEGER NOT NULL,
    event_seq INTEGER NOT NULL
);
CREATE INDEX approvals_pending ON approvals (decision, expires_at_unix_ms);
CREATE INDEX approvals_run ON approvals (run_ulid);
CREATE INDEX approvals_resolved ON approvals (resolved_at_unix_ms);
CREATE INDEX approvals_session ON approvals (session_ulid, decision);

CREATE TABLE memory_items (
    memory_ulid TEXT PRIMARY KEY NOT NULL,
    principal TEXT NOT NULL,
    channel TEXT,
    session_ulid TEXT,
    source TEXT NOT NULL,
    content_text TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    tags_json TEXT NOT NULL,
    confidence REAL,
    ttl_unix_ms INTEGER,
    created_at_unix_ms INTEGER NOT NULL,
    updated_at_unix_ms INTEGER NOT NULL,
    event_seq INTEGER NOT NULL
);
CREATE INDEX memory_items_principal ON memory_items (principal, created_at_unix_ms);
CREATE VIRTUAL TABLE memory_items_fts USING fts5 (
    content_text, content='memory_items', content_rowid='rowid'
);
CREATE TRIGGER memory_items_fts_insert AFTER INSERT ON memory_items BEGIN
    INSERT INTO memory_items_fts (rowid, content_text) VALUES (NEW.rowid, NEW.content_text);
END;
CREATE TRIGGER memory_items_fts_delete AFTER DELETE ON memory_items BEGIN
    INSERT INTO memory_items_fts (memory_items_fts, rowid, content_text)
    VALUES ('delete', OLD.rowid, OLD.content_text);
END;
CREATE TRIGGER memory_items_fts_update AFTER UPDATE OF content_text ON memory_items BEGIN
    INSERT INTO memory_items_fts (memory_items_fts, rowid, content_text)
    VALUES ('delete', OLD.rowid, OLD.content_text);
    INSERT INTO memory_items_fts (rowid, content_text) VALUES (NEW.rowid, NEW.content_text);
END;

CREATE TABLE memory_vectors (
    memory_ulid TEXT PRIMARY KEY NOT NULL
        REFERENCES memory_items (memory_ulid) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    dims INTEGER NOT NULL,
    version INTEGER NOT NULL,
    vector BLOB NOT NULL,
    created_at_unix_ms INTEGER NOT NULL,
    event_seq INTEGER NOT NULL
);

CREATE TABLE tool_result_artifacts (
    artifact_ulid TEXT PRIMARY KEY NOT NULL,
    job_ulid TEXT,
    session_ulid TEXT,
    run_ulid TEXT,
    tool_name TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    sensitivity TEXT NOT NULL,
    content BLOB NOT NULL,
    byte_len INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created_at_unix_ms INTEGER NOT NULL,
    expires_at_unix_ms INTEGER,
    legal_hold INTEGER NOT NULL DEFAULT 0,
    purge_requested INTEGER NOT NULL DEFAULT 0,
    event_seq INTEGER NOT NULL
);

CREATE TABLE artifact_read_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    artifact_ulid TEXT NOT NULL,
    reader TEXT NOT NULL,
    channel TEXT,
    outcome TEXT NOT NULL,
    reason TEXT,
    created_at_unix_ms INTEGER NOT NULL,
    event_seq INTEGER NOT NULL
);
CREATE INDEX artifact_read_audit_artifact ON artifact_read_audit (artifact_ulid, id);
CREATE INDEX tool_result_artifacts_session
    ON tool_result_artifacts (session_ulid, created_at_unix_ms);
CREATE INDEX tool_result_artifacts_run ON tool_result_artifacts (run_ulid);
CREATE INDEX tool_result_artifacts_job ON tool_result_artifacts (job_ulid);
CREATE INDEX tool_result_artifacts_retention
    ON tool_result_artifacts (legal_hold, expires_at_unix_ms);
CREATE INDEX memory_items_created ON memory_items (created_at_unix_ms);
CREATE INDEX memory_items_ttl ON memory_items (ttl_unix_ms);
CREATE INDEX memory_items_session ON memory_items (session_ulid);
"""

# Tail entries are append-only, except that a job's output goes with the job once it expired.
_TAIL_ENTRIES_GUARD = """
CREATE TRIGGER tool_job_tail_entries_no_update BEFORE UPDATE ON tool_job_tail_entries
BEGIN SELECT RAISE(ABORT, 'tool_job_tail_entries is append-only'); END;
CREATE TRIGGER tool_job_tail_entries_no_delete BEFORE DELETE ON tool_job_tail_entries
WHEN (SELECT state FROM tool_jobs WHERE job_ulid = OLD.job_ulid) IS NOT 'expired'
BEGIN SELECT RAISE(ABORT, 'tool_job_tail_entries is append-only'); END;
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "journal_events",
        """
CREATE TABLE journal_meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
CREATE TRIGGER journal_meta_no_update BEFORE UPDATE ON journal_meta
WHEN OLD.key IN ('journal_id', 'chain_algorithm', 'created_at_unix_ms')
BEGIN SELECT RAISE(ABORT, 'journal_meta identity is immutable'); END;
CREATE TRIGGER journal_meta_no_delete BEFORE DELETE ON journal_meta
WHEN OLD.key IN ('journal_id', 'chain_algorithm', 'created_at_unix_ms')
BEGIN SELECT RAISE(ABORT, 'journal_meta identity is immutable'); END;

CREATE TABLE journal_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_ulid TEXT NOT NULL UNIQUE,
    session_ulid TEXT NOT NULL,
    run_ulid TEXT NOT NULL,
    kind INTEGER NOT NULL,
    actor INTEGER NOT NULL,
    timestamp_unix_ms INTEGER NOT NULL,
    payload_json TEXT NOT NULL,
    redacted INTEGER NOT NULL DEFAULT 0,
    redaction_rules TEXT,
    hash TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    principal TEXT NOT NULL,
    device_id TEXT NOT NULL,
    channel TEXT,
    created_at_unix_ms INTEGER NOT NULL
);
CREATE INDEX journal_events_run_time ON journal_events (run_ulid, timestamp_unix_ms);
CREATE INDEX journal_events_session ON journal_events (session_ulid, seq);
CREATE INDEX journal_events_created ON journal_events (created_at_unix_ms);
"""
        + _APPEND_ONLY.format(table="journal_events"),
    ),
    Migration(
        2,
        "daemon_records",
        _RECORDS_SQL
        + "".join(
            _APPEND_ONLY.format(table=table)
            for table in ("run_lifecycle_events", "orchestrator_tape", "artifact_read_audit")
        )
        + _TAIL_ENTRIES_GUARD,
    ),
    # Signed checkpoints (docs/checkpoints.md): the public keys that sign them, and every
    # checkpoint the writer made. The private key never enters the database.
    Migration(
        3,
        "checkpoints",
        """
CREATE TABLE journal_keys (
    key_id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    vkey TEXT NOT NULL UNIQUE,
    announced_by TEXT,
    created_at_unix_ms INTEGER NOT NULL
) STRICT;
CREATE TABLE journal_checkpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL,
    head_hash TEXT NOT NULL,
    time_unix_ms INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    note TEXT NOT NULL
) STRICT;
CREATE INDEX journal_checkpoints_seq ON journal_checkpoints (seq);
"""
        + "".join(
            _APPEND_ONLY.format(table=table) for table in ("journal_keys", "journal_checkpoints")
        ),
    ),
    # Found at 4.5M events of the demo daemon (120,000 jobs): the inspector's job list (newest
    # first) sorted the whole table, rows of up to 16 KiB of output preview included, 2 s a
    # load; the expiry sweep read every finished job.
    Migration(
        4,
        "tool_job_indexes",
        """
CREATE INDEX tool_jobs_created ON tool_jobs (created_at_unix_ms, job_ulid);
CREATE INDEX tool_jobs_session ON tool_jobs (session_ulid, created_at_unix_ms, job_ulid);
CREATE INDEX tool_jobs_expires ON tool_jobs (expires_at_unix_ms);
""",
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version


def now_ms() -> int:
    """Wall-clock time in unix milliseconds."""
    return time.time_ns() // 1_000_000


def read_header(path: Path) -> bytes:
    """The first 100 bytes of ``path`` (the SQLite header), or fewer if the file is shorter."""
    with path.open("rb") as handle:
        return handle.read(100)


def check_is_sqlite(path: Path) -> None:
    """Refuse a file that is not a SQLite database, without letting SQLite touch it."""
    if path.is_dir():
        raise NotAJournalError(f"{path} is a directory, not a journal file")
    if not path.is_file():
        raise NotAJournalError(
            f"{path} is not a regular file (a pipe or device?), so not a journal"
        )
    header = read_header(path)
    if len(header) == 0:
        raise NotAJournalError(
            f"{path} is an empty file, not a journal (remove it or choose another path)"
        )
    if not header.startswith(SQLITE_HEADER):
        raise NotAJournalError(f"{path} is not a SQLite database, so not a journal")


def table_names(conn: sqlite3.Connection) -> set[str]:
    """Names of the user tables in the connected database."""
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(row[0]) for row in rows}


def installed_version(conn: sqlite3.Connection, path: Path) -> int:
    """The journal's schema version; raises if the database is not a journal."""
    application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = table_names(conn)
    if application_id != APPLICATION_ID or "journal_meta" not in tables:
        shown = ", ".join(sorted(name for name in tables if not name.startswith("sqlite_")))
        detail = f" (its tables: {shown})" if shown else " (it has no tables)"
        raise NotAJournalError(f"{path} is a SQLite database but not a journal{detail}")
    if "schema_migrations" not in tables:
        raise NotAJournalError(f"{path} is damaged: it has no schema_migrations table")
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    version = int(row[0] or 0)
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"{path} has schema version {version}; this software knows up to {SCHEMA_VERSION}"
            " (upgrade agent-journal to open it)"
        )
    return version


def migrate(conn: sqlite3.Connection, current: int) -> int:
    """Apply every migration after ``current``, each in its own IMMEDIATE transaction."""
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            latest = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
            if latest is not None and latest >= migration.version:
                conn.execute("ROLLBACK")
                current = int(latest)
                continue
            for statement in _split_statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at_unix_ms)"
                " VALUES (?, ?, ?)",
                (migration.version, migration.name, now_ms()),
            )
            conn.execute(f"PRAGMA user_version = {migration.version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        current = migration.version
    return current


def _split_statements(sql: str) -> list[str]:
    """Split a migration script into statements, keeping trigger bodies whole."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


def initialise(conn: sqlite3.Connection, journal_id: str, chain_algorithm: str) -> None:
    """Lay out a brand-new journal in an empty database and record its identity."""
    # auto_vacuum must come first: writing the header (application_id) fixes it for good.
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_unix_ms INTEGER NOT NULL)"
    )
    migrate(conn, 0)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO journal_meta (key, value) VALUES (?, ?)",
        [
            ("journal_id", journal_id),
            ("chain_algorithm", chain_algorithm),
            ("created_at_unix_ms", str(now_ms())),
        ],
    )
    conn.execute("COMMIT")


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    """The journal's ``journal_meta`` as a dict."""
    return {
        str(key): str(value)
        for key, value in conn.execute("SELECT key, value FROM journal_meta").fetchall()
    }
