"""Concurrency: writer processes with an inspector tailing, and WAL growth under readers.

``tests/test_multiprocess.py`` already proves that plain concurrent appends from four processes
form one chain. Here each process mixes single appends, atomic batches and record writes
(``transact``) from several producer tasks, while this process tails the journal the way the
inspector does: ``PRAGMA data_version`` to notice commits, then ``events_after`` to page them in.

The WAL tests sample the ``-wal`` file (and the wal-index's count of live frames) while a writer
appends continuously: with a polling :class:`JournalReader` the WAL stays bounded because every
read is a short transaction; a raw reader that holds a read transaction open pins it, and the same
volume of writes makes it grow far past the bounded size.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from journal_core import EventInput, Journal, JournalReader, new_ulid, verify_file

REPO_ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 4
ROUNDS_PER_PROCESS = 40  # each round: 1 append + a batch of 3 + 1 record write (2 events)
DEADLINE_S = 60.0
WAL_WRITE_S = 8.0
WAL_POLL_S = 0.05
WAL_BOUND = 16 * 1024 * 1024
PAYLOAD_PAD = "p" * 1_500

# Three producer tasks per process. Prints a JSON list of every acknowledged event id and any
# error text at the end; exits 1 if any call raised.
WRITER = """
import asyncio, json, sys
from journal_core import EventInput, Journal, new_ulid
from journal_core import sessions

async def producer(journal, tag, rounds, acked, errors):
    session, run = new_ulid(), new_ulid()
    def event(i, kind):
        return EventInput(session_id=session, run_id=run, kind=kind, actor="agent",
                          principal=f"proc-{tag}", device_id="host", channel=tag,
                          payload={"proc": tag, "i": i})
    for i in range(rounds):
        try:
            acked.append(["event", (await journal.append(event(i, "model_token"))).event_id])
            batch = await journal.append_batch([event(i, "tool_proposed") for _ in range(3)])
            acked.extend(["event", result.event_id] for result in batch)
            created = await sessions.create_session(
                journal, session_key=f"{tag}-{i}-{new_ulid()}", principal=f"proc-{tag}",
                device_id="host", label=f"{tag} {i}")
            acked.append(["session", created.session_id])
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")

async def main(path, rounds, tag):
    acked, errors = [], []
    async with await Journal.open(path) as journal:
        print("ready", flush=True)
        sys.stdin.readline()
        await asyncio.gather(*(producer(journal, f"{tag}.{k}", rounds // 3 + (k < rounds % 3),
                                        acked, errors) for k in range(3)))
    print(json.dumps({"acked": acked, "errors": errors}), flush=True)
    sys.exit(1 if errors else 0)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if part
    )
    return env


async def _create(path: Path) -> None:
    async with await Journal.open(path):
        pass


@dataclass
class _Tail:
    last_seq: int = 0
    last_hash: str | None = None
    polls: int = 0
    version_changes: int = 0
    event_ids: list[str] = field(default_factory=list)


async def _tail(path: Path, writers: list[subprocess.Popen[str]]) -> _Tail:
    """Tail like the inspector: data_version first, then events_after only when it changed."""
    tail = _Tail()
    deadline = time.monotonic() + DEADLINE_S
    async with await JournalReader.open(path) as reader:
        version = await reader.data_version()
        while True:
            running = any(writer.poll() is None for writer in writers)
            now_version = await reader.data_version()
            tail.polls += 1
            if now_version != version or not running:
                tail.version_changes += now_version != version
                version = now_version
                while True:
                    page = await reader.events_after(tail.last_seq, 200)
                    for event in page:
                        assert event.seq == tail.last_seq + 1, (event.seq, tail.last_seq)
                        if tail.last_hash is not None:
                            assert event.prev_hash == tail.last_hash, f"seq {event.seq} unlinked"
                        tail.last_seq, tail.last_hash = event.seq, event.hash
                        tail.event_ids.append(event.event_id)
                    if len(page) < 200:
                        break
            if not running:
                break
            assert time.monotonic() < deadline, "writers did not finish in time"
            await asyncio.sleep(0.01)
    return tail


def test_four_processes_mixed_writes_with_a_tailing_inspector(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    asyncio.run(_create(path))
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(ROUNDS_PER_PROCESS), f"p{index}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for index in range(PROCESSES)
    ]
    try:
        for writer in writers:
            assert writer.stdout is not None
            assert writer.stdout.readline() == "ready\n", writer.stderr and writer.stderr.read()
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        tail = asyncio.run(_tail(path, writers))
        outputs = [writer.communicate(timeout=DEADLINE_S) for writer in writers]
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()

    acked_events: set[str] = set()
    acked_sessions: set[str] = set()
    for writer, (stdout, stderr) in zip(writers, outputs, strict=True):
        assert stderr == "", stderr
        report = json.loads(stdout)
        assert report["errors"] == [], report["errors"]  # no JournalBusyError, no SQLITE_BUSY
        assert writer.returncode == 0
        # 1 + 3 event ids and 1 session id per round
        assert len(report["acked"]) == 5 * ROUNDS_PER_PROCESS
        for what, item in report["acked"]:
            (acked_sessions if what == "session" else acked_events).add(item)

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT seq, event_ulid FROM journal_events ORDER BY seq").fetchall()
        stored_sessions = {
            row[0] for row in conn.execute("SELECT session_ulid FROM orchestrator_sessions")
        }
    finally:
        conn.close()
    total = len(rows)
    # every plain event, and a record_written event per session
    assert total >= len(acked_events) + len(acked_sessions)
    assert [seq for seq, _ in rows] == list(range(1, total + 1))
    assert acked_events <= {event_id for _, event_id in rows}
    assert acked_sessions <= stored_sessions
    assert tail.last_seq == total
    assert tail.event_ids == [event_id for _, event_id in rows]
    assert tail.version_changes > 1
    _, report = verify_file(path)
    assert report.ok, report.to_dict()
    assert report.record_breaks == []
    print(
        f"\nconcurrency: {PROCESSES} processes x 3 producers, {len(acked_events)} events and"
        f" {len(acked_sessions)} sessions acknowledged, {total} events in one chain; tailer"
        f" saw all of them in {tail.polls} polls ({tail.version_changes} data_version changes)"
    )


# --------------------------------------------------------------------------------------------
# WAL growth
# --------------------------------------------------------------------------------------------

_WAL_HEADER = 32
_FRAME_HEADER = 24


def _wal_size(path: Path) -> int:
    try:
        return os.stat(f"{path}-wal").st_size
    except FileNotFoundError:
        return 0


def _live_wal_frames(path: Path) -> int:
    """mxFrame from the wal-index header: the frames in use (0 right after a WAL reset)."""
    try:
        with open(f"{path}-shm", "rb") as shm:
            header = shm.read(48)
    except FileNotFoundError:
        return 0
    if len(header) < 20:
        return 0
    return int(struct.unpack_from("=I", header, 16)[0])


@dataclass
class _WalSamples:
    sizes: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    events_read: int = 0
    events_written: int = 0
    bytes_written: int = 0

    def sample(self, path: Path) -> None:
        self.sizes.append(_wal_size(path))
        self.frames.append(_live_wal_frames(path))

    @property
    def frame_resets(self) -> int:
        return sum(1 for a, b in zip(self.frames, self.frames[1:], strict=False) if b < a)


def _event(session: str, run: str, i: int) -> EventInput:
    return EventInput(
        session_id=session,
        run_id=run,
        kind="model_token",
        actor="agent",
        principal="agent:wal",
        device_id="host",
        payload={"i": i, "pad": PAYLOAD_PAD},
    )


async def _write_for(journal: Journal, stop: asyncio.Event, samples: _WalSamples) -> None:
    session, run = new_ulid(), new_ulid()
    i = 0
    while not stop.is_set():
        batch = [_event(session, run, i + k) for k in range(16)]
        i += len(batch)
        await asyncio.gather(*(journal.append(event) for event in batch))
        samples.events_written += len(batch)
        samples.bytes_written += len(batch) * len(PAYLOAD_PAD)


async def _bounded_run(path: Path) -> _WalSamples:
    samples = _WalSamples()
    stop = asyncio.Event()
    async with await Journal.open(path) as journal, await JournalReader.open(path) as reader:
        writer = asyncio.create_task(_write_for(journal, stop, samples))
        version, last_seq = await reader.data_version(), 0
        started = time.monotonic()
        while time.monotonic() - started < WAL_WRITE_S:
            await asyncio.sleep(WAL_POLL_S)
            now_version = await reader.data_version()
            if now_version != version:
                version = now_version
                page = await reader.events_after(last_seq, 500)
                if page:
                    last_seq = page[-1].seq
                    samples.events_read += len(page)
            samples.sample(path)
        stop.set()
        await writer
    return samples


async def _pinned_run(path: Path, volume: int) -> _WalSamples:
    """Write ``volume`` payload bytes while a raw reader holds one read transaction open."""
    samples = _WalSamples()
    async with await Journal.open(path) as journal:
        pin = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        try:
            pin.execute("BEGIN")
            pin.execute("SELECT COUNT(*) FROM journal_events").fetchone()  # snapshot taken
            session, run = new_ulid(), new_ulid()
            i = 0
            while samples.bytes_written < volume:
                batch = [_event(session, run, i + k) for k in range(16)]
                i += len(batch)
                await asyncio.gather(*(journal.append(event) for event in batch))
                samples.events_written += len(batch)
                samples.bytes_written += len(batch) * len(PAYLOAD_PAD)
                samples.sample(path)
            pin.execute("COMMIT")
        finally:
            pin.close()
    return samples


def test_wal_stays_bounded_under_a_polling_reader_and_grows_under_a_pinning_one(
    tmp_path: Path,
) -> None:
    bounded = asyncio.run(_bounded_run(tmp_path / "polled.db"))
    bounded_max = max(bounded.sizes)
    assert bounded.events_written > 0
    assert bounded.events_read > 0
    assert bounded_max < WAL_BOUND, f"WAL reached {bounded_max} bytes under a polling reader"
    # Checkpoints keep resetting the WAL: its live frames fall back instead of piling up.
    assert bounded.frame_resets >= 1, bounded.frames[-20:]
    assert min(bounded.frames[len(bounded.frames) // 2 :]) < max(bounded.frames)

    # The same writer, with a reader pinning a snapshot: three times the bounded WAL's size
    # in payload bytes cannot be checkpointed away, so the WAL grows past the bounded maximum.
    volume = 3 * bounded_max
    pinned = asyncio.run(_pinned_run(tmp_path / "pinned.db", volume))
    pinned_max = max(pinned.sizes)
    assert pinned.frame_resets == 0
    assert pinned_max > bounded_max
    assert pinned_max >= volume
    print(
        f"\nWAL: polling reader (every {WAL_POLL_S * 1000:.0f} ms, {WAL_WRITE_S:g} s,"
        f" {bounded.events_written} events / {bounded.bytes_written / 2**20:.1f} MiB written,"
        f" {bounded.events_read} read): max -wal {bounded_max / 2**20:.2f} MiB,"
        f" {bounded.frame_resets} WAL resets; pinning reader ({pinned.events_written} events /"
        f" {pinned.bytes_written / 2**20:.1f} MiB written): max -wal {pinned_max / 2**20:.2f} MiB"
    )


def test_a_shared_reader_sees_every_commit_that_returned(tmp_path: Path) -> None:
    """Reads after a commit see it, even with other tasks querying the same reader.

    Before, ``fetchall`` awaited its statement's execution and its rows apart, so the queries
    of concurrent tasks overlapped on the connection; SQLite keeps a read transaction while any
    statement is active, so chained overlaps kept one old snapshot (13 of 300 reads stale here;
    the demo daemon's agents, sharing one reader, twice failed to find an approval they had
    just requested).
    """
    path = tmp_path / "j.db"
    session, run = new_ulid(), new_ulid()

    def event(payload: dict[str, object]) -> EventInput:
        return EventInput(session, run, 1, "agent", "p", "d", payload)

    async def scenario() -> int:
        async with await Journal.open(path) as journal:
            for i in range(300):
                await journal.append(event({"i": i, "pad": PAYLOAD_PAD}))
            async with await JournalReader.open(path) as reader:
                done = asyncio.Event()

                async def busy() -> None:
                    while not done.is_set():
                        await reader.last_events(200)

                others = [asyncio.create_task(busy()) for _ in range(8)]
                stale = 0
                for i in range(300):
                    appended = await journal.append(event({"n": i}))
                    if (await reader.head()).seq < appended.seq:
                        stale += 1
                done.set()
                await asyncio.gather(*others)
                return stale

    assert asyncio.run(scenario()) == 0
