"""Helpers the tests share: run a scenario on a journal, read raw file bytes, rewrite history."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from journal_core import Journal, JournalReader, verify_file
from journal_core.approvals import OPTIONS, request_approval
from journal_core.chain import LINK_COLUMNS, link_hash

T = TypeVar("T")


def run(path: Path, scenario: Callable[[Journal], Awaitable[T]]) -> T:
    """Open the journal at ``path``, run ``scenario`` with it, close it (checkpointing)."""

    async def main() -> T:
        async with await Journal.open(path) as journal:
            return await scenario(journal)

    return asyncio.run(main())


def read(path: Path, scenario: Callable[[JournalReader], Awaitable[T]]) -> T:
    """Run ``scenario`` with a read-only reader of ``path``."""

    async def main() -> T:
        async with await JournalReader.open(path) as reader:
            return await scenario(reader)

    return asyncio.run(main())


def file_bytes(path: Path) -> bytes:
    """The raw bytes of the database and of its -wal and -shm files, as far as they exist."""
    parts = [Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm")]
    return b"".join(part.read_bytes() for part in parts if part.exists())


def assert_verified(path: Path) -> None:
    """The journal's chain and every record row verify."""
    _, report = verify_file(path)
    assert report.ok, report.to_dict()


def rewrite_history_from(db: Path, seq: int) -> None:
    """Rewrite history the way an intruder with the file would: edit an event, then recompute
    every later link so the file's own chain verifies again."""
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER IF EXISTS journal_events_no_update")
    conn.execute(
        "UPDATE journal_events SET payload_json = ? WHERE seq = ?",
        ('{"text":"nothing happened here"}', seq),
    )
    prev = conn.execute("SELECT hash FROM journal_events WHERE seq = ?", (seq - 1,)).fetchone()[0]
    columns = ", ".join(LINK_COLUMNS[1:])
    for row in conn.execute(
        f"SELECT {columns} FROM journal_events WHERE seq >= ? ORDER BY seq", (seq,)
    ).fetchall():
        new_hash = link_hash((prev, *row))
        conn.execute(
            "UPDATE journal_events SET prev_hash = ?, hash = ? WHERE seq = ?",
            (prev, new_hash, row[0]),
        )
        prev = new_hash
    conn.commit()
    conn.close()


def pending_approval(path: Path, *, risk: str = "high", command: str = "ls -la /srv") -> str:
    """Ask, in the journal at ``path``, for approval to run ``command``; returns the request id.

    It stays pending for ten minutes, and every option is offered.
    """

    async def main() -> str:
        async with await Journal.open(path) as journal:
            approval = await request_approval(
                journal,
                principal="agent:helper",
                device_id="laptop-1",
                subject_type="tool",
                subject_id="shell",
                summary=f"run {command}",
                prompt={
                    "title": "Run shell command",
                    "risk_level": risk,
                    "summary": command,
                    "options": list(OPTIONS),
                },
                timeout_seconds=600,
            )
            return approval.approval_id

    return asyncio.run(main())
