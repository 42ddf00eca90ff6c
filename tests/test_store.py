"""The writer: validation, payload forms, duplicates, atomic batches, group commit, files."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

from journal_core import (
    DuplicateEventError,
    EventInput,
    Journal,
    JournalClosedError,
    JournalConfig,
    JournalReader,
    PayloadTooLargeError,
    ValidationError,
    new_ulid,
    verify_file,
)
from journal_core.connection import Synchronous
from journal_core.schema import SCHEMA_VERSION

SESSION = new_ulid()
RUN = new_ulid()


def _event(**overrides: Any) -> EventInput:
    fields: dict[str, Any] = {
        "session_id": SESSION,
        "run_id": RUN,
        "kind": "message_received",
        "actor": "user",
        "principal": "user:alice",
        "device_id": "laptop-1",
        "payload": {"text": "hello"},
    }
    fields.update(overrides)
    return EventInput(**fields)


def _rows(path: Path, sql: str = "SELECT COUNT(*) FROM journal_events") -> Any:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _append_all(path: Path, events: list[EventInput], **config: Any) -> list[Any]:
    async with await Journal.open(path, JournalConfig(**config)) as journal:
        return [await journal.append(event) for event in events]


def test_append_assigns_seq_and_chains(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    results = _run(_append_all(path, [_event(), _event(kind=2, actor=2)]))
    assert [r.seq for r in results] == [1, 2]
    rows = _rows(path, "SELECT seq, prev_hash, hash, kind, actor FROM journal_events ORDER BY seq")
    assert rows[1][1] == rows[0][2] == results[0].hash
    assert (rows[0][3], rows[0][4], rows[1][3], rows[1][4]) == (1, 1, 2, 2)
    _, report = verify_file(path)
    assert report.ok
    assert report.checked_events == 2


def test_new_journal_has_identity_migrations_and_private_files(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "dir" / "j.db"
    _run(_append_all(path, [_event()]))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "fresh").st_mode) == 0o700
    meta = dict(_rows(path, "SELECT key, value FROM journal_meta"))
    assert meta["chain_algorithm"] == "journal-chain-v1/sha256"
    assert len(meta["journal_id"]) == 26
    versions = _rows(path, "SELECT version FROM schema_migrations ORDER BY version")
    assert versions[-1][0] == SCHEMA_VERSION
    assert _rows(path, "PRAGMA journal_mode")[0][0] == "wal"
    assert not list(tmp_path.glob("**/*.creating"))


def test_journal_identity_cannot_be_updated(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    _run(_append_all(path, [_event()]))
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="immutable"):
        conn.execute("UPDATE journal_meta SET value = 'x' WHERE key = 'journal_id'")
    conn.close()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"session_id": "not-a-ulid"}, "session_id"),
        ({"run_id": 42}, "run_id"),
        ({"event_id": "01ARZ3NDEKTSV4RRFFQ69G5FAVX"}, "event_id"),
        ({"event_id": "U1ARZ3NDEKTSV4RRFFQ69G5FAV"}, "event_id"),
        ({"kind": "no_such_kind"}, "kind"),
        ({"kind": -1}, "kind"),
        ({"kind": True}, "kind"),
        ({"kind": 1.5}, "kind"),
        ({"actor": "robot"}, "actor"),
        ({"actor": 256}, "actor"),
        ({"principal": ""}, "principal"),
        ({"principal": "x" * 257}, "principal"),
        ({"principal": "evil\x1b[31m"}, "principal"),
        ({"device_id": "laptop\u202eevil"}, "device_id"),
        ({"device_id": None}, "device_id"),
        ({"channel": 7}, "channel"),
        ({"channel": "bad\nchannel"}, "channel"),
        ({"timestamp_unix_ms": -5}, "timestamp_unix_ms"),
        ({"timestamp_unix_ms": "1700000000000"}, "timestamp_unix_ms"),
        ({"payload": {"n": float("nan")}}, "payload"),
        ({"payload": {"n": float("inf")}}, "payload"),
        ({"payload": {1: "non-string key"}}, "payload"),
        ({"payload": {"s": {1, 2}}}, "payload"),
        ({"payload": {"s": "\ud800"}}, "payload"),
    ],
)
def test_invalid_fields_are_refused_by_name_and_nothing_is_written(
    tmp_path: Path, overrides: dict[str, Any], field: str
) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            with pytest.raises(ValidationError) as caught:
                await journal.append(_event(**overrides))
            assert caught.value.field == field
            assert str(caught.value).startswith(f"{field}: ")

    _run(scenario())
    assert _rows(path)[0][0] == 0


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    payload: Any = {}
    cursor = payload
    for _ in range(400):
        cursor["a"] = {}
        cursor = cursor["a"]

    async def scenario() -> None:
        async with await Journal.open(tmp_path / "j.db") as journal:
            with pytest.raises(ValidationError, match="deeper"):
                await journal.append(_event(payload=payload))

    _run(scenario())


def test_payload_size_limit_is_configurable(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Journal.open(
            tmp_path / "j.db", JournalConfig(max_payload_bytes=1024)
        ) as journal:
            await journal.append(_event(payload={"text": "x" * 900}))
            with pytest.raises(PayloadTooLargeError) as caught:
                await journal.append(_event(payload={"text": "x" * 2000}))
            assert caught.value.field == "payload"
            assert caught.value.limit == 1024
            with pytest.raises(PayloadTooLargeError):
                await journal.append(_event(payload='{"t":"' + "y" * 2000 + '"}'))

    _run(scenario())
    assert _rows(tmp_path / "j.db")[0][0] == 1


def test_default_payload_limit_is_256_kib(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Journal.open(tmp_path / "j.db") as journal:
            await journal.append(_event(payload={"t": "x" * (256 * 1024 - 100)}))
            with pytest.raises(PayloadTooLargeError):
                await journal.append(_event(payload={"t": "x" * (256 * 1024)}))

    _run(scenario())


@pytest.mark.parametrize(
    ("payload", "stored"),
    [
        ({"a": [1, 2.5, None, True]}, {"a": [1, 2.5, None, True]}),
        ('{"a": 1, "b": "two"}', {"a": 1, "b": "two"}),
        (b'{"bytes": "utf-8 \xc3\xa9"}', {"bytes": "utf-8 é"}),
        ("", {}),
        (None, {}),
        ("[1, 2, 3]", [1, 2, 3]),
        ('{"big": 123456789012345678901234567890}', {"big": 123456789012345678901234567890}),
        ({"big": 2**70}, {"big": 2**70}),
        ('{"k": 1, "k": 2}', {"k": 2}),
    ],
)
def test_payload_forms_are_stored_as_json(tmp_path: Path, payload: object, stored: object) -> None:
    path = tmp_path / "j.db"
    _run(_append_all(path, [_event(payload=payload)]))
    text, redacted = _rows(path, "SELECT payload_json, redacted FROM journal_events")[0]
    assert json.loads(text) == stored
    assert redacted == 0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("this is not json", "non_json_payload"),
        ("{'single': 'quotes'}", "non_json_payload"),
        ('{"n": NaN}', "non_json_payload"),
        (b"\xff\xfe\x00binary", "binary_or_non_utf8_payload"),
    ],
)
def test_non_json_and_non_utf8_payloads_become_markers(
    tmp_path: Path, payload: object, reason: str
) -> None:
    path = tmp_path / "j.db"
    _run(_append_all(path, [_event(payload=payload)]))
    text, redacted, rules = _rows(
        path, "SELECT payload_json, redacted, redaction_rules FROM journal_events"
    )[0]
    stored = orjson.loads(text)
    assert stored["redacted"] is True
    assert stored["reason"] == reason
    assert stored["bytes"] == len(payload if isinstance(payload, bytes) else payload.encode())
    assert redacted == 1
    assert reason in orjson.loads(rules)
    raw = payload if isinstance(payload, bytes) else payload.encode()
    assert raw not in path.read_bytes()


def test_duplicate_event_id_is_refused(tmp_path: Path) -> None:
    event_id = new_ulid()

    async def scenario() -> None:
        async with await Journal.open(tmp_path / "j.db") as journal:
            await journal.append(_event(event_id=event_id))
            with pytest.raises(DuplicateEventError) as caught:
                await journal.append(_event(event_id=event_id.lower()))
            assert caught.value.event_ids == [event_id]

    _run(scenario())
    assert _rows(tmp_path / "j.db")[0][0] == 1


def test_batch_is_atomic(tmp_path: Path) -> None:
    taken = new_ulid()
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            await journal.append(_event(event_id=taken))
            with pytest.raises(DuplicateEventError):
                await journal.append_batch([_event(), _event(), _event(event_id=taken)])
            twice = new_ulid()
            with pytest.raises(DuplicateEventError):
                await journal.append_batch([_event(event_id=twice), _event(event_id=twice)])
            with pytest.raises(ValidationError):
                await journal.append_batch([_event(), _event(kind="bogus")])
            results = await journal.append_batch([_event(), _event(), _event()])
            assert [r.seq for r in results] == [2, 3, 4]

    _run(scenario())
    assert _rows(path)[0][0] == 4
    assert verify_file(path)[1].ok


def test_concurrent_appends_are_group_committed_in_order(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> list[Any]:
        async with await Journal.open(path) as journal:
            events = [_event(payload={"i": i}) for i in range(600)]
            return await asyncio.gather(*(journal.append(event) for event in events))

    results = _run(scenario())
    assert [r.seq for r in results] == list(range(1, 601))
    created = _rows(path, "SELECT COUNT(DISTINCT created_at_unix_ms) FROM journal_events")
    assert created[0][0] < 600  # many events shared a commit
    payloads = _rows(path, "SELECT payload_json FROM journal_events ORDER BY seq")
    assert [orjson.loads(row[0])["i"] for row in payloads] == list(range(600))
    assert verify_file(path)[1].ok


def test_one_bad_append_does_not_fail_its_batch_neighbours(tmp_path: Path) -> None:
    taken = new_ulid()
    path = tmp_path / "j.db"

    async def scenario() -> list[Any]:
        async with await Journal.open(path) as journal:
            await journal.append(_event(event_id=taken))
            return await asyncio.gather(
                journal.append(_event()),
                journal.append(_event(event_id=taken)),
                journal.append(_event()),
                return_exceptions=True,
            )

    outcomes = _run(scenario())
    assert isinstance(outcomes[1], DuplicateEventError)
    assert [o.seq for o in (outcomes[0], outcomes[2])] == [2, 3]


def test_await_returns_after_commit_visible_to_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            for i in range(20):
                result = await journal.append(_event(payload={"i": i}))
                assert _rows(path, "SELECT MAX(seq) FROM journal_events")[0][0] == result.seq

    _run(scenario())


def test_an_append_waiting_for_another_writers_lock_leaves_the_loop_free(
    tmp_path: Path,
) -> None:
    """Another process holds the write lock: the append waits, the event loop does not."""
    path = tmp_path / "j.db"

    async def scenario() -> tuple[bool, float, int]:
        config = JournalConfig(busy_timeout_ms=20_000, lock_timeout_s=60)
        async with await Journal.open(path, config) as journal:
            await journal.append(_event())
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            try:
                task = asyncio.create_task(journal.append(_event(payload={"i": 2})))
                began = asyncio.get_running_loop().time()
                for _ in range(10):
                    await asyncio.sleep(0.01)
                ticked = asyncio.get_running_loop().time() - began
                waiting = not task.done()
            finally:
                other.execute("COMMIT")
                other.close()
            result = await task
            return waiting, ticked, result.seq

    waiting, ticked, seq = _run(scenario())
    assert waiting
    # Far below the 20 s busy timeout: the loop never waited for the lock itself.
    assert ticked < 10.0
    assert seq == 2
    assert verify_file(path)[1].ok


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
def test_the_wal_is_checkpointed_while_appends_keep_coming(
    tmp_path: Path, synchronous: str
) -> None:
    """Whichever thread commits, the WAL is copied back and restarted instead of growing."""
    path = tmp_path / "j.db"
    pad = "w" * 40_000
    bound = 16 * 1024 * 1024

    async def scenario() -> int:
        largest = 0
        config = JournalConfig(synchronous=synchronous)  # type: ignore[arg-type]
        async with await Journal.open(path, config) as journal:
            for i in range(50 if synchronous == "FULL" else 900):
                if synchronous == "FULL":
                    await journal.append_batch([_event(payload={"pad": pad}) for _ in range(18)])
                else:
                    await journal.append(_event(payload={"i": i, "pad": pad}))
                largest = max(largest, os.path.getsize(f"{path}-wal"))
        return largest

    largest_wal = _run(scenario())
    written = int(_rows(path, "SELECT SUM(LENGTH(payload_json)) FROM journal_events")[0][0])
    assert written > 2 * bound
    assert largest_wal < bound
    assert verify_file(path)[1].ok


def _mark_replicated(path: Path) -> None:
    """What Litestream does to a database it starts replicating: it creates its lock table."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER)")
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize("why", ["configured", "replicated"])
def test_without_wal_checkpoints_the_writer_leaves_the_wal_to_another(
    tmp_path: Path, why: str
) -> None:
    """``wal_checkpoints=False``, or a file Litestream replicates: the writer never copies the
    WAL back, so it keeps growing until someone else (Litestream) checkpoints it."""
    path = tmp_path / "j.db"
    pad = "w" * 40_000
    if why == "replicated":
        _run(_append_all(path, [_event()]))
        _mark_replicated(path)

    async def scenario() -> int:
        config = JournalConfig(wal_checkpoints=why != "configured")
        async with await Journal.open(path, config) as journal:
            for i in range(300):
                await journal.append(_event(payload={"i": i, "pad": pad}))
            return os.path.getsize(f"{path}-wal")

    wal = _run(scenario())
    written = int(_rows(path, "SELECT SUM(LENGTH(payload_json)) FROM journal_events")[0][0])
    assert wal > written > 10 * 1024 * 1024  # every frame still in the WAL: none was reused
    assert verify_file(path)[1].ok


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
def test_a_writer_stops_checkpointing_once_litestream_starts(
    tmp_path: Path, synchronous: Synchronous
) -> None:
    """Litestream started beside a running writer: from its next checkpoint on, the writer
    leaves the WAL alone (a writer checkpointing under Litestream can corrupt the replica).
    Under FULL, SQLite's own checkpoints inside the commits stop too."""
    path = tmp_path / "j.db"
    pad = "w" * 40_000

    async def scenario() -> tuple[int, int]:
        async with await Journal.open(path, JournalConfig(synchronous=synchronous)) as journal:
            for i in range(600):  # 24 MB: the writer checkpoints and restarts the WAL
                await journal.append(_event(payload={"i": i, "pad": pad}))
            before = os.path.getsize(f"{path}-wal")
            _mark_replicated(path)
            for i in range(800):  # 32 MB more, none of it checkpointed
                await journal.append(_event(payload={"i": i, "pad": pad}))
            return before, os.path.getsize(f"{path}-wal")

    before, after = _run(scenario())
    assert before < 600 * len(pad)  # the writer checkpointed: WAL frames were reused
    # Every frame since the mark is still in the WAL (a checkpoint in flight at the mark may
    # have restarted it once); a writer still checkpointing keeps it near 16 MiB.
    assert after > 800 * len(pad)
    assert verify_file(path)[1].ok


def test_closed_journal_refuses_appends(tmp_path: Path) -> None:
    async def scenario() -> None:
        journal = await Journal.open(tmp_path / "j.db")
        await journal.close()
        await journal.close()
        with pytest.raises(JournalClosedError):
            await journal.append(_event())

    _run(scenario())


def test_mapping_input_and_unknown_fields(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Journal.open(tmp_path / "j.db") as journal:
            base = {
                "session_id": SESSION,
                "run_id": RUN,
                "kind": 3,
                "actor": "agent",
                "principal": "p",
                "device_id": "d",
                "channel": "cli",
                "payload": {"tool": "shell"},
            }
            result = await journal.append(base)
            assert result.seq == 1
            with pytest.raises(ValidationError) as caught:
                await journal.append({**base, "colour": "blue"})
            assert caught.value.field == "colour"
            missing = dict(base)
            del missing["principal"]
            with pytest.raises(ValidationError) as caught:
                await journal.append(missing)
            assert caught.value.field == "principal"

    _run(scenario())


def test_reader_tails_with_data_version(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            await journal.append(_event())
            async with await JournalReader.open(path) as reader:
                version = await reader.data_version()
                assert await reader.data_version() == version
                await journal.append_batch([_event(payload={"i": i}) for i in range(5)])
                assert await reader.data_version() != version
                head = await reader.head()
                assert head.seq == 6
                assert await reader.count() == 6
                page = await reader.events_after(1, limit=3)
                assert [event.seq for event in page] == [2, 3, 4]
                assert page[0].payload() == {"i": 0}
                assert page[0].kind_name == "message_received"
                assert [e.seq for e in await reader.last_events(2)] == [5, 6]
                assert (await reader.event(6)) is not None
                assert (await reader.event(99)) is None
                assert (await reader.verify()).ok

    _run(scenario())


def test_idle_reader_does_not_pin_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        journal = await Journal.open(path)
        async with journal, await JournalReader.open(path) as reader:
            await journal.append_batch([_event(payload={"i": i}) for i in range(200)])
            await reader.events_after(0, 50)
            await reader.head()
            conn = sqlite3.connect(path)
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            conn.close()
            assert busy == 0
            assert os.path.getsize(f"{path}-wal") == 0

    _run(scenario())


def test_reader_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    _run(_append_all(path, [_event()]))
    before = path.read_bytes()

    async def scenario() -> None:
        async with await JournalReader.open(path) as reader:
            await reader.events_after(0)
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                await reader._conn.execute("DELETE FROM journal_meta")

    _run(scenario())
    assert path.read_bytes() == before


def test_full_synchronous_mode_is_selectable(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path, JournalConfig(synchronous="FULL")) as journal:
            await journal.append(_event())
            level = journal._writer.conn.execute("PRAGMA synchronous").fetchone()[0]
            assert level == 2

    _run(scenario())
    with pytest.raises(ValueError, match="NORMAL or FULL"):
        JournalConfig(synchronous="OFF")  # type: ignore[arg-type]


def test_reader_survives_text_edited_to_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    _run(_append_all(path, [_event(payload={"text": "secret-looking words"}), _event()]))
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER journal_events_no_update")
    conn.execute(
        "UPDATE journal_events SET payload_json = CAST(X'7B2278223A22FF227D' AS TEXT) WHERE seq = 1"
    )
    conn.commit()
    conn.close()

    async def scenario() -> None:
        async with await JournalReader.open(path) as reader:
            first = (await reader.events_after(0, 1))[0]
            assert "\ufffd" in first.payload_json

    _run(scenario())
    _, report = verify_file(path)
    assert [(item.code.value, item.seq) for item in report.breaks] == [("hash_mismatch", 1)]
