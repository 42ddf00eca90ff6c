"""Shipping a journal into the central store: idempotent, resumable, verified before it is sent.

The host's journal file stays the system of record. A shipper reads it read-only and copies, in
batches, its events (exactly as stored), the record rows those events commit to, its signing keys
and its signed checkpoints into PostgreSQL. Each batch is one PostgreSQL transaction that starts
by locking the journal's row and reading the head the central store holds, so:

- **idempotent and resumable**: a batch starts right after the central head, whatever happened
  before (a shipper killed mid-batch leaves nothing: its transaction never committed), and
  events are keyed by (journal id, seq);
- **verified**: the batch's links are checked (:func:`journal_core.chain.verify_rows`, anchored
  at the central head's hash), every record row shipped must match the digest its event commits
  to, every checkpoint must match the event hash at its seq, and a known key may not change;
- **witnessed**: the host's history must extend what the central store holds. When it does not
  (rewritten, rolled back), the refusal is recorded centrally with the journal and seq, and
  :class:`~journal_core.errors.ShipRefusedError` is raised. PostgreSQL enforces the same rule
  itself (``central_witness`` trigger), whatever a shipper does.

Record rows are shipped at the event that wrote their current state (their ``event_seq``): a row
rewritten after the batch's last event waits for the batch holding its newer event. The central
``records_seq`` says up to which seq the record tables are complete (every batch that reaches the
host's head at the time it read it).
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg

from journal_core.central import rows as rows_codec
from journal_core.central.connection import CentralConnection, connection_error
from journal_core.central.decisions import DECISIONS_CHANNEL, apply_pending
from journal_core.chain import LINK_COLUMNS, Value, genesis_prev_hash, verify_rows
from journal_core.connection import JournalInfo, describe_sqlite_error, open_reader
from journal_core.errors import ShipRefusedError
from journal_core.events import Kind
from journal_core.records import RECORD_SPECS, SPECS_BY_TABLE, RecordSpec, record_digest
from journal_core.schema import EVENT_COLUMNS

_LINK_INDEX = tuple(EVENT_COLUMNS.index(column) for column in (*LINK_COLUMNS, "hash"))
_SEQ, _KIND, _PAYLOAD, _HASH = (
    EVENT_COLUMNS.index(c) for c in ("seq", "kind", "payload_json", "hash")
)
_KEY_COLUMNS = ("key_id", "name", "vkey", "announced_by", "created_at_unix_ms")
_CHECKPOINT_COLUMNS = ("id", "seq", "head_hash", "time_unix_ms", "key_id", "note")
_RECORD_ROW_SQL = {
    spec.table: f"SELECT {', '.join(spec.columns)}, event_seq, {spec.key_sql('r')}"
    f" FROM {spec.table} AS r WHERE {spec.key_where}"
    for spec in RECORD_SPECS
}

DEFAULT_BATCH = 5_000
CHANNEL = "journal_central"


@dataclass(slots=True)
class ShipResult:
    """What one :func:`ship_once` call shipped."""

    journal_id: str
    events: int = 0
    records: int = 0
    purged: int = 0
    checkpoints: int = 0
    batches: int = 0
    head_seq: int = 0
    host_head_seq: int = 0
    seconds: float = 0.0
    refusal: ShipRefusedError | None = field(default=None, repr=False)


@dataclass(slots=True)
class _RecordChanges:
    """What a batch does to the record tables: rows to upsert and keys to delete, by table."""

    upserts: dict[str, list[tuple[Value, ...]]] = field(default_factory=dict)
    deletes: dict[str, set[str]] = field(default_factory=dict)


class _Snapshot:
    """One read transaction on the host's journal: everything a ship cycle reads is consistent."""

    def __init__(self, conn: sqlite3.Connection, info: JournalInfo) -> None:
        self.conn = conn
        self.info = info
        conn.execute("BEGIN")
        head = conn.execute("SELECT MAX(seq) FROM journal_events").fetchone()
        self.head_seq = int(head[0] or 0)
        self.has_checkpoints = (
            conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'journal_checkpoints'"
            ).fetchone()
            is not None
        )

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("COMMIT")

    def hash_at(self, seq: int) -> str | None:
        row = self.conn.execute("SELECT hash FROM journal_events WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else str(row[0])

    def events(self, first: int, last: int) -> list[tuple[Value, ...]]:
        return self.conn.execute(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM journal_events"
            " WHERE seq >= ? AND seq <= ? ORDER BY seq",
            (first, last),
        ).fetchall()

    def record_row(self, spec: RecordSpec, key: str) -> tuple[Value, ...] | None:
        """The row of ``spec`` whose key text is ``key``, with ``event_seq`` last, or None.

        The lookup goes through the table's primary key (a match on the key text alone would
        scan the table for every record event): the text is split back into its values, at its
        last colons since only a multi-column key's first column is text, and the row found must
        give back exactly that key text.
        """
        parts = key.rsplit(":", len(spec.key_columns) - 1)
        if len(parts) != len(spec.key_columns):
            return None
        row = self.conn.execute(_RECORD_ROW_SQL[spec.table], parts).fetchone()
        return None if row is None or row[-1] != key else tuple(row[:-1])

    def signing_keys(self) -> list[tuple[Value, ...]]:
        if not self.has_checkpoints:
            return []
        return self.conn.execute(
            f"SELECT {', '.join(_KEY_COLUMNS)} FROM journal_keys ORDER BY created_at_unix_ms"
        ).fetchall()

    def checkpoints(self, after_id: int, up_to_seq: int) -> list[tuple[Value, ...]]:
        if not self.has_checkpoints:
            return []
        return self.conn.execute(
            f"SELECT {', '.join(_CHECKPOINT_COLUMNS)} FROM journal_checkpoints"
            " WHERE id > ? AND seq <= ? ORDER BY id",
            (after_id, up_to_seq),
        ).fetchall()


def _as_int(value: Value) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _refuse(journal_id: str, code: str, seq: int | None, detail: str) -> ShipRefusedError:
    return ShipRefusedError(journal_id, code, seq, detail)


class _SnapshotBehind(Exception):
    """The host's snapshot ends before the central head but agrees with it up to its end."""


class Shipper:
    """Ships one journal file into one central store. Not thread-safe; one per journal."""

    def __init__(
        self,
        db_path: str | Path,
        central: CentralConnection,
        *,
        url: str = "",
        batch_size: int = DEFAULT_BATCH,
        host: str | None = None,
    ) -> None:
        if not isinstance(batch_size, int) or not 1 <= batch_size <= 1_000_000:
            raise ValueError("batch_size must be an integer in 1..1000000")
        self.db_path = Path(db_path).expanduser().absolute()
        self.central = central
        self.url = url
        self.batch_size = batch_size
        self.host = host or socket.gethostname()
        self._conn, self.info = open_reader(self.db_path)
        self._registered = False

    @property
    def journal_id(self) -> str:
        """The id of the journal this shipper ships."""
        return self.info.journal_id

    def close(self) -> None:
        """Close the read connection to the host's journal (not the central connection)."""
        self._conn.close()

    def data_version(self) -> int:
        """SQLite's ``data_version``: changes when another connection commits."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    # -- one cycle ---------------------------------------------------------------------------

    def ship_once(
        self,
        *,
        max_events: int | None = None,
        on_batch: Callable[[ShipResult], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> ShipResult:
        """Ship everything the journal holds now (at most ``max_events`` events), in batches.

        ``should_stop`` is asked between batches (a stop never interrupts one). Raises
        :class:`ShipRefusedError` when the central store refuses the journal's history (the
        refusal is recorded centrally first) and :class:`CentralStoreError` when the store
        cannot be used. Either way, every batch committed before stays committed.
        """
        started = time.perf_counter()
        result = ShipResult(self.journal_id)
        snapshot: _Snapshot | None = None
        try:
            snapshot = self._snapshot()
            self._register()
            # Even with nothing to ship, the host must still hold what the central store holds
            # (a journal emptied or rolled back must be refused, not pass as idle). A snapshot
            # older than the central head (another shipper of this file went first) is renewed
            # once before the host is judged behind.
            try:
                self._check_head(snapshot)
            except _SnapshotBehind:
                snapshot.close()
                snapshot = self._snapshot()
                self._check_head(snapshot, renewed=True)
            result.host_head_seq = snapshot.head_seq
            budget = max_events if max_events is not None else snapshot.head_seq
            while budget > 0 and not (should_stop is not None and should_stop()):
                shipped = self._ship_batch(snapshot, min(self.batch_size, budget), result)
                if shipped == 0:
                    break
                budget -= shipped
                result.batches += 1
                if on_batch is not None:
                    on_batch(result)
            if result.batches == 0:
                self._touch(snapshot.head_seq)
        except ShipRefusedError as refusal:
            self._record_refusal(refusal)
            raise
        except sqlite3.Error as error:
            raise describe_sqlite_error(self.db_path, error) from None
        except psycopg.Error as error:
            raise connection_error(self.url, error) from None
        finally:
            if snapshot is not None:
                snapshot.close()
            result.seconds = time.perf_counter() - started
        return result

    def _snapshot(self) -> _Snapshot:
        try:
            return _Snapshot(self._conn, self.info)
        except sqlite3.Error as error:
            raise describe_sqlite_error(self.db_path, error) from None

    def _check_head(self, snapshot: _Snapshot, *, renewed: bool = False) -> None:
        """Check, under the journal row's lock, that the host holds the central head."""
        with self.central.transaction():
            head = self.central.execute(
                "SELECT head_seq, head_hash FROM journals WHERE journal_id = %s FOR UPDATE",
                (self.journal_id,),
            ).fetchone()
            assert head is not None, "registered above"
            self._check_extends(snapshot, int(head[0]), str(head[1]), renewed=renewed)

    def _register(self) -> None:
        """Make the journal known centrally (once), checking its identity if already known."""
        if self._registered:
            return
        info = self.info
        with self.central.transaction():
            self.central.execute(
                "INSERT INTO journals (journal_id, chain_algorithm, created_at_unix_ms,"
                " genesis_prev_hash, host, source_path, head_hash)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (journal_id) DO NOTHING",
                (
                    info.journal_id,
                    info.chain_algorithm,
                    info.created_at_unix_ms,
                    genesis_prev_hash(info.journal_id),
                    self.host,
                    str(self.db_path),
                    genesis_prev_hash(info.journal_id),
                ),
            )
            row = self.central.execute(
                "SELECT chain_algorithm, created_at_unix_ms FROM journals WHERE journal_id = %s",
                (info.journal_id,),
            ).fetchone()
        if row is None or (row[0], int(row[1])) != (info.chain_algorithm, info.created_at_unix_ms):
            raise _refuse(
                info.journal_id,
                "identity_mismatch",
                None,
                "the central store knows this journal id with another creation time or chain"
                " algorithm: the file is not the journal it claims to be",
            )
        self._registered = True

    def _touch(self, host_head: int) -> None:
        """Record that the host was seen (for the fleet's lag), when nothing was shipped.

        Only called once the host's journal was found to extend the central history, so an
        earlier refusal no longer holds (the journal was restored to a good copy).
        """
        cursor = self.central.execute(
            "UPDATE journals SET host_head_seq = %s, host_seen_at = now(), refused_at = NULL,"
            " refused_seq = NULL, refused_code = NULL, refused_detail = NULL"
            " WHERE journal_id = %s AND (host_head_seq IS DISTINCT FROM %s"
            " OR refused_code IS NOT NULL)",
            (host_head, self.journal_id, host_head),
        )
        if cursor.rowcount:
            self.central.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"seen {self.journal_id}"))

    def _ship_batch(self, snapshot: _Snapshot, limit: int, result: ShipResult) -> int:
        """Ship the next batch in one central transaction; returns the number of events."""
        journal_id = self.journal_id
        central = self.central
        with central.transaction():
            head = central.execute(
                "SELECT head_seq, head_hash FROM journals WHERE journal_id = %s FOR UPDATE",
                (journal_id,),
            ).fetchone()
            assert head is not None, "registered above"
            head_seq, head_hash = int(head[0]), str(head[1])
            try:
                self._check_extends(snapshot, head_seq, head_hash, renewed=False)
            except _SnapshotBehind:
                # Another shipper of this file went past this snapshot: the next cycle goes on.
                result.head_seq = head_seq
                return 0
            first = head_seq + 1
            last = min(head_seq + limit, snapshot.head_seq)
            if first > last:
                result.head_seq = head_seq
                return 0
            events = self._checked_events(snapshot, first, last, head_hash if head_seq else None)
            with central.cursor().copy(
                f"COPY journal_events (journal_id, {', '.join(EVENT_COLUMNS)}) FROM STDIN"
            ) as copy:
                for event in events:
                    copy.write_row((journal_id, *event))
                # Read and check the record rows while PostgreSQL takes in the streamed events
                # (a refusal here aborts the COPY, and with it the batch).
                changes = self._record_changes(snapshot, events)
            self._ship_records(changes, result)
            self._ship_signing(snapshot, events, last, result)
            complete = last == snapshot.head_seq
            central.execute(
                "UPDATE journals SET shipped_at = now(), host_head_seq = %s,"
                " host_seen_at = now(), records_seq = CASE WHEN %s THEN %s ELSE records_seq END,"
                " refused_at = NULL, refused_seq = NULL, refused_code = NULL,"
                " refused_detail = NULL WHERE journal_id = %s",
                (snapshot.head_seq, complete, last, journal_id),
            )
            central.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"events {journal_id} {last}"))
        result.events += len(events)
        result.head_seq = last
        return len(events)

    # -- checks --------------------------------------------------------------------------------

    def _check_extends(
        self, snapshot: _Snapshot, head_seq: int, head_hash: str, *, renewed: bool = True
    ) -> None:
        """The host's journal must hold the central head, with the same hash.

        A host that is a strict prefix of the central copy raises :class:`_SnapshotBehind`
        unless the snapshot was ``renewed`` (then it is ``rolled_back``).
        """
        if head_seq == 0:
            return
        local = snapshot.hash_at(head_seq)
        if local == head_hash:
            return
        divergence = self._first_divergence(snapshot, head_seq)
        if divergence is None:
            if not renewed:
                raise _SnapshotBehind
            raise _refuse(
                self.journal_id,
                "rolled_back",
                head_seq,
                f"the host's journal ends at seq {snapshot.head_seq}, before the {head_seq}"
                " events the central store already holds: it was rolled back or its tail cut",
            )
        raise _refuse(
            self.journal_id,
            "history_rewritten",
            divergence,
            f"the host's event {divergence} differs from the one the central store holds"
            " (and so does every later one): its history was rewritten",
        )

    def _first_divergence(self, snapshot: _Snapshot, head_seq: int) -> int | None:
        """The first seq where host and central hashes differ (None: the host is a prefix).

        A link binds its predecessor's hash, so equal hashes at a seq mean equal histories up to
        it: a binary search finds the first difference in log2(head) lookups.
        """
        low, high = 0, head_seq  # equal at low (genesis), different or missing at high
        while high - low > 1:
            middle = (low + high) // 2
            if snapshot.hash_at(middle) == self._central_hash(middle):
                low = middle
            else:
                high = middle
        if snapshot.hash_at(high) is None and snapshot.head_seq == low:
            return None
        return high

    def _central_hash(self, seq: int) -> str | None:
        row = self.central.execute(
            "SELECT hash FROM journal_events WHERE journal_id = %s AND seq = %s",
            (self.journal_id, seq),
        ).fetchone()
        return None if row is None else str(row[0])

    def _checked_events(
        self, snapshot: _Snapshot, first: int, last: int, anchor: str | None
    ) -> list[tuple[Value, ...]]:
        """The events ``first..last``, decoded, once their links are checked."""
        try:
            rows = snapshot.events(first, last)
        except sqlite3.OperationalError as error:
            if "decode" not in str(error):
                raise
            raise _refuse(
                self.journal_id, "not_utf8", first, "an event holds text that is not UTF-8"
            ) from None
        report = verify_rows(
            ([row[index] for index in _LINK_INDEX] for row in rows),
            journal_id=self.journal_id,
            from_seq=first,
            anchor_hash=anchor,
            max_breaks=1,
        )
        if report.breaks:
            item = report.breaks[0]
            raise _refuse(
                self.journal_id,
                item.code.value,
                item.seq,
                f"the host's chain is broken here ({item.summary}); nothing from it was shipped",
            )
        return rows

    def _record_changes(
        self, snapshot: _Snapshot, events: list[tuple[Value, ...]]
    ) -> _RecordChanges:
        """The record rows the batch's events wrote (checked) and the keys its tombstones purged."""
        changes = _RecordChanges()
        upserts: dict[tuple[str, str], tuple[Value, ...]] = {}
        for event in events:
            kind = event[_KIND]
            if kind not in (Kind.RECORD_WRITTEN, Kind.RECORD_PURGED):
                continue
            seq = _as_int(event[_SEQ])
            payload = orjson.loads(str(event[_PAYLOAD]))
            if not isinstance(payload, dict):
                continue
            spec = SPECS_BY_TABLE.get(str(payload.get("table")))
            if spec is None:
                continue
            if kind == Kind.RECORD_PURGED:
                for key in payload.get("keys") or ():
                    upserts.pop((spec.table, str(key)), None)
                    changes.deletes.setdefault(spec.table, set()).add(str(key))
                continue
            key = str(payload.get("key"))
            row = snapshot.record_row(spec, key)
            if row is None or row[-1] != seq:
                continue  # rewritten later (shipped with that event) or purged later
            if record_digest(spec, row[:-1]) != payload.get("digest"):
                raise _refuse(
                    self.journal_id,
                    "record_digest_mismatch",
                    seq,
                    f"the host's {spec.table} row {key} differs from what event {seq} commits to",
                )
            upserts[(spec.table, key)] = row
        for (table, _key), row in upserts.items():
            changes.upserts.setdefault(table, []).append(row)
        return changes

    def _ship_records(self, changes: _RecordChanges, result: ShipResult) -> None:
        """Delete the purged record rows, then upsert the written ones.

        Deletes go first: a key purged and then written again within the batch ends present.
        """
        for table, keys in changes.deletes.items():
            spec = SPECS_BY_TABLE[table]
            cursor = self.central.execute(
                f"DELETE FROM {table} AS r WHERE journal_id = %s AND {spec.key_sql('r')} = ANY(%s)",
                (self.journal_id, sorted(keys)),
            )
            result.purged += max(cursor.rowcount, 0)
            self._forget_exact(table, keys)
        if changes.upserts:
            self._upsert(changes.upserts)
            result.records += sum(len(rows) for rows in changes.upserts.values())

    def _upsert(self, by_table: dict[str, list[tuple[Value, ...]]]) -> None:
        """Insert or replace record rows: COPY into a staging table, then one upsert per table.

        One COPY and one statement per table instead of one round of parameters per row; the
        staging tables are the session's own and emptied at commit (and gone on rollback).
        """
        central = self.central
        central.execute(
            "".join(
                f"CREATE TEMP TABLE IF NOT EXISTS {_staging(table)} (LIKE {table})"
                " ON COMMIT DELETE ROWS;"
                for table in by_table
            )
        )
        for table, rows in by_table.items():
            spec = SPECS_BY_TABLE[table]
            columns = ", ".join(("journal_id", *spec.columns, "event_seq"))
            stored, exact, clean = rows_codec.split_rows(spec, rows)
            with central.cursor().copy(f"COPY {_staging(table)} ({columns}) FROM STDIN") as copy:
                for row in stored:
                    copy.write_row((self.journal_id, *row))
            self._forget_exact(table, clean)
            if exact:
                central.cursor().executemany(
                    "INSERT INTO record_raw (journal_id, tbl, k, event_seq, exact)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (journal_id, tbl, k)"
                    " DO UPDATE SET event_seq = EXCLUDED.event_seq, exact = EXCLUDED.exact",
                    [(self.journal_id, table, key, seq, data) for key, seq, data in exact],
                )
            updates = ", ".join(
                f"{column} = EXCLUDED.{column}"
                for column in (*spec.columns, "event_seq")
                if column not in spec.key_columns
            )
            central.execute(
                f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {_staging(table)}"
                f" ON CONFLICT (journal_id, {', '.join(spec.key_columns)}) DO UPDATE SET {updates}"
            )

    def _forget_exact(self, table: str, keys: Iterable[str]) -> None:
        """Drop the exact copies (text with NUL) of rows purged or now stored as they are."""
        listed = sorted(keys)
        if listed:
            self.central.execute(
                "DELETE FROM record_raw WHERE journal_id = %s AND tbl = %s AND k = ANY(%s)",
                (self.journal_id, table, listed),
            )

    def _ship_signing(
        self,
        snapshot: _Snapshot,
        events: list[tuple[Value, ...]],
        last: int,
        result: ShipResult,
    ) -> None:
        """Ship new signing keys and the checkpoints up to ``last``; a known key may not change."""
        central = self.central
        known = {
            str(key_id): str(vkey)
            for key_id, vkey in central.execute(
                "SELECT key_id, vkey FROM journal_keys WHERE journal_id = %s", (self.journal_id,)
            ).fetchall()
        }
        for key in snapshot.signing_keys():
            key_id, vkey = str(key[0]), str(key[2])
            if key_id in known:
                if known[key_id] != vkey:
                    raise _refuse(
                        self.journal_id,
                        "key_rewritten",
                        None,
                        f"the host's signing key {key_id} differs from the one the central"
                        " store recorded",
                    )
                continue
            central.execute(
                f"INSERT INTO journal_keys (journal_id, {', '.join(_KEY_COLUMNS)})"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (self.journal_id, *key),
            )
        shipped = central.execute(
            "SELECT COALESCE(MAX(id), 0) FROM journal_checkpoints WHERE journal_id = %s",
            (self.journal_id,),
        ).fetchone()
        after_id = int(shipped[0]) if shipped is not None else 0
        hashes = {_as_int(event[_SEQ]): str(event[_HASH]) for event in events}
        for checkpoint in snapshot.checkpoints(after_id, last):
            seq, head_hash = _as_int(checkpoint[1]), str(checkpoint[2])
            stored = hashes.get(seq) or snapshot.hash_at(seq)
            if stored != head_hash:
                raise _refuse(
                    self.journal_id,
                    "checkpoint_mismatch",
                    seq,
                    "a stored checkpoint's head hash differs from the event hash at its seq",
                )
            central.execute(
                f"INSERT INTO journal_checkpoints (journal_id, {', '.join(_CHECKPOINT_COLUMNS)})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (self.journal_id, *checkpoint),
            )
            result.checkpoints += 1

    def _record_refusal(self, refusal: ShipRefusedError) -> None:
        """Keep the refusal centrally (journal, code, seq) so every inspector shows it.

        Not for a file that only claims the journal's id: the journal itself is not at fault.
        """
        if refusal.code == "identity_mismatch":
            return
        with contextlib.suppress(psycopg.Error):
            self.central.execute(
                "UPDATE journals SET refused_at = now(), refused_seq = %s, refused_code = %s,"
                " refused_detail = %s WHERE journal_id = %s",
                (refusal.seq, refusal.code, refusal.detail, refusal.journal_id),
            )
            self.central.execute(
                "SELECT pg_notify(%s, %s)", (CHANNEL, f"refused {refusal.journal_id}")
            )


def _staging(table: str) -> str:
    """The session's staging table for upserts into ``table``."""
    return f"ship_{table}"


def follow(
    shipper: Shipper,
    *,
    interval: float = 0.1,
    should_stop: Callable[[], bool],
    on_result: Callable[[ShipResult], None] | None = None,
) -> None:
    """Ship continuously until ``should_stop()``: new commits, and central decisions to apply.

    The host's file is polled through ``data_version`` (SQLite has no notifications; the poll
    reads one page-cache counter). Central decisions for this journal arrive by LISTEN/NOTIFY
    and are applied to the host's journal at once, then shipped back with the next batch.
    Raises :class:`ShipRefusedError` when the witness refuses the journal.
    """
    central = shipper.central
    try:
        central.execute(f"LISTEN {DECISIONS_CHANNEL}")
    except psycopg.Error as error:
        raise connection_error(shipper.url, error) from None
    seen: int | None = None
    decisions_due = True
    while not should_stop():
        try:
            if decisions_due:
                apply_pending(central, shipper.db_path, shipper.journal_id)
                decisions_due = False
            version = shipper.data_version()
            if version != seen:
                seen = version
                result = shipper.ship_once(should_stop=should_stop)
                if on_result is not None and result.events:
                    on_result(result)
            for note in central.notifies(timeout=interval, stop_after=1):
                if note.payload == shipper.journal_id:
                    decisions_due = True
        except psycopg.Error as error:
            raise connection_error(shipper.url, error) from None
        except sqlite3.Error as error:
            raise describe_sqlite_error(shipper.db_path, error) from None
