"""Verifying a Palyra journal with Palyra's own `|`-joined chain, read-only."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from journal_core.errors import NotAJournalError
from journal_core.palyra import (
    is_palyra_journal,
    palyra_hash,
    palyra_preimage,
    verify_palyra_file,
)
from journal_core.reader import verify_file

_PALYRA_SCHEMA = """
CREATE TABLE schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_unix_ms INTEGER NOT NULL
);
CREATE TABLE journal_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_ulid TEXT NOT NULL UNIQUE,
    session_ulid TEXT NOT NULL,
    run_ulid TEXT NOT NULL,
    kind INTEGER NOT NULL,
    actor INTEGER NOT NULL,
    timestamp_unix_ms INTEGER NOT NULL,
    payload_json TEXT NOT NULL,
    redacted INTEGER NOT NULL DEFAULT 0,
    hash TEXT,
    prev_hash TEXT,
    principal TEXT NOT NULL,
    device_id TEXT NOT NULL,
    channel TEXT,
    created_at_unix_ms INTEGER NOT NULL
);
CREATE INDEX journal_events_run_time ON journal_events (run_ulid, timestamp_unix_ms);
"""


def _ulid(index: int) -> str:
    return f"01JZ{index:022d}"


def make_palyra(path: Path, count: int = 20, *, principal: str = "user:alice") -> Path:
    """A Palyra journal written the way Palyra writes it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(_PALYRA_SCHEMA)
        prev = ""
        for seq in range(1, count + 1):
            channel = None if seq % 3 else "cli"
            fields = (
                _ulid(seq),
                _ulid(1000),
                _ulid(2000),
                1 + seq % 7,
                1 + seq % 4,
                1_700_000_000_000 + seq,
                principal,
                "laptop",
                channel,
                json.dumps({"text": f"event {seq}"}),
            )
            digest = palyra_hash(prev, fields)
            conn.execute(
                "INSERT INTO journal_events (seq, event_ulid, session_ulid, run_ulid, kind, actor,"
                " timestamp_unix_ms, principal, device_id, channel, payload_json, redacted, hash,"
                " prev_hash, created_at_unix_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?,"
                " ?)",
                (seq, *fields, digest, prev or None, 1_700_000_000_000 + seq),
            )
            prev = digest
    finally:
        conn.close()
    return path


def edit(path: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(sql, params)
    finally:
        conn.close()


def codes(path: Path) -> list[tuple[str, int]]:
    _, report = verify_palyra_file(path)
    return [(item.code.value, item.seq) for item in report.breaks]


def test_preimage_is_palyras() -> None:
    fields = (_ulid(1), _ulid(2), _ulid(3), 1, 2, 1_700_000_000_000, "alice", "dev", None, "{}")
    preimage = palyra_preimage("", fields)
    assert preimage == (
        b"|01JZ0000000000000000000001|01JZ0000000000000000000002|01JZ0000000000000000000003"
        b"|1|2|1700000000000|alice|dev||{}"
    )
    assert palyra_hash("", fields) == hashlib.sha256(preimage).hexdigest()


def test_recognised_and_intact(tmp_path: Path) -> None:
    path = make_palyra(tmp_path / "palyra.sqlite3")
    assert is_palyra_journal(path)
    before = path.read_bytes()
    info, report = verify_palyra_file(path)
    assert report.ok
    assert report.checked_events == info.events == 20
    assert path.read_bytes() == before  # opened read-only
    with pytest.raises(NotAJournalError):
        verify_file(path)  # our verifier still refuses it: only the verify command switches


def test_our_journal_is_not_palyra(tmp_path: Path) -> None:
    import asyncio

    from journal_core import Journal

    async def create() -> None:
        async with await Journal.open(tmp_path / "ours.db"):
            pass

    asyncio.run(create())
    assert not is_palyra_journal(tmp_path / "ours.db")
    (tmp_path / "text.txt").write_text("hello")
    assert not is_palyra_journal(tmp_path / "text.txt")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("UPDATE journal_events SET payload_json = '{}' WHERE seq = 7", [("hash_mismatch", 7)]),
        ("UPDATE journal_events SET kind = 7 WHERE seq = 4", [("hash_mismatch", 4)]),
        (
            "DELETE FROM journal_events WHERE seq = 9",
            [("missing_event", 9), ("prev_hash_mismatch", 10)],
        ),
        ("DELETE FROM journal_events WHERE seq <= 2", [("missing_genesis", 3)]),
        (
            "UPDATE journal_events SET prev_hash = 'x' WHERE seq = 1",
            [("genesis_prev_hash_mismatch", 1), ("hash_mismatch", 1)],
        ),
        (
            "UPDATE journal_events SET prev_hash = 'y' WHERE seq = 12",
            [("prev_hash_mismatch", 12), ("hash_mismatch", 12)],
        ),
    ],
)
def test_tampering_is_reported_with_the_same_codes(
    tmp_path: Path, sql: str, expected: list[tuple[str, int]]
) -> None:
    path = make_palyra(tmp_path / "palyra.sqlite3")
    edit(path, sql)
    assert codes(path) == expected


def test_pipe_in_a_field_moves_a_boundary_unnoticed(tmp_path: Path) -> None:
    """The documented collision: principal 'user:alice|admin' + device 'laptop' hashes like
    principal 'user:alice' + device 'admin|laptop'."""
    common = (_ulid(1), _ulid(2), _ulid(3), 1, 1, 1_700_000_000_000)
    one = (*common, "user:alice|admin", "laptop", None, "{}")
    two = (*common, "user:alice", "admin|laptop", None, "{}")
    assert palyra_preimage("", one) == palyra_preimage("", two)
    assert palyra_hash("", one) == palyra_hash("", two)
    # In a real file: move the boundary in row 5 and the chain still verifies.
    path = make_palyra(tmp_path / "palyra.sqlite3", principal="user:alice|admin")
    edit(
        path,
        "UPDATE journal_events SET principal = 'user:alice', device_id = 'admin|laptop'"
        " WHERE seq = 5",
    )
    assert codes(path) == []


def test_null_and_empty_channel_collide(tmp_path: Path) -> None:
    common = (_ulid(1), _ulid(2), _ulid(3), 1, 1, 1_700_000_000_000, "p", "d")
    assert palyra_hash("", (*common, None, "{}")) == palyra_hash("", (*common, "", "{}"))
    path = make_palyra(tmp_path / "palyra.sqlite3")
    edit(path, "UPDATE journal_events SET channel = '' WHERE seq = 1")  # was NULL
    assert codes(path) == []


def test_our_encoding_separates_both_collisions() -> None:
    from journal_core.chain import link_hash

    def row(principal: str, device: str, channel: str | None) -> tuple[object, ...]:
        return ("0" * 64, 1, _ulid(1), _ulid(2), _ulid(3), 1, 1, 1, 1, principal, device, channel)

    tail = (0, None, "{}")
    assert link_hash((*row("a|b", "c", None), *tail)) != link_hash(  # type: ignore[arg-type]
        (*row("a", "b|c", None), *tail)  # type: ignore[arg-type]
    )
    assert link_hash((*row("a", "b", None), *tail)) != link_hash(  # type: ignore[arg-type]
        (*row("a", "b", ""), *tail)  # type: ignore[arg-type]
    )


def test_cli_verify_on_a_palyra_file(tmp_path: Path) -> None:
    path = make_palyra(tmp_path / "palyra.sqlite3")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "journal_core", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    done = run("verify", str(path))
    assert done.returncode == 0, done.stderr
    assert "Palyra journal" in done.stdout
    assert "intact" in done.stdout
    edit(path, "UPDATE journal_events SET payload_json = '{}' WHERE seq = 3")
    done = run("verify", str(path), "--json")
    assert done.returncode == 1
    document = json.loads(done.stdout)
    assert document["format"] == "palyra"
    assert [(b["code"], b["seq"]) for b in document["breaks"]] == [("hash_mismatch", 3)]
    info = run("info", str(path))  # only verify accepts a Palyra file
    assert info.returncode == 2
    assert "not a journal" in info.stderr
