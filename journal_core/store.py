"""The journal writer: validated, redacted, hash-chained appends with group commit.

One :class:`Journal` per process owns the writer connection. All its SQLite work runs on one
dedicated thread, so the event loop never blocks on disk, and a whole batch (lock, head read,
inserts, commit) costs one hand-over to that thread and one back. Concurrent :meth:`Journal.append`
calls queue up while a commit is in flight and go out together in the next transaction; each
caller's await returns only once its own event is committed.

Record writes (sessions, runs, approvals ...) use :meth:`Journal.transact`: a function that runs
on the writer thread inside the batch transaction, under its own savepoint, and appends the
chained events that commit to what it wrote through a :class:`WriteContext`.

Several processes may write the same file: every batch takes the write lock with
``BEGIN IMMEDIATE`` and reads the chain head inside that transaction, so the chain stays one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

from journal_core.chain import genesis_prev_hash, link_hash
from journal_core.checkpoints import open_checkpointer
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
)
from journal_core.events import EventInput, PreparedEvent, event_from_mapping, prepare_event
from journal_core.redaction import Redactor
from journal_core.schema import now_ms

_INSERT = (
    "INSERT {conflict} INTO journal_events (seq, event_ulid, session_ulid, run_ulid, kind,"
    " actor, timestamp_unix_ms, payload_json, redacted, redaction_rules, hash, prev_hash,"
    " principal, device_id, channel, created_at_unix_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_FAST = _INSERT.format(conflict="OR IGNORE")
_INSERT_STRICT = _INSERT.format(conflict="")
_HEAD = (
    "SELECT seq, hash, (SELECT seq FROM sqlite_sequence WHERE name = 'journal_events')"
    " FROM journal_events ORDER BY seq DESC LIMIT 1"
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an event landed: its seq, its id and its link hash."""

    seq: int
    event_id: str
    hash: str


class WriteContext:
    """What a :meth:`Journal.transact` function gets: the open transaction and the chain.

    It runs on the writer thread. ``execute``/``executemany`` run SQL in the transaction;
    ``append`` chains an event right away (so a record row can point at its seq).
    """

    def __init__(self, writer: _Writer, now: int) -> None:
        self._writer = writer
        self.now_ms = now

    @property
    def connection(self) -> sqlite3.Connection:
        """The writer connection, inside the batch transaction and this unit's savepoint."""
        return self._writer.conn

    def execute(
        self, sql: str, params: Sequence[object] | Mapping[str, object] = ()
    ) -> sqlite3.Cursor:
        """Run one statement in the transaction."""
        return self._writer.conn.execute(sql, params)

    def executemany(self, sql: str, params: Iterable[Sequence[object]]) -> sqlite3.Cursor:
        """Run one statement for each parameter row, in the transaction."""
        return self._writer.conn.executemany(sql, params)

    @property
    def next_seq(self) -> int:
        """The seq the next event appended in this transaction will get."""
        return self._writer.seq + 1

    def append(self, event: PreparedEvent) -> AppendResult:
        """Chain and insert ``event`` now; returns its seq and hash."""
        return self._writer.insert_now(event, self.now_ms)


@dataclass(slots=True)
class _Unit(Generic[T]):
    """Work that commits or fails as one: plain events, or a transact function."""

    events: list[PreparedEvent] | None
    work: Callable[[WriteContext], T] | None
    future: asyncio.Future[Any]


class _RetryStrict(Exception):
    """The fast path met a constraint; redo the batch unit by unit."""


class _Writer:
    """The writer thread's state: the connection and the chain head inside a transaction."""

    def __init__(self, conn: sqlite3.Connection, info: JournalInfo, config: JournalConfig) -> None:
        self.conn = conn
        self.info = info
        self.config = config
        self.genesis = genesis_prev_hash(info.journal_id)
        self.seq = 0
        self.prev_hash = self.genesis
        # Signed checkpoints (docs/checkpoints.md), made on this thread around COMMIT.
        self.checkpointer = open_checkpointer(conn, info, config)

    def begin(self) -> None:
        """Take the write lock, retrying past the busy timeout until ``lock_timeout_s``."""
        deadline = time.monotonic() + self.config.lock_timeout_s
        delay = 0.002
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as error:
                text = str(error).lower()
                if "locked" not in text and "busy" not in text:
                    raise
                if time.monotonic() >= deadline:
                    raise JournalBusyError(
                        f"{self.info.path} stayed locked for {self.config.lock_timeout_s:g} s"
                        " by another writer; try again or raise lock_timeout_s"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        self._read_head()

    def _read_head(self) -> None:
        """The chain head, read under the lock.

        ``sqlite_sequence`` remembers the highest seq ever used, so a tail removed behind the
        journal's back leaves a visible gap instead of silently reused numbers.
        """
        row = self.conn.execute(_HEAD).fetchone()
        if row is None:
            used = self.conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'journal_events'"
            ).fetchone()
            self.seq, self.prev_hash = (int(used[0]) if used else 0), self.genesis
        else:
            self.seq = max(int(row[0]), int(row[2] or 0))
            self.prev_hash = str(row[1])

    def row_for(self, event: PreparedEvent, created: int) -> tuple[object, ...]:
        """Chain ``event`` after the current head and return its row; advances the head."""
        self.seq += 1
        digest = link_hash(
            (
                self.prev_hash,
                self.seq,
                event.event_ulid,
                event.session_ulid,
                event.run_ulid,
                event.kind,
                event.actor,
                event.timestamp_unix_ms,
                created,
                event.principal,
                event.device_id,
                event.channel,
                event.redacted,
                event.redaction_rules,
                event.payload_json,
            )
        )
        row = (
            self.seq,
            event.event_ulid,
            event.session_ulid,
            event.run_ulid,
            event.kind,
            event.actor,
            event.timestamp_unix_ms,
            event.payload_json,
            event.redacted,
            event.redaction_rules,
            digest,
            self.prev_hash,
            event.principal,
            event.device_id,
            event.channel,
            created,
        )
        self.prev_hash = digest
        return row

    def insert_now(self, event: PreparedEvent, created: int) -> AppendResult:
        row = self.row_for(event, created)
        try:
            self.conn.execute(_INSERT_STRICT, row)
        except sqlite3.IntegrityError:
            raise DuplicateEventError([event.event_ulid]) from None
        return AppendResult(self.seq, event.event_ulid, str(row[10]))

    def commit_batch(self, batch: list[_Unit[Any]]) -> list[object]:
        """One transaction for the whole batch; returns each unit's result or exception."""
        try:
            return self._run(batch, strict=False)
        except _RetryStrict:
            return self._run(batch, strict=True)

    def _run(self, batch: list[_Unit[Any]], *, strict: bool) -> list[object]:
        self.begin()
        created = now_ms()
        outcomes: list[object] = []
        pending_rows: list[tuple[object, ...]] = []
        try:
            for unit in batch:
                if unit.events is not None and not strict:
                    results = []
                    for event in unit.events:
                        row = self.row_for(event, created)
                        pending_rows.append(row)
                        results.append(AppendResult(self.seq, event.event_ulid, str(row[10])))
                    outcomes.append(results)
                    continue
                self._flush(pending_rows)
                outcomes.append(self._isolated(unit, created))
            self._flush(pending_rows)
            if self.checkpointer is not None:
                self.checkpointer.before_commit(self.conn, head_seq_hint=self.seq)
            self.conn.execute("COMMIT")
        except BaseException:
            if self.checkpointer is not None:
                self.checkpointer.discard()
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise
        if self.checkpointer is not None:
            self.checkpointer.after_commit()
        return outcomes

    def idle_timeout(self) -> float | None:
        """How long the writer thread may wait for work before a checkpoint is due."""
        if self.checkpointer is None:
            return None
        return self.checkpointer.idle_timeout(self.seq)

    def checkpoint_now(self) -> None:
        """Sign the head if it moved since the last checkpoint (on close, or when idle)."""
        if self.checkpointer is not None:
            self.checkpointer.checkpoint_now(self.conn, self.begin)

    def _flush(self, rows: list[tuple[object, ...]]) -> None:
        if not rows:
            return
        before = self.conn.total_changes
        self.conn.executemany(_INSERT_FAST, rows)
        if self.conn.total_changes - before != len(rows):
            raise _RetryStrict
        rows.clear()

    def _isolated(self, unit: _Unit[Any], created: int) -> object:
        """Run one unit under a savepoint; on failure undo just it and report why."""
        seq, prev_hash = self.seq, self.prev_hash
        self.conn.execute("SAVEPOINT unit")
        try:
            if unit.work is not None:
                result: object = unit.work(WriteContext(self, created))
            else:
                assert unit.events is not None
                result = [self.insert_now(event, created) for event in unit.events]
        except Exception as error:
            self.conn.execute("ROLLBACK TO unit")
            self.conn.execute("RELEASE unit")
            self.seq, self.prev_hash = seq, prev_hash
            if isinstance(error, sqlite3.Error) and not isinstance(error, sqlite3.IntegrityError):
                raise
            return error
        self.conn.execute("RELEASE unit")
        return result

    def close(self) -> None:
        self.checkpoint_now()
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()


EventLike = EventInput | Mapping[str, Any]
_STOP = object()


class Journal:
    """A journal open for writing. Use :meth:`open` (an async context manager too)."""

    def __init__(self, conn: sqlite3.Connection, info: JournalInfo, config: JournalConfig) -> None:
        self.info = info
        self.config = config
        self._redactor = Redactor(config.redaction)
        self._writer = _Writer(conn, info, config)
        self._loop = asyncio.get_running_loop()
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closing = False
        self._stopped: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._thread_main, name=f"journal-writer-{info.path.name}", daemon=True
        )
        self._thread.start()

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

    @property
    def redactor(self) -> Redactor:
        """The redactor this journal applies to everything it stores."""
        return self._redactor

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
        results: list[AppendResult] = await self._submit([self.prepare(event)], None)
        return results[0]

    async def append_batch(self, events: Iterable[EventLike]) -> list[AppendResult]:
        """Append several events atomically, in order: all are committed or none is."""
        prepared = [self.prepare(event) for event in events]
        return await self.append_prepared(prepared)

    async def append_prepared(self, events: Sequence[PreparedEvent]) -> list[AppendResult]:
        """Append events already returned by :meth:`prepare`, atomically and in order."""
        if not events:
            return []
        results: list[AppendResult] = await self._submit(list(events), None)
        return results

    async def transact(self, work: Callable[[WriteContext], T]) -> T:
        """Run ``work`` on the writer thread inside a write transaction; return its result.

        ``work`` shares the transaction of a group commit under its own savepoint: if it raises,
        what it wrote is undone (others in the batch are unaffected) and the exception reaches
        the caller. It must only touch the database through the context it is given.
        """
        result: T = await self._submit(None, work)
        return result

    async def _submit(
        self, events: list[PreparedEvent] | None, work: Callable[[WriteContext], Any] | None
    ) -> Any:
        if self._closing:
            raise JournalClosedError("the journal is closed; open it again to write")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._inbox.put(_Unit(events, work, future))
        return await future

    def _thread_main(self) -> None:
        """The writer thread: take everything queued, commit it as one batch, report back."""
        limit = self.config.max_batch_events
        stop = False
        while not stop:
            try:
                first = self._inbox.get(timeout=self._writer.idle_timeout())
            except queue.Empty:
                self._writer.checkpoint_now()  # idle past the checkpoint interval
                continue
            if first is _STOP:
                break
            batch: list[_Unit[Any]] = [first]  # type: ignore[list-item]
            size = len(batch[0].events or ()) or 1
            while size < limit:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                unit: _Unit[Any] = item  # type: ignore[assignment]
                batch.append(unit)
                size += len(unit.events or ()) or 1
            try:
                outcomes = self._writer.commit_batch(batch)
            except Exception as error:
                failure: BaseException = (
                    describe_sqlite_error(self.info.path, error)
                    if isinstance(error, sqlite3.Error)
                    else error
                )
                outcomes = [failure] * len(batch)
            self._loop.call_soon_threadsafe(_deliver, batch, outcomes)
        self._writer.close()
        self._loop.call_soon_threadsafe(_settle, self._stopped)

    async def close(self) -> None:
        """Commit what is queued, checkpoint the WAL and close. Safe to call twice."""
        if self._closing:
            await asyncio.shield(self._stopped)
            return
        self._closing = True
        self._inbox.put(_STOP)
        await asyncio.shield(self._stopped)
        await asyncio.to_thread(self._thread.join)


def _deliver(batch: list[_Unit[Any]], outcomes: list[object]) -> None:
    for unit, outcome in zip(batch, outcomes, strict=True):
        if unit.future.done():
            continue
        if isinstance(outcome, BaseException):
            unit.future.set_exception(outcome)
        else:
            unit.future.set_result(outcome)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


__all__ = ["AppendResult", "Journal", "WriteContext"]
