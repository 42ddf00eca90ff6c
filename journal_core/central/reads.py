"""Reading the central store as the inspector reads a journal file.

:class:`CentralReader` implements :class:`journal_core.reads.Reads` over PostgreSQL, so the record
modules' read functions (sessions, transcripts, tool jobs, approvals) run unchanged on it. Its
*scope* is one journal or every journal: the connection gets temporary views named like the
journal's tables (``orchestrator_sessions`` ...), holding the same columns, over the central
tables filtered by journal id (or not, for all). PostgreSQL looks in the session's temporary
schema first, so the queries written for a journal file read the scoped copy. Placeholders are
translated (``?`` to ``%s``); full-text search uses PostgreSQL's own (``to_tsvector``).

It also lists the journals held (:meth:`daemons`) and wakes on the shippers' notifications
(:meth:`wait_for_change`), through LISTEN/NOTIFY: the inspector never polls the central store.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import psycopg
from psycopg import sql

from journal_core import validate
from journal_core.central.connection import (
    AsyncCentralConnection,
    connect_central_async,
    connection_error,
    describe_url,
)
from journal_core.central.decisions import DECISIONS_CHANNEL
from journal_core.central.schema import CENTRAL_MARK, CENTRAL_SCHEMA_VERSION
from journal_core.central.ship import CHANNEL
from journal_core.errors import CentralStoreError
from journal_core.reader import Head, StoredEvent, event_from_row
from journal_core.reads import DaemonStatus
from journal_core.records import RECORD_SPECS
from journal_core.schema import EVENT_COLUMNS

_SCOPED_TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("journal_events", EVENT_COLUMNS),
    *((spec.table, (*spec.columns, "event_seq")) for spec in RECORD_SPECS),
)
_PLACEHOLDER = re.compile(r"'[^']*'|\?|%")


def to_pg_query(query: str) -> str:
    """A query written with ``?`` placeholders, for psycopg (``%s``; a literal ``%`` doubled).

    Quoted literals are left alone, so a ``?`` inside one stays a question mark.
    """

    def swap(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        return token.replace("%", "%%")

    return _PLACEHOLDER.sub(swap, query)


class CentralReader:
    """A read-only, scoped view of the central store. Use :meth:`open`."""

    def __init__(self, url: str, conn: AsyncCentralConnection, schema: str) -> None:
        self.url = url
        self._conn = conn
        self._schema = schema
        self._listener: AsyncCentralConnection | None = None
        self._queries: dict[str, str] = {}
        self.scope: str | None = None

    @classmethod
    async def open(cls, url: str, *, scope: str | None = None) -> CentralReader:
        """Connect, check the central schema, and scope the views (None: every journal)."""
        conn = await connect_central_async(url)
        try:
            row = await (await conn.execute("SELECT current_schema()")).fetchone()
            schema = str(row[0]) if row is not None else "public"
            reader = cls(url, conn, schema)
            await reader._check_schema()
            await reader.set_scope(scope)
        except psycopg.Error as error:
            await conn.close()
            raise connection_error(url, error) from None
        except CentralStoreError:
            await conn.close()
            raise
        return reader

    async def _check_schema(self) -> None:
        exists = await (
            await self._conn.execute("SELECT to_regclass('central_meta') IS NOT NULL")
        ).fetchone()
        if exists is None or not exists[0]:
            raise CentralStoreError(
                f"{describe_url(self.url)} holds no central journal store yet;"
                " ship a journal to it first (journal ship DB --to URL)"
            )
        rows = await (await self._conn.execute("SELECT key, value FROM central_meta")).fetchall()
        meta = {str(key): str(value) for key, value in rows}
        if meta.get("mark") != CENTRAL_MARK:
            raise CentralStoreError(f"{describe_url(self.url)} is not a central journal store")
        if int(meta.get("schema_version", "0")) > CENTRAL_SCHEMA_VERSION:
            raise CentralStoreError(
                f"{describe_url(self.url)} has a newer central schema than this program;"
                " upgrade agent-journal"
            )

    @property
    def label(self) -> str:
        """The store and scope, for a status line (no password)."""
        return f"{describe_url(self.url)} · {self.scope or 'all daemons'}"

    async def set_scope(self, journal_id: str | None) -> None:
        """Show one journal (its id) or every journal (None) through the scoped views."""
        if journal_id is not None:
            validate.ulid("journal_id", journal_id)
        statements = []
        for table, columns in _SCOPED_TABLES:
            listed = sql.SQL(", ").join(sql.Identifier(column) for column in columns)
            where = (
                sql.SQL(" WHERE journal_id = {}").format(sql.Literal(journal_id))
                if journal_id is not None
                else sql.SQL("")
            )
            statements.append(
                sql.SQL("CREATE OR REPLACE TEMP VIEW {} AS SELECT {} FROM {}.{}{}").format(
                    sql.Identifier(table),
                    listed,
                    sql.Identifier(self._schema),
                    sql.Identifier(table),
                    where,
                )
            )
        try:
            async with self._conn.transaction():
                for statement in statements:
                    await self._conn.execute(statement)
        except psycopg.Error as error:
            raise connection_error(self.url, error) from None
        self.scope = journal_id

    async def fetchall(self, query: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows for a query written for a journal file, read from the scoped central copy."""
        translated = self._queries.get(query)
        if translated is None:
            translated = self._queries[query] = to_pg_query(query)
        try:
            # As bytes: psycopg types run-time built ``str`` queries as unsafe (LiteralString).
            cursor = await self._conn.execute(translated.encode("utf-8"), params)
            return await cursor.fetchall()
        except psycopg.Error as error:
            raise connection_error(self.url, error) from None

    def transcript_match(self, text: str) -> tuple[str, tuple[object, ...]] | None:
        """Sessions whose transcript holds every word of ``text`` (PostgreSQL full text)."""
        words = re.findall(r"\w+", text)
        if not words:
            return None
        return (
            "s.session_ulid IN (SELECT r.session_ulid FROM orchestrator_tape AS t"
            " JOIN orchestrator_runs AS r ON r.run_ulid = t.run_ulid"
            " WHERE to_tsvector('simple', t.payload_json) @@ plainto_tsquery('simple', ?))",
            (" ".join(words),),
        )

    # -- what the inspector shows besides records ----------------------------------------------

    async def head(self) -> Head:
        """The newest event of the journal in scope (all: the sum of every head, no hash)."""
        if self.scope is None:
            rows = await self.fetchall("SELECT COALESCE(SUM(head_seq), 0) FROM journals")
            return Head(int(rows[0][0]), None)
        rows = await self.fetchall(
            "SELECT head_seq, head_hash FROM journals WHERE journal_id = ?", (self.scope,)
        )
        if not rows or not rows[0][0]:
            return Head(0, None)
        return Head(int(rows[0][0]), str(rows[0][1]))

    async def last_commit_ms(self) -> int | None:
        """When the newest shipped event in scope was committed on its host."""
        where = "" if self.scope is None else " WHERE journal_id = ?"
        rows = await self.fetchall(
            f"SELECT MAX(head_created_at_unix_ms) FROM journals{where}",
            () if self.scope is None else (self.scope,),
        )
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    async def events_after(self, seq: int, limit: int = 1_000) -> list[StoredEvent]:
        """Events of the journal in scope with seq > ``seq``, oldest first."""
        rows = await self.fetchall(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM journal_events WHERE seq > ?"
            " ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [event_from_row(row) for row in rows]

    async def event(self, seq: int) -> StoredEvent | None:
        """The event at ``seq`` of the journal in scope, or None."""
        events = await self.events_after(seq - 1, limit=1)
        return events[0] if events and events[0].seq == seq else None

    async def daemons(self) -> list[DaemonStatus]:
        """Every journal the central store holds, most recently shipped first."""
        rows = await self.fetchall(
            "SELECT journal_id, host, source_path, head_seq, head_created_at_unix_ms,"
            " host_head_seq, (extract(epoch FROM host_seen_at) * 1000)::bigint,"
            " (extract(epoch FROM shipped_at) * 1000)::bigint, records_seq, refused_code,"
            " refused_seq, refused_detail FROM journals"
            " ORDER BY shipped_at DESC NULLS LAST, journal_id"
        )
        return [DaemonStatus(*row) for row in rows]

    async def journal_of_approval(self, approval_id: str) -> str:
        """The id of the journal that asked for approval ``approval_id`` (whatever the scope)."""
        approval = validate.ulid("approval_id", approval_id)
        query = sql.SQL("SELECT journal_id FROM {}.approvals WHERE approval_ulid = %s").format(
            sql.Identifier(self._schema)
        )
        try:
            row = await (await self._conn.execute(query, (approval,))).fetchone()
        except psycopg.Error as error:
            raise connection_error(self.url, error) from None
        if row is None:
            raise CentralStoreError(f"the central store holds no approval {approval}")
        return str(row[0])

    # -- live updates -----------------------------------------------------------------------

    async def listen(self) -> AsyncCentralConnection:
        """Start listening for the shippers' and decisions' notifications (once)."""
        if self._listener is None:
            try:
                listener = await connect_central_async(self.url)
                await listener.execute(f"LISTEN {CHANNEL}")
                await listener.execute(f"LISTEN {DECISIONS_CHANNEL}")
            except psycopg.Error as error:
                raise connection_error(self.url, error) from None
            self._listener = listener
        return self._listener

    async def wait_for_change(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a shipper's or a decision's notification.

        True when one came, whichever journal it is for: a scoped inspector still lists every
        daemon. Every notification that arrived together is consumed (leaving the loop early
        would drop the rest of the packet). Listening starts at the first call
        (:meth:`listen`), on a connection of its own.
        """
        listener = await self.listen()
        came = False
        try:
            async for _note in listener.notifies(timeout=timeout, stop_after=1):
                came = True
        except psycopg.Error as error:
            raise connection_error(self.url, error) from None
        return came

    async def reconnect(self) -> None:
        """Open fresh connections (after the server or the network dropped them), same scope."""
        await self.close()
        self._conn = await connect_central_async(self.url)
        await self.set_scope(self.scope)

    async def close(self) -> None:
        """Close both connections."""
        for conn in (self._listener, self._conn):
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    await conn.close()
        self._listener = None
