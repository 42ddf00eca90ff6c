"""Tampering with the real SQLite file, as an attacker with write access would, and what
``verify_file`` reports: the exact break codes and positions (see ``docs/chain.md``)."""

from __future__ import annotations

import asyncio
import hashlib
import random
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from journal_core import BreakCode, Journal, verify_file
from journal_core.chain import LINK_COLUMNS, link_hash

if TYPE_CHECKING:
    from conftest import EventFactory, JournalFactory, RawConnect

MISSING_EVENT = BreakCode.MISSING_EVENT
PREV = BreakCode.PREV_HASH_MISMATCH
HASH = BreakCode.HASH_MISMATCH
MISSING_GENESIS = BreakCode.MISSING_GENESIS
GENESIS = BreakCode.GENESIS_PREV_HASH_MISMATCH

EVENTS = 50

Breaks = list[tuple[BreakCode, int]]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, make_journal: JournalFactory) -> Path:
    """A closed 50-event journal, built once per module; tests tamper with copies."""
    return make_journal(tmp_path_factory.mktemp("template") / "journal.db", EVENTS, 1234)


@pytest.fixture
def journal(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the 50-event journal, intact."""
    path = tmp_path / "journal.db"
    shutil.copyfile(template, path)
    _, report = verify_file(path)
    assert report.ok
    assert report.checked_events == EVENTS
    return path


def breaks_of(path: Path, **kwargs: Any) -> Breaks:
    """Verify ``path`` and return its breaks as ``(code, seq)`` pairs."""
    _, report = verify_file(path, **kwargs)
    return [(item.code, item.seq) for item in report.breaks]


def assert_broken(path: Path, expected: Breaks, **kwargs: Any) -> None:
    """The report is not ok and lists exactly ``expected``."""
    _, report = verify_file(path, **kwargs)
    assert [(item.code, item.seq) for item in report.breaks] == expected
    assert not report.ok
    assert report.breaks_truncated == 0


def drop_triggers(conn: sqlite3.Connection) -> None:
    """What an attacker does first: the append-only triggers are policy, not evidence."""
    conn.execute("DROP TRIGGER journal_events_no_update")
    conn.execute("DROP TRIGGER journal_events_no_delete")


def row_values(conn: sqlite3.Connection, seq: int) -> dict[str, Any]:
    """Every column of the row at ``seq`` by name."""
    cursor = conn.execute("SELECT * FROM journal_events WHERE seq = ?", (seq,))
    names = [column[0] for column in cursor.description]
    row = cursor.fetchone()
    assert row is not None, f"no row at seq {seq}"
    return dict(zip(names, row, strict=True))


def rehash_from(conn: sqlite3.Connection, seq: int) -> None:
    """Recompute ``hash`` (and the next ``prev_hash``) of every row from ``seq`` on, with the
    public encoding: the attacker's whole-chain rewrite."""
    prev_row = conn.execute(
        "SELECT hash FROM journal_events WHERE seq < ? ORDER BY seq DESC", (seq,)
    )
    previous = prev_row.fetchone()
    prev_hash = None if previous is None else previous[0]
    columns = ", ".join(LINK_COLUMNS)
    rows = conn.execute(
        f"SELECT {columns} FROM journal_events WHERE seq >= ? ORDER BY seq", (seq,)
    ).fetchall()
    for row in rows:
        values = list(row)
        if prev_hash is not None:
            values[0] = prev_hash
        digest = link_hash(values)
        conn.execute(
            "UPDATE journal_events SET prev_hash = ?, hash = ? WHERE seq = ?",
            (values[0], digest, values[1]),
        )
        prev_hash = digest


def append_api(path: Path, event: Any) -> int:
    """Append one event through the public API; returns its seq."""

    async def run() -> int:
        async with await Journal.open(path) as journal:
            return (await journal.append(event)).seq

    return asyncio.run(run())


def sha256_file(path: Path) -> str:
    """SHA-256 of the file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- one edited column ------------------------------------------------------------------------


def _other_ulid(old: str) -> str:
    return old[:-1] + ("0" if old[-1] != "0" else "1")


EDITS: dict[str, Callable[[Any], Any]] = {
    "payload_json": lambda old: old.replace("evt-", "EVT-") if "evt-" in old else '{"x":1}',
    "principal": lambda old: old + "x",
    "device_id": lambda old: "other-" + old,
    "kind": lambda old: old + 1,
    "actor": lambda old: old + 1,
    "timestamp_unix_ms": lambda old: old + 1,
    "created_at_unix_ms": lambda old: old - 1,
    "redacted": lambda old: 1 - old,
    "redaction_rules": lambda old: '["forged_rule"]' if old is None else None,
    "session_ulid": _other_ulid,
    "run_ulid": _other_ulid,
    "event_ulid": _other_ulid,
    "channel": lambda old: "slack:#edited" if old != "slack:#edited" else None,
}


@pytest.mark.parametrize("column", list(EDITS))
def test_one_edited_column_is_one_hash_mismatch_at_that_seq(
    journal: Path, raw_db: RawConnect, column: str
) -> None:
    with raw_db(journal) as conn:
        drop_triggers(conn)
        old = row_values(conn, 20)[column]
        new = EDITS[column](old)
        assert new != old
        conn.execute(f"UPDATE journal_events SET {column} = ? WHERE seq = 20", (new,))
        assert row_values(conn, 20)[column] == new
    assert_broken(journal, [(HASH, 20)])


@pytest.mark.parametrize(("before", "after"), [(None, ""), ("", None), ("ops", "ops ")])
def test_channel_null_and_empty_are_told_apart(
    journal: Path, raw_db: RawConnect, before: str | None, after: str | None
) -> None:
    with raw_db(journal) as conn:
        drop_triggers(conn)
        # Put the row in the `before` state with a valid chain (the API never stores '').
        conn.execute("UPDATE journal_events SET channel = ? WHERE seq = 20", (before,))
        rehash_from(conn, 20)
    assert breaks_of(journal) == []
    with raw_db(journal) as conn:
        conn.execute("UPDATE journal_events SET channel = ? WHERE seq = 20", (after,))
    assert_broken(journal, [(HASH, 20)])


def test_edited_prev_hash_breaks_its_own_link(journal: Path, raw_db: RawConnect) -> None:
    with raw_db(journal) as conn:
        drop_triggers(conn)
        conn.execute("UPDATE journal_events SET prev_hash = ? WHERE seq = 20", ("0" * 64,))
    assert_broken(journal, [(PREV, 20), (HASH, 20)])


def test_edited_hash_breaks_its_row_and_the_next_link(journal: Path, raw_db: RawConnect) -> None:
    with raw_db(journal) as conn:
        drop_triggers(conn)
        conn.execute("UPDATE journal_events SET hash = ? WHERE seq = 20", ("f" * 64,))
    assert_broken(journal, [(HASH, 20), (PREV, 21)])


def test_update_after_dropping_the_triggers_is_detected(journal: Path, raw_db: RawConnect) -> None:
    with raw_db(journal) as conn:
        drop_triggers(conn)
        conn.execute(
            "UPDATE journal_events SET payload_json = '{\"approved\":true}', kind = 4"
            " WHERE seq IN (7, 33)"
        )
    assert_broken(journal, [(HASH, 7), (HASH, 33)])


# --- deletions --------------------------------------------------------------------------------


def test_middle_delete_is_a_gap_and_the_next_link(journal: Path, raw_db: RawConnect) -> None:
    with raw_db(journal) as conn:
        drop_triggers(conn)
        conn.execute("DELETE FROM journal_events WHERE seq = 20")
    assert_broken(journal, [(MISSING_EVENT, 20), (PREV, 21)])
    _, report = verify_file(journal)
    assert report.breaks[0].event_id is None
    assert report.checked_events == EVENTS - 1


def test_range_delete_is_one_gap(journal: Path, raw_db: RawConnect) -> None:
    with raw_db(journal) as conn:
        drop_triggers(conn)
        conn.execute("DELETE FROM journal_events WHERE seq BETWEEN 20 AND 25")
    assert_broken(journal, [(MISSING_EVENT, 20), (PREV, 26)])
    _, report = verify_file(journal)
    gap = report.breaks[0]
    assert "20..25" in gap.summary
    assert (gap.expected, gap.found) == ("20", "26")


def test_head_delete_is_missing_genesis(journal: Path, raw_db: RawConnect) -> None:
    with raw_db(journal) as conn:
        drop_triggers(conn)
        conn.execute("DELETE FROM journal_events WHERE seq = 1")
    # The chain starts at 2: missing_genesis at 2, and seq 2's own link does not hold either
    # (its prev_hash is seq 1's hash, not the genesis value): the same "gap + next link" pattern
    # as a middle delete, and the same list as tests/test_chain.py pins for rows without a start.
    assert_broken(journal, [(MISSING_GENESIS, 2), (PREV, 2)])


def test_edited_genesis_prev_hash(journal: Path, raw_db: RawConnect) -> None:
    with raw_db(journal) as conn:
        drop_triggers(conn)
        conn.execute("UPDATE journal_events SET prev_hash = ? WHERE seq = 1", ("a" * 64,))
    assert_broken(journal, [(GENESIS, 1), (HASH, 1)])


def test_edited_journal_id_breaks_the_genesis_link(journal: Path, raw_db: RawConnect) -> None:
    with raw_db(journal) as conn:
        conn.execute("DROP TRIGGER journal_meta_no_update")
        conn.execute(
            "UPDATE journal_meta SET value = '01JZ0000000000000000000000' WHERE key = 'journal_id'"
        )
    # seq 1's own hash still matches its stored columns; only its binding to the id breaks.
    assert_broken(journal, [(GENESIS, 1)])


def test_tail_truncation_passes_but_the_next_append_leaves_a_gap(
    journal: Path, raw_db: RawConnect, event_input: EventFactory
) -> None:
    with raw_db(journal) as conn:
        drop_triggers(conn)
        conn.execute("DELETE FROM journal_events WHERE seq > ?", (EVENTS - 5,))
    # Documented limit: a linear chain alone cannot show that its newest rows were removed.
    _, report = verify_file(journal)
    assert report.ok
    assert report.checked_events == EVENTS - 5
    # But the writer continues from sqlite_sequence, so the removal becomes visible.
    assert append_api(journal, event_input()) == EVENTS + 1
    assert_broken(journal, [(MISSING_EVENT, EVENTS - 4)])
    _, report = verify_file(journal)
    assert f"{EVENTS - 4}..{EVENTS}" in report.breaks[0].summary


def test_tail_truncation_with_sqlite_sequence_reset_is_a_documented_limit(
    journal: Path, raw_db: RawConnect, event_input: EventFactory
) -> None:
    with raw_db(journal) as conn:
        drop_triggers(conn)
        conn.execute("DELETE FROM journal_events WHERE seq > ?", (EVENTS - 5,))
        conn.execute(
            "UPDATE sqlite_sequence SET seq = ? WHERE name = 'journal_events'", (EVENTS - 5,)
        )
    # Limit: an attacker who also rewinds sqlite_sequence leaves no trace in the chain;
    # signed checkpoints kept outside the file (a later issue) close this.
    assert append_api(journal, event_input()) == EVENTS - 4
    assert breaks_of(journal) == []


# --- swaps, forgeries and rewrites ------------------------------------------------------------


def _swap(conn: sqlite3.Connection, a: int, b: int, columns: list[str]) -> None:
    left, right = row_values(conn, a), row_values(conn, b)
    conn.execute("DELETE FROM journal_events WHERE seq IN (?, ?)", (a, b))
    for seq, source, other in ((a, right, left), (b, left, right)):
        values = {**other, **{name: source[name] for name in columns}, "seq": seq}
        names = ", ".join(values)
        marks = ", ".join("?" * len(values))
        conn.execute(
            f"INSERT INTO journal_events ({names}) VALUES ({marks})", list(values.values())
        )


def test_swapping_two_whole_rows(journal: Path, raw_db: RawConnect) -> None:
    with raw_db(journal) as conn:
        drop_triggers(conn)
        everything = [name for name in row_values(conn, 10) if name != "seq"]
        _swap(conn, 10, 11, everything)
    # seq is bound into each link, so both rows fail their own hash; their prev_hash values
    # point the wrong way; and seq 12's prev_hash no longer matches the (swapped) hash stored
    # at 11: "hash_mismatch at both and prev_hash_mismatch around them" (docs/chain.md).
    assert_broken(journal, [(PREV, 10), (HASH, 10), (PREV, 11), (HASH, 11), (PREV, 12)])


def test_swapping_two_rows_contents_but_not_their_hashes(journal: Path, raw_db: RawConnect) -> None:
    with raw_db(journal) as conn:
        drop_triggers(conn)
        content = [
            name for name in row_values(conn, 10) if name not in ("seq", "hash", "prev_hash")
        ]
        _swap(conn, 10, 11, content)
    assert_broken(journal, [(HASH, 10), (HASH, 11)])


def _forged_values(conn: sqlite3.Connection, seq: int) -> list[Any]:
    head_hash = conn.execute("SELECT hash FROM journal_events ORDER BY seq DESC").fetchone()[0]
    template = row_values(conn, 5)
    template.update(
        prev_hash=head_hash,
        seq=seq,
        event_ulid="01JZZZZZZZZZZZZZZZZZZZZZZZ",
        payload_json='{"forged":"approve transfer"}',
    )
    return [template[name] for name in LINK_COLUMNS]


def _insert_link(conn: sqlite3.Connection, values: list[Any], digest: str) -> None:
    names = ", ".join((*LINK_COLUMNS, "hash"))
    marks = ", ".join("?" * (len(LINK_COLUMNS) + 1))
    conn.execute(f"INSERT INTO journal_events ({names}) VALUES ({marks})", [*values, digest])


def test_forged_row_with_a_wrong_hash_is_detected(journal: Path, raw_db: RawConnect) -> None:
    with raw_db(journal) as conn:  # INSERT is not blocked by the triggers
        values = _forged_values(conn, EVENTS + 1)
        # The original's ambiguous '|' encoding instead of the tagged, length-prefixed one.
        wrong = hashlib.sha256("|".join(map(str, values)).encode()).hexdigest()
        _insert_link(conn, values, wrong)
    assert_broken(journal, [(HASH, EVENTS + 1)])


def test_forged_row_with_a_recomputed_hash_passes_documented_limit(
    journal: Path, raw_db: RawConnect
) -> None:
    with raw_db(journal) as conn:
        values = _forged_values(conn, EVENTS + 1)
        _insert_link(conn, values, link_hash(values))
    # Limit: the encoding is public and keyless, so an appended forgery with a correct hash is
    # indistinguishable from a real append. Signed checkpoints (a later issue) close this.
    _, report = verify_file(journal)
    assert report.ok
    assert report.checked_events == EVENTS + 1


def test_whole_chain_rewrite_after_an_edit_passes_documented_limit(
    journal: Path, raw_db: RawConnect
) -> None:
    with raw_db(journal) as conn:
        drop_triggers(conn)
        conn.execute("UPDATE journal_events SET payload_json = '{\"edited\":1}' WHERE seq = 20")
        rehash_from(conn, 20)
    # Limit: a linear chain alone cannot show a rewrite with recomputed hashes; checkpoints will.
    _, report = verify_file(journal)
    assert report.ok
    assert report.checked_events == EVENTS


# --- the triggers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE journal_events SET payload_json = '{}' WHERE seq = 20",
        "UPDATE journal_events SET kind = kind",
        "DELETE FROM journal_events WHERE seq = 20",
        "DELETE FROM journal_events",
    ],
)
def test_triggers_refuse_update_and_delete_and_leave_the_file_unchanged(
    journal: Path, raw_db: RawConnect, statement: str
) -> None:
    before = sha256_file(journal)
    with raw_db(journal) as conn, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute(statement)
    assert sha256_file(journal) == before
    assert breaks_of(journal) == []


# --- damage outside SQLite --------------------------------------------------------------------


def test_byte_flipped_in_the_file_is_never_reported_intact(
    journal: Path, raw_db: RawConnect
) -> None:
    with raw_db(journal) as conn:
        candidates = conn.execute(
            "SELECT seq, payload_json FROM journal_events WHERE payload_json LIKE '%evt-%'"
            " AND seq >= 20 ORDER BY seq"
        ).fetchall()
    data = bytearray(journal.read_bytes())
    seq, payload = candidates[0]
    needle = payload.encode("utf-8")
    assert data.count(needle) == 1, "the payload must occur exactly once in the file"
    offset = data.index(needle) + needle.index(b"evt-")
    data[offset] ^= 0x01  # 'e' -> 'd': still valid UTF-8, same length
    journal.write_bytes(bytes(data))
    # SQLite keeps no page checksums, so the damage reaches the verifier as a changed value.
    assert_broken(journal, [(HASH, seq)])


# --- scope, volume, and no false alarms -------------------------------------------------------


def test_from_seq_ignores_edits_before_it_and_reports_edits_after_it(
    journal: Path, raw_db: RawConnect
) -> None:
    with raw_db(journal) as conn:
        drop_triggers(conn)
        conn.execute("UPDATE journal_events SET principal = 'mallory' WHERE seq = 10")
    assert breaks_of(journal, from_seq=20) == []
    _, report = verify_file(journal, from_seq=20)
    assert report.ok
    assert (report.scope, report.first_seq, report.checked_events) == ("from_seq", 20, 31)
    with raw_db(journal) as conn:
        conn.execute("UPDATE journal_events SET principal = 'mallory' WHERE seq = 30")
    assert_broken(journal, [(HASH, 30)], from_seq=20)
    assert_broken(journal, [(HASH, 10), (HASH, 30)])


def test_from_seq_checks_its_first_link_against_the_stored_predecessor(
    journal: Path, raw_db: RawConnect
) -> None:
    with raw_db(journal) as conn:
        drop_triggers(conn)
        conn.execute("UPDATE journal_events SET hash = ? WHERE seq = 19", ("e" * 64,))
    assert_broken(journal, [(PREV, 20)], from_seq=20)
    with raw_db(journal) as conn:
        conn.execute("DELETE FROM journal_events WHERE seq = 19")
    assert_broken(journal, [(PREV, 20)], from_seq=20)


def test_from_seq_at_a_deleted_row_reports_the_gap(journal: Path, raw_db: RawConnect) -> None:
    with raw_db(journal) as conn:
        drop_triggers(conn)
        conn.execute("DELETE FROM journal_events WHERE seq = 20")
    assert_broken(journal, [(MISSING_EVENT, 20), (PREV, 21)], from_seq=20)


def test_every_one_of_a_hundred_tampered_rows_is_reported(
    tmp_path: Path, make_journal: JournalFactory, raw_db: RawConnect
) -> None:
    path = make_journal(tmp_path / "big.db", 150, 99)
    tampered = list(range(26, 126))
    with raw_db(path) as conn:
        drop_triggers(conn)
        conn.execute(
            "UPDATE journal_events SET timestamp_unix_ms = timestamp_unix_ms + 1"
            " WHERE seq BETWEEN 26 AND 125"
        )
    assert_broken(path, [(HASH, seq) for seq in tampered])


@pytest.mark.parametrize("seed", range(30))
def test_intact_journals_are_never_flagged(
    tmp_path: Path, make_journal: JournalFactory, raw_db: RawConnect, seed: int
) -> None:
    size = [0, 1, 2][seed] if seed < 3 else random.Random(seed).randint(3, 90)
    path = make_journal(tmp_path / f"j{seed}.db", size, seed)
    info, report = verify_file(path)
    with raw_db(path) as conn:
        count, head = conn.execute(
            "SELECT COUNT(*), (SELECT hash FROM journal_events ORDER BY seq DESC LIMIT 1)"
            " FROM journal_events"
        ).fetchone()
    assert report.breaks == []
    assert report.ok
    assert count == size
    assert report.checked_events == count
    assert report.head_hash == head
    assert (report.first_seq, report.last_seq) == ((1, size) if size else (None, None))
    assert info.journal_id
