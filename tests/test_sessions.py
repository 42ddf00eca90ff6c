"""Sessions, runs and their lifecycle; transcripts (tape); records checked against the chain."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from journal_core import (
    InvalidTransitionError,
    Journal,
    JournalReader,
    RecordNotFoundError,
    ValidationError,
    sessions,
    tape,
    verify_file,
)
from journal_core.sessions import ALLOWED_MOVES, RUN_STATES

FAKE_TOKEN = "ghp_" + "A1b2C3d4" * 4 + "E5F6"


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _session(journal: Journal, key: str = "chat:1") -> sessions.Session:
    return await sessions.create_session(
        journal, session_key=key, principal="user:alice", device_id="laptop", channel="cli"
    )


async def _run_in(journal: Journal, state: str) -> sessions.Run:
    """A new run driven along the happy path to ``state``."""
    session = await _session(journal, f"key-{state}")
    run = await sessions.start_run(journal, session.session_id)
    path = {"pending": [], "accepted": ["accepted"], "in_progress": ["accepted", "in_progress"]}
    for step in path.get(state, ["accepted", "in_progress", state]):
        run = await sessions.transition_run(journal, run.run_id, step)
    return run


def _raw(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def test_session_and_run_lifecycle_is_recorded_and_chained(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            session = await _session(journal)
            run = await sessions.start_run(journal, session.session_id)
            assert run.state == "pending"
            for state in ("accepted", "in_progress", "done"):
                run = await sessions.transition_run(journal, run.run_id, state, reason="step")
            assert run.started_at_unix_ms is not None
            assert run.completed_at_unix_ms is not None
        async with await JournalReader.open(path) as reader:
            stored = await sessions.get_session(reader, session.session_id)
            assert stored.last_run_id == run.run_id
            lifecycle = await sessions.run_lifecycle(reader, run.run_id)
            assert [(e.from_state, e.to_state) for e in lifecycle] == [
                (None, "pending"),
                ("pending", "accepted"),
                ("accepted", "in_progress"),
                ("in_progress", "done"),
            ]
            assert [r.run_id for r in await sessions.list_runs(reader, session.session_id)] == [
                run.run_id
            ]

    _run(scenario())
    _, report = verify_file(path)
    assert report.ok
    assert report.records_checked == 1 + 1 + 4


@pytest.mark.parametrize("from_state", RUN_STATES)
@pytest.mark.parametrize("to_state", RUN_STATES)
def test_every_move_is_allowed_or_refused_without_writing(
    tmp_path: Path, from_state: str, to_state: str
) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            if from_state == "failed":
                run = await _run_in(journal, "in_progress")
                run = await sessions.transition_run(journal, run.run_id, "failed")
            else:
                run = await _run_in(journal, from_state)
            before = _raw(path, "SELECT MAX(seq) FROM journal_events")
            if to_state in ALLOWED_MOVES[from_state]:
                moved = await sessions.transition_run(journal, run.run_id, to_state)
                assert moved.state == to_state
            else:
                with pytest.raises(InvalidTransitionError) as caught:
                    await sessions.transition_run(journal, run.run_id, to_state)
                assert (caught.value.from_state, caught.value.to_state) == (from_state, to_state)
                assert _raw(path, "SELECT MAX(seq) FROM journal_events") == before

    _run(scenario())
    assert verify_file(path)[1].ok


def test_accepted_may_be_cancelled_or_fail_and_finals_are_final() -> None:
    assert ALLOWED_MOVES["accepted"] >= {"cancelled", "failed"}
    assert all(not ALLOWED_MOVES[state] for state in ("done", "failed", "cancelled"))


def test_tokens_cancel_requests_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> sessions.Run:
        async with await Journal.open(path) as journal:
            run = await _run_in(journal, "in_progress")
            run = await sessions.add_tokens(journal, run.run_id, prompt_tokens=100)
            run = await sessions.add_tokens(
                journal, run.run_id, prompt_tokens=20, completion_tokens=5
            )
            assert (run.prompt_tokens, run.completion_tokens, run.total_tokens) == (120, 5, 125)
            run = await sessions.request_cancel(journal, run.run_id, f"leaked {FAKE_TOKEN}")
            assert run.cancel_requested
            run = await sessions.transition_run(
                journal, run.run_id, "failed", error=f"auth failed with {FAKE_TOKEN} in header"
            )
            with pytest.raises(InvalidTransitionError):
                await sessions.request_cancel(journal, run.run_id, "too late")
            with pytest.raises(ValidationError):
                await sessions.add_tokens(journal, run.run_id, prompt_tokens=-1)
            return run

    run = _run(scenario())
    assert run.last_error is not None
    assert "auth failed with" in run.last_error
    assert FAKE_TOKEN not in run.last_error
    assert run.cancel_reason is not None
    assert FAKE_TOKEN not in run.cancel_reason
    for suffix in ("", "-wal"):
        file = Path(f"{path}{suffix}")
        if file.exists():
            assert FAKE_TOKEN.encode() not in file.read_bytes()
    assert verify_file(path)[1].ok


def test_titles_labels_and_archiving(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Journal.open(tmp_path / "j.db") as journal:
            session = await _session(journal, "telegram:chat:42")
            assert session.title == "telegram:chat:42"
            session = await sessions.update_session(
                journal, session.session_id, auto_title="Deploy the staging cluster " * 5
            )
            assert session.title.startswith("Deploy the staging cluster")
            assert len(session.title) == 72
            session = await sessions.update_session(journal, session.session_id, label="Deploy")
            assert session.title == "Deploy"
            await sessions.update_session(journal, session.session_id, archived=True)
            async with await JournalReader.open(journal.info.path) as reader:
                assert await sessions.list_sessions(reader) == []
                assert len(await sessions.list_sessions(reader, include_archived=True)) == 1
            with pytest.raises(ValidationError):
                await sessions.update_session(journal, session.session_id)

    _run(scenario())


def test_invalid_inputs_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Journal.open(tmp_path / "j.db") as journal:
            session = await _session(journal)
            with pytest.raises(ValidationError) as caught:
                await _session(journal)
            assert caught.value.field == "session_key"
            with pytest.raises(ValidationError):
                await sessions.start_run(journal, session.session_id, origin_kind="alien")
            with pytest.raises(RecordNotFoundError):
                await sessions.start_run(journal, "01ARZ3NDEKTSV4RRFFQ69G5FAV")
            run = await sessions.start_run(journal, session.session_id)
            with pytest.raises(ValidationError):
                await sessions.transition_run(journal, run.run_id, "finished")
            with pytest.raises(RecordNotFoundError):
                await sessions.transition_run(journal, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "accepted")

    _run(scenario())


def test_tape_pages_by_seq_with_entry_and_byte_limits(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            run = await _run_in(journal, "in_progress")
            await tape.append_entry(journal, run.run_id, "message.received", {"text": "hi"})
            written = await tape.append_entries(
                journal, run.run_id, [("model_token", {"text": f"t{i}"}) for i in range(30)]
            )
            assert [entry.seq for entry in written] == list(range(2, 32))
            async with await JournalReader.open(path) as reader:
                page = await tape.read_tape(reader, run.run_id, max_entries=10)
                assert [e.seq for e in page.entries] == list(range(1, 11))
                assert (page.next_after_seq, page.eof, page.truncated) == (10, False, True)
                page = await tape.read_tape(reader, run.run_id, after_seq=25)
                assert [e.seq for e in page.entries] == list(range(26, 32))
                assert page.eof
                small = await tape.read_tape(reader, run.run_id, max_bytes=30)
                assert len(small.entries) == 2
                assert small.truncated
                one = await tape.read_tape(reader, run.run_id, max_bytes=1)
                assert len(one.entries) == 1
                empty = await tape.read_tape(reader, run.run_id, after_seq=31)
                assert (empty.entries, empty.next_after_seq, empty.eof) == ([], 31, True)

    _run(scenario())
    assert verify_file(path)[1].ok


def test_session_transcript_follows_runs_in_order_and_tails(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            session = await _session(journal)
            first = await sessions.start_run(journal, session.session_id)
            await tape.append_entries(
                journal, first.run_id, [("status", {"n": i}) for i in range(3)]
            )
            await asyncio.sleep(0.002)
            second = await sessions.start_run(journal, session.session_id)
            await tape.append_entries(
                journal, second.run_id, [("status", {"n": i}) for i in range(2)]
            )
            async with await JournalReader.open(path) as reader:
                page = await tape.session_transcript(reader, session.session_id)
                assert [(e.run_id, e.seq) for e in page.entries] == [
                    (first.run_id, 1),
                    (first.run_id, 2),
                    (first.run_id, 3),
                    (second.run_id, 1),
                    (second.run_id, 2),
                ]
                assert page.eof
                await tape.append_entry(journal, second.run_id, "message.replied", {"text": "ok"})
                new = await tape.session_transcript(reader, session.session_id, after=page.cursor)
                assert [(e.run_id, e.seq) for e in new.entries] == [(second.run_id, 3)]
                part = await tape.session_transcript(reader, session.session_id, max_entries=2)
                rest = await tape.session_transcript(
                    reader, session.session_id, after=part.cursor, max_entries=10
                )
                assert len(part.entries) + len(rest.entries) == 6

    _run(scenario())


def test_tape_redacts_and_validates(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            run = await _run_in(journal, "in_progress")
            entry = await tape.append_entry(
                journal,
                run.run_id,
                "tool_proposal",
                {"tool": "shell", "args": {"cmd": f"git push https://x:{FAKE_TOKEN}@github.com"}},
            )
            assert FAKE_TOKEN not in entry.payload_json
            assert "git push" in entry.payload_json
            with pytest.raises(ValidationError) as caught:
                await tape.append_entry(journal, run.run_id, "gossip", {})
            assert caught.value.field == "event_type"
            with pytest.raises(RecordNotFoundError):
                await tape.append_entry(journal, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "status", {})

    _run(scenario())
    for suffix in ("", "-wal"):
        file = Path(f"{path}{suffix}")
        if file.exists():
            assert FAKE_TOKEN.encode() not in file.read_bytes()


def _tampered(path: Path, *statements: str) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    for trigger in (
        "orchestrator_tape_no_update",
        "orchestrator_tape_no_delete",
        "run_lifecycle_events_no_delete",
    ):
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()
    _, report = verify_file(path)
    assert not report.ok
    assert not report.breaks  # the event chain itself is intact
    return [(item.code, item.table) for item in report.record_breaks]


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            run = await _run_in(journal, "in_progress")
            await tape.append_entries(journal, run.run_id, [("status", {"n": i}) for i in range(5)])
            await sessions.add_tokens(journal, run.run_id, prompt_tokens=7)

    _run(scenario())
    assert verify_file(path)[1].ok
    return path


def test_tamper_run_row(recorded: Path) -> None:
    assert _tampered(recorded, "UPDATE orchestrator_runs SET total_tokens = 0") == [
        ("record_digest_mismatch", "orchestrator_runs")
    ]


def test_tamper_session_label(recorded: Path) -> None:
    assert _tampered(recorded, "UPDATE orchestrator_sessions SET session_label = 'forged'") == [
        ("record_digest_mismatch", "orchestrator_sessions")
    ]


def test_tamper_tape_payload(recorded: Path) -> None:
    assert _tampered(
        recorded, "UPDATE orchestrator_tape SET payload_json = '{\"n\":99}' WHERE seq = 3"
    ) == [("record_digest_mismatch", "orchestrator_tape")]


def test_tamper_tape_delete(recorded: Path) -> None:
    assert _tampered(recorded, "DELETE FROM orchestrator_tape WHERE seq = 2") == [
        ("record_missing", "orchestrator_tape")
    ]


def test_tamper_run_rolled_back_to_an_older_state(recorded: Path) -> None:
    older = _raw(
        recorded,
        "SELECT seq FROM journal_events WHERE kind = 100 AND payload_json LIKE"
        " '%orchestrator_runs%' ORDER BY seq LIMIT 1",
    )[0][0]
    breaks = _tampered(recorded, f"UPDATE orchestrator_runs SET event_seq = {older}")
    assert ("record_stale", "orchestrator_runs") in breaks


def test_tamper_lifecycle_delete(recorded: Path) -> None:
    assert _tampered(recorded, "DELETE FROM run_lifecycle_events WHERE id = 2") == [
        ("record_missing", "run_lifecycle_events")
    ]


def test_tamper_forged_row_without_event(recorded: Path) -> None:
    breaks = _tampered(
        recorded,
        "INSERT INTO orchestrator_tape SELECT run_ulid, 99, 'status', '{}', 0, 999999"
        " FROM orchestrator_runs LIMIT 1",
    )
    assert breaks == [("record_event_missing", "orchestrator_tape")]


def test_tamper_row_pointing_at_another_event(recorded: Path) -> None:
    breaks = _tampered(recorded, "UPDATE orchestrator_tape SET event_seq = 1 WHERE seq = 4")
    assert ("record_event_mismatch", "orchestrator_tape") in breaks


def test_session_summaries_filter_by_state_and_search_transcripts(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            done = await _run_in(journal, "done")
            await sessions.add_tokens(journal, done.run_id, prompt_tokens=10, completion_tokens=2)
            await tape.append_entry(
                journal, done.run_id, "message.received", {"text": "rotate the kubelet certs"}
            )
            failed = await _run_in(journal, "in_progress")
            await sessions.transition_run(journal, failed.run_id, "failed", error="disk full")
            labelled = await _session(journal, "cli:label")
            await sessions.update_session(journal, labelled.session_id, label="Quarterly report")
            async with await JournalReader.open(path) as reader:
                every = await sessions.session_summaries(reader)
                assert len(every) == 3
                assert every[0].session.session_id == labelled.session_id  # most recent first
                by_state = await sessions.session_summaries(reader, state="failed")
                assert [s.last_run_state for s in by_state] == ["failed"]
                assert by_state[0].last_error == "disk full"
                found = await sessions.session_summaries(reader, text="kubelet certs")
                assert [s.session.session_id for s in found] == [done.session_id]
                assert (found[0].runs, found[0].total_tokens) == (1, 12)
                assert [
                    s.title for s in await sessions.session_summaries(reader, text="quarterly")
                ] == ["Quarterly report"]
                for hostile in ('"', "NEAR(", "*", "a OR", "%", "_", "\\"):
                    await sessions.session_summaries(reader, text=hostile)
                with pytest.raises(ValidationError):
                    await sessions.session_summaries(reader, state="sleeping")

    _run(scenario())
