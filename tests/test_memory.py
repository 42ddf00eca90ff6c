"""Memory items and vectors: redaction, vector encoding, hybrid search, retention, purges."""

from __future__ import annotations

import asyncio
import hashlib
import math
import sqlite3
import struct
from collections.abc import Awaitable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from journal_helpers import assert_verified, file_bytes, read, run

from journal_core import Journal, JournalReader, ValidationError, verify_file
from journal_core.fts import RESTART_LEVELS, STRUCTURE_LEVEL_LIMIT, structure_levels
from journal_core.health import HealthReport, health_report
from journal_core.memory import (
    DEFAULT_TTL_MS,
    HASH_EMBEDDING_MODEL,
    MEMORY_RETENTION_DAY_MS,
    MemoryPurgeRequest,
    decode_vector,
    encode_vector,
    fts_query,
    get_item,
    get_vector,
    hash_embedding,
    ingest,
    list_items,
    purge,
    run_retention,
    search,
)
from journal_core.schema import MEMORY_INDEX

DAY = MEMORY_RETENTION_DAY_MS
NOW = 1_750_000_000_000
FAKE_TOKEN = "ghp_" + "A1b2C3d4" * 4 + "E5F6"
ALICE = "user:alice"


def unit(*values: float) -> list[float]:
    norm = math.sqrt(sum(value * value for value in values))
    return [value / norm for value in values]


# --- ingest, redaction, vectors ---------------------------------------------------------------


def test_ingest_redacts_content_before_hashing_and_storing(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario(journal: Journal) -> tuple[bytes, str, str]:
        item = await ingest(
            journal,
            principal=ALICE,
            content=f"deploy key is {FAKE_TOKEN} remember it",
            source="chat",
            tags=["ops", f"tag:{FAKE_TOKEN}"],
            now_ms=NOW,
        )
        return file_bytes(path), item.content, item.content_hash

    raw, content, content_hash = run(path, scenario)
    assert FAKE_TOKEN not in content
    assert "remember it" in content
    assert content_hash == hashlib.sha256(content.encode("utf-8")).hexdigest()
    assert FAKE_TOKEN.encode() not in raw
    assert_verified(path)


def test_ingest_fields_default_ttl_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    session = "01JAAAAAAAAAAAAAAAAAAAAAAA"

    async def scenario(journal: Journal) -> list[str]:
        first = await ingest(
            journal,
            principal=ALICE,
            content="alpha",
            source="chat",
            channel="slack:#ops",
            session_id=session,
            tags=["a", "b", "a"],
            confidence=0.75,
            now_ms=NOW,
        )
        assert first.ttl_unix_ms == NOW + DEFAULT_TTL_MS == NOW + 30 * DAY
        assert first.tags == ("a", "b")
        assert first.confidence == 0.75
        assert first.created_at_unix_ms == first.updated_at_unix_ms == NOW
        assert first.vector_model_id is None
        forever = await ingest(
            journal, principal="user:bob", content="beta", source="chat", ttl_ms=None
        )
        assert forever.ttl_unix_ms is None
        return [first.memory_id, forever.memory_id]

    first_id, bob_id = run(path, scenario)

    async def reads(reader: JournalReader) -> None:
        item = await get_item(reader, first_id)
        assert item.session_id == session
        assert item.channel == "slack:#ops"
        assert [i.memory_id for i in await list_items(reader)] == [bob_id, first_id]
        assert [i.memory_id for i in await list_items(reader, principal=ALICE)] == [first_id]
        assert [i.memory_id for i in await list_items(reader, session_id=session)] == [first_id]
        assert await get_vector(reader, first_id) is None

    read(path, reads)
    assert_verified(path)


def test_vector_is_normalised_little_endian_f32(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario(journal: Journal) -> str:
        item = await ingest(
            journal, principal=ALICE, content="v", source="chat", vector=[3, 4.0], now_ms=NOW
        )
        assert item.vector_model_id == HASH_EMBEDDING_MODEL
        assert item.vector_dims == 2
        return item.memory_id

    memory_id = run(path, scenario)
    with sqlite3.connect(path) as conn:
        blob, dims, version, model = conn.execute(
            "SELECT vector, dims, version, model_id FROM memory_vectors WHERE memory_ulid = ?",
            (memory_id,),
        ).fetchone()
    assert blob == struct.pack("<ff", 0.6, 0.8)
    assert blob == b"\x9a\x99\x19\x3f\xcd\xcc\x4c\x3f"
    assert (dims, version, model) == (2, 1, HASH_EMBEDDING_MODEL)
    assert encode_vector([3, 4]) == blob
    assert decode_vector(blob) == pytest.approx([0.6, 0.8], abs=1e-7)
    assert read(path, lambda reader: get_vector(reader, memory_id)) == pytest.approx([0.6, 0.8])
    assert_verified(path)


@pytest.mark.parametrize(
    ("vector", "model_id"),
    [
        ([0.0, 0.0, 0.0], None),
        ([], None),
        ([1.0] * 4097, None),
        ([1.0, math.nan], None),
        ([math.inf, 1.0], None),
        ([True, 1.0], None),
        (["1", 2.0], None),
        ("abc", None),
        ([10**400, 1], None),
        (None, "model-without-vector"),
    ],
)
def test_bad_vectors_are_refused_and_nothing_is_written(
    tmp_path: Path, vector: object, model_id: str | None
) -> None:
    path = tmp_path / "j.db"

    async def scenario(journal: Journal) -> None:
        with pytest.raises(ValidationError):
            await ingest(
                journal,
                principal=ALICE,
                content="x",
                source="chat",
                vector=vector,  # type: ignore[arg-type]
                model_id=model_id,
            )

    run(path, scenario)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM journal_events").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM memory_items").fetchone()[0] == 0


def test_huge_components_normalise_without_overflow() -> None:
    assert decode_vector(encode_vector([1e308, 1e308])) == pytest.approx(unit(1, 1))
    assert len(encode_vector([1.0] * 4096)) == 4 * 4096


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("content", {"content": "x" * (64 * 1024 + 1)}),
        ("content", {"content": ""}),
        ("principal", {"principal": ""}),
        ("source", {"source": "a\nb"}),
        ("confidence", {"confidence": 1.5}),
        ("ttl_ms", {"ttl_ms": 0}),
        ("tags", {"tags": "not-a-list"}),
        ("tags", {"tags": ["t"] * 33}),
        ("memory_id", {"memory_id": "nope"}),
        ("session_id", {"session_id": "nope"}),
    ],
)
def test_invalid_ingest_names_the_field(
    tmp_path: Path, field: str, kwargs: dict[str, object]
) -> None:
    arguments: dict[str, object] = {"principal": ALICE, "content": "ok", "source": "chat"}
    arguments.update(kwargs)

    async def scenario(journal: Journal) -> None:
        with pytest.raises(ValidationError) as caught:
            await ingest(journal, **arguments)  # type: ignore[arg-type]
        assert caught.value.field == field

    run(tmp_path / "j.db", scenario)


def test_content_of_exactly_64_kib_is_accepted_and_duplicate_id_refused(tmp_path: Path) -> None:
    memory_id = "01JBBBBBBBBBBBBBBBBBBBBBBB"

    async def scenario(journal: Journal) -> None:
        await ingest(
            journal, principal=ALICE, content="x" * 65_536, source="chat", memory_id=memory_id
        )
        with pytest.raises(ValidationError) as caught:
            await ingest(journal, principal=ALICE, content="y", source="chat", memory_id=memory_id)
        assert caught.value.field == "memory_id"

    run(tmp_path / "j.db", scenario)
    assert_verified(tmp_path / "j.db")


def test_hash_embedding_is_deterministic_normalised_and_similarity_preserving() -> None:
    first = hash_embedding("the quick brown fox")
    assert first == hash_embedding("The QUICK brown fox!")
    assert len(first) == 64
    assert math.isclose(math.fsum(value * value for value in first), 1.0)
    assert len(hash_embedding("x", dims=8)) == 8
    near = math.fsum(a * b for a, b in zip(first, hash_embedding("quick brown fox"), strict=True))
    far = math.fsum(a * b for a, b in zip(first, hash_embedding("zebra lemon"), strict=True))
    assert near > far
    for text in ("", "!!!", " "):
        assert math.isclose(math.fsum(value * value for value in hash_embedding(text)), 1.0)


# --- search -----------------------------------------------------------------------------------


async def _ingest_all(journal: Journal, rows: list[dict[str, object]]) -> list[str]:
    ids = []
    for row in rows:
        fields: dict[str, object] = {"principal": ALICE, "source": "chat", "now_ms": NOW}
        fields.update(row)
        item = await ingest(journal, **fields)  # type: ignore[arg-type]
        ids.append(item.memory_id)
    return ids


def test_lexical_match_beats_non_match(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    vector = hash_embedding("shared")
    ids = run(
        path,
        lambda journal: _ingest_all(
            journal,
            [
                {"content": "the deploy uses blue green rollout", "vector": vector},
                {"content": "lunch is at noon", "vector": vector},
            ],
        ),
    )

    async def scenario(reader: JournalReader) -> None:
        hits = await search(reader, "rollout", principal=ALICE, vector=vector, now_ms=NOW)
        assert [hit.item.memory_id for hit in hits] == ids
        assert hits[0].lexical == 1.0
        assert hits[1].lexical == 0.0
        assert hits[0].vector == hits[1].vector == pytest.approx(1.0)
        for hit in hits:
            assert hit.recency == 1.0
            expected = 0.55 * hit.lexical + 0.35 * hit.vector + 0.10 * hit.recency
            assert hit.score == pytest.approx(expected)
        only_text = await search(reader, "rollout", principal=ALICE, now_ms=NOW)
        assert [hit.item.memory_id for hit in only_text] == ids[:1]
        assert only_text[0].vector == 0.0

    read(path, scenario)


def test_lexical_scores_are_normalised_over_candidates(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    ids = run(
        path,
        lambda journal: _ingest_all(
            journal,
            [
                {"content": "kafka kafka kafka broker"},
                {"content": "kafka broker plus many other unrelated words in this one"},
                {"content": "nothing relevant"},
            ],
        ),
    )

    async def scenario(reader: JournalReader) -> None:
        hits = await search(reader, "kafka", principal=ALICE, now_ms=NOW)
        assert [hit.item.memory_id for hit in hits] == ids[:2]
        assert hits[0].lexical == 1.0
        assert 0.0 < hits[1].lexical < 1.0

    read(path, scenario)


def test_vector_similarity_orders_results(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    ids = run(
        path,
        lambda journal: _ingest_all(
            journal,
            [
                {"content": "far", "vector": [0.0, 1.0, 0.0]},
                {"content": "exact", "vector": [1.0, 0.0, 0.0]},
                {"content": "opposite", "vector": [-1.0, 0.0, 0.0]},
                {"content": "between", "vector": [1.0, 1.0, 0.0]},
                {"content": "other dims", "vector": [1.0, 0.0]},
                {"content": "no vector"},
            ],
        ),
    )

    async def scenario(reader: JournalReader) -> None:
        hits = await search(reader, "", principal=ALICE, vector=[2.0, 0.0, 0.0], now_ms=NOW)
        assert [hit.item.content for hit in hits] == ["exact", "between", "far", "opposite"]
        assert [hit.vector for hit in hits] == pytest.approx(
            [1.0, (1 + math.sqrt(0.5)) / 2, 0.5, 0.0], abs=1e-6
        )
        assert hits[1].item.memory_id == ids[3]
        limited = await search(reader, "", principal=ALICE, vector=[1, 0, 0], limit=1, now_ms=NOW)
        assert [hit.item.content for hit in limited] == ["exact"]
        assert not await search(
            reader, "", principal=ALICE, vector=[1, 0, 0], model_id="other", now_ms=NOW
        )

    read(path, scenario)


def test_recency_breaks_ties(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    ids = run(
        path,
        lambda journal: _ingest_all(
            journal,
            [
                {"content": "standup notes", "now_ms": NOW - 3 * DAY},
                {"content": "standup notes", "now_ms": NOW - 1 * DAY},
                {"content": "standup notes", "now_ms": NOW - 2 * DAY},
            ],
        ),
    )

    async def scenario(reader: JournalReader) -> None:
        hits = await search(reader, "standup", principal=ALICE, now_ms=NOW)
        assert [hit.item.memory_id for hit in hits] == [ids[1], ids[2], ids[0]]
        assert [hit.recency for hit in hits] == pytest.approx([1 / 2, 1 / 3, 1 / 4])
        assert {hit.lexical for hit in hits} == {1.0}

    read(path, scenario)


def test_search_sees_only_the_principals_live_items(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    ids = run(
        path,
        lambda journal: _ingest_all(
            journal,
            [
                {"content": "invoice overdue"},
                {"content": "invoice overdue", "principal": "user:bob"},
                {"content": "invoice expired", "ttl_ms": DAY},
            ],
        ),
    )

    async def scenario(reader: JournalReader) -> None:
        before = await search(reader, "invoice", principal=ALICE, now_ms=NOW + DAY - 1)
        assert {hit.item.memory_id for hit in before} == {ids[0], ids[2]}
        after = await search(reader, "invoice", principal=ALICE, now_ms=NOW + DAY)
        assert [hit.item.memory_id for hit in after] == [ids[0]]
        vector_after = await search(
            reader, "", principal=ALICE, vector=hash_embedding("x"), now_ms=NOW + DAY
        )
        assert vector_after == []
        bob = await search(reader, "invoice", principal="user:bob", now_ms=NOW)
        assert [hit.item.memory_id for hit in bob] == [ids[1]]

    read(path, scenario)


INJECTIONS = [
    "foo OR bar",
    "NEAR(",
    "NEAR(foo bar, 2)",
    "*",
    '"',
    '"foo',
    'foo"bar',
    "'",
    "foo*",
    "content:foo",
    "{content}: foo",
    "alpha NOT foo",
    "alpha AND",
    "(",
    ")",
    "^foo",
    "-foo",
    "+",
    "foo:",
    "\x00",
    "ünïcödé",
]


def test_fts_syntax_in_queries_is_literal(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    ids = run(
        path,
        lambda journal: _ingest_all(
            journal,
            [
                {"content": "foo alpha"},
                {"content": "foobar alpha"},
                {"content": "bar gamma"},
                {"content": "this or that"},
            ],
        ),
    )

    async def scenario(reader: JournalReader) -> None:
        for query in INJECTIONS:
            await search(reader, query, principal=ALICE, now_ms=NOW)
            await search(reader, query, principal=ALICE, vector=[1.0], now_ms=NOW)

        async def found(query: str) -> set[str]:
            hits = await search(reader, query, principal=ALICE, now_ms=NOW)
            return {hit.item.memory_id for hit in hits}

        # "NOT" as syntax would exclude "foo alpha"; as a word it matches nothing more.
        assert await found("alpha NOT foo") == {ids[0], ids[1]}
        # A prefix query would match "foobar"; literally, only the word "foo" matches.
        assert await found("foo*") == {ids[0]}
        # "OR" is a word like any other (it matches "this or that").
        assert await found("foo OR bar") == {ids[0], ids[2], ids[3]}
        assert await found("*") == set()
        assert await found("NEAR(") == set()
        assert await found('"') == set()

    read(path, scenario)


def test_empty_query_without_vector_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    run(path, lambda journal: _ingest_all(journal, [{"content": "x"}]))

    async def scenario(reader: JournalReader) -> None:
        for query in ("", "   "):
            with pytest.raises(ValidationError) as caught:
                await search(reader, query, principal=ALICE)
            assert caught.value.field == "query"
        with pytest.raises(ValidationError):
            await search(reader, "x", principal=ALICE, vector=[0.0])
        with pytest.raises(ValidationError):
            await search(reader, "x", principal=ALICE, limit=0)

    read(path, scenario)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_text_makes_a_valid_fts_query(text: str) -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE f USING fts5 (content_text)")
    conn.execute("INSERT INTO f VALUES ('alpha beta or and not near')")
    match = fts_query(text)
    if match is not None:
        conn.execute("SELECT rowid FROM f WHERE f MATCH ?", (match,)).fetchall()
        assert match.count('"') % 2 == 0
    conn.close()


# --- retention --------------------------------------------------------------------------------


def _retention_setup(journal: Journal) -> Awaitable[list[str]]:
    # Ages 10, 8, 6, 4, 2 days; the 6-day-old item expires 1 day before NOW.
    rows: list[dict[str, object]] = [
        {"content": "a" * 100, "now_ms": NOW - 10 * DAY, "ttl_ms": None, "vector": [1.0]},
        {"content": "b" * 200, "now_ms": NOW - 8 * DAY, "ttl_ms": None},
        {"content": "c" * 300, "now_ms": NOW - 6 * DAY, "ttl_ms": 5 * DAY, "vector": [1.0]},
        {"content": "d" * 400, "now_ms": NOW - 4 * DAY, "ttl_ms": None},
        {"content": "é" * 250, "now_ms": NOW - 2 * DAY, "ttl_ms": None, "vector": [1.0]},
    ]
    return _ingest_all(journal, rows)


def _remaining(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT memory_ulid FROM memory_items ORDER BY created_at_unix_ms")
        return [str(row[0]) for row in rows]


def test_retention_deletes_expired_items_only_by_default(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    ids = run(path, _retention_setup)
    result = run(path, lambda journal: run_retention(journal, now_ms=NOW))
    assert (result.expired, result.total, result.vectors) == (1, 1, 1)
    assert _remaining(path) == [ids[0], ids[1], ids[3], ids[4]]
    _, report = verify_file(path)
    assert report.ok, report.to_dict()
    assert report.records_purged == 2  # the item and its vector


def test_retention_stages_run_in_order_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    ids = run(path, _retention_setup)
    # TTL removes c; ttl_days=9 removes a (10 days old); max_entries=2 then removes b;
    # d (400 bytes) + e (500 UTF-8 bytes) exceed 600, so d goes.
    result = run(
        path,
        lambda journal: run_retention(
            journal, ttl_days=9, max_entries=2, max_bytes=600, now_ms=NOW
        ),
    )
    assert (result.expired, result.aged_out, result.over_max_entries, result.over_max_bytes) == (
        1,
        1,
        1,
        1,
    )
    assert result.vectors == 2
    assert _remaining(path) == [ids[4]]
    _, report = verify_file(path)
    assert report.ok, report.to_dict()
    assert report.records_purged == 6


@pytest.mark.parametrize(
    ("kwargs", "kept"),
    [
        ({"ttl_days": 5}, [3, 4]),
        ({"max_entries": 3}, [1, 3, 4]),
        ({"max_entries": 0}, []),
        ({"max_bytes": 900}, [3, 4]),
        ({"max_bytes": 1_199}, [1, 3, 4]),
        ({"max_bytes": 1_200}, [0, 1, 3, 4]),
        ({"max_bytes": 500}, [4]),
        ({"max_bytes": 499}, []),
        ({"max_entries": 10, "max_bytes": 10_000, "ttl_days": 100}, [0, 1, 3, 4]),
    ],
)
def test_retention_limits(tmp_path: Path, kwargs: dict[str, int], kept: list[int]) -> None:
    path = tmp_path / "j.db"
    ids = run(path, _retention_setup)
    run(path, lambda journal: run_retention(journal, now_ms=NOW, **kwargs))
    assert _remaining(path) == [ids[index] for index in kept]
    assert_verified(path)


def test_retention_rejects_negative_limits(tmp_path: Path) -> None:
    async def scenario(journal: Journal) -> None:
        for field in ("ttl_days", "max_entries", "max_bytes"):
            with pytest.raises(ValidationError) as caught:
                await run_retention(journal, **{field: -1})
            assert caught.value.field == field

    run(tmp_path / "j.db", scenario)


# --- purge ------------------------------------------------------------------------------------

S1 = "01JCCCCCCCCCCCCCCCCCCCCCC1"
S2 = "01JCCCCCCCCCCCCCCCCCCCCCC2"


def _purge_setup(journal: Journal) -> Awaitable[list[str]]:
    rows: list[dict[str, object]] = [
        {"content": "0", "channel": "c1", "session_id": S1, "vector": [1.0, 0.0]},
        {"content": "1", "channel": "c1", "session_id": S2},
        {"content": "2", "channel": "c2", "session_id": S1},
        {"content": "3", "channel": "c2", "session_id": S2, "vector": [0.0, 1.0]},
        {"content": "4", "channel": "c1", "session_id": S1, "principal": "user:bob"},
    ]
    return _ingest_all(journal, rows)


@pytest.mark.parametrize(
    ("request_", "gone"),
    [
        (MemoryPurgeRequest(ALICE, channel="c1"), {0, 1}),
        (MemoryPurgeRequest(ALICE, session_id=S1), {0, 2}),
        (MemoryPurgeRequest(ALICE, channel="c2", session_id=S2), {3}),
        (MemoryPurgeRequest(ALICE, purge_all_principal=True), {0, 1, 2, 3}),
        (MemoryPurgeRequest("user:bob", channel="c1"), {4}),
        (MemoryPurgeRequest("user:carol", purge_all_principal=True), set()),
    ],
)
def test_purge_scopes(tmp_path: Path, request_: MemoryPurgeRequest, gone: set[int]) -> None:
    path = tmp_path / "j.db"
    ids = run(path, _purge_setup)
    assert run(path, lambda journal: purge(journal, request_)) == len(gone)
    assert set(_remaining(path)) == {ids[i] for i in range(5) if i not in gone}
    _, report = verify_file(path)
    assert report.ok, report.to_dict()
    vectors_gone = len(gone & {0, 3})
    assert report.records_purged == len(gone) + vectors_gone


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (MemoryPurgeRequest(ALICE), "scope"),
        (MemoryPurgeRequest(ALICE, channel="c1", purge_all_principal=True), "purge_all_principal"),
        (MemoryPurgeRequest("", purge_all_principal=True), "principal"),
        (MemoryPurgeRequest(ALICE, session_id="bad"), "session_id"),
    ],
)
def test_invalid_purge_requests(tmp_path: Path, request_: MemoryPurgeRequest, field: str) -> None:
    async def scenario(journal: Journal) -> None:
        with pytest.raises(ValidationError) as caught:
            await purge(journal, request_)
        assert caught.value.field == field

    run(tmp_path / "j.db", scenario)


def test_purged_content_is_gone_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    marker = b"zebrafishcanary42"
    filler: list[dict[str, object]] = [
        {"content": f"ordinary note number {n} about kafka"} for n in range(40)
    ]
    ids = run(
        path,
        lambda journal: _ingest_all(
            journal,
            [
                *filler[:20],
                {"content": "the zebrafishcanary42 lives here", "channel": "secret-room"},
                *filler[20:],
            ],
        ),
    )
    # The check below is meaningful: the marker is in the row and in the full-text index.
    assert file_bytes(path).count(marker) >= 2

    purged = run(
        path, lambda journal: purge(journal, MemoryPurgeRequest(ALICE, channel="secret-room"))
    )
    assert purged == 1
    assert marker not in file_bytes(path)
    _, report = verify_file(path)
    assert report.ok, report.to_dict()
    assert report.records_purged > 0

    async def scenario(reader: JournalReader) -> None:
        assert await search(reader, "zebrafishcanary42", principal=ALICE, now_ms=NOW) == []
        hits = await search(reader, "kafka", principal=ALICE, now_ms=NOW)
        assert len(hits) == 10
        assert len(await list_items(reader)) == 40

    read(path, scenario)
    assert ids[20] not in _remaining(path)


def test_retention_content_is_gone_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    marker = b"quokkacanary77"
    run(
        path,
        lambda journal: _ingest_all(
            journal,
            [
                {"content": "old quokkacanary77 note", "now_ms": NOW - 40 * DAY},
                {"content": "fresh note", "now_ms": NOW},
            ],
        ),
    )
    assert marker in file_bytes(path)
    result = run(path, lambda journal: run_retention(journal, now_ms=NOW))
    assert result.expired == 1
    assert marker not in file_bytes(path)
    assert_verified(path)


# --- tampering --------------------------------------------------------------------------------


def test_tampered_item_and_vector_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    (memory_id,) = run(
        path, lambda journal: _ingest_all(journal, [{"content": "true", "vector": [1.0, 2.0]}])
    )
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE memory_items SET content_text = 'false' WHERE memory_ulid = ?", (memory_id,)
        )
        conn.execute(
            "UPDATE memory_vectors SET vector = ? WHERE memory_ulid = ?",
            (struct.pack("<ff", 1.0, 0.0), memory_id),
        )
    _, report = verify_file(path)
    found = {(b.code, b.table, b.key) for b in report.record_breaks}
    assert found == {
        ("record_digest_mismatch", "memory_items", memory_id),
        ("record_digest_mismatch", "memory_vectors", memory_id),
    }


# --- the index's FTS5 structure -----------------------------------------------------------------


def run_health(path: Path) -> HealthReport:
    return asyncio.run(health_report(path, now_ms=NOW))


def _levels(path: Path) -> int | None:
    conn = sqlite3.connect(path)
    try:
        return structure_levels(conn, MEMORY_INDEX)
    finally:
        conn.close()


# SQLite before 3.42 deepens the structure only once the index spans more than one leaf page.
SPREAD_NOTES = [
    {"content": f"note {n} about kafka alpha{n} beta{n} gamma{n} delta{n} epsilon{n}"}
    for n in range(180)
]


def _deepen_index(path: Path, optimizations: int) -> None:
    """What SQLite before 3.42 does to the index at every purge: a change, then 'optimize'.

    The same row is deleted from the index and indexed again, so the index stays true to
    memory_items; each 'optimize' then adds a level to the structure (until FTS5 refuses it).
    """
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        rowid, text = conn.execute(
            "SELECT rowid, content_text FROM memory_items LIMIT 1"
        ).fetchone()
        for _ in range(optimizations):
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    f"INSERT INTO {MEMORY_INDEX} ({MEMORY_INDEX}, rowid, content_text)"
                    " VALUES ('delete', ?, ?)",
                    (rowid, text),
                )
                conn.execute(
                    f"INSERT INTO {MEMORY_INDEX} (rowid, content_text) VALUES (?, ?)", (rowid, text)
                )
                conn.execute(f"INSERT INTO {MEMORY_INDEX} ({MEMORY_INDEX}) VALUES ('optimize')")
                conn.execute("COMMIT")
            except sqlite3.DatabaseError:
                conn.execute("ROLLBACK")
                return
    finally:
        conn.close()


def _index_opens(path: Path) -> bool:
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"SELECT rowid FROM {MEMORY_INDEX} LIMIT 0").fetchall()
        return True
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()


def _index_intact(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"INSERT INTO {MEMORY_INDEX} ({MEMORY_INDEX}) VALUES ('integrity-check')")
    finally:
        conn.close()


def test_purges_keep_the_index_structure_shallow(tmp_path: Path) -> None:
    # Each purge merges the index; with 'optimize' alone every merge deepened the structure by
    # a level, and ~1,400 purges made the index impossible to open.
    path = tmp_path / "j.db"

    async def scenario(journal: Journal) -> list[int | None]:
        await _ingest_all(journal, SPREAD_NOTES)
        depths = []
        for n in range(RESTART_LEVELS + 40):
            await _ingest_all(journal, [{"content": f"passing note {n}", "channel": "brief"}])
            assert await purge(journal, MemoryPurgeRequest(ALICE, channel="brief")) == 1
            depths.append(_levels(path))
        return depths

    depths = run(path, scenario)
    # One 'optimize' adds up to two levels: the depth never passes the threshold by more.
    assert all(depth is not None and depth <= RESTART_LEVELS + 2 for depth in depths), depths
    assert min(depths[RESTART_LEVELS:]) < max(depths)  # it was restarted along the way
    assert b"passing" not in file_bytes(path)  # restarts drop purged words too
    _index_intact(path)
    hits = read(path, lambda reader: search(reader, "kafka", principal=ALICE, now_ms=NOW))
    assert len(hits) == 10
    assert_verified(path)


def test_a_writer_mends_an_index_too_deep_to_open(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    run(
        path,
        lambda journal: _ingest_all(journal, SPREAD_NOTES),
    )
    _deepen_index(path, STRUCTURE_LEVEL_LIMIT)
    if _index_opens(path):
        pytest.skip(f"SQLite {sqlite3.sqlite_version} caps the levels of an FTS5 structure")
    assert (_levels(path) or 0) > STRUCTURE_LEVEL_LIMIT
    report = run_health(path)
    assert "journal.fts.drift" in report.finding_codes()
    assert "could not be read" in str(report.to_dict())

    # Opening it for writing restarts the structure: search works again, nothing else changed.
    run(path, lambda journal: asyncio.sleep(0))
    hits = read(path, lambda reader: search(reader, "kafka", principal=ALICE, now_ms=NOW))
    assert len(hits) == 10
    assert (_levels(path) or 0) <= 1
    _index_intact(path)
    assert run_health(path).finding_codes() == []
    assert_verified(path)


def test_health_warns_of_a_deep_structure_and_a_writer_restarts_it(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    run(path, lambda journal: _ingest_all(journal, SPREAD_NOTES))
    _deepen_index(path, RESTART_LEVELS + 20)
    depth = _levels(path)
    if depth is None or depth <= RESTART_LEVELS:
        pytest.skip(f"SQLite {sqlite3.sqlite_version} caps the levels of an FTS5 structure")
    report = run_health(path)
    assert report.finding_codes() == ["journal.fts.deep"]
    assert report.fts.levels == depth
    run(path, lambda journal: asyncio.sleep(0))
    assert (_levels(path) or 0) <= 1
    assert run_health(path).finding_codes() == []


def test_structure_levels_reads_the_record() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
    assert structure_levels(conn, "t") == 0
    conn.execute("INSERT INTO t (x) VALUES ('one two')")
    conn.commit()
    assert structure_levels(conn, "t") == 1
    conn.execute("DELETE FROM t_data WHERE id = 10")
    assert structure_levels(conn, "t") is None
