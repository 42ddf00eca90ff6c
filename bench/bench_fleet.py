"""The fleet: shipping throughput into the central PostgreSQL store, and commit-to-inspector lag.

    python bench/bench_fleet.py [--quick] [--events N] [--repeat R] [--batch B]
        [--lag-seconds S] [--rate N] [--interval S] [--fsync both|on|off]

Every figure runs against a PostgreSQL server the script starts itself (``running_server`` of
``tests/postgres_server.py``: Debian's binaries, loopback, as the ``postgres`` user when run as
root). ``--fsync on`` runs it with PostgreSQL's durable defaults (``fsync``,
``synchronous_commit``, ``full_page_writes`` on), ``off`` as the tests run it (all three off),
``both`` (the default) reports each.

(a) throughput: a backlog of ``--events`` events (two demo-daemon journals written flat out,
    built once and cached in ``bench/out/fleet-<N>-<seed>.db``) shipped with
    ``Shipper.ship_once`` into a fresh database: one journal alone, then both at once from two
    processes (two hosts' shippers). Events per second, medians of R runs. Baseline, in the
    same run and into a fresh database of the same server: the same rows read from the same
    files and written with a plain ``COPY`` into tables of the same columns with only a primary
    key (events in batches of the same size, one transaction each, then every record table's
    rows), i.e. moving the bytes with no verification, witness, indexes or upserts.
    Target: >= 10,000 events/s.
(b) lag: two daemons (two processes, each appending transcript entries through the public API,
    ``tape.append_entries``: one chained event and one record row each, from 4 agents every
    5 ms, at ``--rate`` events/s per daemon), each shipped by its own ``journal ship DB --to URL
    --interval S`` process; an observer does what the central inspector does: LISTEN
    ``journal_central`` and, on each notification, read the journal's new events from
    PostgreSQL. Lag = wall clock when the observer has an event's row - the event's
    ``created_at_unix_ms`` (the writer's wall clock when it began the transaction that
    committed it, a few ms before its COMMIT returned: the lag is overstated by that much, never
    understated). Events committed in the first ``WARMUP_S`` seconds are not counted.
    Reported: p50 / p95 / p99 / max, and the events/s the writers achieved. Target: p95 < 1 s.
``--quick``: 10,000 events, 1 run, 8 s of lag, fsync off only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import psycopg  # noqa: E402
from figures import percentile  # noqa: E402
from journal_files import head_seq, install, journal_files  # noqa: E402
from postgres_server import PostgresServer, running_server  # noqa: E402

from journal_core.central.connection import connect_central  # noqa: E402
from journal_core.central.ship import CHANNEL, DEFAULT_BATCH, Shipper  # noqa: E402
from journal_core.connection import open_reader  # noqa: E402
from journal_core.records import RECORD_SPECS  # noqa: E402
from journal_core.schema import EVENT_COLUMNS  # noqa: E402

OUT = ROOT / "bench" / "out"
TARGET_EVENTS_S = 10_000.0
TARGET_LAG_P95_S = 1.0
WARMUP_S = 3.0
AGENTS = 4
WRITE_TICK_S = 0.005
DRAIN_TIMEOUT_S = 60.0
SEEDS = (1, 2)


def journal_id_of(path: Path) -> str:
    """The journal id a file holds."""
    conn, info = open_reader(path)
    conn.close()
    return info.journal_id


def ensure_backlog(size: int, seed: int) -> Path:
    """A demo-daemon journal of about ``size`` events written flat out (cached), for the backlog."""
    from journal_core import Journal
    from journal_core.demo import DemoConfig, run_demo

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"fleet-{size}-{seed}.db"
    if path.exists():
        return path
    part = OUT / f"fleet-{size}-{seed}.db.part"
    for leftover in journal_files(part):
        leftover.unlink(missing_ok=True)
    print(f"building {path.name} (demo daemon, rate 0, seed {seed})", flush=True)
    started = time.perf_counter()

    async def build() -> None:
        async with await Journal.open(part) as journal:
            config = DemoConfig(seed=seed, rate=0, agents=16)
            await run_demo(journal, config, max_events=size)

    asyncio.run(build())
    install(part, path)
    print(f"built {path.name}: {head_seq(path):,} events in {time.perf_counter() - started:.0f} s")
    return path


# --- throughput ------------------------------------------------------------------------------


def _plain_tables(url: str) -> None:
    """Tables with the central tables' columns and only their primary key, for the baseline."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE plain_events (LIKE journal_events INCLUDING DEFAULTS,"
            " PRIMARY KEY (journal_id, seq))"
        )
        for spec in RECORD_SPECS:
            conn.execute(
                f"CREATE TABLE plain_{spec.table} (LIKE {spec.table} INCLUDING DEFAULTS,"
                f" PRIMARY KEY (journal_id, {', '.join(spec.key_columns)}))"
            )


def baseline_copy(path: Path, url: str, batch: int) -> int:
    """The baseline: COPY the file's events (in batches) and record rows into plain tables."""
    journal_id = journal_id_of(path)
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    head = int(source.execute("SELECT MAX(seq) FROM journal_events").fetchone()[0] or 0)
    with psycopg.connect(url, autocommit=True) as conn:
        for first in range(1, head + 1, batch):
            rows = source.execute(
                f"SELECT {', '.join(EVENT_COLUMNS)} FROM journal_events"
                " WHERE seq >= ? AND seq < ? ORDER BY seq",
                (first, first + batch),
            ).fetchall()
            with (
                conn.transaction(),
                conn.cursor().copy(
                    f"COPY plain_events (journal_id, {', '.join(EVENT_COLUMNS)}) FROM STDIN"
                ) as copy,
            ):
                for row in rows:
                    copy.write_row((journal_id, *row))
        with conn.transaction():
            for spec in RECORD_SPECS:
                columns = (*spec.columns, "event_seq")
                with conn.cursor().copy(
                    f"COPY plain_{spec.table} (journal_id, {', '.join(columns)}) FROM STDIN"
                ) as copy:
                    for row in source.execute(f"SELECT {', '.join(columns)} FROM {spec.table}"):
                        copy.write_row((journal_id, *row))
    source.close()
    return head


def _throughput_worker(
    mode: str, path: str, url: str, batch: int, start: Any, results: Any
) -> None:
    """One host's shipper (or baseline copier) in its own process, started with the others."""
    if mode == "ship":
        central = connect_central(url)
        shipper = Shipper(path, central, url=url, batch_size=batch)
        start.wait()
        started = time.time()
        events = shipper.ship_once().events
        shipper.close()
        central.close()
    else:
        start.wait()
        started = time.time()
        events = baseline_copy(Path(path), url, batch)
    results.put((events, started, time.time()))


def concurrent_rate(mode: str, paths: list[Path], url: str, batch: int) -> float:
    """Events/s of ``mode`` (ship or baseline) run on every path at once, one process each."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(paths) + 1)
    results = context.Queue()
    workers = [
        context.Process(
            target=_throughput_worker,
            args=(mode, str(path), url, batch, start, results),
        )
        for path in paths
    ]
    for worker in workers:
        worker.start()
    start.wait()
    outcomes = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise SystemExit(f"a {mode} worker failed ({worker.exitcode})")
    events = sum(int(outcome[0]) for outcome in outcomes)
    return events / (max(float(o[2]) for o in outcomes) - min(float(o[1]) for o in outcomes))


def single_rate(path: Path, url: str, batch: int) -> tuple[float, dict[str, float]]:
    """Events/s of one ``ship_once`` of the whole file, and what it shipped."""
    central = connect_central(url)
    shipper = Shipper(path, central, url=url, batch_size=batch)
    try:
        result = shipper.ship_once()
    finally:
        shipper.close()
        central.close()
    return result.events / result.seconds, {
        "events": result.events,
        "records": result.records,
        "checkpoints": result.checkpoints,
        "batches": result.batches,
    }


def measure_throughput(
    server: PostgresServer, paths: list[Path], repeat: int, batch: int, tag: str
) -> dict[str, Any]:
    """Medians of R runs: one journal, two at once, each against its baseline in the same run."""
    one: list[tuple[float, float]] = []
    two: list[tuple[float, float]] = []
    shipped: dict[str, float] = {}
    for attempt in range(repeat):
        url = server.create_database(f"one_{tag}_{attempt}")
        connect_central(url).close()  # the schema, created outside the timing
        ours, shipped = single_rate(paths[0], url, batch)
        base_url = server.create_database(f"base_{tag}_{attempt}")
        connect_central(base_url).close()
        _plain_tables(base_url)
        started = time.perf_counter()
        events = baseline_copy(paths[0], base_url, batch)
        one.append((ours, events / (time.perf_counter() - started)))
        url = server.create_database(f"two_{tag}_{attempt}")
        connect_central(url).close()
        ours = concurrent_rate("ship", paths, url, batch)
        base_url = server.create_database(f"base2_{tag}_{attempt}")
        connect_central(base_url).close()
        _plain_tables(base_url)
        two.append((ours, concurrent_rate("baseline", paths, base_url, batch)))
        print(
            f"  [{tag}] run {attempt + 1}: one {one[-1][0]:,.0f}/s (baseline {one[-1][1]:,.0f}),"
            f" two {two[-1][0]:,.0f}/s (baseline {two[-1][1]:,.0f})",
            flush=True,
        )
        for name in ("one", "base", "two", "base2"):
            _drop(server, f"{name}_{tag}_{attempt}")
    return {"one": one, "two": two, "shipped": shipped}


def _drop(server: PostgresServer, name: str) -> None:
    """Drop a database of a finished run (each run's copies would slow the next one's disk)."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- lag ---------------------------------------------------------------------------------------


def child_writer(path: str, rate: float, seconds: float) -> None:
    """A daemon: AGENTS agents append transcript entries at ``rate``/s in all, from GO on stdin."""
    from journal_core import Journal, sessions, tape

    async def agent(journal: Journal, index: int, share: float, ready: asyncio.Event) -> int:
        session = await sessions.create_session(
            journal,
            session_key=f"bench:fleet/{os.getpid()}/{index}",
            principal="user:bench",
            device_id=f"fleet-host-{os.getpid()}",
            channel="cli",
        )
        run = await sessions.start_run(journal, session.session_id)
        await sessions.transition_run(journal, run.run_id, "accepted")
        await sessions.transition_run(journal, run.run_id, "in_progress")
        ready.set()
        await go.wait()
        sent = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            due = int(elapsed * share) - sent
            if due > 0:
                entries = [
                    ("model_token", {"text": f"the agent reads the file {sent + i} "})
                    for i in range(due)
                ]
                await tape.append_entries(journal, run.run_id, entries)
                sent += due
            await asyncio.sleep(WRITE_TICK_S)
        return sent

    async def main() -> dict[str, float]:
        async with await Journal.open(path) as journal:
            ready = [asyncio.Event() for _ in range(AGENTS)]
            tasks = [
                asyncio.create_task(agent(journal, index, rate / AGENTS, ready[index]))
                for index in range(AGENTS)
            ]
            for prepared in ready:
                await prepared.wait()
            print("READY", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            started = time.perf_counter()
            go.set()
            sent = sum(await asyncio.gather(*tasks))
            return {"entries": sent, "seconds": time.perf_counter() - started}

    go = asyncio.Event()
    print(json.dumps(asyncio.run(main())), flush=True)


class Observer:
    """What the central inspector does: LISTEN, then read each journal's new events."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(f"LISTEN {CHANNEL}")
        self.seen: dict[str, int] = {}
        self.lags: dict[str, list[tuple[int, float]]] = {}
        self.notifications = 0

    def poll(self, timeout: float) -> None:
        """Wait up to ``timeout`` for notifications and read the events they announce."""
        # Read after the generator is done: it holds the connection while it waits.
        for note in list(self.conn.notifies(timeout=timeout, stop_after=1)):
            parts = note.payload.split()
            if len(parts) != 3 or parts[0] != "events":
                continue
            self.notifications += 1
            self.read_new(parts[1])

    def read_new(self, journal_id: str) -> None:
        """Read every event of ``journal_id`` newer than the last one seen, as the inspector."""
        rows = self.conn.execute(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM journal_events"
            " WHERE journal_id = %s AND seq > %s ORDER BY seq",
            (journal_id, self.seen.get(journal_id, 0)),
        ).fetchall()
        now = time.time_ns() / 1e6
        if not rows:
            return
        seq_at = EVENT_COLUMNS.index("seq")
        created_at = EVENT_COLUMNS.index("created_at_unix_ms")
        self.lags.setdefault(journal_id, []).extend(
            (int(row[created_at]), (now - int(row[created_at])) / 1000) for row in rows
        )
        self.seen[journal_id] = int(rows[-1][seq_at])

    def close(self) -> None:
        self.conn.close()


@contextlib.contextmanager
def _processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Children started in the block; any still running at its end are terminated."""
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _check_shipping(shippers: list[subprocess.Popen[str]], paths: list[Path]) -> None:
    """Stop the benchmark, with the shipper's own message, when a shipper has exited."""
    for shipper, path in zip(shippers, paths, strict=True):
        if shipper.poll() is not None:
            message = Path(f"{path}.ship.log").read_text().strip()
            raise SystemExit(f"`journal ship {path.name}` exited ({shipper.returncode}): {message}")


def measure_lag(
    server: PostgresServer, rate: float, seconds: float, interval: float, tag: str
) -> dict[str, Any]:
    """Two daemons and their shippers, one observer: lag percentiles and the writers' rate."""
    url = server.create_database(f"lag_{tag}")
    connect_central(url).close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (
        tempfile.TemporaryDirectory() as folder,
        _processes() as children,
        contextlib.ExitStack() as logs,
    ):
        paths = [Path(folder) / f"daemon-{index}.db" for index in range(2)]
        writers = []
        for path in paths:
            writer = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--child-writer",
                    str(path),
                    repr(rate),
                    repr(WARMUP_S + seconds),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            children.append(writer)
            writers.append(writer)
        for writer in writers:
            assert writer.stdout is not None
            if writer.stdout.readline().strip() != "READY":
                raise SystemExit("a writer failed to start")
        shippers = []
        for path in paths:
            shippers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "journal_core",
                        "ship",
                        str(path),
                        "--to",
                        url,
                        "--interval",
                        repr(interval),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=logs.enter_context(Path(f"{path}.ship.log").open("w")),
                    text=True,
                    env=env,
                )
            )
            children.append(shippers[-1])
        observer = Observer(url)
        deadline = time.monotonic() + 60
        while len(observer.seen) < 2 and time.monotonic() < deadline:
            observer.poll(0.2)  # both shippers up and through the writers' setup events
            _check_shipping(shippers, paths)
        if len(observer.seen) < 2:
            raise SystemExit("the shippers did not ship within 60 s")
        go_wall_ms = time.time_ns() / 1e6
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("GO\n")
            writer.stdin.flush()
        while any(writer.poll() is None for writer in writers):
            observer.poll(0.2)
            _check_shipping(shippers, paths)
        written = []
        for writer in writers:
            assert writer.stdout is not None
            if writer.returncode != 0:
                raise SystemExit(f"a writer failed ({writer.returncode})")
            written.append(json.loads(writer.stdout.read()))
        heads = {journal_id_of(path): head_seq(path) for path in paths}
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while any(observer.seen.get(j, 0) < h for j, h in heads.items()):
            if time.monotonic() > deadline:
                raise SystemExit("the central store did not catch up within 60 s")
            observer.poll(0.2)
            _check_shipping(shippers, paths)
        observer.close()
    measured_from = go_wall_ms + WARMUP_S * 1000
    lags = [
        lag
        for pairs in observer.lags.values()
        for created, lag in pairs
        if created >= measured_from
    ]
    if not lags:
        raise SystemExit("no event was committed after the warm-up: raise --lag-seconds")
    return {
        "lags": lags,
        "rates": [w["entries"] / w["seconds"] for w in written],
        "events": sum(int(w["entries"]) for w in written),
        "notifications": observer.notifications,
    }


# --- report ------------------------------------------------------------------------------------


def report(tag: str, throughput: dict[str, Any], lag: dict[str, Any], args: Any) -> None:
    """Print one server configuration's figures."""
    print(f"\nPostgreSQL with fsync {tag}")
    shipped = throughput["shipped"]
    print(
        f"throughput: backlog of {int(shipped['events']):,} events per journal"
        f" ({int(shipped['records']):,} record rows, {int(shipped['checkpoints'])} checkpoints,"
        f" batches of {args.batch}), {args.repeat} runs (medians)"
    )
    print(f"{'figure':<14}{'ship/s':>10}{'baseline/s':>12}{'ratio':>8}{'target':>10}  baseline")
    for name, label in (("one", "one journal"), ("two", "two at once")):
        pairs = throughput[name]
        ours = statistics.median(p[0] for p in pairs)
        base = statistics.median(p[1] for p in pairs)
        ratio = statistics.median(p[0] / p[1] for p in pairs)
        print(
            f"{label:<14}{ours:>10,.0f}{base:>12,.0f}{ratio:>8.2f}"
            f"{f'>= {TARGET_EVENTS_S:,.0f}':>10}  COPY of the same rows, primary keys only"
        )
    lags = lag["lags"]
    rates = ", ".join(f"{rate:,.0f}" for rate in lag["rates"])
    print(
        f"lag: 2 daemons at {rates} events/s for {args.lag_seconds:.0f} s (after {WARMUP_S:.0f} s"
        f" of warm-up), `journal ship --interval {args.interval}`, {len(lags):,} events observed"
        f" through {lag['notifications']:,} notifications"
    )
    print(
        f"  commit -> visible centrally: p50 {percentile(lags, 0.5) * 1000:.0f} ms,"
        f" p95 {percentile(lags, 0.95) * 1000:.0f} ms, p99 {percentile(lags, 0.99) * 1000:.0f} ms,"
        f" max {max(lags) * 1000:.0f} ms (target p95 < {TARGET_LAG_P95_S * 1000:.0f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--lag-seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=1_000.0)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--fsync", choices=("both", "on", "off"), default="both")
    parser.add_argument("--child-writer", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_writer:
        path, rate, seconds = args.child_writer
        child_writer(path, float(rate), float(seconds))
        return
    if args.quick:
        args.events, args.repeat, args.lag_seconds, args.fsync = 10_000, 1, 8.0, "off"
    if args.events < 1_000 or args.repeat < 1 or not 1 <= args.batch <= 1_000_000:
        parser.error("--events must be >= 1000, --repeat >= 1 and --batch in 1..1000000")
    if min(args.lag_seconds, args.rate, args.interval) <= 0:
        parser.error("--lag-seconds, --rate and --interval must be > 0")
    paths = [ensure_backlog(args.events, seed) for seed in SEEDS]
    modes = {"both": ("off", "on"), "off": ("off",), "on": ("on",)}[args.fsync]
    figures = []
    for tag in modes:
        with running_server(durable=tag == "on") as server:
            print(f"fsync {tag}: throughput", flush=True)
            throughput = measure_throughput(server, paths, args.repeat, args.batch, tag)
            print(f"fsync {tag}: lag ({args.lag_seconds:.0f} s)", flush=True)
            lag = measure_lag(server, args.rate, args.lag_seconds, args.interval, tag)
            figures.append((tag, throughput, lag))
    for tag, throughput, lag in figures:
        report(tag, throughput, lag, args)


if __name__ == "__main__":
    main()
