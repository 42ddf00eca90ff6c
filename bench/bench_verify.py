"""Chain verification at scale: full and incremental verify against a plain scan + SHA-256.

    python bench/bench_verify.py [--quick] [--sizes 100000,1000000] [--repeat R] [--demo-db PATH]

Journals of N events (typical transcript events, ~300-byte payloads, written with
``Journal.append_batch`` in batches of 2,000) are generated once and cached in ``bench/out/``
(gitignored) as ``verify-<N>.db``; generation time is printed (and kept next to the file). Every
measurement runs in a fresh subprocess, after the file was read once so that it sits in the page
cache for the baseline and for the journal alike. Figures (medians of R runs; each run measures
the baseline right before the journal's own figures):

- full verify, events/s: ``verify_file(path)`` (chain and record tables, what ``journal verify``
  runs) and ``verify_file(path, records=False)`` (chain only), against the baseline: a plain
  ``SELECT`` of the same rows in seq order with one SHA-256 over their text columns per row (the
  approach of ``bench_append.baseline_scan_sha``); the chain-only ratio is also given per CPU
  second (user + system time of each process), which waiting for a core on a busy machine does
  not inflate;
- peak RSS growth of the verifying process (``ru_maxrss`` after the call minus before it), to show
  that memory stays bounded as the journal grows;
- incremental verify after 1,000 new events on the largest journal (a copy of it):
  ``verify_file(path, from_seq=last_verified + 1, records=False)`` against a full verify of the
  same copy (target: >= 100x faster);
- bytes of journal file per event against the payload bytes per event, for those journals and
  for 20,000 typical transcript entries (``tape.append_entries``) written into a new journal
  (each entry is a tape row, its full-text index entry and a chained record event), with
  ``dbstat``'s account of where the bytes go;
- with ``--demo-db`` (default: ``bench/out/demo-1000000.db`` when ``bench_inspector.py`` built it),
  the chain / records split and the bytes per event of a journal written by the demo daemon, where
  most events are chained record writes (transcript entries, runs, tool jobs ...).

``--quick`` uses 20,000 and 100,000 events and 1 run (under a minute once cached).
``--full-only`` stops after the full-verify table. A size of
10,000,000 is accepted in ``--sizes`` (generation takes long: see ``docs/performance.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from journal_files import copy_journal, head_seq, install, journal_files, scan_and_hash

from journal_core import EventInput, Journal, new_ulid, sessions, tape, verify_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
BATCH = 2_000
INCREMENT = 1_000
TRANSCRIPT_ENTRIES = 20_000
TARGET_FULL = 0.7
TARGET_INCREMENTAL = 100.0

_WORDS = (
    "the",
    "agent",
    "reads",
    "file",
    "then",
    "runs",
    "tests",
    "and",
    "reports",
    "what",
    "failed",
    "because",
    "config",
    "changed",
    "after",
    "merge",
    "token",
    "refresh",
    "expiry",
    "seconds",
    "milliseconds",
    "deploy",
    "staging",
    "rollout",
    "health",
    "checks",
    "green",
    "build",
    "passed",
    "review",
    "branch",
    "commit",
    "patch",
    "module",
    "import",
    "error",
    "warning",
)
_TOOLS = ("shell", "read_file", "edit_file", "http_get", "search")
_FILES = ("src/auth/refresh.py", "tests/test_auth.py", "deploy/staging/api.yaml", "README.md")


def _prose(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(low, high)))


def transcript_payload(rng: random.Random, index: int) -> tuple[int, int, dict[str, object]]:
    """(kind, actor, payload) of a typical transcript event; payloads average about 300 bytes."""
    roll = rng.random()
    if roll < 0.55:
        return (
            2,
            2,
            {
                "type": "model_token",
                "index": index,
                "text": _prose(rng, 18, 42),
                "model": "claude-sonnet-4-5",
                "is_final": False,
            },
        )
    if roll < 0.70:
        return 1, 1, {"type": "message.received", "channel": "cli", "text": _prose(rng, 25, 55)}
    if roll < 0.85:
        return (
            3,
            2,
            {
                "type": "tool_proposed",
                "tool": rng.choice(_TOOLS),
                "tool_call_id": f"call_{index:08d}",
                "arguments": {"command": f"pytest -x {rng.choice(_FILES)}", "timeout_ms": 30_000},
                "risk": rng.choice(("low", "medium", "high")),
                "rationale": _prose(rng, 8, 20),
            },
        )
    lines = [f"{rng.choice(_FILES)}::test_{rng.choice(_WORDS)} PASSED" for _ in range(3)]
    return (
        4,
        4,
        {
            "type": "tool_executed",
            "tool": "shell",
            "exit_code": rng.choice((0, 0, 0, 1)),
            "duration_ms": rng.randint(5, 9_000),
            "stdout": "\n".join(lines),
        },
    )


def event_batches(count: int, seed: int) -> Iterator[list[EventInput]]:
    """``count`` events in batches of ``BATCH``: 8 agents, a new run every ~200 events."""
    rng = random.Random(seed)
    sessions = [(new_ulid(), new_ulid()) for _ in range(8)]
    batch: list[EventInput] = []
    for index in range(count):
        slot = rng.randrange(len(sessions))
        if rng.random() < 1 / 200:
            sessions[slot] = (sessions[slot][0], new_ulid())
        session, run = sessions[slot]
        kind, actor, payload = transcript_payload(rng, index)
        batch.append(
            EventInput(
                session, run, kind, actor, f"user:agent{slot}", "bench-host", payload, channel="cli"
            )
        )
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def _write(path: Path, count: int, seed: int, progress: bool) -> None:
    started = time.perf_counter()
    async with await Journal.open(path) as journal:
        done = 0
        for batch in event_batches(count, seed):
            await journal.append_batch(batch)
            done += len(batch)
            if progress and (done % 100_000 == 0 or done == count):
                elapsed = time.perf_counter() - started
                print(
                    f"  generating {path.name}: {done:,}/{count:,} events,"
                    f" {elapsed:.0f} s, {done / elapsed:,.0f} events/s",
                    flush=True,
                )


def ensure_journal(size: int) -> tuple[Path, float]:
    """The cached journal of ``size`` events (built if missing) and the seconds it took to build."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"verify-{size}.db"
    meta = OUT / f"verify-{size}.json"
    if path.exists() and meta.exists():
        return path, float(json.loads(meta.read_text())["generation_seconds"])
    part = OUT / f"verify-{size}.db.part"
    for leftover in journal_files(part):
        leftover.unlink(missing_ok=True)
    print(f"building {path.name} ({size:,} events, append_batch of {BATCH:,}) ...", flush=True)
    started = time.perf_counter()
    asyncio.run(_write(part, size, seed=size, progress=size >= 100_000))
    seconds = time.perf_counter() - started
    install(part, path)
    meta.write_text(json.dumps({"events": size, "generation_seconds": seconds}))
    print(f"built {path.name} in {seconds:.1f} s ({size / seconds:,.0f} events/s)", flush=True)
    return path, seconds


def warm(path: Path) -> None:
    """Read the files once so every measurement starts with them in the page cache."""
    for item in journal_files(path):
        if item.exists():
            with item.open("rb") as handle:
                while handle.read(8 << 20):
                    pass


# --- child processes ----------------------------------------------------------------------------


def _rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_verify(path: Path, records: bool, from_seq: int, loops: int) -> dict[str, object]:
    """Run ``verify_file`` ``loops`` times; seconds of each, and the peak RSS growth."""
    before = _rss_kb()
    seconds: list[float] = []
    cpu_seconds: list[float] = []
    checked = records_checked = 0
    ok = True
    for _ in range(loops):
        start, cpu_start = time.perf_counter(), time.process_time()
        _, report = verify_file(path, from_seq=from_seq, records=records)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
        checked, records_checked, ok = report.checked_events, report.records_checked, report.ok
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "checked": checked,
        "records_checked": records_checked,
        "ok": ok,
        "rss_before_kb": before,
        "rss_growth_kb": _rss_kb() - before,
    }


def child_scan(path: Path) -> dict[str, object]:
    """The baseline: a plain scan of the same rows with one SHA-256 per row over their text."""
    before = _rss_kb()
    cpu_start = time.process_time()
    count, seconds = scan_and_hash(path)
    return {
        "seconds": [seconds],
        "cpu_seconds": [time.process_time() - cpu_start],
        "checked": count,
        "rss_growth_kb": _rss_kb() - before,
    }


def run_child(*args: str) -> dict[str, object]:
    """Run this script as a child measuring one thing; returns what it printed (JSON)."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def verify_child(
    path: Path, *, records: bool, from_seq: int = 1, loops: int = 1
) -> dict[str, object]:
    return run_child("verify", str(path), str(int(records)), str(from_seq), str(loops))


def _seconds(result: dict[str, object], key: str = "seconds") -> float:
    values = result[key]
    assert isinstance(values, list)
    return float(statistics.median(values))


def _int(result: dict[str, object], key: str) -> int:
    value = result[key]
    assert isinstance(value, int)
    return value


# --- figures -------------------------------------------------------------------------------------


def size_per_event(path: Path) -> dict[str, float]:
    """File bytes per event, payload bytes per event, and the largest objects in the file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        events, payload = conn.execute(
            "SELECT COUNT(*), SUM(length(CAST(payload_json AS BLOB))) FROM journal_events"
        ).fetchone()
        tape = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(length(CAST(payload_json AS BLOB))), 0)"
            " FROM orchestrator_tape"
        ).fetchone()
    finally:
        conn.close()
    file_bytes = sum(item.stat().st_size for item in journal_files(path)[:2] if item.exists())
    return {
        "events": float(events),
        "file_per_event": file_bytes / events,
        "payload_per_event": payload / events,
        "file_bytes": float(file_bytes),
        "tape_entries": float(tape[0]),
        "tape_payload_per_entry": (tape[1] / tape[0]) if tape[0] else 0.0,
    }


_TAPE_TYPES = {
    "model_token": "model_token",
    "message.received": "message.received",
    "tool_proposed": "tool_proposal",
    "tool_executed": "tool_result",
}


def transcript_growth(entries: int) -> dict[str, Any]:
    """Bytes of file per transcript entry: typical entries appended to one run of a new journal."""
    work = OUT / "growth-work.db"
    for item in journal_files(work):
        item.unlink(missing_ok=True)
    rng = random.Random(11)
    items: list[tuple[str, object]] = []
    for index in range(entries):
        _, _, payload = transcript_payload(rng, index)
        items.append((_TAPE_TYPES[str(payload.pop("type"))], payload))

    async def write() -> None:
        async with await Journal.open(work) as journal:
            session = await sessions.create_session(
                journal, session_key="bench:growth", principal="user:bench", device_id="bench"
            )
            run = await sessions.start_run(journal, session.session_id)
            for start in range(0, entries, 100):
                await tape.append_entries(journal, run.run_id, items[start : start + 100])

    try:
        asyncio.run(write())
        before = journal_files(work)[0].stat().st_size
        conn = sqlite3.connect(f"file:{work}?mode=ro", uri=True)
        try:
            payload = conn.execute(
                "SELECT SUM(length(CAST(payload_json AS BLOB))) FROM orchestrator_tape"
            ).fetchone()[0]
        finally:
            conn.close()
        objects = biggest_objects(work, top=8)
        total = sum(pages for _, pages in biggest_objects(work, top=1_000))
        return {
            "entries": float(entries),
            "file_per_entry": before / entries,
            "payload_per_entry": payload / entries,
            "objects": [(name, pages / total) for name, pages in objects],
        }
    finally:
        for item in journal_files(work):
            item.unlink(missing_ok=True)


def biggest_objects(path: Path, top: int = 6) -> list[tuple[str, int]]:
    """The tables and indexes taking most of the file (``dbstat``)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT ?", (top,)
        ).fetchall()
    except sqlite3.Error:
        return []
    finally:
        conn.close()
    return [(str(name), int(size)) for name, size in rows]


def measure_full(path: Path, repeat: int) -> dict[str, float]:
    """Median rates of the baseline, chain-only and full verify, their ratios, and RSS growth."""
    warm(path)
    scan_rates: list[float] = []
    chain_rates: list[float] = []
    full_rates: list[float] = []
    chain_ratios: list[float] = []
    full_ratios: list[float] = []
    chain_cpu_ratios: list[float] = []
    rss_chain: list[int] = []
    rss_full: list[int] = []
    records_checked = 0
    for _ in range(repeat):
        scan = run_child("scan", str(path))
        chain = verify_child(path, records=False)
        full = verify_child(path, records=True)
        assert chain["ok"], "the benchmark journal must verify"
        assert full["ok"], "the benchmark journal must verify"
        base_rate = _int(scan, "checked") / _seconds(scan)
        chain_rate = _int(chain, "checked") / _seconds(chain)
        full_rate = _int(full, "checked") / _seconds(full)
        scan_rates.append(base_rate)
        chain_rates.append(chain_rate)
        full_rates.append(full_rate)
        chain_ratios.append(chain_rate / base_rate)
        full_ratios.append(full_rate / base_rate)
        # Per CPU second too: on a shared machine, waiting for a core is not the code's time.
        chain_cpu_ratios.append(_seconds(scan, "cpu_seconds") / _seconds(chain, "cpu_seconds"))
        rss_chain.append(_int(chain, "rss_growth_kb"))
        rss_full.append(_int(full, "rss_growth_kb"))
        records_checked = _int(full, "records_checked")
    events = head_seq(path)
    return {
        "events": float(events),
        "scan": statistics.median(scan_rates),
        "chain": statistics.median(chain_rates),
        "full": statistics.median(full_rates),
        "chain_ratio": statistics.median(chain_ratios),
        "full_ratio": statistics.median(full_ratios),
        "chain_cpu_ratio": statistics.median(chain_cpu_ratios),
        "chain_seconds": events / statistics.median(chain_rates),
        "full_seconds": events / statistics.median(full_rates),
        "rss_chain_mb": statistics.median(rss_chain) / 1024,
        "rss_full_mb": statistics.median(rss_full) / 1024,
        "records_checked": float(records_checked),
    }


def measure_incremental(path: Path, repeat: int) -> dict[str, float]:
    """Append 1,000 events to a copy of ``path``; incremental vs full verify of that copy."""
    work = OUT / "incremental-work.db"
    for item in journal_files(work):
        item.unlink(missing_ok=True)
    copy_journal(path, work)
    try:
        last_verified = head_seq(work)
        batches = list(event_batches(INCREMENT, seed=4_242))
        asyncio.run(_append(work, batches))
        warm(work)
        increments: list[float] = []
        fulls: list[float] = []
        full_records: list[float] = []
        checked = 0
        for _ in range(repeat):
            incremental = verify_child(work, records=False, from_seq=last_verified + 1, loops=21)
            full = verify_child(work, records=False)
            with_records = verify_child(work, records=True)
            assert incremental["ok"]
            assert full["ok"]
            assert with_records["ok"]
            checked = _int(incremental, "checked")
            increments.append(_seconds(incremental))
            fulls.append(_seconds(full))
            full_records.append(_seconds(with_records))
        incremental_s = statistics.median(increments)
        return {
            "base_events": float(last_verified),
            "checked": float(checked),
            "incremental_s": incremental_s,
            "full_s": statistics.median(fulls),
            "full_records_s": statistics.median(full_records),
            "ratio": statistics.median(f / i for f, i in zip(fulls, increments, strict=True)),
            "ratio_records": statistics.median(
                f / i for f, i in zip(full_records, increments, strict=True)
            ),
        }
    finally:
        for item in journal_files(work):
            item.unlink(missing_ok=True)


async def _append(path: Path, batches: list[list[EventInput]]) -> None:
    async with await Journal.open(path, create=False) as journal:
        for batch in batches:
            await journal.append_batch(batch)


def measure_demo(path: Path, repeat: int) -> dict[str, float]:
    """Chain vs records split on a journal written by the demo daemon."""
    warm(path)
    chain: list[float] = []
    full: list[float] = []
    records_checked = 0
    rss: list[int] = []
    for _ in range(repeat):
        only_chain = verify_child(path, records=False)
        with_records = verify_child(path, records=True)
        chain.append(_seconds(only_chain))
        full.append(_seconds(with_records))
        records_checked = _int(with_records, "records_checked")
        rss.append(_int(with_records, "rss_growth_kb"))
    return {
        "events": float(head_seq(path)),
        "chain_s": statistics.median(chain),
        "full_s": statistics.median(full),
        "records_checked": float(records_checked),
        "rss_full_mb": statistics.median(rss) / 1024,
    }


# --- main ----------------------------------------------------------------------------------------


def _child_main(argv: list[str]) -> int:
    kind, path = argv[0], Path(argv[1])
    if kind == "verify":
        result = child_verify(path, bool(int(argv[2])), int(argv[3]), int(argv[4]))
    elif kind == "scan":
        result = child_scan(path)
    else:
        raise SystemExit(f"unknown child {kind!r}")
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Build or reuse the journals, run every measurement, print the tables."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        return _child_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k and 100k events, 1 run")
    parser.add_argument("--sizes", help="comma-separated journal sizes (default 100000,1000000)")
    parser.add_argument("--repeat", type=int, default=None, help="runs (default 3; quick 1)")
    parser.add_argument("--demo-db", type=Path, default=None, help="a demo-daemon journal")
    parser.add_argument(
        "--full-only",
        action="store_true",
        help="only the full-verify table (no incremental, size or demo figures)",
    )
    args = parser.parse_args(argv)
    if args.sizes:
        sizes = sorted(int(item) for item in args.sizes.split(","))
    else:
        sizes = [20_000, 100_000] if args.quick else [100_000, 1_000_000]
    repeat = args.repeat or (1 if args.quick else 3)
    demo = args.demo_db or (None if args.quick else OUT / "demo-1000000.db")
    quick = bool(args.quick)

    print(
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs"
    )
    print(f"sizes {', '.join(f'{size:,}' for size in sizes)}; {repeat} run(s), medians")
    journals = {size: ensure_journal(size) for size in sizes}
    for size, (_, seconds) in journals.items():
        print(f"journal of {size:,} events: generated in {seconds:.1f} s ({size / seconds:,.0f}/s)")

    full = {size: measure_full(path, repeat) for size, (path, _) in journals.items()}
    print()
    print("full verify, events/s (baseline: plain SELECT of the same rows + SHA-256 per row)")
    print(
        f"{'events':>11}{'baseline/s':>12}{'chain/s':>10}{'ratio':>7}{'full/s':>10}{'ratio':>7}"
        f"{'target':>8}{'full s':>8}{'RSS+ MB':>9}{'chain CPU ratio':>16}"
    )
    for size, row in full.items():
        print(
            f"{size:>11,}{row['scan']:>12,.0f}{row['chain']:>10,.0f}{row['chain_ratio']:>7.2f}"
            f"{row['full']:>10,.0f}{row['full_ratio']:>7.2f}{TARGET_FULL:>7.1f}x"
            f"{row['full_seconds']:>8.1f}{max(row['rss_chain_mb'], row['rss_full_mb']):>9.1f}"
            f"{row['chain_cpu_ratio']:>16.2f}"
        )
    print(
        "  chain = verify_file(records=False); full = verify_file() (chain + record tables);"
        " RSS+ = peak RSS growth during the call;"
        " chain CPU ratio = baseline CPU seconds / chain CPU seconds (same runs)"
    )
    if args.full_only:
        return 0

    largest_size = sizes[-1]
    incremental = measure_incremental(journals[largest_size][0], repeat)
    print()
    print(
        f"incremental verify after {INCREMENT:,} new events on {largest_size:,}"
        f" (verify_file(from_seq={int(incremental['base_events']) + 1:,}, records=False),"
        " median of 21 calls)"
    )
    print(
        f"  incremental {incremental['incremental_s'] * 1000:8.1f} ms"
        f" ({int(incremental['checked']):,} events checked)"
    )
    print(
        f"  full chain  {incremental['full_s'] * 1000:8.1f} ms -> {incremental['ratio']:,.0f}x"
        f" faster (target >= {TARGET_INCREMENTAL:.0f}x)"
    )
    print(
        f"  full+records {incremental['full_records_s'] * 1000:7.1f} ms ->"
        f" {incremental['ratio_records']:,.0f}x faster"
    )

    print()
    print("journal size per event (file bytes incl. WAL / events) vs payload bytes")
    for size, (path, _) in journals.items():
        sizes_row = size_per_event(path)
        print(
            f"  append_batch journal {size:>11,}: {sizes_row['file_per_event']:7.0f} B/event,"
            f" payload {sizes_row['payload_per_event']:5.0f} B"
            f" ({sizes_row['file_per_event'] / sizes_row['payload_per_event']:.2f}x)"
        )
    growth = transcript_growth(TRANSCRIPT_ENTRIES // (10 if quick else 1))
    print(
        f"  transcript entries (tape.append_entries, {int(growth['entries']):,} into a new"
        f" journal): {growth['file_per_entry']:7.0f} B/entry, payload"
        f" {growth['payload_per_entry']:5.0f} B"
        f" ({growth['file_per_entry'] / growth['payload_per_entry']:.2f}x); where the bytes go:"
    )
    for name, share in growth["objects"]:
        print(f"      {name:<36}{share * growth['file_per_entry']:7.0f} B/entry {share:6.1%}")
    if demo is not None and demo.exists():
        demo_size = size_per_event(demo)
        print(
            f"  demo-daemon journal  {int(demo_size['events']):>11,}:"
            f" {demo_size['file_per_event']:7.0f} B/event,"
            f" payload {demo_size['payload_per_event']:5.0f} B"
            f" ({demo_size['file_per_event'] / demo_size['payload_per_event']:.2f}x;"
            " most of its events are record events with ~120-byte digest payloads)"
        )
        total = demo_size["file_bytes"]
        for name, pages in biggest_objects(demo):
            print(f"      {name:<36}{pages / 1e6:9.1f} MB {pages / total:6.1%}")
        split = measure_demo(demo, repeat)
        print()
        print(f"verify split on the demo-daemon journal ({int(split['events']):,} events)")
        print(
            f"  chain only {split['chain_s']:6.1f} s ({split['events'] / split['chain_s']:,.0f}"
            f" events/s); chain + records {split['full_s']:6.1f} s"
            f" ({int(split['records_checked']):,} record rows);"
            f" records share {1 - split['chain_s'] / split['full_s']:.0%};"
            f" peak RSS growth {split['rss_full_mb']:.1f} MB"
        )
    elif demo is not None:
        print(f"  (no demo-daemon journal at {demo}: run bench/bench_inspector.py to build it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
