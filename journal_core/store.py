"""The journal writer: validated, redacted, hash-chained appends with group commit.

One :class:`Journal` per process owns the writer connection. Its SQLite work runs on one
dedicated thread, so the event loop never blocks on disk, and a whole batch (lock, head read,
inserts, commit) costs one hop to that thread. Concurrent :meth:`Journal.append` calls queue up
while a commit is in flight and go out together in the next transaction; each caller's await
returns only once its own event is committed.

Several processes may write the same file: every batch takes the write lock with
``BEGIN IMMEDIATE`` and reads the chain head inside that transaction, so the chain stays one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Self

from journal_core.chain import genesis_prev_hash, link_hash
from journal_core.connection import (
    JournalConfig,
    JournalInfo,
    describe_sqlite_error,
    open_writer,
)
from journal_core.errors import (
    DuplicateEventError,
    JournalBusyError,
    JournalClosedError,
    JournalError,
)
from journal_core.events import EventInput, PreparedEvent, event_from_mapping, prepare_event
from journal_core.redaction import Redactor
from journal_core.schema import now_ms

_INSERT = (
    "INSERT INTO journal_events (seq, event_ulid, session_ulid, run_ulid, kind, actor,"
    " timestamp_unix_ms, payload_json, redacted, redaction_rules, hash, prev_hash, principal,"
    " device_id, channel, created_at_unix_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_EXISTING_CHUNK = 500


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an event landed: its seq, its id and its link hash."""

    seq: int
    event_id: str
    hash: str


@dataclass(slots=True)
class _Unit:
    """Events that commit or fail together (one ``append`` or one ``append_batch``)."""

    events: list[PreparedEvent]
    future: asyncio.Future[list[AppendResult]]


EventLike = EventInput | Mapping[str, Any]


class Journal:
    """A journal open for writing. Use :meth:`open` (an async context manager too)."""

    def __init__(self, conn: sqlite3.Connection, info: JournalInfo, config: JournalConfig) -> None:
        self._conn = conn
        self.info = info
        self.config = config
        self._redactor = Redactor(config.redaction)
        self._genesis = genesis_prev_hash(info.journal_id)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-writer")
        self._pending: list[_Unit] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._closed = False
        self._writer_task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            self._write_loop(), name="journal-writer"
        )

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        config: JournalConfig | None = None,
        *,
        create: bool = True,
    ) -> Self:
        """Open the journal at ``path`` for writing, creating it (and its directory) if needed."""
        config = config or JournalConfig()
        conn, info = await asyncio.to_thread(open_writer, path, config, create=create)
        return cls(conn, info, config)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def journal_id(self) -> str:
        """The journal's random, permanent id (bound into the chain's first link)."""
        return self.info.journal_id

    def prepare(self, event: EventLike) -> PreparedEvent:
        """Validate and redact ``event`` as :meth:`append` would, without writing it."""
        if isinstance(event, Mapping):
            event = event_from_mapping(event)
        elif not isinstance(event, EventInput):
            raise TypeError(f"expected an EventInput or a mapping, got {type(event).__name__}")
        return prepare_event(
            event, redactor=self._redactor, max_payload_bytes=self.config.max_payload_bytes
        )

    async def append(self, event: EventLike) -> AppendResult:
        """Validate, redact and append one event; returns once it is committed.

        Raises :class:`~journal_core.errors.ValidationError` (naming the field) or
        :class:`~journal_core.errors.DuplicateEventError`; either way nothing was written.
        """
        prepared = self.prepare(event)
        results = await self._submit([prepared])
        return results[0]

    async def append_batch(self, events: Iterable[EventLike]) -> list[AppendResult]:
        """Append several events atomically, in order: all are committed or none is."""
        prepared = [self.prepare(event) for event in events]
        if not prepared:
            return []
        return await self._submit(prepared)

    async def append_prepared(self, events: Sequence[PreparedEvent]) -> list[AppendResult]:
        """Append events already returned by :meth:`prepare`, atomically and in order."""
        if not events:
            return []
        return await self._submit(list(events))

    async def _submit(self, events: list[PreparedEvent]) -> list[AppendResult]:
        if self._closing:
            raise JournalClosedError("the journal is closed; open it again to write")
        future: asyncio.Future[list[AppendResult]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Unit(events, future))
        self._wakeup.set()
        return await asyncio.shield(future)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._take_batch()
                try:
                    outcomes = await loop.run_in_executor(self._executor, self._commit, batch)
                except Exception as error:
                    failure = (
                        error
                        if isinstance(error, JournalError)
                        else describe_sqlite_error(self.info.path, error)
                        if isinstance(error, sqlite3.Error)
                        else error
                    )
                    outcomes = [failure] * len(batch)
                for unit, outcome in zip(batch, outcomes, strict=True):
                    if unit.future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        unit.future.set_exception(outcome)
                    else:
                        unit.future.set_result(outcome)
            if self._closing and not self._pending:
                return

    def _take_batch(self) -> list[_Unit]:
        taken = 0
        count = 0
        for unit in self._pending:
            if count and taken + len(unit.events) > self.config.max_batch_events:
                break
            taken += len(unit.events)
            count += 1
        batch, self._pending = self._pending[:count], self._pending[count:]
        return batch

    def _begin_immediate(self) -> None:
        """Take the write lock, retrying past the busy timeout until ``lock_timeout_s``."""
        deadline = time.monotonic() + self.config.lock_timeout_s
        delay = 0.005
        while True:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                text = str(error).lower()
                if "locked" not in text and "busy" not in text:
                    raise
                if time.monotonic() >= deadline:
                    raise JournalBusyError(
                        f"{self.info.path} stayed locked for {self.config.lock_timeout_s:.0f} s"
                        " by another writer; try again or raise lock_timeout_s"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def _existing_ids(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), _EXISTING_CHUNK):
            chunk = ids[start : start + _EXISTING_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT event_ulid FROM journal_events WHERE event_ulid IN ({marks})", chunk
            ).fetchall()
            found.update(str(row[0]) for row in rows)
        return found

    def _head(self) -> tuple[int, str]:
        """The next free seq's predecessor and the hash to chain from, read inside the lock.

        ``sqlite_sequence`` remembers the highest seq ever used, so a tail removed behind the
        journal's back leaves a visible gap instead of silently reused numbers.
        """
        row = self._conn.execute(
            "SELECT seq, hash FROM journal_events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        used = self._conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'journal_events'"
        ).fetchone()
        last_seq = max(int(row[0]) if row else 0, int(used[0]) if used else 0)
        return last_seq, (str(row[1]) if row else self._genesis)

    def _commit(self, batch: list[_Unit]) -> list[list[AppendResult] | BaseException]:
        """Runs on the writer thread: one transaction for the whole batch."""
        self._begin_immediate()
        try:
            outcomes: list[list[AppendResult] | BaseException | None] = [None] * len(batch)
            ids = [event.event_ulid for unit in batch for event in unit.events]
            existing = self._existing_ids(ids)
            seen: set[str] = set()
            accepted: list[int] = []
            for index, unit in enumerate(batch):
                unit_ids = [event.event_ulid for event in unit.events]
                clash = [i for i in unit_ids if i in existing or i in seen]
                if clash or len(set(unit_ids)) != len(unit_ids):
                    dups = clash or [i for i in unit_ids if unit_ids.count(i) > 1]
                    outcomes[index] = DuplicateEventError(sorted(set(dups)))
                    continue
                seen.update(unit_ids)
                accepted.append(index)
            seq, prev_hash = self._head()
            created = now_ms()
            rows: list[tuple[object, ...]] = []
            for index in accepted:
                results: list[AppendResult] = []
                for event in batch[index].events:
                    seq += 1
                    digest = link_hash(
                        (
                            prev_hash, seq, event.event_ulid, event.session_ulid,
                            event.run_ulid, event.kind, event.actor, event.timestamp_unix_ms,
                            created, event.principal, event.device_id, event.channel,
                            event.redacted, event.redaction_rules, event.payload_json,
                        )
                    )
                    rows.append(
                        (
                            seq, event.event_ulid, event.session_ulid, event.run_ulid,
                            event.kind, event.actor, event.timestamp_unix_ms,
                            event.payload_json, event.redacted, event.redaction_rules, digest,
                            prev_hash, event.principal, event.device_id, event.channel,
                            created,
                        )
                    )
                    results.append(AppendResult(seq, event.event_ulid, digest))
                    prev_hash = digest
                outcomes[index] = results
            if rows:
                self._conn.executemany(_INSERT, rows)
            self._conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise
        return [outcome if outcome is not None else [] for outcome in outcomes]

    async def close(self) -> None:
        """Commit what is queued, checkpoint the WAL and close. Safe to call twice."""
        if self._closed:
            return
        self._closing = True
        self._wakeup.set()
        with contextlib.suppress(Exception):
            await self._writer_task
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_connection)
        self._executor.shutdown(wait=True)

    def _close_connection(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()
