"""Maintenance: checkpoints, integrity checks, incremental vacuum and online backups."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from journal_core import (
    EventInput,
    Journal,
    JournalConfig,
    NotAJournalError,
    ValidationError,
    new_ulid,
    verify_file,
)
from journal_core.cli import run as cli_run
from journal_core.errors import BackupTargetExistsError, MaintenanceUnavailableError
from journal_core.maintenance import (
    backup,
    checkpoint,
    incremental_vacuum,
    integrity_check,
    run_maintenance,
)
from journal_core.records import MEMORY_ITEMS, RecordContext, purge_records, write_record
from journal_core.store import WriteContext

WHO = RecordContext("user:alice", "laptop-1")


def _event(index: int, size: int = 200) -> EventInput:
    return EventInput(
        session_id=new_ulid(),
        run_id=new_ulid(),
        kind="message_received",
        actor="user",
        principal="user:alice",
        device_id="laptop-1",
        payload={"text": f"event {index} " + "x" * size},
    )


async def _append_events(path: Path, count: int, config: JournalConfig | None = None) -> None:
    async with await Journal.open(path, config) as journal:
        await journal.append_batch([_event(index) for index in range(count)])


def make_journal(path: Path, count: int = 100) -> Path:
    """A closed journal of ``count`` events."""
    asyncio.run(_append_events(path, count))
    return path


def head_of(path: Path) -> int:
    """The number of events in ``path``."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM journal_events").fetchone()[0])
    finally:
        conn.close()


def pragma(path: Path, name: str) -> int:
    """An integer pragma of ``path``, read on a fresh connection."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        conn.close()


def set_auto_vacuum(path: Path, mode: str) -> None:
    """Rewrite ``path`` with another auto_vacuum mode (only VACUUM can change it)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA auto_vacuum = {mode}")
        conn.execute("VACUUM")
    finally:
        conn.close()


# --- backup -----------------------------------------------------------------------------------


def test_backup_round_trip_verifies_with_the_same_journal_id(tmp_path: Path) -> None:
    source = make_journal(tmp_path / "journal.db", 150)
    source_info, _ = verify_file(source)
    out = tmp_path / "backups" / "nested" / "copy.db"
    seen: list[tuple[int, int]] = []

    result = backup(source, out, progress=lambda done, total: seen.append((done, total)))

    assert result.path == out.absolute()
    assert result.journal_id == source_info.journal_id
    assert result.head_seq == 150
    assert result.bytes == out.stat().st_size > 0
    assert result.pages == pragma(out, "page_count")
    assert seen
    assert seen[-1] == (result.pages, result.pages)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "backups").stat().st_mode) == 0o700
    assert sorted(item.name for item in out.parent.iterdir()) == ["copy.db"]

    info, report = verify_file(out)
    assert report.ok
    assert report.checked_events == 150
    assert info.journal_id == source_info.journal_id
    conn = sqlite3.connect(out)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_backup_refuses_to_overwrite(tmp_path: Path) -> None:
    source = make_journal(tmp_path / "journal.db", 5)
    out = tmp_path / "copy.db"
    out.write_bytes(b"precious")

    with pytest.raises(BackupTargetExistsError) as caught:
        backup(source, out)

    assert caught.value.out == str(out.absolute())
    assert str(out) in str(caught.value)
    assert out.read_bytes() == b"precious"
    # Nothing beside the refused target: only the journal, its key and anchor files, the target.
    assert sorted(item.name for item in tmp_path.iterdir()) == [
        "copy.db",
        "journal.db",
        "journal.db.anchors",
        "journal.db.key",
    ]


def test_backup_refuses_a_non_journal_and_bad_step(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(NotAJournalError):
        backup(text, tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()
    source = make_journal(tmp_path / "journal.db", 1)
    with pytest.raises(ValidationError) as caught:
        backup(source, tmp_path / "copy.db", pages_per_step=0)
    assert caught.value.field == "pages_per_step"


def test_backup_while_a_writer_appends(tmp_path: Path) -> None:
    """The copy is one consistent snapshot even though events are committed during it."""
    source = make_journal(tmp_path / "journal.db", 400)
    out = tmp_path / "copy.db"
    started = threading.Event()
    appended_during = threading.Event()

    def progress(done: int, total: int) -> None:
        # Hold the copy after its first step until the writer has committed more events.
        if not started.is_set():
            started.set()
            assert appended_during.wait(10.0), "the writer did not append during the backup"

    async def scenario() -> tuple[int, int]:
        async with await Journal.open(source) as journal:
            stop = asyncio.Event()

            async def writer() -> int:
                after_start = 0
                index = 0
                while not stop.is_set():
                    await journal.append(_event(index))
                    index += 1
                    if started.is_set():
                        after_start += 1
                        if after_start == 20:
                            appended_during.set()
                    await asyncio.sleep(0)
                return after_start

            task = asyncio.create_task(writer())
            result = await asyncio.to_thread(
                backup, source, out, progress=progress, pages_per_step=2
            )
            stop.set()
            written_after_start = await task
            return result.head_seq, written_after_start

    copied, written_after_start = asyncio.run(scenario())

    assert written_after_start >= 20
    final = head_of(source)
    assert 400 <= copied <= final - 20
    _, copy_report = verify_file(out)
    assert copy_report.ok
    assert copy_report.checked_events == copied
    _, source_report = verify_file(source)
    assert source_report.ok
    assert source_report.checked_events == final


def test_cli_backup_prints_the_result_and_refuses_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_journal(tmp_path / "journal.db", 10)
    info, _ = verify_file(source)
    out = tmp_path / "copy.db"

    assert cli_run(["backup", str(source), str(out)]) == 0
    printed = capsys.readouterr().out
    assert info.journal_id in printed
    assert f"{pragma(out, 'page_count')} pages" in printed
    assert f"{out.stat().st_size} bytes" in printed

    assert cli_run(["backup", str(source), str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "already exists" in err
    assert str(out) in err


# --- checkpoint and integrity -----------------------------------------------------------------


def test_checkpoint_truncates_the_wal_of_a_live_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            await journal.append_batch([_event(index) for index in range(50)])
            assert Path(f"{path}-wal").stat().st_size > 0
            passive = checkpoint(journal, "passive")
            assert passive.mode == "PASSIVE"
            assert not passive.busy
            assert passive.log_frames >= passive.checkpointed_frames >= 0
            result = await asyncio.to_thread(checkpoint, path)
            assert result.mode == "TRUNCATE"
            assert not result.busy
            assert result.wal_bytes_after == 0
            await journal.append(_event(99))

    asyncio.run(scenario())
    _, report = verify_file(path)
    assert report.ok
    assert report.checked_events == 51


def test_truncate_checkpoint_is_busy_while_a_reader_holds_a_snapshot(tmp_path: Path) -> None:
    path = make_journal(tmp_path / "journal.db", 5)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM journal_events").fetchone()
        # A short timeout: closing the journal tries a TRUNCATE checkpoint of its own.
        asyncio.run(_append_events(path, 5, JournalConfig(busy_timeout_ms=50)))
        result = checkpoint(path, "TRUNCATE", busy_timeout_ms=50)
        assert result.busy
        reader.execute("COMMIT")
        assert not checkpoint(path, "TRUNCATE", busy_timeout_ms=50).busy
    finally:
        reader.close()


def test_checkpoint_refuses_an_unknown_mode(tmp_path: Path) -> None:
    path = make_journal(tmp_path / "journal.db", 1)
    with pytest.raises(ValidationError) as caught:
        checkpoint(path, "NOW")
    assert caught.value.field == "mode"


def test_integrity_check(tmp_path: Path) -> None:
    path = make_journal(tmp_path / "journal.db", 20)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    assert integrity_check(path) == ["ok"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(NotAJournalError):
        integrity_check(text)


def damage_index_page(path: Path) -> None:
    """Overwrite the b-tree header of an index's root page, as a disk fault would."""
    conn = sqlite3.connect(path)
    try:
        root = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'journal_events_created'"
        )
        page = int(root.fetchone()[0])
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()
    data = bytearray(path.read_bytes())
    offset = (page - 1) * page_size
    data[offset : offset + 12] = b"\x0d" + b"\xff" * 11
    path.write_bytes(bytes(data))


def test_damaged_file_fails_integrity_check_and_maintenance_leaves_it_alone(
    tmp_path: Path,
) -> None:
    path = make_journal(tmp_path / "journal.db", 50)
    damage_index_page(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()

    problems = integrity_check(path)
    summary = run_maintenance(path)

    assert problems != ["ok"]
    assert not summary.integrity_ok
    assert summary.checkpoint is None
    assert summary.freed_pages is None
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


# --- incremental vacuum -----------------------------------------------------------------------


def test_new_journals_use_incremental_auto_vacuum(tmp_path: Path) -> None:
    path = make_journal(tmp_path / "journal.db", 1)
    assert pragma(path, "auto_vacuum") == 2


def _memory_rows(ctx: WriteContext, count: int) -> list[tuple[str]]:
    keys = []
    for index in range(count):
        memory_id = new_ulid(ctx.now_ms)
        text = f"memory {index} " + "lorem ipsum " * 400
        write_record(
            ctx,
            MEMORY_ITEMS,
            (memory_id,),
            "insert",
            "INSERT INTO memory_items (memory_ulid, principal, channel, session_ulid, source,"
            " content_text, content_hash, tags_json, confidence, ttl_unix_ms,"
            " created_at_unix_ms, updated_at_unix_ms, event_seq) VALUES (:id, 'user:alice',"
            " NULL, NULL, 'test', :text, :hash, '[]', NULL, NULL, :now, :now, :event_seq)",
            {
                "id": memory_id,
                "text": text,
                "hash": hashlib.sha256(text.encode()).hexdigest(),
                "now": ctx.now_ms,
            },
            WHO,
        )
        keys.append((memory_id,))
    return keys


def journal_with_purged_rows(path: Path) -> Path:
    """A journal whose memory rows were written, then purged through the chain."""
    make_journal(path, 1)
    if pragma(path, "auto_vacuum") != 2:
        # Works around the core bug above; VACUUM keeps every row and the chain intact.
        set_auto_vacuum(path, "INCREMENTAL")

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            keys = await journal.transact(lambda ctx: _memory_rows(ctx, 60))
            deleted = await journal.transact(
                lambda ctx: purge_records(ctx, MEMORY_ITEMS, keys, "test retention", WHO)
            )
            assert deleted == 60

    asyncio.run(scenario())
    assert pragma(path, "freelist_count") > 1
    return path


def test_incremental_vacuum_frees_the_pages_of_purged_rows(tmp_path: Path) -> None:
    path = journal_with_purged_rows(tmp_path / "journal.db")
    free = pragma(path, "freelist_count")
    size_before = path.stat().st_size

    assert incremental_vacuum(path, pages=1) == 1
    assert incremental_vacuum(path) == free - 1
    assert pragma(path, "freelist_count") == 0
    assert incremental_vacuum(path) == 0

    assert not checkpoint(path).busy
    assert path.stat().st_size < size_before
    assert integrity_check(path) == ["ok"]
    _, report = verify_file(path)
    assert report.ok
    assert report.records_purged == 60


def test_incremental_vacuum_needs_incremental_auto_vacuum(tmp_path: Path) -> None:
    path = make_journal(tmp_path / "journal.db", 3)
    set_auto_vacuum(path, "NONE")
    with pytest.raises(MaintenanceUnavailableError) as caught:
        incremental_vacuum(path)
    assert "auto_vacuum=NONE" in str(caught.value)
    with pytest.raises(ValidationError):
        incremental_vacuum(path, pages=0)


def test_run_maintenance_summarises_each_step(tmp_path: Path) -> None:
    path = journal_with_purged_rows(tmp_path / "journal.db")
    free = pragma(path, "freelist_count")

    summary = run_maintenance(path)

    assert summary.integrity_ok
    assert summary.freed_pages == free
    assert summary.vacuum_skipped is None
    assert summary.checkpoint is not None
    assert not summary.checkpoint.busy
    assert summary.checkpoint.wal_bytes_after == 0
    assert summary.to_dict()["freed_pages"] == free

    plain = make_journal(tmp_path / "plain.db", 3)
    set_auto_vacuum(plain, "NONE")
    skipped = run_maintenance(plain)
    assert skipped.freed_pages is None
    assert skipped.vacuum_skipped is not None
    assert "auto_vacuum=NONE" in skipped.vacuum_skipped
    assert skipped.checkpoint is not None
    assert os.path.getsize(plain) > 0
