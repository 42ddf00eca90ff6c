"""Tool jobs: states and moves, attempts and retries, output chunks, tail preview, paging,
sweeps, redaction and tampering, all checked against the chain."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from journal_core import Journal, JournalReader, verify_file
from journal_core import tool_jobs as tj
from journal_core.errors import (
    InvalidTransitionError,
    JobFinishedError,
    JobHeldError,
    RecordNotFoundError,
    RetryNotAllowedError,
    ValidationError,
)
from journal_core.ids import new_ulid
from journal_core.tool_jobs import ALLOWED_MOVES, JOB_STATES

FAKE_TOKEN = "ghp_" + "A1b2C3d4" * 4 + "E5F6"
T0 = 1_700_000_000_000
SESSION = new_ulid()
RUN = new_ulid()

#: Moves that take a fresh (queued) job to each state.
PATHS: dict[str, list[str]] = {
    "queued": [],
    "starting": ["starting"],
    "running": ["running"],
    "draining": ["running", "draining"],
    "cancelling": ["running", "cancelling"],
    "completed": ["running", "completed"],
    "failed": ["failed"],
    "cancelled": ["cancelled"],
    "expired": ["expired"],
    "orphaned": ["running", "orphaned"],
}


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _raw(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _snapshot(path: Path) -> list[Any]:
    """Everything a refused write must leave alone: chain head, row counts, every job row."""
    return [
        _raw(path, "SELECT seq, hash FROM journal_events ORDER BY seq DESC LIMIT 1"),
        _raw(path, "SELECT COUNT(*) FROM journal_events"),
        _raw(path, "SELECT COUNT(*) FROM tool_job_tail_entries"),
        _raw(path, "SELECT * FROM tool_jobs ORDER BY job_ulid"),
    ]


def _file_bytes(path: Path) -> bytes:
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def _ok(path: Path) -> Any:
    _, report = verify_file(path)
    assert report.ok, (report.breaks, report.record_breaks)
    return report


async def _new_job(journal: Journal, **overrides: Any) -> tj.ToolJob:
    fields: dict[str, Any] = {
        "owner_principal": "user:alice",
        "device_id": "laptop-1",
        "tool_name": "shell.exec",
        "backend": "local",
        "channel": "cli",
        "session_id": SESSION,
        "run_id": RUN,
        "max_attempts": 3,
        "retry_allowed": True,
    }
    fields.update(overrides)
    return await tj.create_job(journal, **fields)


async def _job_in(journal: Journal, state: str, **overrides: Any) -> tj.ToolJob:
    job = await _new_job(journal, **overrides)
    for step in PATHS[state]:
        job = await tj.transition_job(journal, job.job_id, step)
    assert job.state == state
    return job


def test_state_table_is_the_originals() -> None:
    assert set(ALLOWED_MOVES) == set(JOB_STATES)
    assert len(JOB_STATES) == 10
    assert ALLOWED_MOVES["expired"] == frozenset()
    assert ALLOWED_MOVES["completed"] == {"expired"}
    moves = sum(len(targets) for targets in ALLOWED_MOVES.values())
    assert moves == 5 + 5 + 5 + 5 + 3 + 1 + 2 + 2 + 0 + 5


def test_create_job_is_queued_chained_and_carries_its_identity(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            job = await _new_job(
                journal, tool_call_id="call-7", expires_at_unix_ms=T0, command="ls -la /tmp"
            )
            assert (job.state, job.attempt_count, job.max_attempts) == ("queued", 0, 3)
            assert job.retry_allowed is True
            assert job.legal_hold is False
            assert job.tail_preview == ""
            assert job.started_at_unix_ms is None
            assert job.completed_at_unix_ms is None
            assert job.expires_at_unix_ms == T0
            assert job.command_sha256 == hashlib.sha256(b"ls -la /tmp").hexdigest()
            assert not job.is_final
        async with await JournalReader.open(path) as reader:
            assert await tj.get_job(reader, job.job_id) == job
            event = (await reader.last_events(1))[0]
            assert event.kind_name == "record_written"
            assert (event.principal, event.device_id, event.channel) == (
                "user:alice",
                "laptop-1",
                "cli",
            )
            assert (event.session_id, event.run_id) == (SESSION, RUN)
            with pytest.raises(RecordNotFoundError):
                await tj.get_job(reader, new_ulid())

    _run(scenario())
    assert _ok(path).records_checked == 1


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("owner_principal", {"owner_principal": ""}),
        ("tool_name", {"tool_name": "a\nb"}),
        ("session_id", {"session_id": "not-a-ulid"}),
        ("max_attempts", {"max_attempts": 0}),
        ("retry_allowed", {"retry_allowed": 1}),
        ("expires_at_unix_ms", {"expires_at_unix_ms": -1}),
        ("command", {"command": ""}),
    ],
)
def test_create_job_validates_fields(tmp_path: Path, field: str, overrides: dict[str, Any]) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            with pytest.raises(ValidationError) as caught:
                await _new_job(journal, **overrides)
            assert caught.value.field == field

    _run(scenario())
    assert _raw(path, "SELECT COUNT(*) FROM journal_events") == [(0,)]


@pytest.mark.parametrize("from_state", JOB_STATES)
@pytest.mark.parametrize("to_state", JOB_STATES)
def test_every_move_is_allowed_or_refused_without_writing(
    tmp_path: Path, from_state: str, to_state: str
) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            job = await _job_in(journal, from_state)
            before = _snapshot(path)
            if to_state in ALLOWED_MOVES[from_state]:
                moved = await tj.transition_job(journal, job.job_id, to_state, reason="step")
                assert moved.state == to_state
                assert moved.state_reason == "step"
                assert _snapshot(path) != before
            else:
                with pytest.raises(InvalidTransitionError) as caught:
                    await tj.transition_job(journal, job.job_id, to_state, reason="step")
                assert not isinstance(caught.value, RetryNotAllowedError)
                assert (caught.value.from_state, caught.value.to_state) == (from_state, to_state)
                assert caught.value.allowed == sorted(ALLOWED_MOVES[from_state])
                assert _snapshot(path) == before

    _run(scenario())
    _ok(path)


def test_attempts_timestamps_and_retry_rules(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            job = await _new_job(journal, max_attempts=2)
            job = await tj.transition_job(journal, job.job_id, "starting", now_ms=T0)
            assert (job.attempt_count, job.started_at_unix_ms) == (1, T0)
            assert job.heartbeat_at_unix_ms == T0
            job = await tj.transition_job(journal, job.job_id, "running", now_ms=T0 + 5)
            assert (job.attempt_count, job.started_at_unix_ms) == (1, T0)  # same attempt
            job = await tj.transition_job(
                journal,
                job.job_id,
                "failed",
                error="exit 2: no such file",
                exit_code=2,
                now_ms=T0 + 10,
            )
            assert (job.completed_at_unix_ms, job.exit_code) == (T0 + 10, 2)
            assert job.last_error == "exit 2: no such file"

            job = await tj.transition_job(journal, job.job_id, "queued", reason="retry")
            assert job.state == "queued"
            assert job.started_at_unix_ms is None
            assert job.completed_at_unix_ms is None
            assert job.exit_code is None
            assert job.last_error == "exit 2: no such file"  # the last error stays visible
            job = await tj.transition_job(journal, job.job_id, "running", now_ms=T0 + 20)
            assert (job.attempt_count, job.started_at_unix_ms) == (2, T0 + 20)
            job = await tj.transition_job(journal, job.job_id, "orphaned")

            before = _snapshot(path)
            with pytest.raises(RetryNotAllowedError) as caught:
                await tj.transition_job(journal, job.job_id, "queued")
            error = caught.value
            assert isinstance(error, InvalidTransitionError)
            assert (error.attempt_count, error.max_attempts, error.retry_allowed) == (2, 2, True)
            assert "2 of its 2 attempts" in str(error)
            assert "queued" not in error.allowed
            assert _snapshot(path) == before

            once = await _job_in(journal, "cancelled", retry_allowed=False)
            before = _snapshot(path)
            with pytest.raises(RetryNotAllowedError) as caught:
                await tj.transition_job(journal, once.job_id, "queued")
            assert caught.value.retry_allowed is False
            assert "retry_allowed=False" in str(caught.value)
            assert _snapshot(path) == before

    _run(scenario())
    _ok(path)


def test_transition_validates_inputs(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            job = await _new_job(journal)
            cases: list[tuple[str, dict[str, Any]]] = [
                ("to_state", {"to_state": "done"}),
                ("exit_code", {"to_state": "failed", "exit_code": 2**40}),
                ("error", {"to_state": "failed", "error": "x" * (tj.MAX_ERROR_BYTES + 1)}),
                ("now_ms", {"to_state": "running", "now_ms": -5}),
                ("to_state", {"to_state": "expired", "error": "gone"}),
            ]
            before = _snapshot(path)
            for field, kwargs in cases:
                with pytest.raises(ValidationError) as caught:
                    await tj.transition_job(journal, job.job_id, **kwargs)
                assert caught.value.field == field
            with pytest.raises(RecordNotFoundError):
                await tj.transition_job(journal, new_ulid(), "running")
            assert _snapshot(path) == before

    _run(scenario())


def test_idempotency_key_returns_the_existing_job(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            first = await _new_job(journal, idempotency_key="req-1", command="make test")
            first = await tj.transition_job(journal, first.job_id, "running")
            before = _snapshot(path)
            again = await _new_job(journal, idempotency_key="req-1", command="make test")
            assert again == first
            assert _snapshot(path) == before
            for overrides in (
                {"owner_principal": "user:mallory"},
                {"tool_name": "browser.open"},
                {"command": "make deploy"},
            ):
                request = {"idempotency_key": "req-1", "command": "make test", **overrides}
                with pytest.raises(ValidationError) as caught:
                    await _new_job(journal, **request)
                assert caught.value.field == "idempotency_key"
            assert _snapshot(path) == before
            other = await _new_job(journal, idempotency_key="req-2", command="make test")
            assert other.job_id != first.job_id
            with pytest.raises(ValidationError) as caught:
                await _new_job(journal, job_id=first.job_id)
            assert caught.value.field == "job_id"

    _run(scenario())
    assert _raw(path, "SELECT COUNT(*) FROM tool_jobs") == [(2,)]
    _ok(path)


def test_output_chunk_limits(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    limit = tj.MAX_CHUNK_BYTES

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            job = await _job_in(journal, "running")
            text = await tj.append_output(journal, job.job_id, "stdout", "a" * limit)
            assert text.byte_len == limit
            raw = await tj.append_output(journal, job.job_id, "stderr", b"b" * limit)
            assert (raw.byte_len, raw.stream) == (limit, "stderr")
            bad = await tj.append_output(journal, job.job_id, "event", b"ok \xff\xfe end")
            assert bad.chunk == "ok \ufffd\ufffd end"
            assert bad.byte_len == len(bad.chunk.encode("utf-8"))

            before = _snapshot(path)
            refused: list[tuple[str, Any]] = [
                ("chunk", "a" * (limit + 1)),
                ("chunk", b"b" * (limit + 1)),
                ("chunk", "€" * (limit // 3 + 1)),  # fewer characters than bytes
                ("chunk", ""),
                ("chunk", "lone \ud800 surrogate"),
            ]
            for field, chunk in refused:
                with pytest.raises(ValidationError) as caught:
                    await tj.append_output(journal, job.job_id, "stdout", chunk)
                assert caught.value.field == field
            with pytest.raises(ValidationError) as caught:
                await tj.append_output(journal, job.job_id, "stdin", "x")
            assert caught.value.field == "stream"
            with pytest.raises(RecordNotFoundError):
                await tj.append_output(journal, new_ulid(), "stdout", "x")
            assert _snapshot(path) == before

    _run(scenario())
    _ok(path)


@pytest.mark.parametrize("state", sorted(tj.FINAL_STATES))
def test_final_jobs_take_no_output_or_heartbeat(tmp_path: Path, state: str) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            job = await _job_in(journal, state)
            before = _snapshot(path)
            with pytest.raises(JobFinishedError) as caught:
                await tj.append_output(journal, job.job_id, "stdout", "late")
            assert caught.value.state == state
            with pytest.raises(JobFinishedError):
                await tj.heartbeat(journal, job.job_id)
            assert _snapshot(path) == before

    _run(scenario())


def test_output_redacts_only_secret_spans(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    before_text = "".join(f"build step {i}: ok\n" for i in range(200))  # far past 240 chars
    secret_line = f"export GITHUB_TOKEN={FAKE_TOKEN}"
    after_text = "\nstep 201: deploying ✓ 日本\n" + "tail " * 100
    chunk = before_text + secret_line + after_text

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            job = await _job_in(journal, "running", command=f"deploy --token {FAKE_TOKEN}")
            entry = await tj.append_output(journal, job.job_id, "stdout", chunk)
            await tj.append_output(journal, job.job_id, "stderr", FAKE_TOKEN.encode())
            await tj.transition_job(
                journal,
                job.job_id,
                "failed",
                reason=f"killed; token={FAKE_TOKEN}",
                error=f"auth failed for {FAKE_TOKEN}",
            )
            assert FAKE_TOKEN not in entry.chunk
            assert entry.chunk.startswith(before_text + "export GITHUB_TOKEN")
            assert entry.chunk.endswith(after_text)
            assert entry.chunk_sha256 == hashlib.sha256(entry.chunk.encode()).hexdigest()
            assert entry.byte_len == len(entry.chunk.encode())
            assert (
                job.command_sha256
                != hashlib.sha256(f"deploy --token {FAKE_TOKEN}".encode()).hexdigest()
            )
            stored = _file_bytes(path)
            assert FAKE_TOKEN.encode() not in stored
            assert hashlib.sha256(chunk.encode()).hexdigest().encode() not in stored
            async with await JournalReader.open(path) as reader:
                final = await tj.get_job(reader, job.job_id)
                assert FAKE_TOKEN not in final.tail_preview
                assert FAKE_TOKEN not in (final.last_error or "")
                assert FAKE_TOKEN not in (final.state_reason or "")
                assert final.last_error is not None
                assert final.last_error.startswith("auth failed for ")

    _run(scenario())
    assert FAKE_TOKEN.encode() not in _file_bytes(path)
    _ok(path)


@pytest.mark.parametrize("pad", range(4))
def test_tail_preview_keeps_the_last_16_kib_on_character_boundaries(
    tmp_path: Path, pad: int
) -> None:
    path = tmp_path / "j.db"
    limit = tj.TAIL_PREVIEW_BYTES
    # 3- and 4-byte characters, shifted by ``pad`` so the byte window starts inside a character.
    chunks = ["x" * pad + "head\n", "€" * 3_000, "😀" * 2_000 + "\n", "a€😀" * 500]
    full = "".join(chunks)

    async def scenario() -> tj.ToolJob:
        async with await Journal.open(path) as journal:
            job = await _job_in(journal, "running")
            seen = ""
            for chunk in chunks:
                await tj.append_output(journal, job.job_id, "stdout", chunk)
                seen += chunk
                async with await JournalReader.open(path) as reader:
                    job = await tj.get_job(reader, job.job_id)
                assert job.tail_preview == tj.utf8_tail(seen, limit)
            return job

    job = _run(scenario())
    data = full.encode()
    preview = job.tail_preview.encode()
    assert len(data) > limit
    assert data.endswith(preview)
    assert limit - 3 <= len(preview) <= limit
    assert full.endswith(job.tail_preview)
    # The longest suffix that fits: one more character would break the limit.
    assert len(full[-(len(job.tail_preview) + 1) :].encode()) > limit
    _ok(path)


def test_utf8_tail_cuts_at_every_offset_inside_a_character() -> None:
    text = "ab€😀" * 50
    data = text.encode()
    cut_inside = 0
    for limit in range(1, len(data) + 2):
        tail = tj.utf8_tail(text, limit)
        encoded = tail.encode()
        assert len(encoded) <= limit
        assert text.endswith(tail)
        assert len(text[-(len(tail) + 1) :].encode()) > limit or tail == text
        if limit < len(data) and data[-limit] & 0xC0 == 0x80:
            cut_inside += 1
    assert cut_inside > 0


def test_read_output_pages_by_offset_with_limits(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            job = await _job_in(journal, "running")
            other = await _job_in(journal, "running")
            seqs = []
            for i in range(5):
                entry = await tj.append_output(journal, job.job_id, "stdout", f"{i}" * 100)
                await tj.append_output(journal, other.job_id, "stdout", "other")
                seqs.append(entry.seq)
            big = await tj.append_output(journal, job.job_id, "stderr", "B" * 1_000)
            many = [
                (await tj.append_output(journal, job.job_id, "event", f"e{i:02d}")).seq
                for i in range(50)
            ]
        async with await JournalReader.open(path) as reader:
            page = await tj.read_output(reader, job.job_id, max_bytes=250)
            assert [e.seq for e in page.entries] == seqs[:2]
            assert (page.next_offset, page.eof, page.truncated) == (seqs[1], False, True)
            assert all(e.job_id == job.job_id for e in page.entries)

            page = await tj.read_output(reader, job.job_id, after_seq=seqs[1], max_bytes=300)
            assert [e.seq for e in page.entries] == seqs[2:5]  # exactly 300 bytes fit
            assert page.truncated

            # An entry larger than max_bytes still comes, alone: paging always advances.
            page = await tj.read_output(reader, job.job_id, after_seq=seqs[4], max_bytes=10)
            assert [e.seq for e in page.entries] == [big.seq]
            assert page.entries[0].chunk == "B" * 1_000
            assert (page.eof, page.truncated) == (False, True)

            # The entry limit, across several metadata batches.
            page = await tj.read_output(reader, job.job_id, after_seq=big.seq, max_entries=40)
            assert [e.seq for e in page.entries] == many[:40]
            assert (page.next_offset, page.eof, page.truncated) == (many[39], False, True)
            page = await tj.read_output(
                reader, job.job_id, after_seq=page.next_offset, max_entries=10
            )
            assert [e.seq for e in page.entries] == many[40:]
            assert (page.next_offset, page.eof, page.truncated) == (many[-1], True, False)

            # Nothing new: an empty page that keeps the offset.
            page = await tj.read_output(reader, job.job_id, after_seq=many[-1])
            assert (page.entries, page.next_offset, page.eof, page.truncated) == (
                (),
                many[-1],
                True,
                False,
            )

            # Defaults read everything in one page here: 56 entries, < 16 KiB.
            page = await tj.read_output(reader, job.job_id)
            assert len(page.entries) == 56
            assert page.eof

            # Following the offsets yields every entry once, in order.
            collected: list[int] = []
            offset = 0
            while True:
                page = await tj.read_output(
                    reader, job.job_id, after_seq=offset, max_entries=7, max_bytes=150
                )
                collected.extend(e.seq for e in page.entries)
                offset = page.next_offset
                if page.eof:
                    break
            assert collected == [*seqs, big.seq, *many]

            with pytest.raises(RecordNotFoundError):
                await tj.read_output(reader, new_ulid())
            for kwargs in ({"max_entries": 1_001}, {"max_bytes": 0}, {"after_seq": -1}):
                with pytest.raises(ValidationError):
                    await tj.read_output(reader, job.job_id, **kwargs)

    _run(scenario())
    _ok(path)


def test_sweep_expired_expires_and_purges_output(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            due = T0 + 1_000
            done = await _job_in(journal, "running", expires_at_unix_ms=due)
            for i in range(3):
                await tj.append_output(journal, done.job_id, "stdout", f"line {i}\n")
            done = await tj.transition_job(journal, done.job_id, "completed", exit_code=0)
            queued = await _new_job(journal, expires_at_unix_ms=due)
            held = await _job_in(journal, "failed", expires_at_unix_ms=due)
            held = await tj.set_legal_hold(journal, held.job_id, True)
            referenced = await _job_in(journal, "cancelled", expires_at_unix_ms=due)
            referenced = await tj.acquire_ref(journal, referenced.job_id)
            live = await _job_in(journal, "running", expires_at_unix_ms=due)
            later = await _job_in(journal, "completed", expires_at_unix_ms=due + 1)
            forever = await _job_in(journal, "completed")

            assert await tj.sweep_expired(journal, now_ms=due - 1) == []
            swept = await tj.sweep_expired(journal, now_ms=due)
            assert sorted(swept) == sorted([done.job_id, queued.job_id])

            with pytest.raises(JobHeldError) as caught:
                await tj.transition_job(journal, held.job_id, "expired")
            assert caught.value.legal_hold
            with pytest.raises(JobHeldError):
                await tj.transition_job(journal, referenced.job_id, "expired")
            await tj.set_legal_hold(journal, held.job_id, False)
            await tj.release_ref(journal, referenced.job_id)
            with pytest.raises(ValidationError):
                await tj.release_ref(journal, referenced.job_id)
            swept = await tj.sweep_expired(journal, now_ms=due + 1)
            assert sorted(swept) == sorted([held.job_id, referenced.job_id, later.job_id])
            assert await tj.sweep_expired(journal, now_ms=due + 10**9) == []

            for action in (
                tj.acquire_ref(journal, done.job_id),
                tj.set_legal_hold(journal, done.job_id, True),
                tj.append_output(journal, done.job_id, "stdout", "late"),
            ):
                with pytest.raises(JobFinishedError):
                    await action
        async with await JournalReader.open(path) as reader:
            expired = await tj.get_job(reader, done.job_id)
            assert expired.state == "expired"
            assert expired.tail_preview == ""  # the preview is output too
            assert expired.completed_at_unix_ms == done.completed_at_unix_ms
            assert expired.exit_code == 0
            assert (await tj.read_output(reader, done.job_id)).entries == ()
            assert (await tj.get_job(reader, live.job_id)).state == "running"
            assert (await tj.get_job(reader, forever.job_id)).state == "completed"

    _run(scenario())
    assert _raw(path, "SELECT COUNT(*) FROM tool_job_tail_entries") == [(0,)]
    report = _ok(path)
    assert report.records_purged == 3


def test_tail_entries_stay_append_only_until_expiry(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            job = await _job_in(journal, "running")
            await tj.append_output(journal, job.job_id, "stdout", "kept")

    _run(scenario())
    conn = sqlite3.connect(path)
    try:
        for statement in (
            "DELETE FROM tool_job_tail_entries",
            "UPDATE tool_job_tail_entries SET chunk_redacted = 'x'",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)
    finally:
        conn.close()


def test_sweep_stale_orphans_silent_live_jobs(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    stale = tj.DEFAULT_STALE_AFTER_MS

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            running = await tj.transition_job(
                journal, (await _new_job(journal)).job_id, "running", now_ms=T0
            )
            starting = await tj.transition_job(
                journal, (await _new_job(journal)).job_id, "starting", now_ms=T0
            )
            talking = await tj.transition_job(
                journal, (await _new_job(journal)).job_id, "running", now_ms=T0
            )
            queued = await _new_job(journal)
            await _job_in(journal, "completed")

            assert await tj.sweep_stale(journal, now_ms=T0 + stale - 1) == []
            beat = await tj.heartbeat(journal, running.job_id, now_ms=T0 + 200_000)
            assert beat.heartbeat_at_unix_ms == T0 + 200_000
            await tj.append_output(journal, talking.job_id, "stdout", "alive", now_ms=T0 + 250_000)
            assert await tj.sweep_stale(journal, now_ms=T0 + stale) == [starting.job_id]
            assert await tj.sweep_stale(journal, now_ms=T0 + 200_000 + stale) == [running.job_id]
            assert await tj.sweep_stale(journal, now_ms=T0 + 250_000 + stale) == [talking.job_id]
            assert await tj.sweep_stale(journal, now_ms=T0 + 10**9) == []
        async with await JournalReader.open(path) as reader:
            orphan = await tj.get_job(reader, running.job_id)
            assert orphan.state == "orphaned"
            assert orphan.state_reason == f"no heartbeat for {stale} ms (stale after {stale} ms)"
            assert orphan.completed_at_unix_ms == T0 + 200_000 + stale
            assert (await tj.get_job(reader, queued.job_id)).state == "queued"
            orphans = await tj.list_jobs(reader, states=["orphaned"])
            assert len(orphans) == 3

    _run(scenario())
    _ok(path)


def test_list_jobs_newest_first_with_filters(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    ids = [f"01HZZZZZZZZZZZZZZZZZZZZZ{i:02d}" for i in range(6)]
    other_run = new_ulid()

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            for i, job_id in enumerate(ids):
                job = await _new_job(
                    journal,
                    job_id=job_id,
                    run_id=RUN if i % 2 else other_run,
                    session_id=SESSION if i < 4 else None,
                )
                if i % 3 == 0:
                    await tj.transition_job(journal, job.job_id, "running")
        async with await JournalReader.open(path) as reader:
            assert [j.job_id for j in await tj.list_jobs(reader)] == ids[::-1]
            assert [j.job_id for j in await tj.list_jobs(reader, limit=2)] == ids[:3:-1]
            by_run = await tj.list_jobs(reader, run_id=RUN)
            assert [j.job_id for j in by_run] == [ids[5], ids[3], ids[1]]
            by_session = await tj.list_jobs(reader, session_id=SESSION, states=["running"])
            assert [j.job_id for j in by_session] == [ids[3], ids[0]]
            both = await tj.list_jobs(reader, states=("queued", "running"))
            assert len(both) == 6
            bad: list[dict[str, Any]] = [
                {"states": []},
                {"states": "running"},
                {"states": ["done"]},
                {"limit": 0},
                {"run_id": "x"},
            ]
            for kwargs in bad:
                with pytest.raises(ValidationError):
                    await tj.list_jobs(reader, **kwargs)

    _run(scenario())


def test_record_events_carry_the_jobs_identity(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            job = await _job_in(
                journal, "running", owner_principal="agent:builder", device_id="ci-7", channel=None
            )
            await tj.append_output(journal, job.job_id, "stdout", "hi")
            await tj.heartbeat(journal, job.job_id)
        async with await JournalReader.open(path) as reader:
            events = await reader.events_after(0)
            assert len(events) == 5  # insert, running, tail entry, preview, heartbeat
            for event in events:
                assert (event.principal, event.device_id, event.channel) == (
                    "agent:builder",
                    "ci-7",
                    None,
                )
                assert (event.session_id, event.run_id) == (SESSION, RUN)
            tables = [event.payload()["table"] for event in events]  # type: ignore[index]
            assert tables.count("tool_job_tail_entries") == 1

    _run(scenario())
    _ok(path)


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, str, list[int]]:
    path = tmp_path / "j.db"

    async def scenario() -> tuple[str, list[int]]:
        async with await Journal.open(path) as journal:
            job = await _job_in(journal, "running")
            seqs = [
                (await tj.append_output(journal, job.job_id, "stdout", f"chunk {i}\n")).seq
                for i in range(3)
            ]
            return job.job_id, seqs

    job_id, seqs = _run(scenario())
    _ok(path)
    return path, job_id, seqs


def _tampered(path: Path, *statements: str) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    for trigger in ("tool_job_tail_entries_no_update", "tool_job_tail_entries_no_delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()
    _, report = verify_file(path)
    assert not report.ok
    assert not report.breaks  # the event chain itself is intact
    return [(item.code, item.table, item.key) for item in report.record_breaks]


def test_tamper_tail_chunk_text(recorded: tuple[Path, str, list[int]]) -> None:
    path, _, seqs = recorded
    edited = _tampered(
        path,
        f"UPDATE tool_job_tail_entries SET chunk_redacted = 'rm -rf /' WHERE seq = {seqs[1]}",
    )
    assert edited == [("record_digest_mismatch", "tool_job_tail_entries", str(seqs[1]))]


def test_tamper_tail_deleted_without_tombstone(recorded: tuple[Path, str, list[int]]) -> None:
    path, _, seqs = recorded
    removed = _tampered(path, f"DELETE FROM tool_job_tail_entries WHERE seq = {seqs[0]}")
    assert removed == [("record_missing", "tool_job_tail_entries", str(seqs[0]))]


def test_tamper_job_row(recorded: tuple[Path, str, list[int]]) -> None:
    path, job_id, _ = recorded
    edited = _tampered(path, "UPDATE tool_jobs SET state = 'completed', exit_code = 0")
    assert edited == [("record_digest_mismatch", "tool_jobs", job_id)]


def test_output_reads_backwards_from_the_end(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            job = await tj.create_job(
                journal,
                owner_principal="user:alice",
                device_id="laptop",
                tool_name="shell",
                backend="local",
            )
            await tj.transition_job(journal, job.job_id, "running")
            for index in range(30):
                await tj.append_output(journal, job.job_id, "stdout", f"line {index:02d}\n")
            async with await JournalReader.open(path) as reader:
                last = await tj.read_output_before(reader, job.job_id, max_entries=10)
                assert [e.chunk for e in last.entries] == [f"line {i:02d}\n" for i in range(20, 30)]
                assert not last.at_start
                earlier = await tj.read_output_before(
                    reader, job.job_id, before_seq=last.first_seq, max_bytes=16
                )
                assert [e.chunk for e in earlier.entries] == ["line 18\n", "line 19\n"]
                rest = await tj.read_output_before(reader, job.job_id, before_seq=earlier.first_seq)
                assert len(rest.entries) == 18
                assert rest.at_start

    asyncio.run(scenario())


class _PlanRecorder:
    """A ``Reads`` over a plain connection that keeps SQLite's plan of every query it runs."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        self.plans: list[list[str]] = []

    async def fetchall(self, query: str, params: tuple[object, ...] = ()) -> list[Any]:
        plan = self.conn.execute(f"EXPLAIN QUERY PLAN {query}", params).fetchall()
        self.plans.append([str(row[3]) for row in plan])
        return self.conn.execute(query, params).fetchall()

    def transcript_match(self, text: str) -> tuple[str, tuple[object, ...]] | None:
        raise AssertionError("not used by tool jobs")


def test_job_lists_and_the_expiry_sweep_go_through_indexes(tmp_path: Path) -> None:
    # At 4.5M events (120,000 jobs) the newest-first list sorted every job, 16 KiB output
    # previews included, on every load of the inspector's Jobs pane: 2 s.
    path = tmp_path / "j.db"
    statements: list[str] = []

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            for _ in range(3):
                await _new_job(journal)
            journal._writer.conn.set_trace_callback(statements.append)
            await tj.sweep_expired(journal, now_ms=T0)
            journal._writer.conn.set_trace_callback(None)
        recorder = _PlanRecorder(path)
        assert len(await tj.list_jobs(recorder)) == 3
        assert len(await tj.list_jobs(recorder, session_id=SESSION)) == 3
        newest, of_session = recorder.plans
        # Newest first: read in index order, LIMIT rows and no more, never sorted whole.
        assert newest == ["SCAN tool_jobs USING INDEX tool_jobs_created"], newest
        assert of_session == ["SEARCH tool_jobs USING INDEX tool_jobs_session (session_ulid=?)"]
        [sweep] = [sql for sql in statements if "expires_at_unix_ms <=" in sql]
        plan = recorder.conn.execute(f"EXPLAIN QUERY PLAN {sweep}").fetchall()
        assert "tool_jobs_expires" in str(plan), plan
        recorder.conn.close()

    _run(scenario())
