"""The central store's schema in PostgreSQL, and its forward-only migrations.

The central store holds copies of many journals, keyed by journal id: their events exactly as
stored on the host (so every link can be recomputed), their record rows (one table per record
table of the file, with the same names and columns), their signing keys and signed checkpoints.

It is also the *witness* of every journal it holds: ``journals`` keeps each journal's head, and a
statement trigger on ``journal_events`` refuses, inside PostgreSQL, any insert that does not
extend that head link by link (next seq, ``prev_hash`` equal to the stored head's hash). So a
shipper, even a modified one, cannot make the central copy accept a rewritten or rolled-back
history; it can only be refused. ``journal_events``, ``journal_keys`` and
``journal_checkpoints`` are append-only (triggers refuse UPDATE and DELETE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from journal_core.errors import CentralStoreError

#: The ``application_name``-like marker kept in ``central_meta`` to recognise the database.
CENTRAL_MARK = "agent-journal-central"


@dataclass(frozen=True, slots=True)
class CentralMigration:
    """One forward step of the central schema."""

    version: int
    name: str
    sql: str


_APPEND_ONLY = """
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
FOR EACH ROW EXECUTE FUNCTION central_refuse_change();
"""

_WITNESS = """
CREATE FUNCTION central_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only in the central store', TG_TABLE_NAME
        USING ERRCODE = 'JC001';
END $$;

-- The witness: every inserted statement's rows, per journal and in seq order, must continue the
-- journal's stored head link by link. Set-based, so one check per COPY, not per row.
CREATE FUNCTION central_witness() RETURNS trigger LANGUAGE plpgsql
-- As the tables' owner: the head moves only here, so shippers need no UPDATE on it.
SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.journal_id, n.seq, n.prev_hash, n.expected_seq, n.expected_prev
    INTO bad
    FROM (
        SELECT r.journal_id, r.seq, r.prev_hash,
               CASE WHEN r.rn = 1 THEN j.head_seq + 1 ELSE r.prior_seq + 1 END AS expected_seq,
               CASE WHEN r.rn = 1 THEN j.head_hash ELSE r.prior_hash END AS expected_prev
        FROM (
            SELECT journal_id, seq, prev_hash,
                   lag(seq) OVER w AS prior_seq, lag(hash) OVER w AS prior_hash,
                   row_number() OVER w AS rn
            FROM new_events
            WINDOW w AS (PARTITION BY journal_id ORDER BY seq)
        ) AS r
        JOIN journals AS j ON j.journal_id = r.journal_id
    ) AS n
    WHERE n.seq <> n.expected_seq OR n.prev_hash <> n.expected_prev
    ORDER BY n.journal_id, n.seq
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal % event % does not extend the history the central store holds',
            bad.journal_id, bad.seq
            USING ERRCODE = 'JC002',
                  DETAIL = format('expected seq %s with prev_hash %s, got seq %s with prev_hash %s',
                                  bad.expected_seq, bad.expected_prev, bad.seq, bad.prev_hash);
    END IF;
    UPDATE journals AS j
    SET head_seq = h.seq, head_hash = h.hash, head_created_at_unix_ms = h.created_at_unix_ms
    FROM (
        SELECT DISTINCT ON (journal_id) journal_id, seq, hash, created_at_unix_ms
        FROM new_events ORDER BY journal_id, seq DESC
    ) AS h
    WHERE j.journal_id = h.journal_id;
    RETURN NULL;
END $$;
"""

_RECORDS = """
CREATE TABLE orchestrator_sessions (
    journal_id text NOT NULL REFERENCES journals (journal_id),
    session_ulid text NOT NULL,
    session_key text NOT NULL,
    session_label text,
    auto_title text,
    principal text NOT NULL,
    device_id text NOT NULL,
    channel text,
    created_at_unix_ms bigint NOT NULL,
    updated_at_unix_ms bigint NOT NULL,
    last_run_ulid text,
    archived_at_unix_ms bigint,
    event_seq bigint NOT NULL,
    PRIMARY KEY (journal_id, session_ulid)
);
CREATE TABLE orchestrator_runs (
    journal_id text NOT NULL REFERENCES journals (journal_id),
    run_ulid text NOT NULL,
    session_ulid text NOT NULL,
    state text NOT NULL,
    cancel_requested bigint NOT NULL,
    cancel_reason text,
    created_at_unix_ms bigint NOT NULL,
    started_at_unix_ms bigint,
    completed_at_unix_ms bigint,
    updated_at_unix_ms bigint NOT NULL,
    prompt_tokens bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    total_tokens bigint NOT NULL,
    last_error text,
    origin_kind text NOT NULL,
    parent_run_ulid text,
    event_seq bigint NOT NULL,
    PRIMARY KEY (journal_id, run_ulid)
);
CREATE TABLE run_lifecycle_events (
    journal_id text NOT NULL REFERENCES journals (journal_id),
    id bigint NOT NULL,
    run_ulid text NOT NULL,
    from_state text,
    to_state text NOT NULL,
    actor text NOT NULL,
    reason text,
    created_at_unix_ms bigint NOT NULL,
    event_seq bigint NOT NULL,
    PRIMARY KEY (journal_id, id)
);
CREATE TABLE orchestrator_tape (
    journal_id text NOT NULL REFERENCES journals (journal_id),
    run_ulid text NOT NULL,
    seq bigint NOT NULL,
    event_type text NOT NULL,
    payload_json text NOT NULL,
    created_at_unix_ms bigint NOT NULL,
    event_seq bigint NOT NULL,
    PRIMARY KEY (journal_id, run_ulid, seq)
);
CREATE TABLE tool_jobs (
    journal_id text NOT NULL REFERENCES journals (journal_id),
    job_ulid text NOT NULL,
    owner_principal text NOT NULL,
    device_id text NOT NULL,
    channel text,
    session_ulid text,
    run_ulid text,
    tool_call_id text,
    tool_name text NOT NULL,
    backend text NOT NULL,
    command_sha256 text,
    state text NOT NULL,
    attempt_count bigint NOT NULL,
    max_attempts bigint NOT NULL,
    retry_allowed bigint NOT NULL,
    idempotency_key text,
    tail_preview text NOT NULL,
    last_error text,
    state_reason text,
    exit_code bigint,
    created_at_unix_ms bigint NOT NULL,
    updated_at_unix_ms bigint NOT NULL,
    started_at_unix_ms bigint,
    heartbeat_at_unix_ms bigint,
    completed_at_unix_ms bigint,
    expires_at_unix_ms bigint,
    legal_hold bigint NOT NULL,
    active_ref_count bigint NOT NULL,
    lease_expires_at_unix_ms bigint,
    event_seq bigint NOT NULL,
    PRIMARY KEY (journal_id, job_ulid)
);
CREATE TABLE tool_job_tail_entries (
    journal_id text NOT NULL REFERENCES journals (journal_id),
    seq bigint NOT NULL,
    job_ulid text NOT NULL,
    stream text NOT NULL,
    chunk_redacted text NOT NULL,
    chunk_sha256 text NOT NULL,
    byte_len bigint NOT NULL,
    created_at_unix_ms bigint NOT NULL,
    event_seq bigint NOT NULL,
    PRIMARY KEY (journal_id, seq)
);
CREATE TABLE approvals (
    journal_id text NOT NULL REFERENCES journals (journal_id),
    approval_ulid text NOT NULL,
    session_ulid text,
    run_ulid text,
    principal text NOT NULL,
    device_id text NOT NULL,
    channel text,
    requested_at_unix_ms bigint NOT NULL,
    expires_at_unix_ms bigint NOT NULL,
    resolved_at_unix_ms bigint,
    subject_type text NOT NULL,
    subject_id text NOT NULL,
    request_summary text NOT NULL,
    decision text,
    decision_scope text,
    decision_reason text,
    decision_scope_ttl_ms bigint,
    decided_by text,
    decision_channel text,
    policy_snapshot_json text NOT NULL,
    prompt_json text NOT NULL,
    created_at_unix_ms bigint NOT NULL,
    updated_at_unix_ms bigint NOT NULL,
    event_seq bigint NOT NULL,
    PRIMARY KEY (journal_id, approval_ulid)
);
CREATE TABLE memory_items (
    journal_id text NOT NULL REFERENCES journals (journal_id),
    memory_ulid text NOT NULL,
    principal text NOT NULL,
    channel text,
    session_ulid text,
    source text NOT NULL,
    content_text text NOT NULL,
    content_hash text NOT NULL,
    tags_json text NOT NULL,
    confidence double precision,
    ttl_unix_ms bigint,
    created_at_unix_ms bigint NOT NULL,
    updated_at_unix_ms bigint NOT NULL,
    event_seq bigint NOT NULL,
    PRIMARY KEY (journal_id, memory_ulid)
);
CREATE TABLE memory_vectors (
    journal_id text NOT NULL REFERENCES journals (journal_id),
    memory_ulid text NOT NULL,
    model_id text NOT NULL,
    dims bigint NOT NULL,
    version bigint NOT NULL,
    vector bytea NOT NULL,
    created_at_unix_ms bigint NOT NULL,
    event_seq bigint NOT NULL,
    PRIMARY KEY (journal_id, memory_ulid)
);
CREATE TABLE tool_result_artifacts (
    journal_id text NOT NULL REFERENCES journals (journal_id),
    artifact_ulid text NOT NULL,
    job_ulid text,
    session_ulid text,
    run_ulid text,
    tool_name text NOT NULL,
    mime_type text NOT NULL,
    sensitivity text NOT NULL,
    content bytea NOT NULL,
    byte_len bigint NOT NULL,
    sha256 text NOT NULL,
    created_at_unix_ms bigint NOT NULL,
    expires_at_unix_ms bigint,
    legal_hold bigint NOT NULL,
    purge_requested bigint NOT NULL,
    event_seq bigint NOT NULL,
    PRIMARY KEY (journal_id, artifact_ulid)
);
CREATE TABLE artifact_read_audit (
    journal_id text NOT NULL REFERENCES journals (journal_id),
    id bigint NOT NULL,
    artifact_ulid text NOT NULL,
    reader text NOT NULL,
    channel text,
    outcome text NOT NULL,
    reason text,
    created_at_unix_ms bigint NOT NULL,
    event_seq bigint NOT NULL,
    PRIMARY KEY (journal_id, id)
);
"""

_INSPECTOR = """
-- What the inspector's queries (written once for both stores) go through.
CREATE INDEX orchestrator_sessions_updated
    ON orchestrator_sessions (journal_id, updated_at_unix_ms);
CREATE INDEX orchestrator_runs_session ON orchestrator_runs (journal_id, session_ulid);
CREATE INDEX run_lifecycle_events_run ON run_lifecycle_events (journal_id, run_ulid, id);
CREATE INDEX orchestrator_tape_text ON orchestrator_tape
    USING gin (to_tsvector('simple', payload_json));
CREATE INDEX tool_jobs_created ON tool_jobs (journal_id, created_at_unix_ms, job_ulid);
CREATE INDEX tool_jobs_run ON tool_jobs (journal_id, run_ulid);
CREATE INDEX tool_job_tail_entries_job ON tool_job_tail_entries (journal_id, job_ulid, seq);
CREATE INDEX approvals_pending ON approvals (journal_id, expires_at_unix_ms)
    WHERE decision IS NULL;
CREATE INDEX approvals_resolved ON approvals (journal_id, resolved_at_unix_ms);
CREATE INDEX approvals_run ON approvals (journal_id, run_ulid);

-- SQLite's JSON functions, for the few queries that read a field of a stored JSON text.
CREATE FUNCTION json_valid(doc text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT central_jsonb(doc) IS NOT NULL
$$;
CREATE FUNCTION json_extract(doc text, path text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT central_jsonb(doc) #>> string_to_array(regexp_replace(path, '^[$][.]?', ''), '.')
$$;
"""

_V1 = (
    """
-- A payload as jsonb, or NULL when it is not JSON (only a tampered row): verification must
-- report such a row, not fail on it.
CREATE FUNCTION central_jsonb(doc text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN doc::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

CREATE TABLE central_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE journals (
    journal_id text PRIMARY KEY,
    chain_algorithm text NOT NULL,
    created_at_unix_ms bigint NOT NULL,
    genesis_prev_hash text NOT NULL,
    host text NOT NULL,
    source_path text NOT NULL,
    first_shipped_at timestamptz NOT NULL DEFAULT now(),
    head_seq bigint NOT NULL DEFAULT 0,
    head_hash text NOT NULL,
    head_created_at_unix_ms bigint,
    records_seq bigint NOT NULL DEFAULT 0,
    shipped_at timestamptz,
    host_head_seq bigint,
    host_seen_at timestamptz,
    refused_at timestamptz,
    refused_seq bigint,
    refused_code text,
    refused_detail text
);

CREATE TABLE journal_events (
    journal_id text NOT NULL REFERENCES journals (journal_id),
    seq bigint NOT NULL,
    event_ulid text NOT NULL,
    session_ulid text NOT NULL,
    run_ulid text NOT NULL,
    kind bigint NOT NULL,
    actor bigint NOT NULL,
    timestamp_unix_ms bigint NOT NULL,
    payload_json text NOT NULL,
    redacted bigint NOT NULL,
    redaction_rules text,
    hash text NOT NULL,
    prev_hash text NOT NULL,
    principal text NOT NULL,
    device_id text NOT NULL,
    channel text,
    created_at_unix_ms bigint NOT NULL,
    shipped_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (journal_id, seq)
);
CREATE INDEX journal_events_run ON journal_events (journal_id, run_ulid, seq);
CREATE INDEX journal_events_records ON journal_events (journal_id, kind, seq) WHERE kind >= 100;

CREATE TABLE journal_keys (
    journal_id text NOT NULL REFERENCES journals (journal_id),
    key_id text NOT NULL,
    name text NOT NULL,
    vkey text NOT NULL,
    announced_by text,
    created_at_unix_ms bigint NOT NULL,
    PRIMARY KEY (journal_id, key_id)
);

CREATE TABLE journal_checkpoints (
    journal_id text NOT NULL REFERENCES journals (journal_id),
    id bigint NOT NULL,
    seq bigint NOT NULL,
    head_hash text NOT NULL,
    time_unix_ms bigint NOT NULL,
    key_id text NOT NULL,
    note text NOT NULL,
    PRIMARY KEY (journal_id, id)
);

-- The exact values of record rows whose text holds NUL, which a text column cannot: their
-- table row shows each NUL as U+2400 (journal_core/central/rows.py).
CREATE TABLE record_raw (
    journal_id text NOT NULL REFERENCES journals (journal_id),
    tbl text NOT NULL,
    k text NOT NULL,
    event_seq bigint NOT NULL,
    exact bytea NOT NULL,
    PRIMARY KEY (journal_id, tbl, k)
);

-- Decisions taken centrally, waiting for the host's shipper to apply them to the daemon's own
-- journal (the writer of record). One per request: the first central answer wins centrally, and
-- the host's journal then decides between it and any local answer.
CREATE TABLE central_decisions (
    journal_id text NOT NULL REFERENCES journals (journal_id),
    approval_ulid text NOT NULL,
    decision text NOT NULL,
    decision_scope text NOT NULL,
    decision_reason text,
    decision_scope_ttl_ms bigint,
    decided_by text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'applied', 'lost', 'failed')),
    outcome text,
    settled_at timestamptz,
    PRIMARY KEY (journal_id, approval_ulid)
);
CREATE INDEX central_decisions_pending ON central_decisions (journal_id) WHERE status = 'pending';

"""
    + _RECORDS
    + _INSPECTOR
    + _WITNESS
    + """
CREATE TRIGGER journal_events_witness AFTER INSERT ON journal_events
REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION central_witness();
"""
    + "".join(
        _APPEND_ONLY.format(table=table)
        for table in ("journal_events", "journal_keys", "journal_checkpoints")
    )
)

CENTRAL_MIGRATIONS: tuple[CentralMigration, ...] = (CentralMigration(1, "central_store", _V1),)
CENTRAL_SCHEMA_VERSION = CENTRAL_MIGRATIONS[-1].version


def installed_version(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    """The central schema version of the database (0 for an empty one).

    Raises :class:`CentralStoreError` for a database that holds other tables, or is marked as
    something else, or has a newer schema than this program knows.
    """
    has_meta = conn.execute("SELECT to_regclass('central_meta') IS NOT NULL").fetchone()
    if has_meta is None or not has_meta[0]:
        other = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchone()
        if other is not None and int(str(other[0])) > 0:
            raise CentralStoreError(
                "the database holds other tables but no central journal store;"
                " use an empty database (or schema) for the central store"
            )
        return 0
    rows = {
        str(key): str(value) for key, value in conn.execute("SELECT key, value FROM central_meta")
    }
    if rows.get("mark") != CENTRAL_MARK:
        raise CentralStoreError("the database is not a central journal store (no mark)")
    version = int(str(rows.get("schema_version", "0")))
    if version > CENTRAL_SCHEMA_VERSION:
        raise CentralStoreError(
            f"the central store has schema version {version}, newer than this program's"
            f" {CENTRAL_SCHEMA_VERSION}; upgrade agent-journal"
        )
    return version


def migrate(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    """Bring the central schema up to date; returns the version. Safe to run concurrently.

    Each migration runs in one transaction under an advisory lock, so two programs starting at
    once cannot both apply it, and a failure leaves the schema as it was.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (CENTRAL_MARK,))
        # The functions keep this search path (SET search_path FROM CURRENT): the store's own
        # schema, then pg_temp last, so a caller's temporary table can never stand in for
        # ``journals`` inside the witness.
        row = conn.execute("SELECT current_schema()").fetchone()
        schema = str(row[0]) if row is not None and row[0] is not None else "public"
        conn.execute(sql.SQL("SET LOCAL search_path = {}, pg_temp").format(sql.Identifier(schema)))
        version = installed_version(conn)
        for migration in CENTRAL_MIGRATIONS:
            if migration.version <= version:
                continue
            conn.execute(migration.sql.encode("utf-8"))
            conn.execute(
                "INSERT INTO central_meta (key, value) VALUES ('mark', %s)"
                " ON CONFLICT (key) DO NOTHING",
                (CENTRAL_MARK,),
            )
            conn.execute(
                "INSERT INTO central_meta (key, value) VALUES ('schema_version', %s)"
                " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (str(migration.version),),
            )
            version = migration.version
    return version
