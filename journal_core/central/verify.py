"""Verifying the central store: every journal it holds, with the codes a file's verify uses.

For each journal: the chain is recomputed from the stored events (streamed from a server-side
cursor, so memory stays bounded), the record rows are judged against the events they point at,
the shipped checkpoints are checked like an anchor file (signatures from the journal's first key,
following rotations, and each signed head against the stored event hash), and the central head
the witness keeps must be the last stored event. A journal whose host was refused by the witness
is reported too: its central copy may be intact, but its host's history is not.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from journal_core.central import rows as rows_codec
from journal_core.central.connection import CentralConnection, connection_error
from journal_core.chain import (
    LINK_COLUMNS,
    ProgressCallback,
    RecordBreak,
    VerifyReport,
    verify_rows,
)
from journal_core.checkpoints import (
    HISTORY_REWRITTEN,
    TAIL_TRUNCATED,
    AnchorFinding,
    AnchorReport,
    MalformedEntry,
    PublicKey,
    SignedCheckpoint,
    parse_note,
    walk_entries,
)
from journal_core.errors import CentralStoreError
from journal_core.events import Kind
from journal_core.records import RECORD_SPECS, RecordSpec, RecordsReport, check_rows, judge_latest

_PAGE = 10_000


@dataclass(slots=True)
class CentralJournalReport:
    """The verification of one journal held centrally."""

    journal_id: str
    host: str
    head_seq: int
    records_seq: int
    chain: VerifyReport
    checkpoints: AnchorReport
    findings: list[AnchorFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the chain, the records, the checkpoints and the witness all agree."""
        return self.chain.ok and self.checkpoints.ok and not self.findings

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view (the chain part has the same shape as a file's report)."""
        return {
            "journal_id": self.journal_id,
            "host": self.host,
            "head_seq": self.head_seq,
            "records_seq": self.records_seq,
            **self.chain.to_dict(),
            "status": "ok" if self.ok else "broken",
            "checkpoints": self.checkpoints.to_dict(),
            "findings": [item.to_dict() for item in self.findings],
        }


def _link_rows(
    conn: CentralConnection, journal_id: str, head_seq: int, *, after: int = 0
) -> Iterator[Any]:
    """The stored links of a journal after ``after``, in seq order, in pages (keyset)."""
    columns = ", ".join(LINK_COLUMNS) + ", hash"
    while True:
        rows = conn.execute(
            f"SELECT {columns} FROM journal_events WHERE journal_id = %s AND seq > %s"
            " AND seq <= %s ORDER BY seq LIMIT %s",
            (journal_id, after, head_seq, _PAGE),
        ).fetchall()
        if not rows:
            return
        yield from rows
        after = int(rows[-1][1])


def _check_records(
    conn: CentralConnection, journal_id: str, head_seq: int, records_seq: int
) -> RecordsReport:
    """Judge every record row, then each record's newest event against the rows.

    Rows are checked up to the head. The newest-event check runs up to ``records_seq`` (where
    the shipper last completed the record tables); a row already at a later state, or purged
    after it, is left for the next verify.
    """
    report = RecordsReport()
    for spec in RECORD_SPECS:
        query = (
            f"SELECT {spec.key_sql('r')}, r.event_seq, e.kind, e.payload_json, "
            + ", ".join(f"r.{column}" for column in spec.columns)
            + ", x.event_seq, x.exact"
            + f" FROM {spec.table} AS r LEFT JOIN journal_events AS e"
            " ON e.journal_id = r.journal_id AND e.seq = r.event_seq"
            " LEFT JOIN record_raw AS x ON x.journal_id = r.journal_id AND x.tbl = %s"
            f" AND x.k = {spec.key_sql('r')}"
            " WHERE r.journal_id = %s AND (r.event_seq <= %s OR e.seq IS NULL)"
        )
        with conn.cursor(name=f"rows_{spec.table}") as cursor:
            cursor.itersize = _PAGE
            cursor.execute(query, (spec.table, journal_id, head_seq))
            for item in check_rows(spec, _exact_rows(spec, cursor, report)):
                report.checked_rows += 1
                if item is not None:
                    report.breaks.append(item)
    _record_events(conn, journal_id, head_seq)
    for spec in RECORD_SPECS:
        rows = conn.execute(
            _LATEST_SQL.format(table=spec.table, key=spec.key_sql("r")),
            {
                "journal": journal_id,
                "written": int(Kind.RECORD_WRITTEN),
                "purged": int(Kind.RECORD_PURGED),
                "records_seq": records_seq,
                "table": spec.table,
            },
        ).fetchall()
        for key, latest, row_seq, purged_seq in rows:
            if row_seq is not None and row_seq > records_seq:
                continue
            judge_latest(report, spec, str(key), int(latest), row_seq, purged_seq)
    conn.execute("DROP TABLE central_record_events")
    return report


def _record_events(conn: CentralConnection, journal_id: str, head_seq: int) -> None:
    """A temporary table of the journal's record events with their payloads parsed, once.

    Payloads are parsed with a plain cast; only when one is not JSON (a tampered row, which the
    chain check reports) is the tolerant, slower ``central_jsonb`` used.
    """
    query = (
        "CREATE TEMP TABLE central_record_events AS"
        " SELECT seq, kind, doc ->> 'table' AS tbl, doc ->> 'key' AS k, doc -> 'keys' AS ks"
        " FROM (SELECT seq, kind, {parse} AS doc FROM journal_events"
        "  WHERE journal_id = %s AND kind IN (%s, %s) AND seq <= %s) AS parsed"
    )
    params = (journal_id, int(Kind.RECORD_WRITTEN), int(Kind.RECORD_PURGED), head_seq)
    try:
        with conn.transaction():
            conn.execute(query.format(parse="payload_json::jsonb"), params)
    except psycopg.errors.DataException:  # not JSON, or JSON PostgreSQL cannot hold (\u0000)
        conn.execute(query.format(parse="central_jsonb(payload_json)"), params)
    conn.execute("CREATE INDEX ON central_record_events (tbl, k)")
    conn.execute("ANALYZE central_record_events")


def _exact_rows(
    spec: RecordSpec, rows: Iterable[tuple[Any, ...]], report: RecordsReport
) -> Iterator[tuple[Any, ...]]:
    """Rows with their exact values: from ``record_raw`` for rows whose text holds NUL.

    A row whose table copy is not its exact copy with NUL shown as U+2400 is reported (and
    left out of the digest check, which its exact copy would pass).
    """
    for row in rows:
        *stored, raw_seq, exact = row
        if exact is None:
            yield tuple(stored)
            continue
        key, event_seq = str(stored[0]), stored[1]
        try:
            values = rows_codec.unpack(bytes(exact))
        except (ValueError, struct.error):
            values = ()
        if raw_seq != event_seq or not rows_codec.matches_shown(values, stored[4:]):
            report.checked_rows += 1
            report.breaks.append(
                RecordBreak(
                    "record_digest_mismatch",
                    spec.table,
                    key,
                    event_seq,
                    "the central row differs from its exact copy (text with NUL characters)",
                )
            )
            continue
        yield (*stored[:4], *values)


# The newest record event per key (up to records_seq), its row and its newest tombstone (up to
# the head: a purge already applied must not read as a missing row).
_LATEST_SQL = """
WITH latest AS (
    SELECT k, max(seq) AS seq FROM central_record_events
    WHERE kind = %(written)s AND seq <= %(records_seq)s AND tbl = %(table)s
    GROUP BY 1
), purged AS (
    SELECT keys.k, max(e.seq) AS seq
    FROM central_record_events AS e, jsonb_array_elements_text(e.ks) AS keys(k)
    WHERE e.kind = %(purged)s AND e.tbl = %(table)s AND jsonb_typeof(e.ks) = 'array'
    GROUP BY 1
)
SELECT l.k, l.seq, r.event_seq, p.seq
FROM latest AS l
LEFT JOIN {table} AS r ON r.journal_id = %(journal)s AND {key} = l.k
LEFT JOIN purged AS p ON p.k = l.k
"""


def _check_checkpoints(conn: CentralConnection, journal_id: str, head_seq: int) -> AnchorReport:
    """The shipped checkpoints, checked like an anchor file against the central events."""
    notes = conn.execute(
        "SELECT id, note FROM journal_checkpoints WHERE journal_id = %s ORDER BY id",
        (journal_id,),
    ).fetchall()
    entries: list[SignedCheckpoint | MalformedEntry] = []
    for row_id, note in notes:
        try:
            entries.append(parse_note(str(note)))
        except ValueError as error:
            entries.append(MalformedEntry(int(row_id), str(error)))
    report = AnchorReport(anchor_path=f"central:{journal_id}", entries=len(entries))
    first_key = conn.execute(
        "SELECT vkey FROM journal_keys WHERE journal_id = %s AND announced_by IS NULL"
        " ORDER BY created_at_unix_ms LIMIT 1",
        (journal_id,),
    ).fetchone()
    roots = [] if first_key is None else [PublicKey.parse(str(first_key[0]))]
    verified, _trust = walk_entries(report, journal_id, entries, roots)
    for item in verified:
        cp = item.checkpoint
        if cp.seq > head_seq:
            report.findings.append(
                AnchorFinding(
                    TAIL_TRUNCATED,
                    cp.seq,
                    None,
                    cp.head_hash,
                    f"head seq {head_seq}",
                    f"a checkpoint is signed at seq {cp.seq}, beyond the central head",
                )
            )
            continue
        stored = conn.execute(
            "SELECT hash FROM journal_events WHERE journal_id = %s AND seq = %s",
            (journal_id, cp.seq),
        ).fetchone()
        if stored is not None and str(stored[0]) != cp.head_hash:
            report.findings.append(
                AnchorFinding(
                    HISTORY_REWRITTEN,
                    cp.seq,
                    None,
                    cp.head_hash,
                    str(stored[0]),
                    "the stored hash differs from the signed head: the central copy was altered",
                )
            )
    return report


def verify_central_journal(
    conn: CentralConnection,
    journal_id: str,
    *,
    from_seq: int = 1,
    records: bool = True,
    progress: ProgressCallback | None = None,
) -> CentralJournalReport:
    """Verify one journal held in the central store (read-only).

    With ``from_seq`` > 1 only the links from there on are checked (anchored at the stored hash
    before it), and records and checkpoints are left out unless ``records``.
    """
    row = conn.execute(
        "SELECT host, head_seq, records_seq, refused_code, refused_seq, refused_detail"
        " FROM journals WHERE journal_id = %s",
        (journal_id,),
    ).fetchone()
    if row is None:
        raise CentralStoreError(f"the central store holds no journal {journal_id}")
    host, head_seq, records_seq = str(row[0]), int(row[1]), int(row[2])
    anchor = None
    if from_seq > 1:
        stored = conn.execute(
            "SELECT hash FROM journal_events WHERE journal_id = %s AND seq = %s",
            (journal_id, from_seq - 1),
        ).fetchone()
        anchor = None if stored is None else str(stored[0])
    chain = verify_rows(
        _link_rows(conn, journal_id, head_seq, after=from_seq - 1),
        journal_id=journal_id,
        from_seq=from_seq,
        anchor_hash=anchor,
        progress=progress,
    )
    checkpoints = AnchorReport(anchor_path=f"central:{journal_id}")
    if records:
        found = _check_records(conn, journal_id, head_seq, records_seq)
        chain.records_checked = found.checked_rows
        chain.records_purged = found.purged_rows
        chain.record_breaks = found.breaks
        checkpoints = _check_checkpoints(conn, journal_id, head_seq)
    result = CentralJournalReport(
        journal_id=journal_id,
        host=host,
        head_seq=head_seq,
        records_seq=records_seq,
        chain=chain,
        checkpoints=checkpoints,
    )
    last = chain.last_seq or (from_seq - 1)
    if last != head_seq:
        result.findings.append(
            AnchorFinding(
                TAIL_TRUNCATED,
                head_seq,
                None,
                f"seq {head_seq}",
                f"seq {last}",
                f"the witness holds head seq {head_seq} but the stored events end at {last}",
            )
        )
    if row[3] is not None:
        result.findings.append(
            AnchorFinding(
                str(row[3]),
                None if row[4] is None else int(row[4]),
                None,
                None,
                None,
                f"the witness refused this journal's host: {row[5]}",
            )
        )
    return result


def verify_central(
    conn: CentralConnection,
    url: str = "",
    journal_id: str | None = None,
    *,
    from_seq: int = 1,
    records: bool = True,
    progress: ProgressCallback | None = None,
) -> list[CentralJournalReport]:
    """Verify every journal the central store holds (or only ``journal_id``), read-only.

    Runs in one REPEATABLE READ transaction, so a shipper committing meanwhile cannot make the
    copy look inconsistent; what it ships is left for the next run. The only writes are to
    temporary tables, which the transaction drops.
    """
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            if journal_id is None:
                ids = [
                    str(r[0]) for r in conn.execute("SELECT journal_id FROM journals ORDER BY 1")
                ]
            else:
                ids = [journal_id]
            return [
                verify_central_journal(
                    conn, item, from_seq=from_seq, records=records, progress=progress
                )
                for item in ids
            ]
    except psycopg.Error as error:
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
        raise connection_error(url, error) from None
