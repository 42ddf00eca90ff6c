"""Keeping a journal file in shape: checkpoints, integrity checks, vacuum and online backups.

Every function here is blocking and opens its own short-lived connection; from async code run
them with :func:`asyncio.to_thread`. They work while a daemon writes the same file: each waits
for the write lock at most ``busy_timeout_ms`` and raises
:class:`~journal_core.errors.JournalBusyError` past it.

Retention (dropping expired memory items, artifacts, tool job output) belongs to the record
modules, which purge through the chain; run it before :func:`run_maintenance` so that the
pages it frees are reclaimed by the incremental vacuum.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from journal_core.connection import describe_sqlite_error, make_private_dirs, open_reader
from journal_core.errors import (
    BackupTargetExistsError,
    JournalIOError,
    MaintenanceUnavailableError,
    ValidationError,
)
from journal_core.ids import new_ulid
from journal_core.schema import read_meta
from journal_core.store import Journal

CHECKPOINT_MODES = ("PASSIVE", "FULL", "RESTART", "TRUNCATE")
AUTO_VACUUM_INCREMENTAL = 2
_AUTO_VACUUM_NAMES = {0: "NONE", 1: "FULL", 2: "INCREMENTAL"}
DEFAULT_BACKUP_STEP_PAGES = 1_024

BackupProgress = Callable[[int, int], None]
"""Called after each backup step with (pages copied so far, total pages)."""


@dataclass(frozen=True, slots=True)
class CheckpointResult:
    """What ``PRAGMA wal_checkpoint`` reported, and the WAL's size right after.

    ``busy`` means the checkpoint could not finish (a reader holds an older snapshot, or a
    writer held the lock). ``log_frames`` and ``checkpointed_frames`` are -1 when the file is
    not in WAL mode.
    """

    mode: str
    busy: bool
    log_frames: int
    checkpointed_frames: int
    wal_bytes_after: int

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "mode": self.mode,
            "busy": self.busy,
            "log_frames": self.log_frames,
            "checkpointed_frames": self.checkpointed_frames,
            "wal_bytes_after": self.wal_bytes_after,
        }


@dataclass(frozen=True, slots=True)
class BackupResult:
    """Where a backup went and what it holds."""

    path: Path
    journal_id: str
    pages: int
    bytes: int
    head_seq: int

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "path": str(self.path),
            "journal_id": self.journal_id,
            "pages": self.pages,
            "bytes": self.bytes,
            "head_seq": self.head_seq,
        }


@dataclass(frozen=True, slots=True)
class MaintenanceSummary:
    """What :func:`run_maintenance` did.

    ``freed_pages`` is None when the vacuum was skipped; ``vacuum_skipped`` then says why.
    ``checkpoint`` is None when the integrity check failed (nothing is rewritten then).
    """

    integrity: list[str]
    freed_pages: int | None
    vacuum_skipped: str | None
    checkpoint: CheckpointResult | None

    @property
    def integrity_ok(self) -> bool:
        """True when ``PRAGMA integrity_check`` found nothing."""
        return self.integrity == ["ok"]

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "integrity_ok": self.integrity_ok,
            "integrity": list(self.integrity),
            "freed_pages": self.freed_pages,
            "vacuum_skipped": self.vacuum_skipped,
            "checkpoint": None if self.checkpoint is None else self.checkpoint.to_dict(),
        }


def _path_of(target: Journal | str | os.PathLike[str]) -> Path:
    if isinstance(target, Journal):
        return target.info.path
    return Path(target).expanduser().absolute()


def _open_read_write(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A plain read-write connection to ``path``, after recognising it as a journal.

    Recognition goes through :func:`open_reader`, so a missing file, another application's
    database or a newer schema is refused with the same typed errors, and nothing is created.
    """
    reader, _ = open_reader(path, busy_timeout_ms=busy_timeout_ms)
    reader.close()
    try:
        conn = sqlite3.connect(
            f"file:{urllib.parse.quote(str(path))}?mode=rw",
            uri=True,
            isolation_level=None,
            timeout=busy_timeout_ms / 1000,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    except sqlite3.Error as error:
        raise describe_sqlite_error(path, error) from None
    return conn


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def checkpoint(
    target: Journal | str | os.PathLike[str],
    mode: str = "TRUNCATE",
    *,
    busy_timeout_ms: int = 5_000,
) -> CheckpointResult:
    """Checkpoint the WAL of a journal (a path, or an open :class:`Journal`'s file).

    A checkpoint cannot run inside a transaction, so it never goes through the writer thread:
    it uses its own connection, which SQLite coordinates with the writer through the WAL index.
    ``mode`` is PASSIVE (copy what it can without waiting), FULL, RESTART or TRUNCATE (also
    resets the WAL file to zero bytes). FULL, RESTART and TRUNCATE wait up to the busy timeout
    for the writer and for readers; while a reader still holds a snapshot that needs the WAL,
    they return ``busy=True`` instead of finishing, and a later checkpoint completes the work.
    """
    chosen = str(mode).upper()
    if chosen not in CHECKPOINT_MODES:
        raise ValidationError("mode", f"must be one of {', '.join(CHECKPOINT_MODES)}, got {mode!r}")
    path = _path_of(target)
    conn = _open_read_write(path, busy_timeout_ms)
    try:
        busy, log_frames, done = conn.execute(f"PRAGMA wal_checkpoint({chosen})").fetchone()
        wal_after = _size(Path(f"{path}-wal"))
    except sqlite3.Error as error:
        raise describe_sqlite_error(path, error) from None
    finally:
        conn.close()
    return CheckpointResult(chosen, bool(busy), int(log_frames), int(done), wal_after)


def integrity_check(path: str | os.PathLike[str], *, busy_timeout_ms: int = 5_000) -> list[str]:
    """Run the full ``PRAGMA integrity_check`` read-only; ``['ok']`` when the file is sound.

    Otherwise the list holds SQLite's problem descriptions (at most 100). A file too damaged
    for the check to finish yields one entry saying so.
    """
    conn, info = open_reader(path, busy_timeout_ms=busy_timeout_ms)
    try:
        return [str(row[0]) for row in conn.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.OperationalError as error:
        raise describe_sqlite_error(info.path, error) from None
    except sqlite3.DatabaseError as error:
        return [f"integrity_check could not complete: {error}"]
    finally:
        conn.close()


def incremental_vacuum(
    path: str | os.PathLike[str], pages: int | None = None, *, busy_timeout_ms: int = 5_000
) -> int:
    """Give up to ``pages`` free pages back (all of them when None); returns how many.

    Journals are created with ``auto_vacuum=INCREMENTAL``, so pages freed by purges and
    retention sit on a free list until this runs; it holds the write lock only while it moves
    them. In WAL mode the file itself shrinks at the next checkpoint. A file without
    incremental auto-vacuum raises :class:`MaintenanceUnavailableError`.
    """
    if pages is not None and (isinstance(pages, bool) or not isinstance(pages, int) or pages < 1):
        raise ValidationError("pages", f"must be a positive integer or None, got {pages!r}")
    target = Path(path).expanduser().absolute()
    conn = _open_read_write(target, busy_timeout_ms)
    try:
        auto_vacuum = int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])
        if auto_vacuum != AUTO_VACUUM_INCREMENTAL:
            name = _AUTO_VACUUM_NAMES.get(auto_vacuum, str(auto_vacuum))
            raise MaintenanceUnavailableError(
                f"{target} has auto_vacuum={name}, not INCREMENTAL, so free pages cannot be"
                " given back incrementally (stop the daemon and run a full VACUUM instead)"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            wanted = before if pages is None else min(pages, before)
            # The pragma frees one page per step and returns no columns, so Python's sqlite3
            # steps it only once: asking for one page per call frees exactly what is asked.
            for _ in range(wanted):
                conn.execute("PRAGMA incremental_vacuum(1)")
            after = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as error:
        raise describe_sqlite_error(target, error) from None
    finally:
        conn.close()
    return before - after


def fsync_directory(directory: Path) -> None:
    """Make a new directory entry durable (not every platform can open a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def backup(
    path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    progress: BackupProgress | None = None,
    pages_per_step: int = DEFAULT_BACKUP_STEP_PAGES,
    busy_timeout_ms: int = 5_000,
) -> BackupResult:
    """Copy the journal at ``path`` into a new file ``out_path`` while it stays in use.

    Uses SQLite's online backup API from a read-only connection that holds one read snapshot
    for the whole copy, so the backup is one consistent state of the journal even while a
    writer keeps appending (what is appended meanwhile is not in it), and the copy never has
    to restart. While it runs, checkpoints cannot move past that snapshot.

    The copy is written to a temporary file (mode 0600) beside ``out_path`` and linked into
    place only when complete, so ``out_path`` never holds half a backup; missing parent
    directories are created with mode 0700. An existing ``out_path`` is never overwritten:
    :class:`~journal_core.errors.BackupTargetExistsError`. The copy is in WAL mode, keeps the
    journal id and verifies like the original.
    """
    if isinstance(pages_per_step, bool) or not isinstance(pages_per_step, int):
        raise ValidationError("pages_per_step", "must be an integer")
    if pages_per_step < 1:
        raise ValidationError("pages_per_step", f"must be >= 1, got {pages_per_step}")
    out = Path(out_path).expanduser().absolute()
    if os.path.lexists(out):
        raise BackupTargetExistsError(str(out))
    source, info = open_reader(path, busy_timeout_ms=busy_timeout_ms)
    try:
        make_private_dirs(out.parent)
        partial = out.parent / f".{out.name}.{new_ulid()}.partial"
        fd = os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        try:
            journal_id, pages, head_seq = _copy(
                source, info.path, partial, progress, pages_per_step
            )
            try:
                os.link(partial, out)
            except FileExistsError:
                raise BackupTargetExistsError(str(out)) from None
            fsync_directory(out.parent)
        finally:
            for leftover in ("", "-journal", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{partial}{leftover}").unlink()
    except BackupTargetExistsError:
        raise
    except OSError as error:
        raise JournalIOError(f"cannot write the backup {out}: {error.strerror or error}") from None
    finally:
        source.close()
    return BackupResult(out, journal_id, pages, _size(out), head_seq)


def _copy(
    source: sqlite3.Connection,
    source_path: Path,
    partial: Path,
    progress: BackupProgress | None,
    pages_per_step: int,
) -> tuple[str, int, int]:
    """Back ``source`` up into ``partial``; returns the copy's journal id, pages and head seq."""

    def report(_status: int, remaining: int, total: int) -> None:
        if progress is not None:
            progress(total - remaining, total)

    try:
        destination = sqlite3.connect(partial, isolation_level=None)
    except sqlite3.Error as error:
        raise describe_sqlite_error(partial, error) from None
    try:
        # One read transaction for the whole copy: every step sees the same snapshot.
        source.execute("BEGIN")
        try:
            source.execute("SELECT count(*) FROM journal_meta").fetchone()
            source.backup(destination, pages=pages_per_step, progress=report)
        finally:
            source.execute("ROLLBACK")
        destination.execute("PRAGMA journal_mode = WAL")
        journal_id = read_meta(destination)["journal_id"]
        pages = int(destination.execute("PRAGMA page_count").fetchone()[0])
        head = destination.execute("SELECT MAX(seq) FROM journal_events").fetchone()[0]
    except sqlite3.Error as error:
        raise describe_sqlite_error(source_path, error) from None
    finally:
        destination.close()
    return journal_id, pages, int(head or 0)


def run_maintenance(
    path: str | os.PathLike[str],
    *,
    checkpoint_mode: str = "TRUNCATE",
    vacuum_pages: int | None = None,
    busy_timeout_ms: int = 5_000,
) -> MaintenanceSummary:
    """Integrity check, then incremental vacuum, then a checkpoint; returns what each did.

    The order matters: a file that fails the integrity check is not rewritten (no vacuum, no
    checkpoint), and the checkpoint comes last so the pages the vacuum freed leave the file.
    A journal without incremental auto-vacuum skips the vacuum and says so.
    """
    target = Path(path).expanduser().absolute()
    integrity = integrity_check(target, busy_timeout_ms=busy_timeout_ms)
    if integrity != ["ok"]:
        return MaintenanceSummary(integrity, None, "the integrity check failed", None)
    freed: int | None
    skipped: str | None = None
    try:
        freed = incremental_vacuum(target, vacuum_pages, busy_timeout_ms=busy_timeout_ms)
    except MaintenanceUnavailableError as error:
        freed, skipped = None, str(error)
    result = checkpoint(target, checkpoint_mode, busy_timeout_ms=busy_timeout_ms)
    return MaintenanceSummary(integrity, freed, skipped, result)


__all__ = [
    "CHECKPOINT_MODES",
    "BackupProgress",
    "BackupResult",
    "CheckpointResult",
    "MaintenanceSummary",
    "backup",
    "checkpoint",
    "incremental_vacuum",
    "integrity_check",
    "run_maintenance",
]
