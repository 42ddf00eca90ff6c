"""Opening journal files: creation with safe permissions, recognition, pragmas, migrations.

Two kinds of connection exist. A *writer* connection (one per process) opens read-write, sets
WAL, foreign keys, the synchronous level and a busy timeout, and migrates an older schema forward.
A *reader* connection opens with ``mode=ro`` and runs every statement in its own implicit
transaction, so an idle inspector never pins the WAL.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from journal_core.chain import CHAIN_ALGORITHM
from journal_core.checkpoints import ensure_journal_key
from journal_core.errors import (
    JournalBusyError,
    JournalError,
    JournalIOError,
    JournalNotFoundError,
    NotAJournalError,
)
from journal_core.events import DEFAULT_MAX_PAYLOAD_BYTES
from journal_core.fts import repair_structure
from journal_core.ids import new_ulid
from journal_core.redaction import RedactionPolicy
from journal_core.schema import (
    MEMORY_INDEX,
    SCHEMA_VERSION,
    check_is_sqlite,
    initialise,
    installed_version,
    migrate,
    now_ms,
    read_meta,
)

Synchronous = Literal["NORMAL", "FULL"]
WAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class JournalConfig:
    """How a journal is opened and written. The defaults suit a daemon.

    ``synchronous`` NORMAL survives a process crash with nothing acknowledged lost; FULL also
    survives power loss at the cost of an fsync per commit (see ``docs/durability.md``).
    ``busy_timeout_ms`` is how long one SQLite call waits for a lock; ``lock_timeout_s`` is how long
    a write keeps retrying before :class:`JournalBusyError` reaches the caller.
    """

    synchronous: Synchronous = "NORMAL"
    busy_timeout_ms: int = 5_000
    lock_timeout_s: float = 30.0
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_batch_events: int = 2_048
    redaction: RedactionPolicy = field(default_factory=RedactionPolicy)
    # Signed checkpoints (docs/checkpoints.md). The key and the anchor file live outside the
    # database on purpose: whoever can rewrite the database must not also hold what vouches for
    # it. None means beside the database: ``<db>.key`` and ``<db>.anchors``.
    checkpoints: bool = True
    key_path: str | os.PathLike[str] | None = None
    anchor_path: str | os.PathLike[str] | None = None
    checkpoint_every_events: int = 1_000
    checkpoint_every_s: float = 60.0
    # Whether the writer checkpoints the WAL. Off when Litestream replicates the journal: it
    # must be the WAL's only checkpointer, or a checkpoint racing its lock switch can leave the
    # replica inconsistent (docs/replication.md).
    wal_checkpoints: bool = True

    def __post_init__(self) -> None:
        if self.synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, got {self.synchronous!r}")
        if self.busy_timeout_ms < 0:
            raise ValueError("busy_timeout_ms must be >= 0")
        if self.lock_timeout_s <= 0:
            raise ValueError("lock_timeout_s must be > 0")
        if not 1 <= self.max_payload_bytes <= 64 * 1024 * 1024:
            raise ValueError("max_payload_bytes must be between 1 byte and 64 MiB")
        if self.max_batch_events < 1:
            raise ValueError("max_batch_events must be >= 1")
        if self.checkpoint_every_events < 0 or self.checkpoint_every_s < 0:
            raise ValueError("checkpoint intervals must be >= 0 (0 disables that trigger)")

    def key_file(self, db: Path) -> Path:
        """Where the signing key of the journal at ``db`` lives."""
        return Path(self.key_path) if self.key_path is not None else Path(f"{db}.key")

    def anchor_file(self, db: Path) -> Path:
        """Where the checkpoints of the journal at ``db`` are anchored."""
        return Path(self.anchor_path) if self.anchor_path is not None else Path(f"{db}.anchors")


@dataclass(frozen=True, slots=True)
class JournalInfo:
    """What identifies an open journal."""

    path: Path
    journal_id: str
    chain_algorithm: str
    created_at_unix_ms: int
    schema_version: int


def _uri(path: Path, mode: str) -> str:
    return f"file:{urllib.parse.quote(str(path))}?mode={mode}"


def describe_sqlite_error(path: Path, error: sqlite3.Error) -> JournalError:
    """Turn a SQLite error met while opening or reading ``path`` into a typed journal error."""
    message = str(error)
    lowered = message.lower()
    if "locked" in lowered or "busy" in lowered:
        return JournalBusyError(
            f"{path} is locked by another process (wait for it, or raise the busy timeout)"
        )
    if "could not decode" in lowered:
        # SQLite's message quotes the undecodable text; never echo stored content.
        return NotAJournalError(
            f"{path} has a text column that is not valid UTF-8 (edited outside the journal?);"
            " run `journal verify` to locate it"
        )
    if "not a database" in lowered or "malformed" in lowered:
        return NotAJournalError(f"{path} is damaged or not a journal: {message}")
    if "unable to open" in lowered or "readonly" in lowered or "read-only" in lowered:
        return JournalIOError(f"cannot open {path}: {message} (check the path and permissions)")
    return JournalIOError(f"{path}: {message}")


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents with mode 0700 (existing ones are kept)."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for item in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(item, 0o700)


def _create_atomically(path: Path) -> None:
    """Create a new journal at ``path`` without ever exposing a half-made file.

    The journal is laid out in a temporary file beside ``path`` and hard-linked into place; if
    another process created ``path`` meanwhile, its journal wins and ours is discarded.
    """
    parent = path.parent
    make_private_dirs(parent)
    temporary = parent / f".{path.name}.{new_ulid()}.creating"
    fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    try:
        conn = sqlite3.connect(temporary, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = DELETE")
            initialise(conn, new_ulid(), CHAIN_ALGORITHM)
        finally:
            conn.close()
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        for leftover in (temporary, Path(f"{temporary}-journal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _apply_common_pragmas(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA foreign_keys = ON")


def open_writer(
    path: str | os.PathLike[str], config: JournalConfig, *, create: bool = True
) -> tuple[sqlite3.Connection, JournalInfo]:
    """Open (and if needed create) the journal at ``path`` for writing.

    Refuses a directory, an empty file, a non-SQLite file, another application's database and
    a newer schema with a typed error; never modifies a file it refuses.
    """
    target = Path(path).expanduser().absolute()
    if not target.exists():
        if not create:
            raise JournalNotFoundError(f"no journal at {target} (create one with `journal append`)")
        try:
            _create_atomically(target)
        except OSError as error:
            raise JournalIOError(f"cannot create {target}: {error.strerror or error}") from None
        except sqlite3.Error as error:
            raise describe_sqlite_error(target, error) from None

    def prepare(conn: sqlite3.Connection) -> JournalInfo:
        version = installed_version(conn, target)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalIOError(f"{target}: could not switch to WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {config.synchronous}")
        # Purged records (memory, artifacts, expired output) must really leave the file.
        conn.execute("PRAGMA secure_delete = ON")
        # Once a checkpoint resets the WAL, give back the space a burst made it grow to.
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
        if version < SCHEMA_VERSION:
            version = migrate(conn, version)
        repair_structure(conn, MEMORY_INDEX)
        info = _info(conn, target, version)
        if config.checkpoints:
            # A new journal gets its signing key here; an existing one's is checked.
            try:
                ensure_journal_key(conn, info.journal_id, config.key_file(target), now_ms())
            except OSError as error:
                raise JournalIOError(
                    f"cannot create the signing key of {target}: {error.strerror or error}"
                ) from None
        return info

    return _connect(target, "rw", config.busy_timeout_ms, prepare)


def open_reader(
    path: str | os.PathLike[str], *, busy_timeout_ms: int = 5_000, raw_text: bool = False
) -> tuple[sqlite3.Connection, JournalInfo]:
    """Open the journal at ``path`` read-only (``mode=ro``); nothing is ever written to it.

    With ``raw_text`` the connection returns TEXT columns as the exact stored bytes (what the
    chain verifier hashes).
    """
    target = Path(path).expanduser().absolute()
    if not target.exists():
        raise JournalNotFoundError(f"no journal at {target}")

    def prepare(conn: sqlite3.Connection) -> JournalInfo:
        info = _info(conn, target, installed_version(conn, target))
        if raw_text:
            conn.text_factory = bytes
        return info

    return _connect(target, "ro", busy_timeout_ms, prepare)


def _connect(
    target: Path,
    mode: str,
    busy_timeout_ms: int,
    prepare: Callable[[sqlite3.Connection], JournalInfo],
) -> tuple[sqlite3.Connection, JournalInfo]:
    """Connect to an existing journal file, run ``prepare`` on the connection, map errors.

    The file is checked to be a regular SQLite file before SQLite opens it, so nothing is ever
    created or changed in a file that is refused. On any failure the connection is closed.
    """
    try:
        check_is_sqlite(target)
    except PermissionError:
        raise JournalIOError(f"cannot read {target}: permission denied") from None
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(
            _uri(target, mode),
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=busy_timeout_ms / 1000,
        )
        _apply_common_pragmas(conn, busy_timeout_ms)
        info = prepare(conn)
    except JournalError:
        if conn is not None:
            conn.close()
        raise
    except sqlite3.Error as error:
        if conn is not None:
            conn.close()
        raise describe_sqlite_error(target, error) from None
    return conn, info


def _info(conn: sqlite3.Connection, path: Path, version: int) -> JournalInfo:
    meta = read_meta(conn)
    try:
        return JournalInfo(
            path=path,
            journal_id=meta["journal_id"],
            chain_algorithm=meta["chain_algorithm"],
            created_at_unix_ms=int(meta["created_at_unix_ms"]),
            schema_version=version,
        )
    except (KeyError, ValueError) as error:
        raise NotAJournalError(f"{path} is damaged: journal_meta lacks {error}") from None
