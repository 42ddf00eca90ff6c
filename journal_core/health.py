"""A health report of a journal file: what an operator checks before trusting it.

:func:`health_report` inspects one journal, read-only except for an optional *write probe*, and
returns a :class:`HealthReport` with one section per aspect and a list of :class:`Finding`:

- **db file**: exists and size. The path is shown only as a reference such as
  ``journal.db#3fa2c1`` (the file name and the start of the SHA-256 of its absolute path), so a
  report can be pasted into a ticket without revealing the directory layout.
- **WAL**: the journal mode, the synchronous level, the busy timeout and the ``-wal``/``-shm``
  sizes. ``synchronous`` and ``busy_timeout`` are per-connection settings, not stored in the
  file: the report gives the level the daemon's writer sets (its :class:`JournalConfig`,
  NORMAL by default) next to what a fresh connection gets (SQLite's default, usually FULL).
- **schema**: the installed version against :data:`journal_core.schema.SCHEMA_VERSION`.
- **quick_check**: ``PRAGMA quick_check``.
- **write probe**: a short-lived read-write connection takes the write lock
  (``BEGIN IMMEDIATE``), writes a ``health_probe`` row into ``journal_meta`` and rolls it back.
  It proves the file is writable and not held locked, and changes nothing logically. Closing
  that connection may checkpoint the WAL into the main file (as any last connection does), so
  the file's bytes can change while its content does not.
- **hash chain**: :func:`journal_core.reader.verify_file`, chain and record tables.
- **FTS drift**: ``memory_items`` against its FTS5 index, read-only. The index of an
  external-content FTS5 table keeps one ``memory_items_fts_docsize`` row per indexed document
  (a real shadow table, unlike ``memory_items_fts`` itself, whose ``count(*)`` reads the content
  table), so rows missing from the index and index entries without a row are counted by
  comparing rowids. FTS5's own ``integrity-check`` command would need write access. The table
  is also opened (what an index too deep for FTS5 fails at) and its structure's depth read
  (:mod:`journal_core.fts`).
- **row counts** of ``journal_events`` and every record table.

Severity is ordered ok < warning < degraded < critical; the report's severity is the worst
finding's. Finding codes:

========================================  ========  ==============================================
``journal.hash_chain.mismatch``           critical  a chain link is broken (tampering, damage)
``journal.hash_chain.unreadable``         critical  the chain could not be read at all
``journal.records.mismatch``              critical  a record row differs from its chained event
``journal.sqlite.quick_check_failed``     critical  SQLite found structural damage
``journal.wal.not_wal``                   degraded  the file is not in WAL mode
``journal.schema.version_mismatch``       degraded  the schema is older than this software's
``journal.write_probe.failed``            degraded  the file is read-only or held locked
``journal.wal.large``                     warning   the WAL grew large (a reader may pin it)
``journal.fts.drift``                     warning   the memory search index differs from its rows
``journal.fts.deep``                      warning   the index's FTS5 structure nears FTS5's limit
========================================  ========  ==============================================

The original's ``journal.hash_chain.disabled`` cannot arise: this journal always chains.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import os
import sqlite3
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from journal_core.chain import VerifyReport
from journal_core.connection import JournalConfig, open_reader
from journal_core.errors import JournalError
from journal_core.fts import RESTART_LEVELS, STRUCTURE_LEVEL_LIMIT, structure_levels
from journal_core.reader import verify_file
from journal_core.records import RECORD_SPECS
from journal_core.schema import MEMORY_INDEX, SCHEMA_VERSION, table_names
from journal_core.schema import now_ms as _clock_ms
from journal_core.terminal_text import printable

DEFAULT_WAL_WARN_BYTES = 64 * 1024 * 1024
PROBE_BUSY_TIMEOUT_MS = 250
PROBE_META_KEY = "health_probe"
_SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
_FTS_DOCSIZE = "memory_items_fts_docsize"


class Severity(enum.IntEnum):
    """How bad a finding is; a report is as bad as its worst finding."""

    OK = 0
    WARNING = 1
    DEGRADED = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        """The lower-case name (``degraded``), as shown in reports."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found: how bad, a stable code, what is wrong and what to do."""

    severity: Severity
    code: str
    summary: str
    fix_hint: str

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "severity": self.severity.label,
            "code": self.code,
            "summary": self.summary,
            "fix_hint": self.fix_hint,
        }


@dataclass(frozen=True, slots=True)
class FileSection:
    """The database file itself."""

    reference: str
    exists: bool
    bytes: int


@dataclass(frozen=True, slots=True)
class WalSection:
    """Journal mode, per-connection durability settings and the WAL's size."""

    journal_mode: str
    synchronous: str
    synchronous_fresh_connection: str
    busy_timeout_ms: int
    wal_bytes: int
    shm_bytes: int


@dataclass(frozen=True, slots=True)
class SchemaSection:
    """The installed schema version against the one this software writes."""

    current: int
    expected: int


@dataclass(frozen=True, slots=True)
class QuickCheckSection:
    """The result of ``PRAGMA quick_check`` (``("ok",)`` when the structure is sound)."""

    ok: bool
    messages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WriteProbeSection:
    """Whether a rolled-back write transaction could be taken."""

    attempted: bool
    ok: bool | None
    detail: str


@dataclass(frozen=True, slots=True)
class ChainSection:
    """A summary of verifying the hash chain and the record tables."""

    status: str
    checked_events: int
    head_seq: int | None
    broken_links: int
    records_checked: int
    records_purged: int
    record_breaks: int
    detail: str


@dataclass(frozen=True, slots=True)
class FtsSection:
    """The memory search index against ``memory_items``.

    ``missing`` counts rows the index lacks; ``orphaned`` counts index entries whose row is gone.
    """

    present: bool
    items: int
    indexed: int
    missing: int
    orphaned: int
    error: str | None = None
    #: Levels in the index's FTS5 structure record (None when unreadable; see journal_core.fts).
    levels: int | None = None

    @property
    def drift(self) -> int:
        """How many documents are out of step between the rows and the index."""
        return self.missing + self.orphaned


@dataclass(slots=True)
class HealthReport:
    """Every section of a health check and the findings drawn from them."""

    reference: str
    journal_id: str
    generated_at_unix_ms: int
    db_file: FileSection
    wal: WalSection
    schema: SchemaSection
    quick_check: QuickCheckSection
    write_probe: WriteProbeSection
    hash_chain: ChainSection
    fts: FtsSection
    row_counts: dict[str, int | None]
    findings: list[Finding] = field(default_factory=list)

    @property
    def severity(self) -> Severity:
        """The worst finding's severity, ``OK`` when nothing was found."""
        return max((item.severity for item in self.findings), default=Severity.OK)

    def finding_codes(self) -> list[str]:
        """The codes of every finding, in report order."""
        return [item.code for item in self.findings]

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view of the whole report."""
        return {
            "severity": self.severity.label,
            "reference": self.reference,
            "journal_id": self.journal_id,
            "generated_at_unix_ms": self.generated_at_unix_ms,
            "db_file": {
                "reference": self.db_file.reference,
                "exists": self.db_file.exists,
                "bytes": self.db_file.bytes,
            },
            "wal": {
                "journal_mode": self.wal.journal_mode,
                "synchronous": self.wal.synchronous,
                "synchronous_fresh_connection": self.wal.synchronous_fresh_connection,
                "busy_timeout_ms": self.wal.busy_timeout_ms,
                "wal_bytes": self.wal.wal_bytes,
                "shm_bytes": self.wal.shm_bytes,
            },
            "schema": {"current": self.schema.current, "expected": self.schema.expected},
            "quick_check": {
                "ok": self.quick_check.ok,
                "messages": list(self.quick_check.messages),
            },
            "write_probe": {
                "attempted": self.write_probe.attempted,
                "ok": self.write_probe.ok,
                "detail": self.write_probe.detail,
            },
            "hash_chain": {
                "status": self.hash_chain.status,
                "checked_events": self.hash_chain.checked_events,
                "head_seq": self.hash_chain.head_seq,
                "broken_links": self.hash_chain.broken_links,
                "records_checked": self.hash_chain.records_checked,
                "records_purged": self.hash_chain.records_purged,
                "record_breaks": self.hash_chain.record_breaks,
                "detail": self.hash_chain.detail,
            },
            "fts": {
                "present": self.fts.present,
                "items": self.fts.items,
                "indexed": self.fts.indexed,
                "missing": self.fts.missing,
                "orphaned": self.fts.orphaned,
                "drift": self.fts.drift,
                "error": self.fts.error,
                "levels": self.fts.levels,
            },
            "row_counts": dict(self.row_counts),
            "findings": [item.to_dict() for item in self.findings],
        }


def path_reference(path: str | os.PathLike[str]) -> str:
    """``name#xxxxxx``: the file name and the first 6 hex digits of its absolute path's SHA-256."""
    target = Path(path).expanduser().absolute()
    digest = hashlib.sha256(os.fsencode(target)).hexdigest()
    return f"{target.name}#{digest[:6]}"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _synchronous_name(value: object) -> str:
    if isinstance(value, int):
        return _SYNCHRONOUS_NAMES.get(value, str(value))
    return str(value)


@dataclass(slots=True)
class _ReadOnlyFacts:
    journal_id: str
    journal_mode: str
    synchronous_fresh: str
    schema_current: int
    quick_check: QuickCheckSection
    fts: FtsSection
    row_counts: dict[str, int | None]


def _count(conn: sqlite3.Connection, table: str) -> int | None:
    """Rows of ``table``, or None when it cannot be read (damage shows in quick_check)."""
    try:
        return int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
    except sqlite3.DatabaseError:
        return None


def _fts(conn: sqlite3.Connection, tables: set[str]) -> FtsSection:
    if "memory_items" not in tables or _FTS_DOCSIZE not in tables:
        return FtsSection(present=False, items=0, indexed=0, missing=0, orphaned=0)
    try:
        items, indexed, missing, orphaned = conn.execute(
            "SELECT (SELECT count(*) FROM memory_items),"
            f" (SELECT count(*) FROM {_FTS_DOCSIZE}),"
            " (SELECT count(*) FROM memory_items"
            f"   WHERE rowid NOT IN (SELECT id FROM {_FTS_DOCSIZE})),"
            f" (SELECT count(*) FROM {_FTS_DOCSIZE}"
            "   WHERE id NOT IN (SELECT rowid FROM memory_items))"
        ).fetchone()
        levels = structure_levels(conn, MEMORY_INDEX)
        # Opening the table is what an index too deep for FTS5 fails at.
        conn.execute(f"SELECT rowid FROM {MEMORY_INDEX} LIMIT 0").fetchall()
    except sqlite3.DatabaseError as error:
        return FtsSection(True, 0, 0, 0, 0, error=str(error))
    return FtsSection(True, int(items), int(indexed), int(missing), int(orphaned), levels=levels)


def _quick_check(conn: sqlite3.Connection) -> QuickCheckSection:
    try:
        messages = tuple(str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchall())
    except sqlite3.DatabaseError as error:
        return QuickCheckSection(False, (f"quick_check could not complete: {error}",))
    return QuickCheckSection(messages == ("ok",), messages)


def _read_only_facts(path: Path, busy_timeout_ms: int) -> _ReadOnlyFacts:
    conn, info = open_reader(path, busy_timeout_ms=busy_timeout_ms)
    try:
        mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        synchronous = _synchronous_name(conn.execute("PRAGMA synchronous").fetchone()[0])
        quick = _quick_check(conn)
        tables = table_names(conn)
        counted = ["journal_events", *(spec.table for spec in RECORD_SPECS)]
        counts = {table: _count(conn, table) for table in counted if table in tables}
        fts = _fts(conn, tables)
    finally:
        conn.close()
    return _ReadOnlyFacts(
        journal_id=info.journal_id,
        journal_mode=mode,
        synchronous_fresh=synchronous,
        schema_current=info.schema_version,
        quick_check=quick,
        fts=fts,
        row_counts=counts,
    )


def _chain(path: Path, busy_timeout_ms: int) -> tuple[ChainSection, VerifyReport | None]:
    try:
        _, report = verify_file(path, busy_timeout_ms=busy_timeout_ms)
    except JournalError as error:
        section = ChainSection("unreadable", 0, None, 0, 0, 0, 0, str(error))
        return section, None
    broken = len(report.breaks) + report.breaks_truncated
    if broken:
        status = "mismatch"
    elif report.record_breaks:
        status = "records_mismatch"
    else:
        status = "ok"
    section = ChainSection(
        status=status,
        checked_events=report.checked_events,
        head_seq=report.last_seq,
        broken_links=broken,
        records_checked=report.records_checked,
        records_purged=report.records_purged,
        record_breaks=len(report.record_breaks),
        detail="" if report.ok else "run `journal verify` for every break",
    )
    return section, report


def _write_probe(path: Path, stamp: int) -> WriteProbeSection:
    """Take the write lock, write a meta row and roll it back; report whether that worked."""
    uri = f"file:{urllib.parse.quote(str(path))}?mode=rw"
    try:
        conn = sqlite3.connect(
            uri, uri=True, isolation_level=None, timeout=PROBE_BUSY_TIMEOUT_MS / 1000
        )
    except sqlite3.Error as error:
        return WriteProbeSection(True, False, f"cannot open for writing: {error}")
    try:
        conn.execute(f"PRAGMA busy_timeout = {PROBE_BUSY_TIMEOUT_MS}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT OR REPLACE INTO journal_meta (key, value) VALUES (?, ?)",
                (PROBE_META_KEY, str(stamp)),
            )
        finally:
            conn.execute("ROLLBACK")
    except sqlite3.Error as error:
        return WriteProbeSection(True, False, f"write transaction failed: {error}")
    finally:
        conn.close()
    return WriteProbeSection(True, True, "a write transaction was taken and rolled back")


def _first_problem(messages: tuple[str, ...], limit: int = 200) -> str:
    """The first problem SQLite reported, on one line and short enough for a summary."""
    lines = [line for text in messages for line in text.splitlines() if line.strip()]
    problems = [line for line in lines if not line.startswith("*** ")] or lines or ["unknown"]
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return (first if len(first) <= limit else first[: limit - 1] + "…") + more


def _findings(
    report: HealthReport, verify: VerifyReport | None, wal_warn_bytes: int
) -> list[Finding]:
    found: list[Finding] = []
    chain = report.hash_chain
    if chain.status == "unreadable":
        found.append(
            Finding(
                Severity.CRITICAL,
                "journal.hash_chain.unreadable",
                f"the hash chain could not be read: {chain.detail}",
                "restore the journal from a backup; keep this file for investigation",
            )
        )
    if verify is not None and chain.broken_links:
        first = verify.breaks[0] if verify.breaks else None
        where = f" (first at seq {first.seq}: {first.code.value})" if first else ""
        found.append(
            Finding(
                Severity.CRITICAL,
                "journal.hash_chain.mismatch",
                f"{chain.broken_links} broken links in the hash chain{where}",
                "run `journal verify` to list every break; treat the file as tampered with and"
                " restore from a backup that verifies",
            )
        )
    if verify is not None and verify.record_breaks:
        first_record = verify.record_breaks[0]
        found.append(
            Finding(
                Severity.CRITICAL,
                "journal.records.mismatch",
                f"{len(verify.record_breaks)} record rows do not match the chain (first:"
                f" {first_record.table} {first_record.key} {first_record.code})",
                "run `journal verify` to list every row; the rows were changed outside the"
                " journal's API: restore from a backup that verifies",
            )
        )
    if not report.quick_check.ok:
        found.append(
            Finding(
                Severity.CRITICAL,
                "journal.sqlite.quick_check_failed",
                f"SQLite quick_check failed: {_first_problem(report.quick_check.messages)}",
                "stop the daemon, copy the file aside and restore from a backup; run"
                " `PRAGMA integrity_check` on the copy for details",
            )
        )
    if report.wal.journal_mode != "wal":
        found.append(
            Finding(
                Severity.DEGRADED,
                "journal.wal.not_wal",
                f"journal_mode is {report.wal.journal_mode}, not wal: readers block the writer",
                "open the journal once with the daemon (Journal.open switches it to WAL)",
            )
        )
    if report.schema.current != report.schema.expected:
        found.append(
            Finding(
                Severity.DEGRADED,
                "journal.schema.version_mismatch",
                f"schema version {report.schema.current}, this software expects"
                f" {report.schema.expected}",
                "open the journal with the daemon's writer, which migrates it forward",
            )
        )
    if report.write_probe.ok is False:
        found.append(
            Finding(
                Severity.DEGRADED,
                "journal.write_probe.failed",
                f"the journal cannot be written: {report.write_probe.detail}",
                "check the file's permissions and free disk space, and whether another process"
                " holds the write lock",
            )
        )
    if report.wal.wal_bytes > wal_warn_bytes:
        found.append(
            Finding(
                Severity.WARNING,
                "journal.wal.large",
                f"the WAL is {report.wal.wal_bytes} bytes (more than {wal_warn_bytes})",
                "a long-lived reader may pin it: close idle readers, then run a TRUNCATE"
                " checkpoint (journal_core.maintenance.checkpoint)",
            )
        )
    reopen = (
        "open the journal for writing (run the daemon or any journal command that writes):"
        " a writer restarts an index structure that is unreadable or this deep"
    )
    if report.fts.error is not None:
        found.append(
            Finding(
                Severity.WARNING,
                "journal.fts.drift",
                f"the memory search index could not be read: {report.fts.error}",
                reopen,
            )
        )
    elif report.fts.drift:
        found.append(
            Finding(
                Severity.WARNING,
                "journal.fts.drift",
                f"the memory search index differs from memory_items: {report.fts.missing}"
                f" memory items are not indexed and {report.fts.orphaned} index entries have"
                " no item",
                "rebuild it: INSERT INTO memory_items_fts(memory_items_fts) VALUES('rebuild')",
            )
        )
    if report.fts.present and (report.fts.levels or 0) > RESTART_LEVELS:
        found.append(
            Finding(
                Severity.WARNING,
                "journal.fts.deep",
                f"the memory search index's structure has {report.fts.levels} levels; past"
                f" {STRUCTURE_LEVEL_LIMIT} FTS5 can no longer open it",
                reopen,
            )
        )
    return found


def _collect(
    path: str | os.PathLike[str],
    *,
    now: int,
    write_probe: bool,
    config: JournalConfig,
    wal_warn_bytes: int,
    busy_timeout_ms: int,
) -> HealthReport:
    target = Path(path).expanduser().absolute()
    wal_bytes = _size(Path(f"{target}-wal"))
    shm_bytes = _size(Path(f"{target}-shm"))
    facts = _read_only_facts(target, busy_timeout_ms)
    chain, verify = _chain(target, busy_timeout_ms)
    probe = (
        _write_probe(target, now)
        if write_probe
        else WriteProbeSection(False, None, "skipped (--no-write-probe)")
    )
    reference = path_reference(target)
    report = HealthReport(
        reference=reference,
        journal_id=facts.journal_id,
        generated_at_unix_ms=now,
        db_file=FileSection(reference, target.exists(), _size(target)),
        wal=WalSection(
            journal_mode=facts.journal_mode,
            synchronous=config.synchronous,
            synchronous_fresh_connection=facts.synchronous_fresh,
            busy_timeout_ms=config.busy_timeout_ms,
            wal_bytes=wal_bytes,
            shm_bytes=shm_bytes,
        ),
        schema=SchemaSection(facts.schema_current, SCHEMA_VERSION),
        quick_check=facts.quick_check,
        write_probe=probe,
        hash_chain=chain,
        fts=facts.fts,
        row_counts=facts.row_counts,
    )
    report.findings = _findings(report, verify, wal_warn_bytes)
    return report


async def health_report(
    path: str | os.PathLike[str],
    *,
    now_ms: int | None = None,
    write_probe: bool = True,
    config: JournalConfig | None = None,
    wal_warn_bytes: int = DEFAULT_WAL_WARN_BYTES,
    busy_timeout_ms: int = 5_000,
) -> HealthReport:
    """Check the journal at ``path`` and report every section and finding (see the module doc).

    Runs on a worker thread. Everything is read-only except the write probe (skip it with
    ``write_probe=False``). ``config`` is the daemon's configuration, whose synchronous level
    and busy timeout the WAL section reports. Raises a typed
    :class:`~journal_core.errors.JournalError` when no report can be made at all (no file, not
    a journal, a newer schema).
    """
    if wal_warn_bytes < 0:
        raise ValueError("wal_warn_bytes must be >= 0")
    stamp = _clock_ms() if now_ms is None else now_ms
    return await asyncio.to_thread(
        _collect,
        path,
        now=stamp,
        write_probe=write_probe,
        config=config or JournalConfig(),
        wal_warn_bytes=wal_warn_bytes,
        busy_timeout_ms=busy_timeout_ms,
    )


def format_health(report: HealthReport) -> list[str]:
    """The report as terminal-safe lines: one per section, then one per finding."""
    wal = report.wal
    chain = report.hash_chain
    fts = report.fts
    if not fts.present:
        fts_line = "no memory index in this schema"
    elif fts.error is not None:
        fts_line = f"unreadable: {fts.error}"
    else:
        fts_line = (
            f"{fts.items} memory items, {fts.indexed} indexed, {fts.missing} missing,"
            f" {fts.orphaned} orphaned, {fts.levels} structure levels"
        )
    counts = " ".join(
        f"{table}={'?' if count is None else count}" for table, count in report.row_counts.items()
    )
    probe = (
        "skipped"
        if not report.write_probe.attempted
        else ("ok (rolled back)" if report.write_probe.ok else report.write_probe.detail)
    )
    quick = "ok" if report.quick_check.ok else _first_problem(report.quick_check.messages)
    lines = [
        f"{report.reference}: {report.severity.label.upper()} (journal {report.journal_id})",
        f"db file:     {'exists' if report.db_file.exists else 'missing'},"
        f" {report.db_file.bytes} bytes",
        f"wal:         mode {wal.journal_mode}, synchronous {wal.synchronous} (a fresh connection"
        f" gets {wal.synchronous_fresh_connection}), busy_timeout {wal.busy_timeout_ms} ms,"
        f" wal {wal.wal_bytes} bytes, shm {wal.shm_bytes} bytes",
        f"schema:      version {report.schema.current} (expected {report.schema.expected})",
        f"quick_check: {quick}",
        f"write probe: {probe}",
        f"hash chain:  {chain.status}, {chain.checked_events} events checked,"
        f" {chain.broken_links} broken links, {chain.records_checked} record rows checked,"
        f" {chain.record_breaks} not matching",
        f"fts:         {fts_line}",
        f"rows:        {counts}",
    ]
    lines.extend(
        f"finding:     {item.severity.label.upper()} {item.code}: {item.summary}"
        f" (fix: {item.fix_hint})"
        for item in report.findings
    )
    return [printable(line) for line in lines]


__all__ = [
    "DEFAULT_WAL_WARN_BYTES",
    "ChainSection",
    "FileSection",
    "Finding",
    "FtsSection",
    "HealthReport",
    "QuickCheckSection",
    "SchemaSection",
    "Severity",
    "WalSection",
    "WriteProbeSection",
    "format_health",
    "health_report",
    "path_reference",
]
