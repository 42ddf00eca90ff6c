"""Agent memory: ``memory_items`` (full-text indexed) and their embedding ``memory_vectors``.

Content is redacted before it is hashed and stored. Search combines three scores, each in
0..1: lexical (FTS5 bm25, normalised over the candidate set), vector (cosine of L2-normalised
embeddings) and recency (``1 / (1 + age in days)``), weighted 0.55 / 0.35 / 0.10. User text
never reaches FTS5 as syntax: every query word is quoted.

Every write is chained (:mod:`journal_core.records`); deletions (retention, purge requests) go
through chained tombstones. Purged content is really gone from the file: deletions run with
``secure_delete`` on and the full-text index is merged afterwards, so no index segment keeps
the words of a purged item.
"""

from __future__ import annotations

import array
import hashlib
import math
import re
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from journal_core import validate
from journal_core.errors import RecordNotFoundError, ValidationError
from journal_core.events import Actor
from journal_core.fts import match_expression, needs_restart, restart_index
from journal_core.ids import new_ulid
from journal_core.reader import JournalReader
from journal_core.records import (
    MEMORY_ITEMS,
    MEMORY_VECTORS,
    RecordContext,
    purge_records,
    write_record,
)
from journal_core.schema import MEMORY_INDEX
from journal_core.schema import now_ms as wall_clock_ms
from journal_core.store import Journal, WriteContext

MEMORY_RETENTION_DAY_MS = 86_400_000
DEFAULT_TTL_MS = 30 * MEMORY_RETENTION_DAY_MS
MAX_TTL_MS = 100 * 365 * MEMORY_RETENTION_DAY_MS
MAX_CONTENT_BYTES = 64 * 1024
MAX_VECTOR_DIMS = 4096
VECTOR_VERSION = 1
DEFAULT_EMBEDDING_DIMS = 64
HASH_EMBEDDING_MODEL = "hash-embedding-v1"
MAX_TAGS = 32
MAX_TAG_BYTES = 128
MAX_QUERY_BYTES = 4_096
MAX_QUERY_TOKENS = 32
MAX_SEARCH_LIMIT = 1_000
LEXICAL_WEIGHT = 0.55
VECTOR_WEIGHT = 0.35
RECENCY_WEIGHT = 0.10
#: How many full-text matches (best bm25 first) a search scores.
LEXICAL_CANDIDATES = 500
#: How many of a principal's newest vectors a search compares with the query vector.
VECTOR_SCAN_LIMIT = 10_000
SYSTEM_PRINCIPAL = "system"
SYSTEM_DEVICE = "journal"

_WORD = re.compile(r"\w+")
_F32 = struct.Struct("<f")
_ITEM_SELECT = (
    "SELECT m.memory_ulid, m.principal, m.channel, m.session_ulid, m.source, m.content_text,"
    " m.content_hash, m.tags_json, m.confidence, m.ttl_unix_ms, m.created_at_unix_ms,"
    " m.updated_at_unix_ms, v.model_id, v.dims"
    " FROM memory_items AS m LEFT JOIN memory_vectors AS v ON v.memory_ulid = m.memory_ulid"
)
_LIVE = "(m.ttl_unix_ms IS NULL OR m.ttl_unix_ms > ?)"


@dataclass(frozen=True, slots=True)
class MemoryItem:
    """One remembered item (its content as stored, that is redacted)."""

    memory_id: str
    principal: str
    channel: str | None
    session_id: str | None
    source: str
    content: str
    content_hash: str
    tags: tuple[str, ...]
    confidence: float | None
    ttl_unix_ms: int | None
    created_at_unix_ms: int
    updated_at_unix_ms: int
    vector_model_id: str | None
    vector_dims: int | None

    def expired(self, at_unix_ms: int) -> bool:
        """True when the item's time to live has passed at ``at_unix_ms``."""
        return self.ttl_unix_ms is not None and self.ttl_unix_ms <= at_unix_ms


@dataclass(frozen=True, slots=True)
class MemoryHit:
    """A search result: the item, its three component scores (each 0..1) and their total."""

    item: MemoryItem
    lexical: float
    vector: float
    recency: float
    score: float


@dataclass(frozen=True, slots=True)
class MemoryPurgeRequest:
    """Which of a principal's items to purge.

    ``purge_all_principal`` purges all of them; otherwise the items matching ``channel``
    and/or ``session_id`` (both given: items matching both). Naming no scope is refused.
    """

    principal: str
    channel: str | None = None
    session_id: str | None = None
    purge_all_principal: bool = False


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """How many items each retention stage deleted (their vectors went with them)."""

    expired: int = 0
    aged_out: int = 0
    over_max_entries: int = 0
    over_max_bytes: int = 0
    vectors: int = 0

    @property
    def total(self) -> int:
        """Items deleted by all stages."""
        return self.expired + self.aged_out + self.over_max_entries + self.over_max_bytes


# --- vectors ----------------------------------------------------------------------------------


def normalise_vector(field: str, values: Sequence[float]) -> list[float]:
    """Validate an embedding (1..4096 finite numbers, not all zero) and scale it to length 1."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise ValidationError(field, f"must be a sequence of numbers, got {type(values).__name__}")
    dims = len(values)
    if not 1 <= dims <= MAX_VECTOR_DIMS:
        raise ValidationError(field, f"has {dims} dimensions; allowed 1..{MAX_VECTOR_DIMS}")
    floats: list[float] = []
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(field, f"item {index} is {type(value).__name__}, not a number")
        try:
            number = float(value)
        except OverflowError:
            raise ValidationError(field, f"item {index} is too large for a float") from None
        if not math.isfinite(number):
            raise ValidationError(field, f"item {index} is {number}; values must be finite")
        floats.append(number)
    # hypot scales internally, so huge components do not overflow to an infinite norm.
    norm = math.hypot(*floats)
    if norm == 0.0 or not math.isfinite(norm):
        raise ValidationError(field, "is the zero vector, which has no direction")
    return [number / norm for number in floats]


def encode_vector(values: Sequence[float]) -> bytes:
    """The stored form of an embedding: L2-normalised, little-endian IEEE 754 float32."""
    unit = normalise_vector("vector", values)
    return struct.pack(f"<{len(unit)}f", *unit)


def decode_vector(blob: bytes) -> list[float]:
    """The floats of a stored vector (little-endian float32)."""
    if len(blob) % _F32.size:
        raise ValueError(f"a stored vector has {len(blob)} bytes, not a multiple of 4")
    values = array.array("f")
    values.frombytes(blob)
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()


def hash_embedding(text: str, dims: int = DEFAULT_EMBEDDING_DIMS) -> list[float]:
    """A deterministic stand-in embedder for tests and demos (not a language model).

    Each lower-cased word is hashed (SHA-256) to a bucket and a sign; the sums are
    L2-normalised. Texts sharing words point in similar directions. A text without words
    hashes as one word, so the vector is never zero.
    """
    dims = validate.integer("dims", dims, minimum=1, maximum=MAX_VECTOR_DIMS)
    words = _WORD.findall(text.lower()) or [text]
    sums = [0.0] * dims
    for word in words:
        digest = hashlib.sha256(word.encode("utf-8", "surrogatepass")).digest()
        bucket = int.from_bytes(digest[:8], "big") % dims
        sums[bucket] += 1.0 if digest[8] & 1 else -1.0
    if not any(sums):
        # Opposite signs cancelled out in every bucket; fall back to the whole text's bucket.
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
        sums[int.from_bytes(digest[:8], "big") % dims] = 1.0
    return normalise_vector("vector", sums)


# --- helpers ----------------------------------------------------------------------------------


def _item(row: tuple[object, ...]) -> MemoryItem:
    tags = orjson.loads(row[7])  # type: ignore[arg-type]
    return MemoryItem(
        memory_id=str(row[0]),
        principal=str(row[1]),
        channel=None if row[2] is None else str(row[2]),
        session_id=None if row[3] is None else str(row[3]),
        source=str(row[4]),
        content=str(row[5]),
        content_hash=str(row[6]),
        tags=tuple(str(tag) for tag in tags) if isinstance(tags, list) else (),
        confidence=None if row[8] is None else float(row[8]),  # type: ignore[arg-type]
        ttl_unix_ms=None if row[9] is None else int(row[9]),  # type: ignore[call-overload]
        created_at_unix_ms=int(row[10]),  # type: ignore[call-overload]
        updated_at_unix_ms=int(row[11]),  # type: ignore[call-overload]
        vector_model_id=None if row[12] is None else str(row[12]),
        vector_dims=None if row[13] is None else int(row[13]),  # type: ignore[call-overload]
    )


def _clean_tags(journal: Journal, tags: Sequence[str]) -> list[str]:
    if isinstance(tags, str) or not isinstance(tags, Sequence):
        raise ValidationError("tags", "must be a list of strings")
    if len(tags) > MAX_TAGS:
        raise ValidationError("tags", f"has {len(tags)} tags; the limit is {MAX_TAGS}")
    cleaned: list[str] = []
    for tag in tags:
        text = validate.identity("tags", tag, max_bytes=MAX_TAG_BYTES)
        redacted = journal.redactor.redact_text(text)[0]
        if redacted not in cleaned:
            cleaned.append(redacted)
    return cleaned


def _confidence(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError("confidence", f"must be a number, got {type(value).__name__}")
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValidationError("confidence", f"{number} is outside 0..1")
    return number


def _optional_now(now_ms: int | None) -> int | None:
    return validate.optional_integer("now_ms", now_ms, maximum=(1 << 48) - 1)


def fts_query(text: str) -> str | None:
    """The FTS5 MATCH expression for user text: each word quoted, any word may match."""
    return match_expression(text, every_word=False, max_words=MAX_QUERY_TOKENS)


def _purge_items(ctx: WriteContext, ids: Sequence[str], reason: str, who: RecordContext) -> int:
    """Delete items and their vectors through tombstones, leaving no trace of their content."""
    if not ids:
        return 0
    # A connection setting, allowed inside the transaction: freed cells and pages are zeroed.
    ctx.execute("PRAGMA secure_delete = ON")
    with_vectors = [
        str(row[0])
        for row in ctx.execute(
            "SELECT memory_ulid FROM memory_vectors"
            " WHERE memory_ulid IN (SELECT value FROM json_each(?))",
            (orjson.dumps(list(ids)).decode("utf-8"),),
        ).fetchall()
    ]
    # Vectors first: the cascade would delete them anyway, but the chain must say so.
    purge_records(ctx, MEMORY_VECTORS, [(key,) for key in with_vectors], reason, who)
    return purge_records(ctx, MEMORY_ITEMS, [(key,) for key in ids], reason, who)


def _merge_index(ctx: WriteContext) -> None:
    """Rewrite the full-text index as one segment, dropping every deleted item's words.

    ``'optimize'`` does that in place, but grows the index's structure by a level each time
    (see :mod:`journal_core.fts`); past ``fts.RESTART_LEVELS`` the index is rebuilt from
    ``memory_items`` instead, which drops the deleted words too and starts the structure over.
    """
    if needs_restart(ctx, MEMORY_INDEX):
        restart_index(ctx, MEMORY_INDEX)
    else:
        ctx.execute("INSERT INTO memory_items_fts (memory_items_fts) VALUES ('optimize')")


def _ids(ctx: WriteContext, sql: str, params: tuple[object, ...]) -> list[str]:
    return [str(row[0]) for row in ctx.execute(sql, params).fetchall()]


# --- writes -----------------------------------------------------------------------------------


async def ingest(
    journal: Journal,
    *,
    principal: str,
    content: str,
    source: str,
    channel: str | None = None,
    session_id: str | None = None,
    tags: Sequence[str] = (),
    confidence: float | None = None,
    ttl_ms: int | None = DEFAULT_TTL_MS,
    vector: Sequence[float] | None = None,
    model_id: str | None = None,
    memory_id: str | None = None,
    now_ms: int | None = None,
) -> MemoryItem:
    """Remember ``content`` (redacted first) for ``principal``, with an optional embedding.

    ``ttl_ms`` is the time to live from ``now_ms`` (default 30 days; None keeps the item until
    retention or a purge removes it). ``vector`` is stored L2-normalised as little-endian
    float32 under ``model_id`` (default ``hash-embedding-v1``). Raises ValidationError (naming
    the field) when an input is invalid or ``memory_id`` is taken; nothing is written then.
    """
    who = RecordContext(
        validate.identity("principal", principal),
        SYSTEM_DEVICE,
        validate.optional_ulid("session_id", session_id),
        None,
        validate.optional_identity("channel", channel),
        Actor.SYSTEM,
    )
    clean_source = validate.identity("source", source)
    raw = validate.text("content", content, max_bytes=MAX_CONTENT_BYTES)
    stored = journal.redactor.redact_text(raw)[0]
    content_hash = hashlib.sha256(stored.encode("utf-8")).hexdigest()
    tags_json = orjson.dumps(_clean_tags(journal, tags)).decode("utf-8")
    clean_confidence = _confidence(confidence)
    ttl = validate.optional_integer("ttl_ms", ttl_ms, minimum=1, maximum=MAX_TTL_MS)
    blob: bytes | None = None
    model = validate.optional_identity("model_id", model_id)
    if vector is not None:
        blob = encode_vector(vector)
        model = model or HASH_EMBEDDING_MODEL
    elif model is not None:
        raise ValidationError("model_id", "given without a vector")
    item_ulid = validate.optional_ulid("memory_id", memory_id) or new_ulid()
    at_override = _optional_now(now_ms)

    def work(ctx: WriteContext) -> MemoryItem:
        at = ctx.now_ms if at_override is None else at_override
        if ctx.execute("SELECT 1 FROM memory_items WHERE memory_ulid = ?", (item_ulid,)).fetchone():
            raise ValidationError("memory_id", f"memory item {item_ulid} exists")
        write_record(
            ctx,
            MEMORY_ITEMS,
            (item_ulid,),
            "insert",
            "INSERT INTO memory_items (memory_ulid, principal, channel, session_ulid, source,"
            " content_text, content_hash, tags_json, confidence, ttl_unix_ms,"
            " created_at_unix_ms, updated_at_unix_ms, event_seq) VALUES (:id, :principal,"
            " :channel, :session, :source, :content, :hash, :tags, :confidence, :ttl, :at, :at,"
            " :event_seq)",
            {
                "id": item_ulid,
                "principal": who.principal,
                "channel": who.channel,
                "session": who.session_ulid,
                "source": clean_source,
                "content": stored,
                "hash": content_hash,
                "tags": tags_json,
                "confidence": clean_confidence,
                "ttl": None if ttl is None else at + ttl,
                "at": at,
            },
            who,
        )
        if blob is not None:
            write_record(
                ctx,
                MEMORY_VECTORS,
                (item_ulid,),
                "insert",
                "INSERT INTO memory_vectors (memory_ulid, model_id, dims, version, vector,"
                " created_at_unix_ms, event_seq) VALUES (:id, :model, :dims, :version, :vector,"
                " :at, :event_seq)",
                {
                    "id": item_ulid,
                    "model": model,
                    "dims": len(blob) // _F32.size,
                    "version": VECTOR_VERSION,
                    "vector": blob,
                    "at": at,
                },
                who,
            )
        row = ctx.execute(f"{_ITEM_SELECT} WHERE m.memory_ulid = ?", (item_ulid,)).fetchone()
        return _item(tuple(row))

    return await journal.transact(work)


async def purge(journal: Journal, request: MemoryPurgeRequest) -> int:
    """Delete the items ``request`` names (with their vectors); returns how many items.

    Raises ValidationError for a request that names no scope, or that combines
    ``purge_all_principal`` with a narrower scope (ambiguous).
    """
    principal = validate.identity("principal", request.principal)
    channel = validate.optional_identity("channel", request.channel)
    session_ulid = validate.optional_ulid("session_id", request.session_id)
    if request.purge_all_principal and (channel is not None or session_ulid is not None):
        raise ValidationError(
            "purge_all_principal",
            "cannot be combined with channel or session_id (drop one or the other)",
        )
    if not request.purge_all_principal and channel is None and session_ulid is None:
        raise ValidationError(
            "scope", "name a channel and/or session_id, or set purge_all_principal"
        )
    where = ["principal = ?"]
    params: list[object] = [principal]
    if channel is not None:
        where.append("channel = ?")
        params.append(channel)
    if session_ulid is not None:
        where.append("session_ulid = ?")
        params.append(session_ulid)
    who = RecordContext(principal, SYSTEM_DEVICE, session_ulid, None, channel, Actor.SYSTEM)

    def work(ctx: WriteContext) -> int:
        ids = _ids(
            ctx,
            f"SELECT memory_ulid FROM memory_items WHERE {' AND '.join(where)}"
            " ORDER BY created_at_unix_ms, memory_ulid",
            tuple(params),
        )
        deleted = _purge_items(ctx, ids, "purge_request", who)
        if deleted:
            _merge_index(ctx)
        return deleted

    return await journal.transact(work)


async def run_retention(
    journal: Journal,
    *,
    ttl_days: int | None = None,
    max_entries: int | None = None,
    max_bytes: int | None = None,
    now_ms: int | None = None,
) -> RetentionResult:
    """Apply memory retention in one transaction, oldest items first at every stage.

    Deletes, in order: items past their time to live; items created more than ``ttl_days``
    ago; the oldest items beyond ``max_entries``; the oldest items until the content left
    totals at most ``max_bytes`` (UTF-8 bytes of the stored text).
    """
    days = validate.optional_integer("ttl_days", ttl_days, maximum=100 * 365)
    entries = validate.optional_integer("max_entries", max_entries)
    size_cap = validate.optional_integer("max_bytes", max_bytes)
    at_override = _optional_now(now_ms)
    who = RecordContext(SYSTEM_PRINCIPAL, SYSTEM_DEVICE)
    oldest_first = " ORDER BY created_at_unix_ms, memory_ulid"

    def work(ctx: WriteContext) -> RetentionResult:
        at = ctx.now_ms if at_override is None else at_override
        vectors_before = int(ctx.execute("SELECT COUNT(*) FROM memory_vectors").fetchone()[0])
        expired = _purge_items(
            ctx,
            _ids(
                ctx,
                "SELECT memory_ulid FROM memory_items"
                " WHERE ttl_unix_ms IS NOT NULL AND ttl_unix_ms <= ?" + oldest_first,
                (at,),
            ),
            "ttl_expired",
            who,
        )
        aged = 0
        if days is not None:
            cutoff = at - days * MEMORY_RETENTION_DAY_MS
            aged = _purge_items(
                ctx,
                _ids(
                    ctx,
                    "SELECT memory_ulid FROM memory_items WHERE created_at_unix_ms < ?"
                    + oldest_first,
                    (cutoff,),
                ),
                "max_age",
                who,
            )
        over_entries = 0
        if entries is not None:
            count = int(ctx.execute("SELECT COUNT(*) FROM memory_items").fetchone()[0])
            if count > entries:
                over_entries = _purge_items(
                    ctx,
                    _ids(
                        ctx,
                        "SELECT memory_ulid FROM memory_items" + oldest_first + " LIMIT ?",
                        (count - entries,),
                    ),
                    "max_entries",
                    who,
                )
        over_bytes = 0
        if size_cap is not None:
            sizes = ctx.execute(
                "SELECT memory_ulid, length(CAST(content_text AS BLOB)) FROM memory_items"
                + oldest_first
            ).fetchall()
            total = sum(int(size) for _, size in sizes)
            doomed: list[str] = []
            for key, size in sizes:
                if total <= size_cap:
                    break
                doomed.append(str(key))
                total -= int(size)
            over_bytes = _purge_items(ctx, doomed, "max_bytes", who)
        result = RetentionResult(
            expired=expired,
            aged_out=aged,
            over_max_entries=over_entries,
            over_max_bytes=over_bytes,
            vectors=vectors_before
            - int(ctx.execute("SELECT COUNT(*) FROM memory_vectors").fetchone()[0]),
        )
        if result.total:
            _merge_index(ctx)
        return result

    return await journal.transact(work)


# --- reads ------------------------------------------------------------------------------------


async def get_item(reader: JournalReader, memory_id: str) -> MemoryItem:
    """The memory item with ``memory_id``."""
    item_ulid = validate.ulid("memory_id", memory_id)
    rows = await reader.fetchall(f"{_ITEM_SELECT} WHERE m.memory_ulid = ?", (item_ulid,))
    if not rows:
        raise RecordNotFoundError("memory item", item_ulid)
    return _item(rows[0])


async def get_vector(reader: JournalReader, memory_id: str) -> list[float] | None:
    """The stored (normalised) embedding of an item, or None when it has none."""
    item_ulid = validate.ulid("memory_id", memory_id)
    rows = await reader.fetchall(
        "SELECT vector FROM memory_vectors WHERE memory_ulid = ?", (item_ulid,)
    )
    if not rows:
        return None
    blob = rows[0][0]
    assert isinstance(blob, bytes)
    return decode_vector(blob)


async def list_items(
    reader: JournalReader,
    *,
    principal: str | None = None,
    session_id: str | None = None,
    limit: int = 500,
) -> list[MemoryItem]:
    """Memory items, newest first, optionally of one principal and/or one session."""
    where: list[str] = []
    params: list[object] = []
    if principal is not None:
        where.append("m.principal = ?")
        params.append(validate.identity("principal", principal))
    if session_id is not None:
        where.append("m.session_ulid = ?")
        params.append(validate.ulid("session_id", session_id))
    params.append(validate.integer("limit", limit, minimum=1, maximum=100_000))
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = await reader.fetchall(
        f"{_ITEM_SELECT}{clause} ORDER BY m.created_at_unix_ms DESC, m.memory_ulid DESC LIMIT ?",
        tuple(params),
    )
    return [_item(row) for row in rows]


async def search(
    reader: JournalReader,
    query: str,
    *,
    principal: str,
    vector: Sequence[float] | None = None,
    model_id: str | None = None,
    limit: int = 10,
    now_ms: int | None = None,
) -> list[MemoryHit]:
    """A principal's live items that best match ``query`` and/or ``vector``, best first.

    Candidates are the full-text matches of ``query``'s words (any word) and, with
    ``vector``, the principal's newest items embedded with the same dimensions (and
    ``model_id`` when given). Past-TTL items are never returned. Ties go to the newer item.
    """
    owner = validate.identity("principal", principal)
    text = validate.text("query", query, max_bytes=MAX_QUERY_BYTES, allow_empty=True)
    count = validate.integer("limit", limit, minimum=1, maximum=MAX_SEARCH_LIMIT)
    model = validate.optional_identity("model_id", model_id)
    unit = None if vector is None else normalise_vector("vector", vector)
    match = fts_query(text)
    if match is None and unit is None:
        if not text.strip():
            raise ValidationError("query", "give words to search for, or a vector")
        return []
    at = wall_clock_ms() if now_ms is None else _optional_now(now_ms)
    assert at is not None

    lexical: dict[str, float] = {}
    if match is not None:
        rows = await reader.fetchall(
            "SELECT m.memory_ulid, -bm25(memory_items_fts) FROM memory_items_fts"
            " JOIN memory_items AS m ON m.rowid = memory_items_fts.rowid"
            f" WHERE memory_items_fts MATCH ? AND m.principal = ? AND {_LIVE}"
            " ORDER BY bm25(memory_items_fts) LIMIT ?",
            (match, owner, at, LEXICAL_CANDIDATES),
        )
        best = max((float(row[1]) for row in rows), default=0.0)
        for key, raw in rows:
            # bm25 is relative to the corpus: scale by the best candidate, so it scores 1.
            lexical[str(key)] = float(raw) / best if best > 0 else 1.0

    similarity: dict[str, float] = {}
    if unit is not None:
        model_clause = " AND v.model_id = ?" if model is not None else ""
        rows = await reader.fetchall(
            "SELECT v.memory_ulid, v.vector FROM memory_vectors AS v"
            " JOIN memory_items AS m ON m.memory_ulid = v.memory_ulid"
            f" WHERE m.principal = ? AND {_LIVE} AND v.dims = ?{model_clause}"
            " ORDER BY m.created_at_unix_ms DESC LIMIT ?",
            (owner, at, len(unit), *([model] if model is not None else []), VECTOR_SCAN_LIMIT),
        )
        for key, blob in rows:
            assert isinstance(blob, bytes)
            stored = decode_vector(blob)
            cosine = math.fsum(a * b for a, b in zip(unit, stored, strict=True))
            similarity[str(key)] = min(1.0, max(0.0, (cosine + 1.0) / 2.0))

    candidates = set(lexical) | set(similarity)
    if not candidates:
        return []
    items = await reader.fetchall(
        f"{_ITEM_SELECT} WHERE m.memory_ulid IN (SELECT value FROM json_each(?))",
        (orjson.dumps(sorted(candidates)).decode("utf-8"),),
    )
    hits: list[MemoryHit] = []
    for row in items:
        item = _item(row)
        age_days = max(0, at - item.created_at_unix_ms) / MEMORY_RETENTION_DAY_MS
        lex = lexical.get(item.memory_id, 0.0)
        vec = similarity.get(item.memory_id, 0.0)
        recency = 1.0 / (1.0 + age_days)
        score = LEXICAL_WEIGHT * lex + VECTOR_WEIGHT * vec + RECENCY_WEIGHT * recency
        hits.append(MemoryHit(item, lex, vec, recency, score))
    hits.sort(key=lambda hit: (-hit.score, -hit.item.created_at_unix_ms, hit.item.memory_id))
    return hits[:count]
