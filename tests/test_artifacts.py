"""Tool result artifacts: redaction, digest-checked and audited reads, retention, legal hold."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Awaitable
from pathlib import Path

import pytest
from journal_helpers import assert_verified, file_bytes, read, run

from journal_core import Journal, JournalReader, ValidationError, verify_file
from journal_core.artifacts import (
    MAX_ARTIFACT_BYTES,
    RETENTION_READER,
    Artifact,
    get_artifact_meta,
    is_text_mime,
    list_artifacts,
    read_artifact,
    read_audit,
    request_purge,
    run_artifact_retention,
    set_legal_hold,
    store_artifact,
)
from journal_core.errors import ArtifactUnavailableError, RecordNotFoundError

NOW = 1_750_000_000_000
FAKE_TOKEN = "ghp_" + "A1b2C3d4" * 4 + "E5F6"
SESSION = "01JAAAAAAAAAAAAAAAAAAAAAAA"
RUN = "01JBBBBBBBBBBBBBBBBBBBBBBB"
JOB = "01JCCCCCCCCCCCCCCCCCCCCCCC"
MISSING = "01JDDDDDDDDDDDDDDDDDDDDDDD"


def store(journal: Journal, content: bytes | str, **fields: object) -> Awaitable[Artifact]:
    arguments: dict[str, object] = {
        "tool_name": "shell",
        "mime_type": "application/octet-stream",
        "sensitivity": "internal",
        "now_ms": NOW,
    }
    arguments.update(fields)
    return store_artifact(journal, content=content, **arguments)  # type: ignore[arg-type]


async def refused(journal: Journal, artifact_id: str, **fields: object) -> str:
    with pytest.raises(ArtifactUnavailableError) as caught:
        await read_artifact(journal, artifact_id, reader_name="agent", **fields)  # type: ignore[arg-type]
    assert caught.value.artifact_id == artifact_id
    assert caught.value.reason in str(caught.value)
    return caught.value.reason


# --- store and read ---------------------------------------------------------------------------


def test_binary_roundtrip_with_digest_and_audit(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    content = bytes(range(256)) * 10 + FAKE_TOKEN.encode()

    async def scenario(journal: Journal) -> Artifact:
        meta = await store(
            journal,
            content,
            session_id=SESSION,
            run_id=RUN,
            job_id=JOB,
            sensitivity="secret",
            expires_at_unix_ms=NOW + 1_000,
        )
        data = await read_artifact(
            journal, meta.artifact_id, reader_name="tui", channel="local", now_ms=NOW
        )
        assert data == content
        return meta

    meta = run(path, scenario)
    assert meta.sha256 == hashlib.sha256(content).hexdigest()
    assert meta.byte_len == len(content)
    assert (meta.session_id, meta.run_id, meta.job_id) == (SESSION, RUN, JOB)
    assert (meta.legal_hold, meta.purge_requested) == (False, False)
    assert meta.created_at_unix_ms == NOW

    async def reads(reader: JournalReader) -> None:
        assert await get_artifact_meta(reader, meta.artifact_id) == meta
        audit = await read_audit(reader, meta.artifact_id)
        assert [(a.reader, a.channel, a.outcome, a.reason) for a in audit] == [
            ("tui", "local", "ok", None)
        ]

    read(path, reads)
    assert_verified(path)


@pytest.mark.parametrize(
    ("mime", "content"),
    [
        ("text/plain", f"token={FAKE_TOKEN} done\n".encode()),
        ("text/plain; charset=utf-8", f"export GH={FAKE_TOKEN}".encode()),
        ("application/json", f'{{"out": "{FAKE_TOKEN}", "ok": true}}'.encode()),
        ("application/vnd.tool+json", f'{{"out": "{FAKE_TOKEN}"}}'.encode()),
        ("application/octet-stream", f"as str {FAKE_TOKEN}"),
    ],
)
def test_text_artifacts_are_redacted(tmp_path: Path, mime: str, content: bytes | str) -> None:
    path = tmp_path / "j.db"

    async def scenario(journal: Journal) -> tuple[bytes, bytes, Artifact]:
        meta = await store(journal, content, mime_type=mime)
        data = await read_artifact(journal, meta.artifact_id, reader_name="agent")
        return data, file_bytes(path), meta

    data, raw, meta = run(path, scenario)
    assert FAKE_TOKEN.encode() not in data
    assert FAKE_TOKEN.encode() not in raw
    assert meta.sha256 == hashlib.sha256(data).hexdigest()
    assert meta.byte_len == len(data)
    assert_verified(path)


def test_text_mime_detection() -> None:
    assert is_text_mime("text/csv")
    assert is_text_mime("application/x-ndjson")
    assert is_text_mime("image/svg+xml")
    assert not is_text_mime("image/png")
    assert not is_text_mime("application/octet-stream")


@pytest.mark.parametrize(
    ("field", "fields"),
    [
        ("content", {"content": b"\xff\xfe not utf-8", "mime_type": "text/plain"}),
        ("content", {"content": b"x" * (MAX_ARTIFACT_BYTES + 1)}),
        ("content", {"content": 12}),
        ("mime_type", {"mime_type": "plain"}),
        ("mime_type", {"mime_type": ""}),
        ("sensitivity", {"sensitivity": "top"}),
        ("tool_name", {"tool_name": ""}),
        ("session_id", {"session_id": "x"}),
        ("expires_at_unix_ms", {"expires_at_unix_ms": -1}),
        ("legal_hold", {"legal_hold": 1}),
        ("artifact_id", {"artifact_id": "x"}),
    ],
)
def test_invalid_store_names_the_field(
    tmp_path: Path, field: str, fields: dict[str, object]
) -> None:
    path = tmp_path / "j.db"

    async def scenario(journal: Journal) -> None:
        content = fields.pop("content", b"ok")
        with pytest.raises(ValidationError) as caught:
            await store(journal, content, **fields)  # type: ignore[arg-type]
        assert caught.value.field == field

    run(path, scenario)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM journal_events").fetchone()[0] == 0


def test_limit_sized_and_empty_artifacts_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario(journal: Journal) -> None:
        big = await store(journal, b"\x01" * MAX_ARTIFACT_BYTES)
        empty = await store(journal, b"", mime_type="text/plain")
        assert len(await read_artifact(journal, big.artifact_id, reader_name="a")) == big.byte_len
        assert await read_artifact(journal, empty.artifact_id, reader_name="a") == b""
        with pytest.raises(ValidationError):
            await store(journal, b"again", artifact_id=big.artifact_id)

    run(path, scenario)
    assert_verified(path)


# --- refused reads ----------------------------------------------------------------------------


def test_digest_checked_on_read_after_raw_file_tamper(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    marker = b"OUTPUT-MARKER-7f3a9c"
    content = b"tool says: " + marker + b" end"
    meta = run(path, lambda journal: store(journal, content))
    raw = path.read_bytes()
    assert raw.count(marker) == 1
    tampered = raw.replace(marker, b"OUTPUT-MARKER-7f3a9X")
    path.write_bytes(tampered)

    async def scenario(journal: Journal) -> str:
        return await refused(journal, meta.artifact_id)

    assert run(path, scenario) == "digest_mismatch"
    _, report = verify_file(path)
    assert [(b.code, b.table, b.key) for b in report.record_breaks] == [
        ("record_digest_mismatch", "tool_result_artifacts", meta.artifact_id)
    ]

    async def reads(reader: JournalReader) -> None:
        audit = await read_audit(reader, meta.artifact_id)
        assert [(a.outcome, a.reason) for a in audit] == [("refused", "digest_mismatch")]

    read(path, reads)


def test_rewritten_content_with_matching_sha256_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    meta = run(path, lambda journal: store(journal, b"original"))
    forged = b"forged!!"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE tool_result_artifacts SET content = ?, sha256 = ? WHERE artifact_ulid = ?",
            (forged, hashlib.sha256(forged).hexdigest(), meta.artifact_id),
        )
    assert run(path, lambda journal: refused(journal, meta.artifact_id)) == "digest_mismatch"
    _, report = verify_file(path)
    assert [(b.code, b.key) for b in report.record_breaks] == [
        ("record_digest_mismatch", meta.artifact_id)
    ]


def test_expired_purged_and_missing_reads_are_refused_and_audited(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario(journal: Journal) -> tuple[str, str]:
        expiring = await store(journal, b"e", expires_at_unix_ms=NOW + 100)
        doomed = await store(journal, b"p")
        assert (
            await read_artifact(journal, expiring.artifact_id, reader_name="agent", now_ms=NOW + 99)
            == b"e"
        )
        assert await refused(journal, expiring.artifact_id, now_ms=NOW + 100) == "expired"
        marked = await request_purge(journal, doomed.artifact_id)
        assert marked.purge_requested
        assert await request_purge(journal, doomed.artifact_id) == marked
        assert await refused(journal, doomed.artifact_id, channel="cli") == "purged"
        assert await refused(journal, MISSING) == "not_found"
        removed = await run_artifact_retention(journal, now_ms=NOW + 100)
        assert removed == [doomed.artifact_id, expiring.artifact_id]
        # Gone from the table, yet a later read knows it was purged, not never stored.
        assert await refused(journal, expiring.artifact_id, now_ms=NOW) == "purged"
        return expiring.artifact_id, doomed.artifact_id

    expiring_id, doomed_id = run(path, scenario)

    async def reads(reader: JournalReader) -> None:
        expiring_audit = await read_audit(reader, expiring_id)
        assert [(a.reader, a.outcome, a.reason) for a in expiring_audit] == [
            ("agent", "ok", None),
            ("agent", "refused", "expired"),
            (RETENTION_READER, "purged", "expired"),
            ("agent", "refused", "purged"),
        ]
        doomed_audit = await read_audit(reader, doomed_id)
        assert [(a.channel, a.outcome, a.reason) for a in doomed_audit] == [
            ("cli", "refused", "purged"),
            (None, "purged", "purge_requested"),
        ]
        missing = await read_audit(reader, MISSING)
        assert [(a.outcome, a.reason) for a in missing] == [("refused", "not_found")]
        with pytest.raises(RecordNotFoundError):
            await get_artifact_meta(reader, expiring_id)

    read(path, reads)
    _, report = verify_file(path)
    assert report.ok, report.to_dict()
    assert report.records_purged == 2


# --- retention and legal hold -----------------------------------------------------------------


def test_retention_respects_legal_hold_and_removes_content(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    held_marker = b"HELD-CONTENT-91b2"
    gone_marker = b"GONE-CONTENT-4c8d"

    async def setup(journal: Journal) -> list[Artifact]:
        return [
            await store(journal, held_marker, expires_at_unix_ms=NOW, legal_hold=True),
            await store(journal, gone_marker, expires_at_unix_ms=NOW),
            await store(journal, b"fresh", expires_at_unix_ms=NOW + 1),
            await store(journal, b"forever"),
            await store(journal, b"held-then-requested"),
        ]

    held, gone, fresh, forever, requested = run(path, setup)
    assert held_marker in file_bytes(path)
    assert gone_marker in file_bytes(path)

    async def sweep(journal: Journal) -> list[str]:
        await set_legal_hold(journal, requested.artifact_id, True)
        await request_purge(journal, requested.artifact_id)
        return await run_artifact_retention(journal, now_ms=NOW)

    assert run(path, sweep) == [gone.artifact_id]
    raw = file_bytes(path)
    assert gone_marker not in raw
    assert held_marker in raw
    assert_verified(path)

    async def reads(reader: JournalReader) -> None:
        kept = {a.artifact_id for a in await list_artifacts(reader)}
        assert kept == {
            held.artifact_id,
            fresh.artifact_id,
            forever.artifact_id,
            requested.artifact_id,
        }

    read(path, reads)

    async def release(journal: Journal) -> list[str]:
        assert (await set_legal_hold(journal, held.artifact_id, True)).legal_hold
        released = await set_legal_hold(journal, held.artifact_id, False)
        assert not released.legal_hold
        await set_legal_hold(journal, requested.artifact_id, False)
        return await run_artifact_retention(journal, now_ms=NOW)

    assert sorted(run(path, release)) == sorted([held.artifact_id, requested.artifact_id])
    assert held_marker not in file_bytes(path)
    _, report = verify_file(path)
    assert report.ok, report.to_dict()
    assert report.records_purged == 3


def test_updates_of_missing_artifacts_raise(tmp_path: Path) -> None:
    async def scenario(journal: Journal) -> None:
        with pytest.raises(RecordNotFoundError):
            await request_purge(journal, MISSING)
        with pytest.raises(RecordNotFoundError):
            await set_legal_hold(journal, MISSING, True)
        with pytest.raises(ValidationError):
            await set_legal_hold(journal, MISSING, 1)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            await read_artifact(journal, "not-a-ulid", reader_name="agent")
        assert await run_artifact_retention(journal) == []

    run(tmp_path / "j.db", scenario)


def test_list_filters_and_meta_reads_leave_no_audit(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def setup(journal: Journal) -> list[Artifact]:
        return [
            await store(journal, b"1", session_id=SESSION, run_id=RUN, now_ms=NOW),
            await store(journal, b"2", session_id=SESSION, job_id=JOB, now_ms=NOW + 1),
            await store(journal, b"3", now_ms=NOW + 2),
        ]

    first, second, third = run(path, setup)

    async def reads(reader: JournalReader) -> None:
        ids = [a.artifact_id for a in await list_artifacts(reader)]
        assert ids == [third.artifact_id, second.artifact_id, first.artifact_id]
        by_session = await list_artifacts(reader, session_id=SESSION)
        assert [a.artifact_id for a in by_session] == [second.artifact_id, first.artifact_id]
        assert [a.artifact_id for a in await list_artifacts(reader, run_id=RUN)] == [
            first.artifact_id
        ]
        assert [a.artifact_id for a in await list_artifacts(reader, job_id=JOB)] == [
            second.artifact_id
        ]
        assert len(await list_artifacts(reader, limit=1)) == 1
        await get_artifact_meta(reader, first.artifact_id)
        assert await read_audit(reader, first.artifact_id) == []

    read(path, reads)
    assert_verified(path)
