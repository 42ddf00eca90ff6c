"""Signed checkpoints: keys, notes, the anchor file, the tamper matrix, incremental verification."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from journal_core import EventInput, Journal
from journal_core.chain import LINK_COLUMNS, genesis_prev_hash, link_hash
from journal_core.checkpoints import (
    ANCHOR_ENTRY_MISSING,
    ANCHOR_MALFORMED,
    BAD_SIGNATURE,
    CHECKPOINTS_BACKWARDS,
    HISTORY_REWRITTEN,
    ROLLED_BACK,
    TAIL_TRUNCATED,
    UNKNOWN_KEY,
    AnchorReport,
    Checkpoint,
    CheckpointError,
    PublicKey,
    SigningKey,
    generate_key,
    key_id,
    load_key_file,
    load_public_key,
    parse_anchor_text,
    parse_note,
    read_anchor_file,
    rotate_key,
    sign_checkpoint,
)
from journal_core.connection import JournalConfig
from journal_core.reader import verify_file, verify_with_anchors

_RUN = "01JZ00000000000000000000R1"
_SESSION = "01JZ00000000000000000000S1"


def _event(index: int) -> EventInput:
    return EventInput(
        session_id=_SESSION,
        run_id=_RUN,
        kind="message_received",
        actor="user",
        principal="user:alice",
        device_id="laptop-1",
        payload={"text": f"marker-{index:06d}"},
    )


def _config(every: int = 10, **overrides: object) -> JournalConfig:
    fields: dict[str, object] = {"checkpoint_every_events": every, "checkpoint_every_s": 0}
    fields.update(overrides)
    return JournalConfig(**fields)  # type: ignore[arg-type]


async def _append(path: Path, start: int, count: int, config: JournalConfig) -> None:
    async with await Journal.open(path, config) as journal:
        for index in range(start, start + count):
            await journal.append(_event(index))


async def _append_without_close_checkpoint(path: Path, start: int, count: int) -> None:
    """Append, then close as a crash would look to the anchors: no checkpoint on close."""
    async with await Journal.open(path, _config(1_000)) as journal:
        await journal.append_batch([_event(index) for index in range(start, start + count)])
        journal._writer.checkpointer = None


def make(path: Path, count: int = 50, every: int = 10) -> Path:
    """A closed journal of ``count`` events, checkpointed every ``every`` and on close."""
    asyncio.run(_append(path, 1, count, _config(every)))
    return path


def anchors_of(path: Path) -> Path:
    return Path(f"{path}.anchors")


def tamper(path: Path, *statements: str, params: tuple[object, ...] = ()) -> None:
    """Open the file as an attacker would: drop the append-only triggers, run ``statements``."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for name in ("journal_events_no_update", "journal_events_no_delete"):
            conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        for statement in statements:
            conn.execute(statement, params if "?" in statement else ())
    finally:
        conn.close()


def check(
    path: Path, pubkey: PublicKey | None = None
) -> tuple[list[tuple[str, int]], AnchorReport]:
    """(chain breaks as (code, seq), the anchor report)."""
    _, report, anchors = verify_with_anchors(path, anchors_of(path), pubkey=pubkey)
    return [(item.code.value, item.seq) for item in report.breaks], anchors


def findings(anchors: AnchorReport) -> list[tuple[str, int | None]]:
    return [(item.code, item.seq) for item in anchors.findings]


def rewrite_from(path: Path, seq: int) -> None:
    """Edit event ``seq`` and recompute every hash from there on: a consistent new history."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        journal_id = conn.execute(
            "SELECT value FROM journal_meta WHERE key = 'journal_id'"
        ).fetchone()[0]
        for name in ("journal_events_no_update", "journal_events_no_delete"):
            conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        conn.execute(
            'UPDATE journal_events SET payload_json = \'{"text":"forged"}\' WHERE seq = ?', (seq,)
        )
        columns = ", ".join(LINK_COLUMNS)
        rows = conn.execute(f"SELECT {columns} FROM journal_events ORDER BY seq").fetchall()
        prev = genesis_prev_hash(journal_id)
        conn.execute("BEGIN")
        for row in rows:
            values = (prev, *row[1:])
            digest = link_hash(values)
            conn.execute(
                "UPDATE journal_events SET prev_hash = ?, hash = ? WHERE seq = ?",
                (prev, digest, row[1]),
            )
            prev = digest
        conn.execute("COMMIT")
    finally:
        conn.close()


# --- keys and notes ---------------------------------------------------------------------------


def test_key_id_follows_c2sp_and_keys_round_trip() -> None:
    key = generate_key("journal-test-k1")
    public = key.public
    assert key_id(public.name, public.raw) == public.key_id
    assert len(public.key_id) == 4
    assert PublicKey.parse(public.vkey) == public
    assert SigningKey.parse(key.to_text()).public == public
    with pytest.raises(ValueError, match="key id"):
        PublicKey.parse(public.vkey.replace(public.key_id.hex(), "00000000"))


def test_note_shape_and_signature() -> None:
    key = generate_key("journal-test-k1")
    signed = sign_checkpoint(Checkpoint("01JZORIGIN", 42, "ab" * 32, 1_700_000_000_000), key)
    note = signed.note()
    lines = note.split("\n")
    assert lines[0] == "01JZORIGIN"
    assert lines[1] == "42"
    assert lines[3] == "time 1700000000000"
    assert lines[4] == ""
    assert lines[5].startswith("\u2014 journal-test-k1 ")
    parsed = parse_note(note)
    assert parsed.checkpoint == signed.checkpoint
    assert parsed.signed_by(key.public) is True
    other = generate_key("journal-test-k1")
    assert parsed.signed_by(other.public) is None  # a different key id: not its signature


def test_key_and_anchor_files_are_private_and_outside_the_database(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db", 25)
    key_path = Path(f"{path}.key")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(anchors_of(path).stat().st_mode) == 0o600
    secret = load_key_file(key_path).private.private_bytes_raw()
    assert secret not in path.read_bytes()
    entries = read_anchor_file(anchors_of(path))
    assert [entry.checkpoint.seq for entry in entries] == [10, 20, 25]  # type: ignore[union-attr]
    conn = sqlite3.connect(path)
    try:
        stored = conn.execute("SELECT seq FROM journal_checkpoints ORDER BY id").fetchall()
        vkeys = conn.execute("SELECT vkey FROM journal_keys").fetchall()
    finally:
        conn.close()
    assert [row[0] for row in stored] == [10, 20, 25]
    assert vkeys == [(load_key_file(key_path).public.vkey,)]


def test_disabled_intervals_still_checkpoint_on_close(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    asyncio.run(_append(path, 1, 30, _config(0)))
    entries = read_anchor_file(anchors_of(path))
    assert [entry.checkpoint.seq for entry in entries] == [30]  # type: ignore[union-attr]


def test_checkpoints_off_writes_no_key(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    asyncio.run(_append(path, 1, 5, _config(checkpoints=False)))
    assert sorted(
        item.name for item in tmp_path.iterdir() if not item.name.startswith("j.db-")
    ) == ["j.db"]


def test_time_based_checkpoint_while_idle(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> list[int]:
        config = _config(0, checkpoint_every_s=0.05)
        async with await Journal.open(path, config) as journal:
            await journal.append(_event(1))
            await asyncio.sleep(0.3)
            entries = read_anchor_file(anchors_of(path))
            return [entry.checkpoint.seq for entry in entries]  # type: ignore[union-attr]

    assert asyncio.run(scenario()) == [1]


def test_configured_paths_and_a_foreign_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    key_path = tmp_path / "keys" / "j.key"
    key_path.parent.mkdir()
    anchor = tmp_path / "anchor.txt"
    asyncio.run(_append(path, 1, 12, _config(key_path=key_path, anchor_path=anchor)))
    assert key_path.exists()
    assert anchor.exists()
    assert not Path(f"{path}.key").exists()
    other = tmp_path / "other.key"
    other.write_text(generate_key("journal-x-k1").to_text())
    with pytest.raises(CheckpointError, match="not this journal's current key"):
        asyncio.run(_append(path, 13, 1, _config(key_path=other)))


# --- the tamper matrix ------------------------------------------------------------------------


def test_intact_journal_has_no_findings(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    breaks, anchors = check(path)
    assert breaks == []
    assert anchors.ok
    assert anchors.verified_entries == 5
    assert anchors.latest_anchored_seq == 50


def test_payload_edit(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    tamper(path, 'UPDATE journal_events SET payload_json = \'{"text":"x"}\' WHERE seq = 15')
    breaks, anchors = check(path)
    assert breaks == [("hash_mismatch", 15)]
    assert anchors.ok  # the hash column was left alone; the chain itself reports the edit


def test_identity_field_edit(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    tamper(path, "UPDATE journal_events SET principal = 'user:mallory' WHERE seq = 33")
    assert check(path)[0] == [("hash_mismatch", 33)]


def test_triggers_stop_edits_until_dropped(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE journal_events SET kind = 2 WHERE seq = 7")
    finally:
        conn.close()
    tamper(path, "UPDATE journal_events SET kind = 2 WHERE seq = 7")
    assert check(path)[0] == [("hash_mismatch", 7)]


def test_middle_delete(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    tamper(path, "DELETE FROM journal_events WHERE seq = 20")
    breaks, anchors = check(path)
    assert breaks == [("missing_event", 20), ("prev_hash_mismatch", 21)]
    assert anchors.ok  # the anchored row is gone: the chain reports the gap


def test_head_delete(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    tamper(path, "DELETE FROM journal_events WHERE seq = 50")
    breaks, anchors = check(path)
    assert breaks == []  # the chain alone cannot see it
    assert findings(anchors) == [(TAIL_TRUNCATED, 50)]


def test_swap_of_two_rows(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    conn = sqlite3.connect(path)
    try:
        first, second = (
            conn.execute(
                "SELECT payload_json FROM journal_events WHERE seq = ?", (seq,)
            ).fetchone()[0]
            for seq in (14, 15)
        )
    finally:
        conn.close()
    tamper(path, "UPDATE journal_events SET payload_json = ? WHERE seq = 14", params=(second,))
    tamper(path, "UPDATE journal_events SET payload_json = ? WHERE seq = 15", params=(first,))
    assert check(path)[0] == [("hash_mismatch", 14), ("hash_mismatch", 15)]


def test_forged_insert(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT " + ", ".join(LINK_COLUMNS) + " FROM journal_events WHERE seq = 25"
        ).fetchone()
    finally:
        conn.close()
    # A forged event correctly linked after seq 25, squeezed in as seq 26 (the original moved out).
    values = list(row)
    values[0] = link_hash(row)
    values[1] = 26
    values[2] = "01JZFORGEDFORGEDFORGEDFORG"
    values[-1] = '{"text":"forged"}'
    forged_hash = link_hash(values)
    tamper(
        path,
        "DELETE FROM journal_events WHERE seq = 26",
        "INSERT INTO journal_events (prev_hash, seq, event_ulid, session_ulid, run_ulid, kind,"
        " actor, timestamp_unix_ms, created_at_unix_ms, principal, device_id, channel, redacted,"
        " redaction_rules, payload_json, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
        " ?, ?)",
        params=(*values, forged_hash),
    )
    assert check(path)[0] == [("prev_hash_mismatch", 27)]


def test_tail_truncation(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    tamper(path, "DELETE FROM journal_events WHERE seq > 35")
    breaks, anchors = check(path)
    assert breaks == []
    assert findings(anchors) == [(TAIL_TRUNCATED, 50)]
    assert anchors.findings[0].found == "head seq 35"


def test_whole_chain_rewrite(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    rewrite_from(path, 1)
    breaks, anchors = check(path)
    assert breaks == []  # a consistent new history
    assert findings(anchors) == [(HISTORY_REWRITTEN, 10)]
    assert "5 anchored" in anchors.findings[0].summary


def test_partial_rewrite_points_at_the_first_anchor_after_the_edit(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    rewrite_from(path, 23)
    assert findings(check(path)[1]) == [(HISTORY_REWRITTEN, 30)]


def test_rollback_to_an_earlier_copy(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db", 30)
    backup = tmp_path / "backup.db"
    shutil.copyfile(path, backup)
    asyncio.run(_append(path, 31, 20, _config(10)))
    shutil.copyfile(backup, path)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    breaks, anchors = check(path)
    assert breaks == []
    assert findings(anchors) == [(ROLLED_BACK, 50)]


def test_rollback_with_uncheckpointed_events_in_the_copy(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db", 30)
    # The copy holds events after its last checkpoint (taken before the writer closed).
    asyncio.run(_append_without_close_checkpoint(path, 31, 5))
    backup = tmp_path / "backup.db"
    shutil.copyfile(path, backup)
    asyncio.run(_append(path, 36, 20, _config(10)))
    shutil.copyfile(backup, path)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    assert findings(check(path)[1]) == [(ROLLED_BACK, 55)]


def test_byte_flipped_outside_sqlite(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    data = bytearray(path.read_bytes())
    offset = data.find(b"marker-000017")
    assert offset > 0
    data[offset + len("marker-00001")] ^= 0x01  # '7' -> '6'
    path.write_bytes(bytes(data))
    assert check(path)[0] == [("hash_mismatch", 17)]


def test_bad_signature_in_the_anchor_file(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    lines = anchors_of(path).read_text().split("\n")
    index = [i for i, line in enumerate(lines) if line.startswith("\u2014 ")][1]
    name, blob = lines[index][2:].split(" ")
    raw = bytearray(__import__("base64").b64decode(blob))
    raw[10] ^= 0xFF
    lines[index] = f"\u2014 {name} {__import__('base64').b64encode(bytes(raw)).decode()}"
    anchors_of(path).write_text("\n".join(lines))
    assert findings(check(path)[1]) == [(BAD_SIGNATURE, 20)]


def test_edited_seq_in_the_anchor_file_breaks_its_signature(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    text = anchors_of(path).read_text().replace("\n30\n", "\n31\n", 1)
    anchors_of(path).write_text(text)
    assert findings(check(path)[1]) == [(BAD_SIGNATURE, 31)]


def test_removed_line_in_the_anchor_file(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    lines = anchors_of(path).read_text().split("\n")
    time_lines = [i for i, line in enumerate(lines) if line.startswith("time ")]
    del lines[time_lines[2]]  # the time line of the checkpoint at seq 30
    anchors_of(path).write_text("\n".join(lines))
    anchors = check(path)[1]
    assert [(item.code, item.line) for item in anchors.findings] == [(ANCHOR_MALFORMED, 15)]


def test_removed_entry_in_the_anchor_file(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    # Rebuild the file without the second entry (seq 20).
    notes = [entry.note() for entry in read_anchor_file(anchors_of(path))]  # type: ignore[union-attr]
    assert len(notes) == 5
    anchors_of(path).write_text("".join(note + "\n" for i, note in enumerate(notes) if i != 1))
    assert findings(check(path)[1]) == [(ANCHOR_ENTRY_MISSING, 20)]


def test_entries_going_backwards(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    notes = [entry.note() for entry in read_anchor_file(anchors_of(path))]  # type: ignore[union-attr]
    notes[1], notes[2] = notes[2], notes[1]
    anchors_of(path).write_text("".join(note + "\n" for note in notes))
    assert findings(check(path)[1]) == [(CHECKPOINTS_BACKWARDS, 20)]


def test_anchor_signed_by_an_unannounced_key(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    journal_id = read_anchor_file(anchors_of(path))[0].checkpoint.origin  # type: ignore[union-attr]
    conn = sqlite3.connect(path)
    head_hash = conn.execute("SELECT hash FROM journal_events WHERE seq = 50").fetchone()[0]
    conn.close()
    intruder = generate_key(f"journal-{journal_id}-k1")  # same name, another key
    forged = sign_checkpoint(Checkpoint(journal_id, 50, head_hash, 9_999_999_999_999), intruder)
    with anchors_of(path).open("a") as handle:
        handle.write(forged.note() + "\n")
    assert findings(check(path)[1]) == [(UNKNOWN_KEY, 50)]


def test_pinned_pubkey_rejects_a_swapped_journal_key(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    pinned = load_key_file(Path(f"{path}.key")).public
    other = generate_key(pinned.name).public
    _, anchors = check(path, pubkey=other)
    assert {item.code for item in anchors.findings} == {UNKNOWN_KEY}
    assert check(path, pubkey=pinned)[1].ok


def test_key_rotation_is_followed(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> PublicKey:
        async with await Journal.open(path, _config(10)) as journal:
            for index in range(1, 26):
                await journal.append(_event(index))
            new = await rotate_key(journal)
            for index in range(26, 41):
                await journal.append(_event(index))
            return new

    asyncio.run(_append(path, 1, 1, _config(10)))
    first_key = load_key_file(Path(f"{path}.key")).public
    new = asyncio.run(scenario())
    assert load_key_file(Path(f"{path}.key")).public == new  # the old private key is gone
    entries = read_anchor_file(anchors_of(path))
    rotation = [entry for entry in entries if entry.checkpoint.announce]  # type: ignore[union-attr]
    assert len(rotation) == 1
    assert rotation[0].checkpoint.announce == new
    assert rotation[0].signed_by(first_key) is True  # type: ignore[union-attr]
    breaks, anchors = check(path, pubkey=first_key)
    assert breaks == []
    assert anchors.ok
    assert anchors.keys == [new.vkey]
    # Reopening with the rotated key file works and keeps signing with the new key.
    asyncio.run(_append(path, 41, 12, _config(10)))
    assert check(path, pubkey=first_key)[1].ok
    last = read_anchor_file(anchors_of(path))[-1].checkpoint  # type: ignore[union-attr]
    assert last.seq == 53  # 1 + 52 events


def test_retired_key_cannot_sign_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    keep = tmp_path / "new.key"

    async def scenario() -> None:
        async with await Journal.open(path, _config(10)) as journal:
            for index in range(1, 16):
                await journal.append(_event(index))
            await rotate_key(journal, keep)

    asyncio.run(scenario())
    old = load_key_file(Path(f"{path}.key"))  # kept: a new_key_path was given
    root = old.public
    journal_id = read_anchor_file(anchors_of(path))[0].checkpoint.origin  # type: ignore[union-attr]
    conn = sqlite3.connect(path)
    head_hash = conn.execute("SELECT hash FROM journal_events WHERE seq = 15").fetchone()[0]
    conn.close()
    late = sign_checkpoint(Checkpoint(journal_id, 15, head_hash, 9_999_999_999_999), old)
    with anchors_of(path).open("a") as handle:
        handle.write(late.note() + "\n")
    assert findings(check(path, pubkey=root)[1]) == [(UNKNOWN_KEY, 15)]
    # Opening with the retired key is refused; with the new one it works.
    with pytest.raises(CheckpointError):
        asyncio.run(_append(path, 16, 1, _config(10)))
    asyncio.run(_append(path, 16, 1, _config(10, key_path=keep)))


# --- intact journals are never flagged --------------------------------------------------------


def test_random_valid_journals_have_no_findings(tmp_path: Path) -> None:
    rng = random.Random(20261126)
    for case in range(32):
        path = tmp_path / f"j{case}.db"
        every = rng.choice([0, 1, 3, 7, 10, 50])

        async def scenario(path: Path = path, every: int = every) -> None:
            index = 0
            for _session in range(rng.randint(1, 3)):
                async with await Journal.open(path, _config(every)) as journal:
                    for _step in range(rng.randint(1, 6)):
                        size = rng.randint(1, 25)
                        await journal.append_batch(
                            [_event(index + offset) for offset in range(size)]
                        )
                        index += size
                        if rng.random() < 0.15:
                            await rotate_key(journal)

        asyncio.run(scenario())
        breaks, anchors = check(path)
        assert breaks == [], case
        assert anchors.ok, (case, anchors.findings)
        _, report = verify_file(path, incremental=True)
        assert report.ok, case
        assert report.scope == "incremental", case


# --- incremental verification -----------------------------------------------------------------


def test_incremental_verifies_only_events_after_the_last_checkpoint(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db", 50, every=20)  # checkpoints at 20, 40, 50
    asyncio.run(_append_without_close_checkpoint(path, 51, 7))
    _, report = verify_file(path, incremental=True)
    assert report.ok
    assert (report.scope, report.from_seq, report.checked_events) == ("incremental", 50, 8)
    tamper(path, "UPDATE journal_events SET payload_json = '{}' WHERE seq = 55")
    _, report = verify_file(path, incremental=True)
    assert [(item.code.value, item.seq) for item in report.breaks] == [("hash_mismatch", 55)]


def test_incremental_spot_checks_the_checkpointed_row(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db", 40, every=20)
    tamper(path, "UPDATE journal_events SET payload_json = '{}' WHERE seq = 40")
    _, report = verify_file(path, incremental=True)
    assert [(item.code.value, item.seq) for item in report.breaks] == [("hash_mismatch", 40)]


def test_incremental_ignores_a_forged_checkpoint_row(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db", 40, every=20)
    rewrite_from(path, 30)
    _, report = verify_file(path, incremental=True)
    # The checkpoint at 40 no longer matches the stored row; the one at 20 does.
    assert report.ok
    assert report.from_seq == 20
    assert report.checked_events == 21


def test_incremental_without_checkpoints_is_a_full_verify(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    asyncio.run(_append(path, 1, 5, _config(checkpoints=False)))
    _, report = verify_file(path, incremental=True)
    assert report.ok
    assert report.scope == "full"
    assert report.checked_events == 5


# --- command line -----------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "journal_core", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


def test_cli_verify_anchor_and_info(tmp_path: Path) -> None:
    path = make(tmp_path / "j.db")
    vkey = load_key_file(Path(f"{path}.key")).public.vkey
    pub = tmp_path / "j.pub"
    pub.write_text(vkey + "\n")
    done = _cli("verify", str(path), "--anchor", str(anchors_of(path)), "--pubkey", str(pub))
    assert done.returncode == 0, done.stderr
    assert "5 of 5 checkpoints verified" in done.stdout
    info = _cli("info", str(path), "--json")
    assert json.loads(info.stdout)["public_keys"] == [vkey]
    rotated = _cli("rotate-key", str(path))
    assert rotated.returncode == 0, rotated.stderr
    new_vkey = rotated.stdout.strip()
    assert json.loads(_cli("info", str(path), "--json").stdout)["public_keys"] == [vkey, new_vkey]
    done = _cli("verify", str(path), "--anchor", str(anchors_of(path)), "--pubkey", str(pub))
    assert done.returncode == 0, done.stdout
    tamper(path, "DELETE FROM journal_events WHERE seq > 45")
    done = _cli("verify", str(path), "--anchor", str(anchors_of(path)), "--json")
    assert done.returncode == 1
    document = json.loads(done.stdout)
    assert document["status"] == "broken"
    assert [(item["code"], item["seq"]) for item in document["anchors"]["findings"]] == [
        (TAIL_TRUNCATED, 50)
    ]
    missing = _cli("verify", str(path), "--anchor", str(tmp_path / "absent"))
    assert missing.returncode == 2
    assert missing.stderr.startswith("journal: ")
    incremental = _cli("verify", str(tmp_path / "j.db"), "--incremental", "--json")
    assert json.loads(incremental.stdout)["scope"] in {"incremental", "full"}


def test_anchor_parser_survives_garbage() -> None:
    entries = parse_anchor_text("garbage\n\n\u2014 x y\n\n\u2014 lonely\nmore\n")
    assert entries
    assert all(not hasattr(entry, "checkpoint") for entry in entries)
    assert load_public_key(generate_key("n").public.vkey).name == "n"


def test_two_writers_on_one_file_never_anchor_backwards(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with (
            await Journal.open(path, _config(3)) as first,
            await Journal.open(path, _config(4)) as second,
        ):
            for index in range(40):
                writer = first if index % 3 else second
                await asyncio.gather(
                    writer.append(_event(2 * index)), first.append(_event(2 * index + 1))
                )

    asyncio.run(scenario())
    breaks, anchors = check(path)
    assert breaks == []
    assert anchors.ok, anchors.findings
    seqs = [entry.checkpoint.seq for entry in read_anchor_file(anchors_of(path))]  # type: ignore[union-attr]
    assert seqs == sorted(seqs)
    assert seqs[-1] == 80


def test_an_unwritable_anchor_file_does_not_stop_appends(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    anchor = tmp_path / "missing-dir" / "anchors"
    asyncio.run(_append(path, 1, 25, _config(10, anchor_path=anchor)))
    _, report = verify_file(path)
    assert report.ok
    assert report.checked_events == 25
    assert not anchor.exists()
    conn = sqlite3.connect(path)
    try:
        stored = [row[0] for row in conn.execute("SELECT seq FROM journal_checkpoints ORDER BY id")]
    finally:
        conn.close()
    assert stored == [10, 20, 25]
