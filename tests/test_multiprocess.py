"""Several real processes writing one journal file, while this process reads it."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from journal_core import Journal, JournalReader, verify_file

REPO_ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 4
EVENTS_PER_PROCESS = 300
DEADLINE_S = 60.0

# Each writer opens its own Journal, says "ready", waits for "go" on stdin, then appends with
# concurrent `append` calls (group commit) and prints [[event_id, seq], ...] as JSON.
WRITER = """
import asyncio, json, sys
from journal_core import EventInput, Journal, new_ulid

async def main(path: str, count: int, tag: str) -> None:
    session, run = new_ulid(), new_ulid()
    async with await Journal.open(path) as journal:
        print("ready", flush=True)
        sys.stdin.readline()
        done = []
        for start in range(0, count, 10):
            events = [
                EventInput(session_id=session, run_id=run, kind="model_token", actor="agent",
                           principal=f"proc-{tag}", device_id="host", channel=tag,
                           payload={"proc": tag, "i": i})
                for i in range(start, min(count, start + 10))
            ]
            results = await asyncio.gather(*(journal.append(event) for event in events))
            done.extend([result.event_id, result.seq] for result in results)
    print(json.dumps(done), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
"""

# Reads one path per line on stdin, opens (creating) a journal there, prints its id.
OPENER = """
import asyncio, sys
from journal_core import Journal

async def main() -> None:
    for line in sys.stdin:
        async with await Journal.open(line.strip()) as journal:
            print(journal.journal_id, flush=True)

asyncio.run(main())
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if part
    )
    return env


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


async def _create_empty(path: Path) -> str:
    async with await Journal.open(path) as journal:
        return journal.journal_id


async def _read_while_writing(path: Path, writers: list[subprocess.Popen[str]]) -> int:
    """Poll the journal as the writers run; every snapshot must be one unbroken line."""
    deadline = time.monotonic() + DEADLINE_S
    last_seq, last_hash, polls = 0, None, 0
    async with await JournalReader.open(path) as reader:
        while True:
            running = any(writer.poll() is None for writer in writers)
            batch = await reader.events_after(last_seq, 1_000)
            polls += 1
            for event in batch:
                assert event.seq == last_seq + 1, f"reader saw seq {event.seq} after {last_seq}"
                if last_hash is not None:
                    assert event.prev_hash == last_hash, f"seq {event.seq} is not chained"
                last_seq, last_hash = event.seq, event.hash
            if not running and not batch:
                break
            assert time.monotonic() < deadline, "writers did not finish in time"
            if not batch:
                await asyncio.sleep(0.005)
    assert polls > 1
    return last_seq


def test_four_processes_append_concurrently_to_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    asyncio.run(_create_empty(path))
    writers = [
        _spawn(WRITER, str(path), str(EVENTS_PER_PROCESS), f"p{index}")
        for index in range(PROCESSES)
    ]
    try:
        for writer in writers:
            assert writer.stdout is not None
            assert writer.stdout.readline() == "ready\n", writer.stderr and writer.stderr.read()
        for writer in writers:  # release them together
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        seen = asyncio.run(_read_while_writing(path, writers))
        outputs = [writer.communicate(timeout=DEADLINE_S) for writer in writers]
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()

    reported: dict[str, int] = {}
    for writer, (stdout, stderr) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, stderr
        assert stderr == "", stderr  # no SQLITE_BUSY, no JournalBusyError, no warning
        pairs = json.loads(stdout)
        assert len(pairs) == EVENTS_PER_PROCESS
        reported.update((event_id, seq) for event_id, seq in pairs)
    total = PROCESSES * EVENTS_PER_PROCESS
    assert len(reported) == total
    assert seen == total

    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT seq, event_ulid FROM journal_events ORDER BY seq").fetchall()
    finally:
        conn.close()
    assert [seq for seq, _ in rows] == list(range(1, total + 1))
    assert {event_id: seq for seq, event_id in rows} == reported
    _, report = verify_file(path)
    assert report.ok, report.breaks[:5]
    assert report.checked_events == total


def test_two_processes_creating_the_same_new_journal_agree_on_its_id(tmp_path: Path) -> None:
    rounds = 15
    openers = [_spawn(OPENER), _spawn(OPENER)]
    ids: list[tuple[str, str]] = []
    paths = [tmp_path / f"round{number}" / "journal.db" for number in range(rounds)]
    try:
        for path in paths:
            for opener in openers:  # the same new path to both, back to back
                assert opener.stdin is not None
                opener.stdin.write(f"{path}\n")
                opener.stdin.flush()
            answers = []
            for opener in openers:
                assert opener.stdout is not None
                answers.append(opener.stdout.readline().strip())
            ids.append((answers[0], answers[1]))
        outputs = [opener.communicate(input="", timeout=DEADLINE_S) for opener in openers]
    finally:
        for opener in openers:
            if opener.poll() is None:
                opener.kill()
                opener.wait()
    for opener, (_, stderr) in zip(openers, outputs, strict=True):
        assert opener.returncode == 0, stderr
        assert stderr == "", stderr
    for (first, second), path in zip(ids, paths, strict=True):
        assert first, f"no journal id for {path}"
        assert first == second, f"{path}: two journals were created ({first} != {second})"
        # No half-made temporary file is left behind (-wal/-shm may remain when both close
        # at once; SQLite removes them only when the last connection closes alone).
        leftovers = [entry.name for entry in path.parent.iterdir() if "creating" in entry.name]
        assert leftovers == []
        info, report = verify_file(path)
        assert info.journal_id == first
        assert report.ok
    assert len({first for first, _ in ids}) == rounds
