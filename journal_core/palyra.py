"""Read-only verification of a Palyra journal's hash chain (Palyra's own "v1" encoding).

Palyra (the Rust daemon this project reimplements) keeps ``journal_events`` with a hash chain
whose preimage is the fields joined with ``|``: prev_hash (``''`` for the first event), event
id, session id, run id, kind, actor, timestamp_unix_ms, principal, device_id, channel (``''``
when NULL) and payload_json; the hash is lower-case hex SHA-256. A Palyra file has no
``journal_meta`` and not our ``application_id``, so it is recognised by its schema.

This module never writes to the file. It reports the same codes as our verifier
(:class:`~journal_core.chain.BreakCode`). The encoding is ambiguous (``docs/chain.md``, "Palyra's
encoding and its ambiguity"): a verified Palyra chain proves less than one of ours.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from journal_core.chain import Value, VerifyReport, walk_links
from journal_core.connection import describe_sqlite_error
from journal_core.errors import JournalNotFoundError, NotAJournalError
from journal_core.schema import APPLICATION_ID, check_is_sqlite

#: The ``journal_events`` columns a Palyra journal has (hash and prev_hash may be NULL).
PALYRA_COLUMNS: frozenset[str] = frozenset(
    {
        "seq",
        "event_ulid",
        "session_ulid",
        "run_ulid",
        "kind",
        "actor",
        "timestamp_unix_ms",
        "payload_json",
        "redacted",
        "hash",
        "prev_hash",
        "principal",
        "device_id",
        "channel",
        "created_at_unix_ms",
    }
)

#: The preimage fields after prev_hash, in Palyra's order.
PREIMAGE_COLUMNS: tuple[str, ...] = (
    "event_ulid",
    "session_ulid",
    "run_ulid",
    "kind",
    "actor",
    "timestamp_unix_ms",
    "principal",
    "device_id",
    "channel",
    "payload_json",
)

_PAGE = 20_000


def _field(value: Value) -> bytes:
    """One field as Palyra writes it: text as its bytes, integers in decimal, NULL as ''."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, bool):
        return str(int(value)).encode("ascii")
    if isinstance(value, int):
        return str(value).encode("ascii")
    if isinstance(value, float) and value.is_integer():
        return str(int(value)).encode("ascii")
    return repr(value).encode("ascii")


def palyra_preimage(prev_hash: Value, fields: Sequence[Value]) -> bytes:
    """Palyra's preimage: ``prev_hash`` and the ten :data:`PREIMAGE_COLUMNS` joined with ``|``."""
    if len(fields) != len(PREIMAGE_COLUMNS):
        raise ValueError(f"a Palyra link has {len(PREIMAGE_COLUMNS)} fields after prev_hash")
    return b"|".join([_field(prev_hash), *(_field(value) for value in fields)])


def palyra_hash(prev_hash: Value, fields: Sequence[Value]) -> str:
    """Lower-case hex SHA-256 of :func:`palyra_preimage`."""
    return hashlib.sha256(palyra_preimage(prev_hash, fields)).hexdigest()


@dataclass(frozen=True, slots=True)
class PalyraInfo:
    """What identifies a Palyra journal file (it has no journal id)."""

    path: Path
    events: int


def _connect_ro(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(
        f"file:{urllib.parse.quote(str(path))}?mode=ro",
        uri=True,
        isolation_level=None,
        timeout=busy_timeout_ms / 1000,
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    return conn


def _is_palyra_schema(conn: sqlite3.Connection) -> bool:
    application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = {
        str(row[0])
        for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    }
    if application_id == APPLICATION_ID or "journal_meta" in tables:
        return False
    if "journal_events" not in tables:
        return False
    columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(journal_events)").fetchall()}
    return columns >= PALYRA_COLUMNS


def is_palyra_journal(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a SQLite file with Palyra's ``journal_events`` and none of ours."""
    target = Path(path).expanduser().absolute()
    try:
        check_is_sqlite(target)
    except (NotAJournalError, OSError):
        return False
    try:
        conn = _connect_ro(target, 5_000)
    except sqlite3.Error:
        return False
    try:
        return _is_palyra_schema(conn)
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def verify_palyra_rows(rows: Iterable[Sequence[Value]]) -> VerifyReport:
    """Check every link of Palyra rows ``(prev_hash, seq, *PREIMAGE_COLUMNS, hash)`` in seq order
    (NULL prev_hash and hash read as ``''``, as Palyra treats them).

    The walk is the one our own chains use (:func:`journal_core.chain.walk_links`): each link is
    checked on its own against the stored hash of the row before it, every break is reported.
    The first event's prev_hash must be empty; a chain whose start is missing reports the gap.
    """
    return walk_links(
        rows,
        digest=lambda row: palyra_hash(row[0], row[2:-1]),
        genesis_prev="",
        genesis_summary="the first event's prev_hash is not empty",
        check_prev_after_missing_start=False,
    )


def verify_palyra_file(
    path: str | os.PathLike[str], *, busy_timeout_ms: int = 5_000
) -> tuple[PalyraInfo, VerifyReport]:
    """Verify the chain of the Palyra journal at ``path``, opened read-only (``mode=ro``)."""
    target = Path(path).expanduser().absolute()
    if not target.exists():
        raise JournalNotFoundError(f"no journal at {target}")
    check_is_sqlite(target)
    try:
        conn = _connect_ro(target, busy_timeout_ms)
    except sqlite3.Error as error:
        raise describe_sqlite_error(target, error) from None
    try:
        if not _is_palyra_schema(conn):
            raise NotAJournalError(f"{target} is not a Palyra journal")
        conn.text_factory = bytes  # hash the exact stored bytes
        head = int(conn.execute("SELECT MAX(seq) FROM journal_events").fetchone()[0] or 0)
        columns = ", ".join(
            ("COALESCE(prev_hash, '')", "seq", *PREIMAGE_COLUMNS, "COALESCE(hash, '')")
        )
        query = (
            f"SELECT {columns} FROM journal_events WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?"
        )

        def rows() -> Iterable[Sequence[Value]]:
            cursor_seq = -(1 << 62)
            while True:
                page = conn.execute(query, (cursor_seq, head, _PAGE)).fetchall()
                if not page:
                    return
                yield from page
                cursor_seq = int(page[-1][1]) + 1

        report = verify_palyra_rows(rows())
        count = int(conn.execute("SELECT COUNT(*) FROM journal_events").fetchone()[0])
    except sqlite3.Error as error:
        raise describe_sqlite_error(target, error) from None
    finally:
        conn.close()
    return PalyraInfo(target, count), report
