"""What the benchmarks share: the files of a journal, and the scan-and-hash baseline."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import time
from pathlib import Path

_COMPANIONS = ("-wal", "-shm", ".key", ".anchors")


def journal_files(path: Path) -> list[Path]:
    """The database file, its WAL and shared memory, and the writer's signing key and anchors."""
    return [path, *(Path(f"{path}{suffix}") for suffix in _COMPANIONS)]


def copy_journal(path: Path, target: Path) -> None:
    """Copy a closed journal and its signing key and anchors (so its writer keeps signing)."""
    for source, copy in zip(journal_files(path), journal_files(target), strict=True):
        if source.exists() and not source.name.endswith(("-wal", "-shm")):
            shutil.copyfile(source, copy)


def install(part: Path, path: Path) -> None:
    """Move a freshly built journal (and its key and anchors, if any) into place."""
    for suffix in _COMPANIONS:
        companion = Path(f"{part}{suffix}")
        if suffix in ("-wal", "-shm"):
            companion.unlink(missing_ok=True)  # the writer checkpointed (TRUNCATE) on close
        elif companion.exists():
            companion.rename(Path(f"{path}{suffix}"))
    part.rename(path)


def scan_and_hash(path: Path) -> tuple[int, float]:
    """The verify baseline: a plain scan of every event row, one SHA-256 per row over its text.

    Returns the number of rows and the seconds it took.
    """
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.text_factory = bytes
    start = time.perf_counter()
    count = 0
    cursor = conn.execute(
        "SELECT prev_hash, seq, event_ulid, session_ulid, run_ulid, kind, actor,"
        " timestamp_unix_ms, created_at_unix_ms, principal, device_id, channel, redacted,"
        " redaction_rules, payload_json, hash FROM journal_events ORDER BY seq"
    )
    for row in cursor:
        hashlib.sha256(row[0] + row[2] + row[3] + row[4] + row[9] + row[10] + row[14]).hexdigest()
        count += 1
    seconds = time.perf_counter() - start
    conn.close()
    return count, seconds


def head_seq(path: Path) -> int:
    """The highest seq in the journal at ``path`` (0 when unreadable or empty)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(conn.execute("SELECT MAX(seq) FROM journal_events").fetchone()[0] or 0)
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
