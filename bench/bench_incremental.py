"""Incremental re-verify after 1,000 new events against a full verify of the same journal.

    python bench/bench_incremental.py [--events N] [--full] [--repeat R]

A journal of N events (default 200,000; ``--full``: 1,000,000) is written once with
``Journal.append_batch`` in batches of 2,000, checkpointed every 1,000 events (the default), and
cached in ``bench/out/`` (gitignored) with its key and anchor file. Each run copies it, appends
1,000 events with checkpoints off (so they all follow the newest checkpoint, as between two
checkpoints of a live journal), then times, in the same warm process:

- ``verify_file(copy, incremental=True)``: the newest signed checkpoint, its row, the 1,000 events
  (the process has used the signature code once before, as a verifying daemon would have);
- ``verify_file(copy, records=False)``: the full chain (the same work minus the signature, on
  every event).

It prints the medians of R runs and their ratio (target: >= 100x at 1,000,000 events).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from journal_core import EventInput, Journal, new_ulid, verify_file
from journal_core.checkpoints import load_key_file
from journal_core.connection import JournalConfig

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
BATCH = 2_000
INCREMENT = 1_000
TARGET = 100.0


def _events(start: int, count: int, session: str, run: str) -> list[EventInput]:
    return [
        EventInput(
            session_id=session,
            run_id=run,
            kind="model_token" if index % 3 else "message_received",
            actor="agent" if index % 3 else "user",
            principal="user:alice",
            device_id="laptop-1",
            payload={"text": f"event {index} " + "lorem ipsum dolor sit amet " * 10},
        )
        for index in range(start, start + count)
    ]


async def _write(path: Path, start: int, count: int, config: JournalConfig) -> None:
    session, run = new_ulid(), new_ulid()
    async with await Journal.open(path, config) as journal:
        for offset in range(0, count, BATCH):
            size = min(BATCH, count - offset)
            await journal.append_batch(_events(start + offset, size, session, run))


def _files(path: Path) -> list[Path]:
    return [path, Path(f"{path}.key"), Path(f"{path}.anchors")]


def cached_journal(events: int) -> Path:
    """The cached journal of ``events`` events (written once, then reused)."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"incremental-{events}.db"
    if all(item.exists() for item in _files(path)):
        return path
    for item in [*_files(path), Path(f"{path}-wal"), Path(f"{path}-shm")]:
        item.unlink(missing_ok=True)
    began = time.perf_counter()
    asyncio.run(_write(path, 0, events, JournalConfig(checkpoint_every_s=0)))
    print(f"generated {events:,} events in {time.perf_counter() - began:.1f} s -> {path}")
    return path


def _copy(source: Path, target: Path) -> None:
    for item, copy in zip(_files(source), _files(target), strict=True):
        copy.unlink(missing_ok=True)
        shutil.copyfile(item, copy)
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)


def measure(source: Path, events: int) -> tuple[float, float, int, int]:
    """(incremental s, full s, events checked incrementally, events checked in full)."""
    work = OUT / f"incremental-{events}-work.db"
    _copy(source, work)
    asyncio.run(_write(work, events, INCREMENT, JournalConfig(checkpoints=False)))
    work.read_bytes()  # warm the page cache for both measurements alike
    # Load the signature code once (OpenSSL's first use costs tens of ms, once per process).
    load_key_file(Path(f"{work}.key")).public.verify(b"", bytes(64))
    began = time.perf_counter()
    _, incremental = verify_file(work, incremental=True)
    incremental_s = time.perf_counter() - began
    began = time.perf_counter()
    _, full = verify_file(work, records=False)
    full_s = time.perf_counter() - began
    if not (incremental.ok and full.ok) or incremental.scope != "incremental":
        raise SystemExit(f"unexpected reports: {incremental.to_dict()} / {full.ok}")
    for item in [*_files(work), Path(f"{work}-wal"), Path(f"{work}-shm")]:
        item.unlink(missing_ok=True)
    return incremental_s, full_s, incremental.checked_events, full.checked_events


def main() -> None:
    """Parse the arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--full", action="store_true", help="1,000,000 events")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    events = 1_000_000 if args.full else args.events
    source = cached_journal(events)
    runs = [measure(source, events) for _ in range(args.repeat)]
    incremental_s = statistics.median(run[0] for run in runs)
    full_s = statistics.median(run[1] for run in runs)
    ratio = full_s / incremental_s
    print(f"journal: {events:,} events + {INCREMENT:,} new (checkpoint every 1,000)")
    print(f"incremental re-verify: {incremental_s * 1000:8.2f} ms ({runs[0][2]:,} events checked)")
    print(f"full verify (chain):   {full_s * 1000:8.2f} ms ({runs[0][3]:,} events checked)")
    verdict = "meets" if ratio >= TARGET else "below"
    print(f"ratio: {ratio:,.0f}x ({verdict} the {TARGET:.0f}x target; median of {args.repeat})")


if __name__ == "__main__":
    main()
