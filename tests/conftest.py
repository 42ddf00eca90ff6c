"""Shared fixtures: journals built through the public API, and raw SQLite access to tamper."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from postgres_server import find_bindir, running_server

from journal_core import EventInput, Journal

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BASE_MS = 1_700_000_000_000

EventFactory = Callable[..., EventInput]
JournalFactory = Callable[[Path, int, int], Path]
RawConnect = Callable[[Path], contextlib.AbstractContextManager[sqlite3.Connection]]


def seeded_ulid(rng: random.Random, timestamp_ms: int = _BASE_MS) -> str:
    """A canonical ULID drawn from ``rng`` (reproducible, unlike ``new_ulid``)."""
    value = (timestamp_ms << 80) | rng.getrandbits(80)
    return "".join(_CROCKFORD[(value >> (5 * (25 - i))) & 31] for i in range(26))


def _event_input(**overrides: Any) -> EventInput:
    rng = random.Random()
    fields: dict[str, Any] = {
        "session_id": seeded_ulid(rng),
        "run_id": seeded_ulid(rng),
        "kind": "message_received",
        "actor": "user",
        "principal": "user:alice",
        "device_id": "laptop-1",
        "payload": {"text": "hello"},
    }
    fields.update(overrides)
    return EventInput(**fields)


@pytest.fixture(scope="session")
def event_input() -> EventFactory:
    """Factory of valid ``EventInput``s; keyword arguments override any field."""
    return _event_input


def varied_event(rng: random.Random, index: int, sessions: list[str]) -> EventInput:
    """One valid event whose kind, actor, identity fields and payload form vary with ``rng``.

    Every payload but the non-JSON ones carries a unique ``evt-...`` marker; some carry a
    secret, so the redactor fires and ``redacted``/``redaction_rules`` vary too.
    """
    marker = f"evt-{index}-{rng.getrandbits(48):012x}"
    style = index % 8
    payload: object
    if style == 0:
        payload = {"text": f"hello {marker}", "n": index}
    elif style == 1:
        payload = f'{{"json_text": "{marker}", "list": [1, 2.5, null, true]}}'
    elif style == 2:
        payload = {"nested": {"a": [{"b": marker}, "ünïcödé ✓ 日本"]}, "big": 2**70 + index}
    elif style == 3:
        payload = {"marker": marker, "quote": 'he said "|" \\ \t tab', "password": "hunter2"}
    elif style == 4:
        payload = {"marker": marker, "items": list(range(rng.randint(0, 30)))}
    elif style == 5:
        payload = [marker, {"k": "v"}, -1, 1.5e-7]
    elif style == 6:
        payload = b'{"bytes": "' + marker.encode("utf-8") + b'"}'
    else:
        payload = rng.choice(["not json at all", b"\xff\xfe binary", None, "   "])
    timestamp = rng.choice([None, _BASE_MS + index * 1_000 + rng.randint(0, 999)])
    return EventInput(
        session_id=rng.choice(sessions),
        run_id=seeded_ulid(rng, _BASE_MS + index),
        kind=rng.choice(["message_received", "tool_proposed", 4, 6, 7, 1000]),
        actor=rng.choice(["user", "agent", 3, "plugin", 200]),
        principal=rng.choice(["user:alice", "agent:ö-bot", "svc|pipe"]),
        device_id=rng.choice(["laptop-1", "phone", "d" * 40]),
        channel=rng.choice([None, "slack:#ops", "канал"]),
        payload=payload,
        event_id=rng.choice([None, seeded_ulid(rng, _BASE_MS + index)]),
        timestamp_unix_ms=timestamp,
    )


async def _fill(path: Path, events: list[EventInput], rng: random.Random) -> None:
    async with await Journal.open(path) as journal:
        position = 0
        while position < len(events):
            size = rng.randint(1, 12)
            chunk = events[position : position + size]
            position += size
            mode = rng.randrange(3)
            if mode == 0:
                for event in chunk:
                    await journal.append(event)
            elif mode == 1:
                await journal.append_batch(chunk)
            else:  # concurrent appends: group commit, still in submission order
                await asyncio.gather(*(journal.append(event) for event in chunk))


def build_journal(path: Path, n_events: int, seed: int) -> Path:
    """Create the journal at ``path`` with ``n_events`` varied events (seq 1..n); return path."""
    rng = random.Random(seed)
    sessions = [seeded_ulid(rng) for _ in range(3)]
    events = [varied_event(rng, index, sessions) for index in range(n_events)]
    asyncio.run(_fill(path, events, rng))
    return path


@pytest.fixture(scope="session")
def make_journal() -> JournalFactory:
    """``make_journal(path, n_events, seed)``: a closed journal of n varied events, via the API."""
    return build_journal


@contextlib.contextmanager
def raw_connection(path: Path) -> Iterator[sqlite3.Connection]:
    """An autocommit sqlite3 connection to ``path``, as an attacker would open it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture(scope="session")
def raw_db() -> RawConnect:
    """``with raw_db(path) as conn:`` a plain sqlite3 connection to tamper with the file."""
    return raw_connection


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL server on loopback for the whole run (see tests/postgres_server.py)."""
    if find_bindir() is None:
        if os.environ.get("JOURNAL_REQUIRE_POSTGRES") == "1":
            pytest.fail("JOURNAL_REQUIRE_POSTGRES=1 but PostgreSQL's server binaries are missing")
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    with running_server() as server:
        yield server


@pytest.fixture
def central_url(postgres: Any, request: pytest.FixtureRequest) -> str:
    """A URL of a fresh, empty database on the test server, one per test."""
    name = "t_" + "".join(ch if ch.isalnum() else "_" for ch in request.node.name.lower())[:55]
    return str(postgres.create_database(name))
