"""File permissions of everything the journal creates, and the inspector's read-only promise.

The journal holds transcripts and tool output: its files must be private to the owner whatever
the umask. The tests run under umask 000, so any mode wider than 0600/0700 would show.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from journal_core import EventInput, Journal, JournalError, approvals, new_ulid, verify_file
from journal_core.maintenance import backup
from journal_tui.source import JournalSource

HAS_CHECKPOINTS = importlib.util.find_spec("journal_core.checkpoints") is not None


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _event(i: int) -> EventInput:
    return EventInput(
        session_id=new_ulid(),
        run_id=new_ulid(),
        kind="message_received",
        actor="user",
        principal="user:alice",
        device_id="host",
        payload={"i": i},
    )


async def _fill(path: Path, count: int) -> dict[str, int]:
    """Append ``count`` events; returns the modes of the files beside ``path`` while open."""
    modes: dict[str, int] = {}
    async with await Journal.open(path) as journal:
        await journal.append_batch([_event(i) for i in range(count)])
        for entry in path.parent.iterdir():
            if entry.is_file():
                modes[entry.name] = _mode(entry)
    return modes


def test_new_journal_files_and_directories_are_private(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "journal.db"
    with _umask(0):
        open_modes = asyncio.run(_fill(path, 50))
    assert _mode(tmp_path / "a") == 0o700
    assert _mode(tmp_path / "a" / "b") == 0o700
    assert _mode(path) == 0o600
    # While open: the database and its -wal/-shm (and any other file the journal made).
    assert {"journal.db", "journal.db-wal", "journal.db-shm"} <= set(open_modes)
    assert {name: mode for name, mode in open_modes.items() if mode != 0o600} == {}
    for entry in path.parent.iterdir():  # after close, whatever is left
        assert _mode(entry) == 0o600, entry.name
        assert "creating" not in entry.name


def test_backup_and_its_new_directories_are_private(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    out = tmp_path / "backups" / "daily" / "journal-backup.db"
    with _umask(0):
        asyncio.run(_fill(path, 20))
        backup(path, out)
    assert _mode(tmp_path / "backups") == 0o700
    assert _mode(tmp_path / "backups" / "daily") == 0o700
    assert _mode(out) == 0o600
    for entry in out.parent.iterdir():
        assert _mode(entry) == 0o600, entry.name
    _, report = verify_file(out)
    assert report.ok


@pytest.mark.skipif(
    not HAS_CHECKPOINTS,
    reason="journal_core.checkpoints does not exist yet (no <db>.key / <db>.anchors files)",
)
def test_checkpoint_key_and_anchor_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "signed" / "journal.db"
    with _umask(0):
        asyncio.run(_fill(path, 1_200))
    key, anchors = Path(f"{path}.key"), Path(f"{path}.anchors")
    present = [item for item in (key, anchors) if item.exists()]
    if not present:
        pytest.skip("journal_core.checkpoints exists but wrote no <db>.key or <db>.anchors yet")
    for item in present:
        assert _mode(item) == 0o600, f"{item.name} is {oct(_mode(item))}"
    for entry in path.parent.iterdir():
        assert _mode(entry) == 0o600, entry.name


# --------------------------------------------------------------------------------------------
# The inspector's source: read-only until a decision
# --------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _fingerprint(path: Path) -> dict[str, str | None]:
    """The main file and the -wal (the -shm holds reader locks and marks, so it may change)."""
    return {"db": _sha256(path), "wal": _sha256(Path(f"{path}-wal"))}


async def _request(journal: Journal) -> str:
    approval = await approvals.request_approval(
        journal,
        principal="agent:helper",
        device_id="host",
        subject_type="tool",
        subject_id="shell",
        summary="run ls",
        prompt={"title": "Run shell command", "risk_level": "low", "summary": "ls"},
        timeout_seconds=3600,
    )
    return approval.approval_id


async def _source_session(path: Path, probe: sqlite3.Connection) -> tuple[int, int]:
    """Open, poll and read through a JournalSource; return data_version before and after."""
    before = int(probe.execute("PRAGMA data_version").fetchone()[0])
    source = JournalSource(path, decider="user:tester")
    try:
        await source.open()
        for _ in range(20):
            change = await source.poll()
            assert change.problem is None
            assert change.committed is False
            await source.reader.events_after(0, 100)
            await approvals.list_pending(source.reader)
            await source.reader.head()
    finally:
        await source.close()
    after = int(probe.execute("PRAGMA data_version").fetchone()[0])
    return before, after


def test_inspector_source_never_writes_until_decide(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            await journal.append_batch([_event(i) for i in range(30)])
            approval_id = await _request(journal)
        # 1. The journal closed (no -wal): opening and polling leaves the file as it was.
        closed_before = _fingerprint(path)
        probe = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        try:
            before, after = await _source_session(path, probe)
            assert after == before
            assert _fingerprint(path)["db"] == closed_before["db"]

            # 2. A live writer keeps the WAL open: still nothing written by the source.
            async with await Journal.open(path) as journal:
                await journal.append(_event(99))
                live_before = _fingerprint(path)
                before, after = await _source_session(path, probe)
                assert after == before
                assert _fingerprint(path) == live_before

                # 3. decide writes, through the core API (the positive control).
                source = JournalSource(path, decider="user:tester")
                await source.open()
                try:
                    decided = await source.decide(
                        approval_id, decision="deny", scope="once", reason="no", ttl_ms=None
                    )
                    assert decided.decision == "deny"
                    assert decided.decided_by == "user:tester"
                    assert (await source.poll()).committed is True
                finally:
                    await source.close()
                assert int(probe.execute("PRAGMA data_version").fetchone()[0]) != after
                assert _fingerprint(path) != live_before
        finally:
            probe.close()

    asyncio.run(scenario())
    _, report = verify_file(path)
    assert report.ok, report.to_dict()


def test_read_only_inspector_refuses_to_decide(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            approval_id = await _request(journal)
        before = _fingerprint(path)
        source = JournalSource(path, decider="user:tester", read_only=True)
        await source.open()
        try:
            with pytest.raises(JournalError, match="read-only"):
                await source.decide(
                    approval_id, decision="allow", scope="once", reason=None, ttl_ms=None
                )
        finally:
            await source.close()
        assert _fingerprint(path)["db"] == before["db"]

    asyncio.run(scenario())
