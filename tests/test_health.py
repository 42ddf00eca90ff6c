"""The health report: every section on a healthy journal, and each finding on a damaged one."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from journal_core import (
    EventInput,
    Journal,
    JournalNotFoundError,
    NotAJournalError,
    SchemaTooNewError,
    new_ulid,
    sessions,
    verify_file,
)
from journal_core.cli import run as cli_run
from journal_core.health import (
    HealthReport,
    Severity,
    format_health,
    health_report,
    path_reference,
)
from journal_core.records import MEMORY_ITEMS, RECORD_SPECS, RecordContext, write_record
from journal_core.schema import SCHEMA_VERSION
from journal_core.store import WriteContext

NOW_MS = 1_750_000_000_000
MARKER = "health-marker-7f3a9c"
MEMORY_TEXTS = ("the build uses ninja", "deploys go through staging first", "tea, not coffee")


def _insert_memory(ctx: WriteContext, text: str) -> str:
    """One memory item written through the chain, as the memory module would."""
    memory_id = new_ulid(ctx.now_ms)
    write_record(
        ctx,
        MEMORY_ITEMS,
        (memory_id,),
        "insert",
        "INSERT INTO memory_items (memory_ulid, principal, channel, session_ulid, source,"
        " content_text, content_hash, tags_json, confidence, ttl_unix_ms, created_at_unix_ms,"
        " updated_at_unix_ms, event_seq) VALUES (:id, 'user:alice', NULL, NULL, 'test', :text,"
        " :hash, '[]', NULL, NULL, :now, :now, :event_seq)",
        {
            "id": memory_id,
            "text": text,
            "hash": hashlib.sha256(text.encode()).hexdigest(),
            "now": ctx.now_ms,
        },
        RecordContext("user:alice", "laptop-1"),
    )
    return memory_id


async def _fill(path: Path) -> None:
    async with await Journal.open(path) as journal:
        for index in range(12):
            await journal.append(
                EventInput(
                    session_id=new_ulid(),
                    run_id=new_ulid(),
                    kind="message_received",
                    actor="user",
                    principal="user:alice",
                    device_id="laptop-1",
                    payload={"text": f"{MARKER}-{index:02d}"},
                )
            )
        await sessions.create_session(
            journal, session_key="chat:1", principal="user:alice", device_id="laptop-1"
        )
        for text in MEMORY_TEXTS:
            await journal.transact(functools.partial(_insert_memory, text=text))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed journal with events, a session and memory items; tests use copies."""
    path = tmp_path_factory.mktemp("health") / "journal.db"
    asyncio.run(_fill(path))
    return path


@pytest.fixture
def journal_path(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the template journal."""
    path = tmp_path / "journal.db"
    shutil.copyfile(template, path)
    return path


@pytest.fixture
def raw(journal_path: Path) -> Iterator[sqlite3.Connection]:
    """An autocommit connection to the copy, as someone editing the file by hand."""
    conn = sqlite3.connect(journal_path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def report_of(path: Path, **kwargs: Any) -> HealthReport:
    """The health report of ``path`` at a fixed time."""
    return asyncio.run(health_report(path, now_ms=NOW_MS, **kwargs))


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- a healthy journal ------------------------------------------------------------------------


def test_healthy_journal_is_ok_with_every_section_filled(journal_path: Path) -> None:
    report = report_of(journal_path)

    assert report.severity is Severity.OK
    assert report.findings == []
    assert report.generated_at_unix_ms == NOW_MS
    _, verified = verify_file(journal_path)
    assert verified.ok

    assert re.fullmatch(r"journal\.db#[0-9a-f]{6}", report.reference)
    assert report.db_file.reference == report.reference
    assert report.db_file.exists
    assert report.db_file.bytes == journal_path.stat().st_size > 0

    assert report.wal.journal_mode == "wal"
    assert report.wal.synchronous == "NORMAL"
    assert report.wal.synchronous_fresh_connection in {"OFF", "NORMAL", "FULL", "EXTRA"}
    assert report.wal.busy_timeout_ms == 5_000
    assert report.wal.wal_bytes >= 0
    assert report.wal.shm_bytes >= 0

    assert (report.schema.current, report.schema.expected) == (SCHEMA_VERSION, SCHEMA_VERSION)
    assert report.quick_check.ok
    assert report.quick_check.messages == ("ok",)
    assert report.write_probe.attempted
    assert report.write_probe.ok is True

    chain = report.hash_chain
    assert chain.status == "ok"
    assert chain.checked_events == verified.checked_events == chain.head_seq
    assert chain.broken_links == 0
    assert chain.record_breaks == 0
    assert chain.records_checked == verified.records_checked >= 1 + len(MEMORY_TEXTS)

    assert report.fts.present
    assert (report.fts.items, report.fts.indexed) == (len(MEMORY_TEXTS), len(MEMORY_TEXTS))
    assert (report.fts.missing, report.fts.orphaned, report.fts.drift) == (0, 0, 0)

    tables = {"journal_events", *(spec.table for spec in RECORD_SPECS)}
    assert set(report.row_counts) == tables
    assert report.row_counts["journal_events"] == chain.checked_events
    assert report.row_counts["memory_items"] == len(MEMORY_TEXTS)
    assert report.row_counts["orchestrator_sessions"] == 1
    assert report.row_counts["approvals"] == 0


def test_report_is_json_ready_and_never_shows_the_directory(journal_path: Path) -> None:
    report = report_of(journal_path)
    document = report.to_dict()
    text = json.dumps(document)
    assert str(journal_path.parent) not in text
    assert document["severity"] == "ok"
    assert document["reference"] == report.reference
    for section in ("db_file", "wal", "schema", "quick_check", "write_probe", "hash_chain", "fts"):
        assert isinstance(document[section], dict), section
    assert document["findings"] == []

    lines = format_health(report)
    assert lines[0].startswith(f"{report.reference}: OK")
    assert len(lines) == 9
    assert not any(str(journal_path.parent) in line for line in lines)


def test_path_reference_hashes_the_absolute_path(tmp_path: Path) -> None:
    first = path_reference(tmp_path / "a" / "journal.db")
    second = path_reference(tmp_path / "b" / "journal.db")
    assert first.startswith("journal.db#")
    assert first != second
    assert first == path_reference(tmp_path / "a" / "journal.db")


# --- findings ---------------------------------------------------------------------------------


def test_payload_edited_in_the_raw_file_is_critical_hash_chain_mismatch(
    journal_path: Path,
) -> None:
    data = journal_path.read_bytes()
    original = f"{MARKER}-05".encode()
    assert data.count(original) == 1
    journal_path.write_bytes(data.replace(original, f"{MARKER}-X5".encode()))

    report = report_of(journal_path)

    assert report.severity is Severity.CRITICAL
    assert "journal.hash_chain.mismatch" in report.finding_codes()
    assert report.hash_chain.status == "mismatch"
    assert report.hash_chain.broken_links >= 1
    assert report.quick_check.ok  # SQLite sees nothing wrong; only the chain does
    finding = next(item for item in report.findings if item.code == "journal.hash_chain.mismatch")
    assert MARKER not in finding.summary
    assert finding.fix_hint


def test_record_row_edited_by_hand_is_critical_records_mismatch(
    journal_path: Path, raw: sqlite3.Connection
) -> None:
    raw.execute("UPDATE memory_items SET content_text = 'coffee, not tea' WHERE rowid = 3")

    report = report_of(journal_path)

    assert report.severity is Severity.CRITICAL
    assert report.finding_codes() == ["journal.records.mismatch"]
    assert report.hash_chain.status == "records_mismatch"
    assert report.hash_chain.record_breaks == 1
    assert report.hash_chain.broken_links == 0


def test_rollback_journal_mode_is_degraded_not_wal(
    journal_path: Path, raw: sqlite3.Connection
) -> None:
    assert raw.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"

    report = report_of(journal_path)

    assert report.wal.journal_mode == "delete"
    assert report.finding_codes() == ["journal.wal.not_wal"]
    assert report.severity is Severity.DEGRADED


def test_older_schema_is_degraded_version_mismatch(
    journal_path: Path, raw: sqlite3.Connection
) -> None:
    raw.execute("DELETE FROM schema_migrations WHERE version = ?", (SCHEMA_VERSION,))

    report = report_of(journal_path)

    assert (report.schema.current, report.schema.expected) == (
        SCHEMA_VERSION - 1,
        SCHEMA_VERSION,
    )
    assert report.finding_codes() == ["journal.schema.version_mismatch"]
    assert report.severity is Severity.DEGRADED


def test_newer_schema_cannot_be_reported_on(journal_path: Path, raw: sqlite3.Connection) -> None:
    raw.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    with pytest.raises(SchemaTooNewError):
        report_of(journal_path)


def damage_index_page(path: Path, index: str = "journal_events_created") -> None:
    """Overwrite the b-tree header of ``index``'s root page, as a disk fault would."""
    conn = sqlite3.connect(path)
    try:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (index,))
        page = int(root.fetchone()[0])
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()
    data = bytearray(path.read_bytes())
    offset = (page - 1) * page_size
    data[offset : offset + 12] = b"\x0d" + b"\xff" * 11
    path.write_bytes(bytes(data))


def test_structural_damage_is_critical_quick_check_failed(journal_path: Path) -> None:
    damage_index_page(journal_path)

    report = report_of(journal_path)

    assert not report.quick_check.ok
    assert "journal.sqlite.quick_check_failed" in report.finding_codes()
    assert report.severity is Severity.CRITICAL
    finding = next(
        item for item in report.findings if item.code == "journal.sqlite.quick_check_failed"
    )
    assert "\n" not in finding.summary
    assert len(format_health(report)) == 9 + len(report.findings)


def test_write_probe_fails_while_another_connection_holds_the_write_lock(
    journal_path: Path, raw: sqlite3.Connection
) -> None:
    raw.execute("BEGIN EXCLUSIVE")
    try:
        report = report_of(journal_path)
        skipped = report_of(journal_path, write_probe=False)
    finally:
        raw.execute("ROLLBACK")

    assert report.write_probe.ok is False
    assert "locked" in report.write_probe.detail
    assert report.finding_codes() == ["journal.write_probe.failed"]
    assert report.severity is Severity.DEGRADED
    assert report.hash_chain.status == "ok"  # readers are not blocked in WAL mode

    assert not skipped.write_probe.attempted
    assert skipped.write_probe.ok is None
    assert skipped.severity is Severity.OK


def test_write_probe_leaves_the_file_unchanged(journal_path: Path) -> None:
    before = sha256_of(journal_path)
    watcher = sqlite3.connect(journal_path, isolation_level=None)
    try:
        version = watcher.execute("PRAGMA data_version").fetchone()[0]
        meta = watcher.execute("SELECT key, value FROM journal_meta ORDER BY key").fetchall()

        report = report_of(journal_path)

        assert report.write_probe.ok is True
        assert watcher.execute("PRAGMA data_version").fetchone()[0] == version
        assert watcher.execute("SELECT key, value FROM journal_meta ORDER BY key").fetchall() == (
            meta
        )
    finally:
        watcher.close()
    assert sha256_of(journal_path) == before


def test_fts_rows_missing_from_the_index_are_a_warning(
    journal_path: Path, raw: sqlite3.Connection
) -> None:
    raw.execute("DELETE FROM memory_items_fts_docsize WHERE id = 2")

    report = report_of(journal_path)

    assert (report.fts.items, report.fts.indexed) == (len(MEMORY_TEXTS), len(MEMORY_TEXTS) - 1)
    assert (report.fts.missing, report.fts.orphaned) == (1, 0)
    assert report.finding_codes() == ["journal.fts.drift"]
    assert report.severity is Severity.WARNING


def test_fts_entries_without_a_row_are_a_warning(
    journal_path: Path, raw: sqlite3.Connection
) -> None:
    raw.execute("INSERT INTO memory_items_fts_docsize (id, sz) VALUES (999, x'01')")

    report = report_of(journal_path)

    assert (report.fts.missing, report.fts.orphaned) == (0, 1)
    assert report.finding_codes() == ["journal.fts.drift"]


def test_large_wal_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "live.db"

    async def scenario() -> HealthReport:
        async with await Journal.open(path) as journal:
            await journal.append(
                EventInput(
                    session_id=new_ulid(),
                    run_id=new_ulid(),
                    kind="message_received",
                    actor="user",
                    principal="user:alice",
                    device_id="laptop-1",
                    payload={"text": "x" * 2_000},
                )
            )
            return await health_report(path, now_ms=NOW_MS, wal_warn_bytes=1_024)

    report = asyncio.run(scenario())

    assert report.wal.wal_bytes > 1_024
    assert report.finding_codes() == ["journal.wal.large"]
    assert report.severity is Severity.WARNING


def test_missing_file_and_non_journal_raise_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(JournalNotFoundError):
        report_of(tmp_path / "absent.db")
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    with pytest.raises(NotAJournalError):
        report_of(text)


# --- the command line -------------------------------------------------------------------------


def test_cli_exit_status_follows_severity(
    journal_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_run(["health", str(journal_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("journal.db#")
    assert str(journal_path.parent) not in out

    conn = sqlite3.connect(journal_path, isolation_level=None)
    conn.execute("DELETE FROM memory_items_fts_docsize WHERE id = 1")
    conn.close()
    assert cli_run(["health", str(journal_path)]) == 1
    assert "journal.fts.drift" in capsys.readouterr().out

    not_wal = tmp_path / "not-wal.db"
    shutil.copyfile(journal_path, not_wal)
    conn = sqlite3.connect(not_wal, isolation_level=None)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    assert cli_run(["health", str(not_wal), "--json"]) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["severity"] == "degraded"
    assert [item["code"] for item in document["findings"]] == [
        "journal.wal.not_wal",
        "journal.fts.drift",
    ]

    data = journal_path.read_bytes()
    journal_path.write_bytes(data.replace(f"{MARKER}-03".encode(), f"{MARKER}-Z3".encode()))
    assert cli_run(["health", str(journal_path), "--json", "--no-write-probe"]) == 3
    document = json.loads(capsys.readouterr().out)
    assert document["severity"] == "critical"
    assert document["write_probe"]["attempted"] is False


def test_cli_cannot_run_exits_4_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_run(["health", str(tmp_path / "absent.db")]) == 4
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert err.startswith("journal: no journal at")

    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert cli_run(["health", str(text), "--json"]) == 4
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1
    assert "Traceback" not in captured.err
