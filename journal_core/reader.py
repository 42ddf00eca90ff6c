"""Read-only access to a journal, for inspectors, tailers and verifiers.

:class:`JournalReader` opens the file with ``mode=ro`` over aiosqlite. Every query is its own
short transaction, so an idle reader never holds a snapshot that would stop the writer's WAL
checkpoints. ``PRAGMA data_version`` tells cheaply whether another connection committed, and
:meth:`JournalReader.events_after` pages through events by seq for tailing.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import aiosqlite
import orjson

from journal_core.chain import LINK_COLUMNS, ProgressCallback, Value, VerifyReport, verify_rows
from journal_core.checkpoints import (
    AnchorReport,
    CheckpointError,
    PublicKey,
    default_roots,
    latest_trusted_checkpoint,
    read_anchor_file,
    verify_anchors,
)
from journal_core.connection import JournalInfo, describe_sqlite_error, open_reader
from journal_core.errors import JournalClosedError
from journal_core.events import actor_name, kind_name, loads_json
from journal_core.fts import match_expression
from journal_core.records import verify_records
from journal_core.schema import EVENT_COLUMNS

_EVENT_COLUMNS = ", ".join(EVENT_COLUMNS)
# Small pages: each is read in one short transaction, and a page of ~500 rows (~350 KB) stays
# in the CPU caches while it is verified; 20,000-row pages made fetching ~40% slower.
_VERIFY_PAGE = 512


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of ``journal_events`` as stored."""

    seq: int
    event_id: str
    session_id: str
    run_id: str
    kind: int
    actor: int
    timestamp_unix_ms: int
    payload_json: str
    redacted: bool
    redaction_rules: tuple[str, ...]
    hash: str
    prev_hash: str
    principal: str
    device_id: str
    channel: str | None
    created_at_unix_ms: int

    @property
    def kind_name(self) -> str:
        """The kind's name (``tool_proposed``), or ``kind_<n>`` for an extension kind."""
        return kind_name(self.kind)

    @property
    def actor_name(self) -> str:
        """The actor's name (``agent``), or ``actor_<n>`` for an extension actor."""
        return actor_name(self.actor)

    def payload(self) -> object:
        """The payload parsed from its stored JSON text."""
        return loads_json(self.payload_json)

    def to_dict(self) -> dict[str, object]:
        """Every stored column, with the payload as its exact stored JSON text."""
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "session_id": self.session_id,
            "run_id": self.run_id,
            "kind": self.kind,
            "kind_name": self.kind_name,
            "actor": self.actor,
            "actor_name": self.actor_name,
            "timestamp_unix_ms": self.timestamp_unix_ms,
            "created_at_unix_ms": self.created_at_unix_ms,
            "principal": self.principal,
            "device_id": self.device_id,
            "channel": self.channel,
            "redacted": self.redacted,
            "redaction_rules": list(self.redaction_rules),
            "payload_json": self.payload_json,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def event_from_row(row: tuple[Any, ...]) -> StoredEvent:
    """A :class:`StoredEvent` from a row of ``journal_events``' columns in stored order."""
    rules_text = row[9]
    rules: tuple[str, ...] = ()
    if isinstance(rules_text, str) and rules_text:
        try:
            parsed = orjson.loads(rules_text)
            rules = tuple(str(item) for item in parsed) if isinstance(parsed, list) else ()
        except orjson.JSONDecodeError:
            rules = ()
    return StoredEvent(
        seq=int(row[0]),
        event_id=str(row[1]),
        session_id=str(row[2]),
        run_id=str(row[3]),
        kind=int(row[4]),
        actor=int(row[5]),
        timestamp_unix_ms=int(row[6]),
        payload_json=str(row[7]),
        redacted=bool(row[8]),
        redaction_rules=rules,
        hash=str(row[10]),
        prev_hash=str(row[11]),
        principal=str(row[12]),
        device_id=str(row[13]),
        channel=None if row[14] is None else str(row[14]),
        created_at_unix_ms=int(row[15]),
    )


@dataclass(frozen=True, slots=True)
class Head:
    """The newest event: its seq and hash (seq 0 and no hash for an empty journal)."""

    seq: int
    hash: str | None


def iter_link_rows(
    conn: sqlite3.Connection, from_seq: int, to_seq: int
) -> Iterator[tuple[Value, ...]]:
    """Rows for :func:`verify_rows` in seq order, paged so no transaction stays open long."""
    # Pages are chained in C: a generator resumed once per row cost more than the link check.
    return itertools.chain.from_iterable(_link_pages(conn, from_seq, to_seq))


def _link_pages(
    conn: sqlite3.Connection, from_seq: int, to_seq: int
) -> Iterator[list[tuple[Value, ...]]]:
    columns = ", ".join(LINK_COLUMNS) + ", hash"
    query = f"SELECT {columns} FROM journal_events WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?"
    cursor_seq = from_seq
    while cursor_seq <= to_seq:
        rows: list[tuple[Value, ...]] = conn.execute(
            query, (cursor_seq, to_seq, _VERIFY_PAGE)
        ).fetchall()
        if not rows:
            return
        yield rows
        last = rows[-1][1]
        if not isinstance(last, int):
            return
        cursor_seq = last + 1


def verify_file(
    path: str | os.PathLike[str],
    *,
    from_seq: int = 1,
    progress: ProgressCallback | None = None,
    busy_timeout_ms: int = 5_000,
    records: bool | None = None,
    incremental: bool = False,
    pubkey: PublicKey | None = None,
) -> tuple[JournalInfo, VerifyReport]:
    """Verify the journal at ``path`` (read-only): its chain, then its record tables.

    The chain is streamed in seq pages, so memory stays bounded. The upper bound is the head at
    the start, so verifying a live journal terminates; events appended meanwhile are left for the
    next run. With ``records`` (the default for a full verify), every record row is checked
    against the chain (:func:`journal_core.records.verify_records`).

    With ``incremental``, verification starts at the newest stored checkpoint that a trusted key
    signed (``pubkey``, else the key beside the file, else the journal's first key) and whose
    hash matches the stored row at its seq: that row's link is re-checked, then only the events
    after it (``scope`` is then ``incremental`` and ``from_seq`` the checkpoint's seq). Without
    such a checkpoint it verifies everything. See ``docs/checkpoints.md`` for what this trusts.
    """
    if from_seq < 1:
        raise ValueError("from_seq must be >= 1")
    if records is None:
        records = not incremental
    conn, info = open_reader(path, busy_timeout_ms=busy_timeout_ms, raw_text=True)
    try:
        head = conn.execute("SELECT MAX(seq) FROM journal_events").fetchone()[0]
        to_seq = int(head or 0)
        trusted = None
        if incremental:
            roots = default_roots(conn, info.path, pubkey, local_key=True)
            # Only a checkpoint at or below the head read above (a live writer goes on).
            trusted = latest_trusted_checkpoint(conn, info.journal_id, roots, to_seq)
            if trusted is not None:
                from_seq = max(from_seq, trusted.checkpoint.seq)
        anchor: str | None = None
        if from_seq > 1:
            row = conn.execute(
                "SELECT hash FROM journal_events WHERE seq = ?", (from_seq - 1,)
            ).fetchone()
            anchor = None if row is None else bytes(row[0]).decode("utf-8", "replace")
        report = verify_rows(
            iter_link_rows(conn, from_seq, to_seq),
            journal_id=info.journal_id,
            from_seq=from_seq,
            anchor_hash=anchor,
            progress=progress,
        )
        if trusted is not None:
            report.scope = "incremental"
        if records and info.schema_version >= 2:
            conn.text_factory = str
            records_report = verify_records(conn, to_seq)
            report.records_checked = records_report.checked_rows
            report.records_purged = records_report.purged_rows
            report.record_breaks = records_report.breaks
    except sqlite3.Error as error:
        raise describe_sqlite_error(info.path, error) from None
    finally:
        conn.close()
    return info, report


def verify_with_anchors(
    path: str | os.PathLike[str],
    anchor_path: str | os.PathLike[str],
    *,
    pubkey: PublicKey | None = None,
    busy_timeout_ms: int = 5_000,
    records: bool = True,
) -> tuple[JournalInfo, VerifyReport, AnchorReport]:
    """Verify the journal's chain and records, then check it against the anchor file.

    Raises :class:`~journal_core.checkpoints.CheckpointError` when the anchor file cannot be
    read or no key to start from is known (the journal cannot be verified against it).
    """
    anchor = Path(anchor_path)
    entries = read_anchor_file(anchor)
    info, report = verify_file(path, busy_timeout_ms=busy_timeout_ms, records=records)
    conn, _ = open_reader(path, busy_timeout_ms=busy_timeout_ms)
    try:
        roots = default_roots(conn, info.path, pubkey)
        if not roots:
            raise CheckpointError(
                f"{info.path} records no signing key; pass the verifier key with --pubkey"
            )
        anchors = verify_anchors(conn, info.journal_id, entries, roots, anchor_path=str(anchor))
    except sqlite3.Error as error:
        raise describe_sqlite_error(info.path, error) from None
    finally:
        conn.close()
    return info, report, anchors


class JournalReader:
    """A read-only view of a journal. Use :meth:`open` (an async context manager too)."""

    def __init__(self, conn: aiosqlite.Connection, info: JournalInfo) -> None:
        self._conn = conn
        self.info = info
        self._closed = False

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, busy_timeout_ms: int = 5_000) -> Self:
        """Open the journal at ``path`` read-only; raises a typed error if it is not one."""
        info = await asyncio.to_thread(_probe, path, busy_timeout_ms)
        uri = f"file:{urllib.parse.quote(str(info.path))}?mode=ro"
        try:
            conn = await aiosqlite.connect(
                uri, uri=True, isolation_level=None, timeout=busy_timeout_ms / 1000
            )
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            # A text column edited outside the journal may hold invalid UTF-8: show it with
            # replacement characters (verification reads raw bytes and reports the edit).
            conn.text_factory = _lenient_text
        except sqlite3.Error as error:
            raise describe_sqlite_error(info.path, error) from None
        return cls(conn, info)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def path(self) -> Path:
        """The journal file's absolute path."""
        return self.info.path

    async def fetchall(self, query: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one read-only query in its own short transaction (for journal_core's modules).

        Applications read through the record modules' functions instead of writing SQL.
        """
        if self._closed:
            raise JournalClosedError(f"the reader of {self.info.path} is closed")
        try:
            # Executed and fetched in one call on the connection's thread. Awaited apart, the
            # statements of concurrent callers overlapped, and SQLite keeps a connection's read
            # transaction while any statement is active: chained overlaps kept one snapshot for
            # seconds, and a read after a commit could miss it.
            rows = await self._conn.execute_fetchall(query, params)
            return [tuple(row) for row in rows]
        except sqlite3.Error as error:
            raise describe_sqlite_error(self.info.path, error) from None
        except ValueError as error:  # aiosqlite: the connection was closed under the query
            raise JournalClosedError(f"the reader of {self.info.path} is closed") from error

    def transcript_match(self, text: str) -> tuple[str, tuple[object, ...]] | None:
        """Sessions whose transcript holds every word of ``text`` (FTS5 over the tape)."""
        match = match_expression(text, every_word=True)
        if match is None:
            return None
        return (
            "s.session_ulid IN (SELECT r.session_ulid FROM orchestrator_tape_fts AS f"
            " JOIN orchestrator_tape AS t ON t.rowid = f.rowid"
            " JOIN orchestrator_runs AS r ON r.run_ulid = t.run_ulid"
            " WHERE orchestrator_tape_fts MATCH ?)",
            (match,),
        )

    async def data_version(self) -> int:
        """A number that changes whenever another connection commits to the file."""
        rows = await self.fetchall("PRAGMA data_version")
        return int(rows[0][0])

    async def head(self) -> Head:
        """The newest event's seq and hash (one index seek, cheap enough for every poll)."""
        rows = await self.fetchall("SELECT seq, hash FROM journal_events ORDER BY seq DESC LIMIT 1")
        if not rows:
            return Head(0, None)
        seq, digest = rows[0]
        return Head(int(seq), str(digest))

    async def count(self) -> int:
        """How many events the journal holds (a full index scan: not for hot paths)."""
        rows = await self.fetchall("SELECT COUNT(*) FROM journal_events")
        return int(rows[0][0])

    async def events_after(self, seq: int, limit: int = 1_000) -> list[StoredEvent]:
        """Up to ``limit`` events with seq greater than ``seq``, oldest first."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        rows = await self.fetchall(
            f"SELECT {_EVENT_COLUMNS} FROM journal_events WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [event_from_row(row) for row in rows]

    async def last_events(self, count: int) -> list[StoredEvent]:
        """The newest ``count`` events, oldest first."""
        if count < 1:
            return []
        rows = await self.fetchall(
            f"SELECT {_EVENT_COLUMNS} FROM journal_events ORDER BY seq DESC LIMIT ?", (count,)
        )
        return [event_from_row(row) for row in reversed(rows)]

    async def event(self, seq: int) -> StoredEvent | None:
        """The event at ``seq``, or None."""
        rows = await self.fetchall(
            f"SELECT {_EVENT_COLUMNS} FROM journal_events WHERE seq = ?", (seq,)
        )
        return event_from_row(rows[0]) if rows else None

    async def verify(
        self, *, from_seq: int = 1, progress: ProgressCallback | None = None
    ) -> VerifyReport:
        """Verify the chain on a worker thread with its own read-only connection."""
        _, report = await asyncio.to_thread(
            verify_file, self.info.path, from_seq=from_seq, progress=progress
        )
        return report

    async def close(self) -> None:
        """Close the connection. Safe to call twice."""
        if not self._closed:
            self._closed = True
            await self._conn.close()


def _lenient_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _probe(path: str | os.PathLike[str], busy_timeout_ms: int) -> JournalInfo:
    """Recognise the journal with a plain connection before aiosqlite opens it."""
    conn, info = open_reader(path, busy_timeout_ms=busy_timeout_ms)
    conn.close()
    return info
