"""The journal writer: validated, redacted, hash-chained appends with group commit.

One :class:`Journal` per process owns the writer connection. The appends made during one turn
of the event loop go out together as one batch, in one transaction (group commit); each caller's
await returns only once its own event is committed.

Where a batch commits: a thread hop costs more than a small commit itself (a ``synchronous=NORMAL``
commit in WAL mode writes its frames to the page cache and does not fsync), so a batch of at most
:data:`INLINE_MAX_EVENTS` plain events commits right on the event loop's thread when nothing else
is queued for the writer, the write lock is free at once and no signed checkpoint falls due in it.
Everything else (``synchronous=FULL``, bigger batches, :meth:`Journal.transact` work, a lock held
by another process, a checkpoint to sign and anchor, the commit that starts the WAL over, whose
new header SQLite fsyncs) goes to a dedicated writer thread, which also runs the WAL checkpoints,
on a connection of its own: nothing that waits for a lock, fsyncs or copies the WAL ever runs on
the event loop. The writer connection is only ever used by one thread at a time (``_lock``).

Record writes (sessions, runs, approvals ...) use :meth:`Journal.transact`: a function that runs
on the writer thread inside the batch transaction, under its own savepoint, and appends the
chained events that commit to what it wrote through a :class:`WriteContext`.

Several processes may write the same file: every batch takes the write lock with
``BEGIN IMMEDIATE`` and reads the chain head inside that transaction, so the chain stays one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar
from urllib.parse import quote

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
# The largest batch committed on the event loop's thread (about 20 µs of work per event).
INLINE_MAX_EVENTS = 128
# SQLite's automatic WAL checkpoint would run inside whichever COMMIT crosses its threshold,
# possibly on the event loop; the writer thread checkpoints instead, at SQLite's default
# threshold: when the WAL holds this many frames after a commit.
WAL_CHECKPOINT_FRAMES = 1_000
# The wal-index (the -shm file, https://www.sqlite.org/walformat.html) holds, in native byte
# order, mxFrame (the WAL's last valid frame) at offset 16 and nBackfill (the frames already
# copied into the database) at offset 96.
_SHM_STATE = struct.Struct("=I76xI")
_SHM_STATE_OFFSET = 16
_HEAD = (
    "SELECT seq, hash, (SELECT seq FROM sqlite_sequence WHERE name = 'journal_events')"
    " FROM journal_events ORDER BY seq DESC LIMIT 1"
)

T = TypeVar("T")
_LOG = logging.getLogger(__name__)
# Litestream creates this table in every database it replicates.
_LITESTREAM_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_litestream_lock'"


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


class _NotInline(Exception):
    """A batch cannot commit on the event loop's thread (lock held elsewhere, checkpoint due)."""


class _Writer:
    """The writer connection and the chain head inside a transaction.

    Used by the writer thread, or by the event loop's thread for an inline commit, never by both
    at once (``Journal._lock``).
    """

    def __init__(self, conn: sqlite3.Connection, info: JournalInfo, config: JournalConfig) -> None:
        self.conn = conn
        self.info = info
        self.config = config
        self.genesis = genesis_prev_hash(info.journal_id)
        self.seq = 0
        self.prev_hash = self.genesis
        # Signed checkpoints (docs/checkpoints.md), made on the writer thread around COMMIT.
        self.checkpointer = open_checkpointer(conn, info, config)
        # Set when a WAL checkpoint was asked of the writer thread and has not finished yet.
        self.wal_checkpoint_asked = False
        # Whether this writer checkpoints the WAL (see owns_wal_checkpoints).
        self.checkpoints_owned = config.wal_checkpoints
        self._wal_conn: sqlite3.Connection | None = None
        self._shm: int | None = None
        # Idle, the connection never waits for a lock, so an inline BEGIN fails at once when
        # another process writes; the writer thread waits the configured time (``patient``).
        conn.execute("PRAGMA busy_timeout = 0")

    @contextlib.contextmanager
    def patient(self) -> Iterator[None]:
        """Let SQLite calls wait up to ``busy_timeout_ms`` for locks (writer thread only)."""
        self.conn.execute(f"PRAGMA busy_timeout = {int(self.config.busy_timeout_ms)}")
        try:
            yield
        finally:
            self.conn.execute("PRAGMA busy_timeout = 0")

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

    def begin_inline(self) -> None:
        """Take the write lock only if it is free right now; otherwise :class:`_NotInline`."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            text = str(error).lower()
            if "locked" in text or "busy" in text:
                raise _NotInline from None
            raise
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
        digest = link_hash(event.link_values(self.prev_hash, self.seq, created))
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

    def commit_batch(self, batch: list[_Unit[Any]], *, inline: bool = False) -> list[object]:
        """One transaction for the whole batch; returns each unit's result or exception.

        ``inline`` (on the event loop's thread) never waits for the lock and never signs a
        checkpoint: either raises :class:`_NotInline` with nothing written.
        """
        try:
            return self._run(batch, strict=False, inline=inline)
        except _RetryStrict:
            return self._run(batch, strict=True, inline=inline)

    def _run(self, batch: list[_Unit[Any]], *, strict: bool, inline: bool) -> list[object]:
        if inline:
            self.begin_inline()
            # Checkpoints are signed and anchored on the writer thread only.
            if self._checkpoint_due(self.seq + sum(len(unit.events or ()) for unit in batch)):
                self.conn.execute("ROLLBACK")
                raise _NotInline
        else:
            self.begin()
        created = now_ms()
        outcomes: list[object] = []
        pending_rows: list[tuple[object, ...]] = []
        # Checkpoints of an earlier commit the writer thread may still be publishing.
        publishing = list(self.checkpointer.pending) if self.checkpointer else []
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
                if inline and self._signed_here(publishing):
                    raise _NotInline  # due by another process's checkpoint state
            self.conn.execute("COMMIT")
        except BaseException:
            # Only if this transaction signed: before_commit signs nothing while an earlier
            # checkpoint is pending, so then every pending one is this transaction's.
            if self.checkpointer is not None and self._signed_here(publishing):
                self.checkpointer.discard()
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise
        return outcomes

    def _signed_here(self, publishing: Sequence[object]) -> bool:
        """Whether a checkpoint is pending that was not pending when the transaction began."""
        pending = self.checkpointer.pending if self.checkpointer is not None else []
        return any(entry not in publishing for entry in pending)

    def _checkpoint_due(self, head: int) -> bool:
        """Whether :meth:`Checkpointer.before_commit` would sign ``head``."""
        cp = self.checkpointer
        if cp is None or head <= cp.last_seq:
            return False
        if cp.every_events and head - cp.last_seq >= cp.every_events:
            return True
        return bool(cp.every_s) and time.monotonic() - cp.last_monotonic >= cp.every_s

    def publish(self) -> None:
        """After a commit: append the checkpoints it signed to the anchor file (fsynced).

        Writer thread only, and without the connection lock, so that inline commits go on
        during the fsync: it touches only the anchor file and the checkpointer's state, and a
        transaction meanwhile neither signs (a checkpoint is pending until this returns) nor
        discards what it did not sign (see ``_run``).
        """
        if self.checkpointer is not None:
            self.checkpointer.after_commit()

    def owns_wal_checkpoints(self) -> bool:
        """Whether this writer checkpoints the WAL.

        Not when configured so (``wal_checkpoints=False``), nor once Litestream replicates the
        file: Litestream creates its ``_litestream_lock`` table in the database, and must then
        be the WAL's only checkpointer, or its replica can be corrupt (docs/replication.md).
        Looked for until found, so that a replication started after the writer opened is
        obeyed from the next checkpoint on; SQLite's own checkpoints in commits stop too.
        """
        if self.checkpoints_owned and self.conn.execute(_LITESTREAM_TABLE).fetchone() is not None:
            self.checkpoints_owned = False
            self.conn.execute("PRAGMA wal_autocheckpoint = 0")
            _LOG.info("%s is replicated by Litestream, which checkpoints it", self.info.path)
        return self.checkpoints_owned

    def take_wal_checkpoint_due(self, frames: int) -> bool:
        """True (once until it ran) when the WAL holds ``WAL_CHECKPOINT_FRAMES`` or more."""
        if self.wal_checkpoint_asked or frames < WAL_CHECKPOINT_FRAMES:
            return False
        if not self.owns_wal_checkpoints():
            return False
        self.wal_checkpoint_asked = True
        return True

    def wal_state(self) -> tuple[int, int]:
        """(frames in the WAL, frames copied into the database), from the wal-index: one pread.

        Raises ``OSError`` when the wal-index cannot be read.
        """
        if self._shm is None:
            self._shm = os.open(f"{self.info.path}-shm", os.O_RDONLY)
        raw = os.pread(self._shm, _SHM_STATE.size, _SHM_STATE_OFFSET)
        if len(raw) < _SHM_STATE.size:
            return 0, 0
        frames, copied = _SHM_STATE.unpack(raw)
        return int(frames), int(copied)

    def checkpoint_wal_in_commits(self, enabled: bool) -> None:
        """Whether SQLite checkpoints the WAL itself, inside the commit that outgrows it.

        Off while commits may run on the event loop (the writer thread checkpoints instead).
        """
        frames = WAL_CHECKPOINT_FRAMES if enabled and self.owns_wal_checkpoints() else 0
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {frames}")

    def checkpoint_wal(self) -> None:
        """Copy the WAL into the database (PASSIVE) on a connection of the writer thread's own.

        It neither takes nor waits for the write lock; a failure only leaves the WAL longer
        until the next one.
        """
        try:
            if self._wal_conn is None:
                self._wal_conn = sqlite3.connect(
                    f"file:{quote(str(self.info.path))}?mode=rw",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                )
            self._wal_conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as error:
            _LOG.warning("WAL checkpoint of %s failed: %s", self.info.path, error)

    def idle_timeout(self) -> float | None:
        """How long the writer thread may wait for work before a checkpoint is due."""
        if self.checkpointer is None or not self.checkpointer.every_s:
            return None
        # Inline commits move the head without waking the writer thread: look again after at
        # most one interval.
        left = self.checkpointer.idle_timeout(self.seq)
        return self.checkpointer.every_s if left is None else left

    def head_moved(self) -> bool:
        """True when events were committed after the last checkpoint this writer knows of."""
        return self.checkpointer is not None and self.seq > self.checkpointer.last_seq

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
        if self._wal_conn is not None:
            self._wal_conn.close()
        if self._shm is not None:
            os.close(self._shm)
        with self.patient():
            self.checkpoint_now()
        # Without waiting: a reader that keeps a transaction open (Litestream always does)
        # would make it wait the whole busy timeout for nothing; it truncates when none does.
        with contextlib.suppress(sqlite3.Error):
            if self.owns_wal_checkpoints():
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()


EventLike = EventInput | Mapping[str, Any]
_STOP = object()
_WAL = object()  # the writer thread's cue to checkpoint the WAL


def _inline_size(batch: list[_Unit[Any]]) -> bool:
    """True for plain events, at most INLINE_MAX_EVENTS of them (transact work never inline)."""
    size = 0
    for unit in batch:
        if unit.events is None:
            return False
        size += len(unit.events)
    return size <= INLINE_MAX_EVENTS


class Journal:
    """A journal open for writing. Use :meth:`open` (an async context manager too)."""

    def __init__(self, conn: sqlite3.Connection, info: JournalInfo, config: JournalConfig) -> None:
        self.info = info
        self.config = config
        self._redactor = Redactor(config.redaction)
        self._writer = _Writer(conn, info, config)
        self._loop = asyncio.get_running_loop()
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        # Held by whichever thread uses the writer connection.
        self._lock = threading.Lock()
        # Loop thread only: the units submitted since the last dispatch, and how many batches
        # went to the writer thread and were not delivered yet (none: the writer is idle).
        self._pending: list[_Unit[Any]] = []
        self._in_writer = 0
        # Under FULL every commit fsyncs: never on the loop.
        self._inline_ok = config.synchronous == "NORMAL"
        self._writer.checkpoint_wal_in_commits(not self._inline_ok)
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
        if not isinstance(event, EventInput):
            if not isinstance(event, Mapping):
                raise TypeError(f"expected an EventInput or a mapping, got {type(event).__name__}")
            event = event_from_mapping(event)
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
        if not self._pending:
            self._loop.call_soon(self._dispatch)
        self._pending.append(_Unit(events, work, future))
        return await future

    def _dispatch(self) -> None:
        """On the loop thread, once per turn: commit what was submitted, here or on the writer."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        if self._in_writer == 0 and self._inline_ok and _inline_size(batch):
            outcomes = self._commit_inline(batch)
            if outcomes is not None:
                _deliver(batch, outcomes)
                return
        limit = self.config.max_batch_events
        start, size = 0, 0
        for index, unit in enumerate(batch):
            if size >= limit:
                self._send(batch[start:index])
                start, size = index, 0
            size += len(unit.events or ()) or 1
        self._send(batch[start:])

    def _send(self, batch: list[_Unit[Any]]) -> None:
        self._in_writer += 1
        self._inbox.put(batch)

    def _commit_inline(self, batch: list[_Unit[Any]]) -> list[object] | None:
        """Commit ``batch`` on this thread if the connection and the lock are free right now."""
        if not self._lock.acquire(blocking=False):
            return None  # the writer thread holds the connection (a checkpoint, closing)
        try:
            try:
                frames, copied = self._writer.wal_state()
            except OSError:
                self._stop_inline()
                return None
            if frames == 0 or copied >= frames:
                # This commit would start the WAL over, and SQLite fsyncs a new WAL's header.
                return None
            outcomes = self._outcomes(batch, inline=True)
            wal_due = self._writer.take_wal_checkpoint_due(frames)
        except _NotInline:
            return None
        finally:
            self._lock.release()
        if wal_due:
            self._inbox.put(_WAL)
        return outcomes

    def _outcomes(self, batch: list[_Unit[Any]], *, inline: bool = False) -> list[object]:
        """Commit ``batch``; a failure of the whole transaction becomes every unit's outcome."""
        try:
            return self._writer.commit_batch(batch, inline=inline)
        except _NotInline:
            raise
        except Exception as error:
            failure: BaseException = (
                describe_sqlite_error(self.info.path, error)
                if isinstance(error, sqlite3.Error)
                else error
            )
            return [failure] * len(batch)

    def _delivered(self, batches: int, batch: list[_Unit[Any]], outcomes: list[object]) -> None:
        self._in_writer -= batches
        _deliver(batch, outcomes)

    def _thread_main(self) -> None:
        """The writer thread: take the batches queued, commit them as one, report back."""
        limit = self.config.max_batch_events
        stop = False
        while not stop:
            try:
                first = self._inbox.get(timeout=self._writer.idle_timeout())
            except queue.Empty:
                with self._lock:
                    if self._writer.head_moved():  # idle past the checkpoint interval
                        with self._writer.patient():
                            self._writer.checkpoint_now()
                continue
            if first is _STOP:
                break
            if first is _WAL:
                self._checkpoint_wal()
                continue
            batch: list[_Unit[Any]] = list(first)  # type: ignore[call-overload]
            batches = 1
            size = sum(len(unit.events or ()) or 1 for unit in batch)
            wal_due = False
            while size < limit:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                if item is _WAL:
                    wal_due = True
                    continue
                more: list[_Unit[Any]] = item  # type: ignore[assignment]
                batch.extend(more)
                batches += 1
                size += sum(len(unit.events or ()) or 1 for unit in more)
            with self._lock:
                with self._writer.patient():
                    outcomes = self._outcomes(batch)
                wal_due = self._wal_due_after_commit() or wal_due
            # Answer once the lock is free (the next appends can commit inline), then anchor:
            # the anchor's fsync is not the callers' to wait for.
            self._loop.call_soon_threadsafe(self._delivered, batches, batch, outcomes)
            self._writer.publish()
            if wal_due:
                self._checkpoint_wal()
        with self._lock:
            self._writer.close()
        self._loop.call_soon_threadsafe(_settle, self._stopped)

    def _wal_due_after_commit(self) -> bool:
        """On the writer thread: whether its commit left the WAL due for a checkpoint."""
        if not self._inline_ok:
            # SQLite checkpoints inside the commits (each of which fsyncs: one more look is
            # nothing beside it), unless a Litestream has started replicating meanwhile.
            self._writer.owns_wal_checkpoints()
            return False
        try:
            frames, _ = self._writer.wal_state()
        except OSError:
            self._stop_inline()
            return False
        return self._writer.take_wal_checkpoint_due(frames)

    def _stop_inline(self) -> None:
        """Without a readable wal-index, commit on the writer thread only, as SQLite would."""
        self._inline_ok = False
        self._writer.checkpoint_wal_in_commits(True)

    def _checkpoint_wal(self) -> None:
        """Copy the WAL into the database in two passes (writer thread).

        The first copies the bulk while commits go on. SQLite starts the WAL over only in a
        transaction that began after a checkpoint left nothing behind, which under continuous
        writing the first pass never does; so the second, short, holds the writer connection,
        with no transaction in flight: it copies what came meanwhile and the next transaction
        restarts the WAL (inline appends queue for the writer meanwhile, the loop never waits).
        """
        if self._writer.checkpoints_owned:
            self._writer.checkpoint_wal()
            with self._lock:
                self._writer.checkpoint_wal()  # nothing left to copy: returns at once, no fsync
        self._writer.wal_checkpoint_asked = False

    async def close(self) -> None:
        """Commit what is queued, checkpoint the WAL and close. Safe to call twice."""
        if self._closing:
            await asyncio.shield(self._stopped)
            return
        self._closing = True
        self._dispatch()  # what was submitted in this turn goes out before the stop
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
