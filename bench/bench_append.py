"""Append and verify throughput of the journal against plain sqlite3, measured side by side.

    python bench/bench_append.py [--events N] [--repeat R]

Figures (medians of R runs, each against a baseline run in the same process right before it):
- single: one producer awaiting each ``append`` vs plain sqlite3 INSERT + COMMIT per row;
- concurrent: 64 producers appending at once (group commit) vs one executemany transaction;
- latency p50 / p99 of an ``append`` under those 64 producers;
- batch: ``append_batch`` of 1,000 vs executemany of the same rows;
- verify: full chain verification vs a plain scan of the same rows with SHA-256 over their bytes.
The baseline rows are the rows the journal stored (same columns, same payload bytes).

Then the floors of an awaited append, in µs each (medians of R runs): the baseline's own
INSERT + COMMIT, the Python work every event needs whatever the design (``prepare_event``:
validation, redaction, ULID, serialisation; ``link_hash``), one await of a future resolved in the
next turn of the event loop, and one round trip to a thread and back (``SimpleQueue`` then
``call_soon_threadsafe``), what a dedicated writer thread costs per awaited append.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from figures import percentile
from journal_files import scan_and_hash

from journal_core import EventInput, Journal, new_ulid, verify_file
from journal_core.chain import link_hash
from journal_core.events import prepare_event
from journal_core.schema import MIGRATIONS

PRODUCERS = 64


def make_events(count: int, seed: int = 7) -> list[EventInput]:
    """Typical transcript events: ~300 bytes of payload, a few kinds."""
    rng = random.Random(seed)
    words = [
        "the",
        "agent",
        "reads",
        "the",
        "file",
        "then",
        "runs",
        "the",
        "tests",
        "and",
        "reports",
        "what",
        "failed",
    ]
    session, run = new_ulid(), new_ulid()
    events = []
    for index in range(count):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(20, 40)))
        payload = {"text": text, "index": index, "model": "gpt-x", "tokens": rng.randint(1, 99)}
        events.append(
            EventInput(
                session,
                run,
                rng.choice((1, 2, 3, 4)),
                2,
                "user:alice",
                "host-1",
                payload,
                channel="cli",
            )
        )
    return events


def stored_rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT event_ulid, session_ulid, run_ulid, kind, actor, timestamp_unix_ms, payload_json,"
        " redacted, redaction_rules, hash, prev_hash, principal, device_id, channel,"
        " created_at_unix_ms FROM journal_events ORDER BY seq"
    ).fetchall()
    conn.close()
    return rows


def baseline_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(MIGRATIONS[0].sql)
    return conn


_BASE_INSERT = (
    "INSERT INTO journal_events (event_ulid, session_ulid, run_ulid, kind, actor,"
    " timestamp_unix_ms, payload_json, redacted, redaction_rules, hash, prev_hash, principal,"
    " device_id, channel, created_at_unix_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def baseline_per_row(path: Path, rows: list[tuple[object, ...]]) -> float:
    conn = baseline_db(path)
    start = time.perf_counter()
    for row in rows:
        conn.execute("BEGIN")
        conn.execute(_BASE_INSERT, row)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


def baseline_one_tx(path: Path, rows: list[tuple[object, ...]]) -> float:
    conn = baseline_db(path)
    start = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(_BASE_INSERT, rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


def baseline_scan_sha(path: Path) -> float:
    count, seconds = scan_and_hash(path)
    return count / seconds


async def single(path: Path, events: list[EventInput]) -> float:
    async with await Journal.open(path) as journal:
        start = time.perf_counter()
        for event in events:
            await journal.append(event)
        return len(events) / (time.perf_counter() - start)


async def concurrent(path: Path, events: list[EventInput]) -> tuple[float, list[float]]:
    latencies: list[float] = []
    async with await Journal.open(path) as journal:
        share = [events[i::PRODUCERS] for i in range(PRODUCERS)]

        async def producer(mine: list[EventInput]) -> None:
            for event in mine:
                began = time.perf_counter()
                await journal.append(event)
                latencies.append(time.perf_counter() - began)

        start = time.perf_counter()
        await asyncio.gather(*(producer(mine) for mine in share))
        return len(events) / (time.perf_counter() - start), latencies


async def batch(path: Path, events: list[EventInput]) -> float:
    async with await Journal.open(path) as journal:
        start = time.perf_counter()
        for offset in range(0, len(events), 1_000):
            await journal.append_batch(events[offset : offset + 1_000])
        return len(events) / (time.perf_counter() - start)


def prepare_floor(events: list[EventInput]) -> float:
    """µs per ``prepare_event`` (what ``Journal.append`` does before anything is queued)."""
    start = time.perf_counter()
    for event in events:
        prepare_event(event)
    return (time.perf_counter() - start) / len(events) * 1e6


def link_floor(events: list[EventInput]) -> float:
    """µs per ``link_hash`` of a typical event's columns."""
    prepared = [prepare_event(event) for event in events[:1_000]]
    start = time.perf_counter()
    for seq, event in enumerate(prepared, 1):
        link_hash(event.link_values("0" * 64, seq, event.timestamp_unix_ms))
    return (time.perf_counter() - start) / len(prepared) * 1e6


async def loop_turn_floor(count: int) -> float:
    """µs per await of a future resolved by a callback in the loop's next turn."""
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    for _ in range(count):
        future: asyncio.Future[None] = loop.create_future()
        loop.call_soon(future.set_result, None)
        await future
    return (time.perf_counter() - start) / count * 1e6


async def thread_hop_floor(count: int) -> float:
    """µs per await of a future resolved by another thread woken through a queue."""
    loop = asyncio.get_running_loop()
    inbox: queue.SimpleQueue[asyncio.Future[None] | None] = queue.SimpleQueue()

    def worker() -> None:
        while (future := inbox.get()) is not None:
            loop.call_soon_threadsafe(future.set_result, None)

    thread = threading.Thread(target=worker)
    thread.start()
    start = time.perf_counter()
    for _ in range(count):
        future: asyncio.Future[None] = loop.create_future()
        inbox.put(future)
        await future
    elapsed = time.perf_counter() - start
    inbox.put(None)
    thread.join()
    return elapsed / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    events = make_events(args.events)
    figures: dict[str, list[tuple[float, float]]] = {
        "single": [],
        "concurrent": [],
        "batch": [],
        "verify": [],
    }
    p50s: list[float] = []
    p99s: list[float] = []
    floors: dict[str, list[float]] = {
        "journal append, one producer": [],
        "sqlite3 INSERT + COMMIT (baseline)": [],
        "prepare_event": [],
        "link_hash": [],
        "await a future set in the next loop turn": [],
        "await a thread round trip": [],
    }
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for attempt in range(args.repeat):
            run_dir = root / str(attempt)
            run_dir.mkdir()
            ours = asyncio.run(single(run_dir / "single.db", events))
            rows = stored_rows(run_dir / "single.db")
            base = baseline_per_row(run_dir / "b1.db", rows)
            figures["single"].append((ours, base))
            floors["journal append, one producer"].append(1e6 / ours)
            floors["sqlite3 INSERT + COMMIT (baseline)"].append(1e6 / base)
            ours, latencies = asyncio.run(concurrent(run_dir / "conc.db", events))
            figures["concurrent"].append((ours, baseline_one_tx(run_dir / "b2.db", rows)))
            p50s.append(percentile(latencies, 0.50))
            p99s.append(percentile(latencies, 0.99))
            ours = asyncio.run(batch(run_dir / "batch.db", events))
            figures["batch"].append((ours, baseline_one_tx(run_dir / "b3.db", rows)))
            start = time.perf_counter()
            _, report = verify_file(run_dir / "single.db")
            assert report.ok
            ours = report.checked_events / (time.perf_counter() - start)
            figures["verify"].append((ours, baseline_scan_sha(run_dir / "single.db")))
            floors["prepare_event"].append(prepare_floor(events))
            floors["link_hash"].append(link_floor(events))
            turns = min(args.events, 5_000)
            floors["await a future set in the next loop turn"].append(
                asyncio.run(loop_turn_floor(turns))
            )
            floors["await a thread round trip"].append(asyncio.run(thread_hop_floor(turns)))

    targets = {"single": 0.8, "concurrent": 0.5, "batch": 0.5, "verify": 0.7}
    baselines = {
        "single": "sqlite3 INSERT+COMMIT per row",
        "concurrent": "sqlite3 executemany, one tx",
        "batch": "sqlite3 executemany, one tx",
        "verify": "sqlite3 scan + SHA-256",
    }
    print(f"events per run: {args.events}, runs: {args.repeat} (medians)")
    print(f"{'figure':<12}{'journal/s':>12}{'baseline/s':>12}{'ratio':>8}{'target':>8}  baseline")
    for name, pairs in figures.items():
        ours = statistics.median(pair[0] for pair in pairs)
        base = statistics.median(pair[1] for pair in pairs)
        ratio = statistics.median(pair[0] / pair[1] for pair in pairs)
        print(
            f"{name:<12}{ours:>12,.0f}{base:>12,.0f}{ratio:>8.2f}{targets[name]:>7.1f}x"
            f"  {baselines[name]}"
        )
    print(
        f"latency under {PRODUCERS} producers: p50 {statistics.median(p50s) * 1000:.2f} ms,"
        f" p99 {statistics.median(p99s) * 1000:.2f} ms (target p99 < 5 ms)"
    )
    print("floors of an awaited append, µs each:")
    for name, values in floors.items():
        print(f"  {name:<44}{statistics.median(values):>8.1f}")


if __name__ == "__main__":
    main()
