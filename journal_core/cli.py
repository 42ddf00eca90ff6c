"""The ``journal`` command line: append, verify, tail, export and inspect journals.

Every user error ends in a one-line message on stderr and a non-zero exit status, never a
traceback. Exit statuses: 0 success; 1 refused input (append) or a broken chain (verify);
2 the command could not run (not a journal, unreadable, locked, bad arguments).
``health`` exits by the report's severity instead: 0 ok, 1 warning, 2 degraded, 3 critical,
and 4 when no report can be made (no file, not a journal, a newer schema); bad arguments
still exit 2, as for every command. ``backup`` exits 0 once the copy is complete.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import orjson

from journal_core.chain import VerifyReport
from journal_core.checkpoints import (
    AnchorReport,
    has_checkpoint_tables,
    journal_keys,
    load_public_key,
    rotate_key,
)
from journal_core.connection import JournalConfig, JournalInfo, open_reader
from journal_core.errors import JournalError, ValidationError
from journal_core.events import loads_json
from journal_core.palyra import is_palyra_journal, verify_palyra_file
from journal_core.reader import JournalReader, StoredEvent, verify_file, verify_with_anchors
from journal_core.store import AppendResult, Journal
from journal_core.terminal_text import printable, safe_json_text

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_CANNOT = 2

_MAX_LINE_BYTES = 8 * 1024 * 1024


class CliError(Exception):
    """A user error the command line reports as one line, with an exit status."""

    def __init__(self, message: str, status: int = EXIT_CANNOT) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{message} (see `{self.prog} --help`)")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="journal",
        description="A tamper-evident journal for an AI-agent daemon.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    append = commands.add_parser(
        "append",
        help="append JSON Lines events from stdin",
        description=(
            "Read events as JSON Lines on stdin and append them, committing as they stream."
            " Prints 'seq event_id hash' per event once it is committed."
        ),
    )
    append.add_argument("db", help="journal file (created if missing)")
    append.add_argument("--sync", choices=("NORMAL", "FULL"), default="NORMAL")
    append.add_argument("--max-payload-bytes", type=int, default=None)

    verify = commands.add_parser(
        "verify", help="verify the hash chain (of a file, or of every journal held centrally)"
    )
    verify.add_argument("db", help="journal file, or postgresql://... for the central store")
    verify.add_argument(
        "--journal", metavar="ID", help="with a central store: verify only this journal"
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument("--from-seq", type=int, default=1, help="verify from this seq on")
    verify.add_argument(
        "--anchor",
        metavar="FILE",
        help="also check the journal against this anchor file of signed checkpoints",
    )
    verify.add_argument(
        "--pubkey",
        metavar="KEY",
        help="the verifier key to trust first (a file or the key text; default: the journal's)",
    )
    verify.add_argument(
        "--incremental",
        action="store_true",
        help="verify only the events after the newest trusted signed checkpoint",
    )

    ship = commands.add_parser(
        "ship",
        help="copy a journal into the central PostgreSQL store (the fleet's witness)",
        description=(
            "Copy the journal's events, record rows, keys and checkpoints into the central store,"
            " verified batch by batch; continuously (applying central approval decisions) or"
            " --once. Exit 1 when the central store refuses the journal's history."
        ),
    )
    ship.add_argument("db", help="the host's journal file")
    ship.add_argument("--to", required=True, metavar="URL", help="postgresql://USER@HOST/DB")
    ship.add_argument("--once", action="store_true", help="ship what is there, then exit")
    ship.add_argument("--batch", type=int, default=5_000, help="events per batch (default 5000)")
    ship.add_argument(
        "--interval", type=float, default=0.1, help="seconds between checks (default 0.1)"
    )

    tail = commands.add_parser("tail", help="print the newest events")
    tail.add_argument("db")
    tail.add_argument("-n", "--lines", type=int, default=20, help="events to show (default 20)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    tail.add_argument("--json", action="store_true", help="one JSON object per event")
    tail.add_argument("--interval", type=float, default=0.2, help="poll interval in seconds")

    export = commands.add_parser("export", help="export events (see docs/export.md)")
    export.add_argument("db")
    export.add_argument("--format", choices=("jsonl",), default="jsonl")
    export.add_argument("--from-seq", type=int, default=1)
    export.add_argument("-o", "--output", help="write to this file instead of stdout")

    tui = commands.add_parser(
        "tui",
        help="inspect a journal in a terminal UI",
        description=(
            "Open the inspector on a journal, read-only: deciding an approval is its only write."
        ),
    )
    tui.add_argument("db", help="journal file, or postgresql://... for the fleet's central store")
    tui.add_argument("--read-only", action="store_true", help="disable approval decisions")
    tui.add_argument("--as", dest="decider", help="who decides approvals (default: user@host)")

    demo = commands.add_parser(
        "demo",
        help="run a simulated agent daemon on a journal and show it live",
        description=(
            "Start a simulated agent daemon writing to a journal (sessions, runs, transcripts,"
            " tool jobs, approvals, memory) and show what it writes as it commits."
        ),
    )
    demo.add_argument("--db", help=f"journal file (default: {default_demo_path()})")
    demo.add_argument(
        "--rate",
        type=float,
        default=None,
        help="events per second (default 40; 0 = as fast as possible)",
    )
    demo.add_argument("--seed", type=int, default=1, help="makes the simulation reproducible")
    demo.add_argument(
        "--agents",
        type=int,
        default=None,
        help="concurrent agents (default 6; 16 when writing flat out with --rate 0)",
    )
    demo.add_argument("--no-ui", action="store_true", help="write without showing anything")
    demo.add_argument(
        "--replicated",
        action="store_true",
        help="leave WAL checkpoints to Litestream (run `journal replicate` on the journal)",
    )
    demo.add_argument(
        "--as", dest="decider", help="who decides approvals in the inspector (default: user@host)"
    )
    demo.add_argument(
        "--events", type=int, default=None, help="stop once the journal holds this many events"
    )

    health = commands.add_parser(
        "health",
        help="check a journal's health (exit status by severity)",
        description=(
            "Check the file, WAL, schema, SQLite quick_check, writability (a rolled-back"
            " write), the hash chain and the memory index. Exits 0 ok, 1 warning,"
            " 2 degraded, 3 critical, 4 when no report can be made."
        ),
    )
    health.add_argument("db")
    health.add_argument("--json", action="store_true", help="print the report as JSON")
    health.add_argument(
        "--no-write-probe", action="store_true", help="do not take the write lock at all"
    )

    backup_parser = commands.add_parser(
        "backup", help="copy a journal, even while it is written, into a new file"
    )
    backup_parser.add_argument("db")
    backup_parser.add_argument("out", help="the new file (never overwritten)")

    rotate = commands.add_parser(
        "rotate-key",
        help="replace the checkpoint signing key (announced by the old key)",
        description=(
            "Make a new signing key, announce it in a checkpoint signed by the current key and"
            " sign from then on with it (docs/checkpoints.md). Prints the new verifier key."
        ),
    )
    rotate.add_argument("db")
    rotate.add_argument(
        "--new-key",
        metavar="PATH",
        help="write the new private key here (default: replace the key file in place)",
    )

    replicate = commands.add_parser(
        "replicate",
        help="replicate a journal off the host with Litestream (docs/replication.md)",
        description=(
            "Run Litestream in the foreground, copying every transaction of the journal to a"
            " replica: a directory or an object-store URL. Asynchronous: a host crash can lose"
            " what was committed in the last sync interval. Ctrl-C stops after a final sync."
        ),
    )
    replicate.add_argument("db")
    replicate.add_argument(
        "--to", required=True, metavar="URL", help="a directory, or s3:// gs:// abs:// sftp:// ..."
    )
    replicate.add_argument(
        "--sync-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often the WAL is read and the replica synced (default 1)",
    )
    replicate.add_argument(
        "--socket", metavar="PATH", help="control socket, for `litestream sync -wait -socket PATH`"
    )
    replicate.add_argument(
        "--print-config",
        action="store_true",
        help="print the Litestream configuration and exit (for a service of your own)",
    )

    restore_parser = commands.add_parser(
        "restore",
        help="restore a journal from its Litestream replica into a new file",
        description=(
            "Restore the journal replicated at URL (a directory or an object-store URL) into"
            " a new file, never overwriting one, and check that it opens as a journal. Verify"
            " it with `journal verify PATH --anchor ORIGINAL.anchors`."
        ),
    )
    restore_parser.add_argument("url", help="the replica: a directory or a replica URL")
    restore_parser.add_argument("--to", required=True, metavar="PATH", help="the new journal file")
    point = restore_parser.add_mutually_exclusive_group()
    point.add_argument(
        "--timestamp", metavar="TIME", help="restore the state at this ISO 8601 time (with zone)"
    )
    point.add_argument("--txid", metavar="HEX", help="restore up to this Litestream transaction")

    info = commands.add_parser("info", help="show what identifies a journal")
    info.add_argument("db")
    info.add_argument("--json", action="store_true")
    return parser


def _write_line(stream: TextIO, line: str) -> None:
    """Write one line of human-readable output, every untrusted character made visible."""
    stream.write(printable(line) + "\n")
    stream.flush()


def _write_json(stream: TextIO, document: object) -> None:
    """Write one JSON document on one line, safe to show on a terminal."""
    stream.write(safe_json_text(orjson.dumps(document).decode("utf-8")) + "\n")
    stream.flush()


# --- append -----------------------------------------------------------------------------------


def _parse_line(raw: bytes) -> dict[str, object]:
    if len(raw) > _MAX_LINE_BYTES:
        raise ValidationError("line", f"is longer than {_MAX_LINE_BYTES} bytes")
    try:
        value = loads_json(raw)
    except (ValueError, RecursionError) as error:
        raise ValidationError("line", f"is not a JSON object ({error})") from None
    if not isinstance(value, dict):
        raise ValidationError("line", f"must be a JSON object, got {type(value).__name__}")
    return value


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]) -> None:
    """Read stdin on a thread and hand lines to the event loop as they arrive."""
    try:
        for raw in sys.stdin.buffer:
            loop.call_soon_threadsafe(queue.put_nowait, raw)
    finally:
        loop.call_soon_threadsafe(queue.put_nowait, None)


async def _append(args: argparse.Namespace) -> int:
    config = JournalConfig(synchronous=args.sync)
    if args.max_payload_bytes is not None:
        try:
            config = JournalConfig(synchronous=args.sync, max_payload_bytes=args.max_payload_bytes)
        except ValueError as error:
            raise CliError(f"--max-payload-bytes: {error}") from None
    refused = 0
    async with await Journal.open(args.db, config) as journal:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        threading.Thread(target=_stdin_lines, args=(loop, queue), daemon=True).start()
        line_number = 0
        finished = False
        while not finished:
            chunk = [await queue.get()]
            while not queue.empty() and len(chunk) < 4096:
                chunk.append(queue.get_nowait())
            pending: list[tuple[int, asyncio.Future[list[AppendResult]] | JournalError]] = []
            for raw in chunk:
                if raw is None:
                    finished = True
                    break
                line_number += 1
                if not raw.strip():
                    continue
                try:
                    prepared = journal.prepare(_parse_line(raw))
                except JournalError as error:
                    pending.append((line_number, error))
                    continue
                future = asyncio.ensure_future(journal.append_prepared([prepared]))
                pending.append((line_number, future))
            for number, outcome in pending:
                try:
                    if isinstance(outcome, JournalError):
                        raise outcome
                    result = (await outcome)[0]
                except JournalError as error:
                    refused += 1
                    _write_line(sys.stderr, f"journal: line {number}: {printable(str(error))}")
                    continue
                _write_line(sys.stdout, f"{result.seq} {result.event_id} {result.hash}")
    return EXIT_REFUSED if refused else EXIT_OK


# --- verify -----------------------------------------------------------------------------------


def _format_report(info: JournalInfo, report: VerifyReport) -> list[str]:
    lines = []
    status = "intact" if report.ok else "BROKEN"
    span = f"seq {report.first_seq}..{report.last_seq}" if report.first_seq is not None else "empty"
    lines.append(
        f"{info.path}: {status}: {report.checked_events} events checked ({span}),"
        f" {len(report.breaks) + report.breaks_truncated} broken links;"
        f" {report.records_checked} record rows checked, {report.records_purged} purged on"
        f" purpose, {len(report.record_breaks)} not matching the chain"
    )
    for item in report.breaks:
        lines.append(
            f"  seq {item.seq} {item.code.value} event={item.event_id or '-'}"
            f" expected={item.expected or '-'} found={printable(item.found or '-')}"
            f": {item.summary}"
        )
    if report.breaks_truncated:
        lines.append(f"  ... and {report.breaks_truncated} more")
    for record in report.record_breaks:
        lines.append(
            f"  {record.table} key={printable(record.key)} {record.code}"
            f" event_seq={record.event_seq}: {record.summary}"
        )
    return lines


def _format_anchor_report(anchors: AnchorReport) -> list[str]:
    status = "consistent" if anchors.ok else "BROKEN"
    lines = [
        f"anchors {anchors.anchor_path}: {status}: {anchors.verified_entries} of"
        f" {anchors.entries} checkpoints verified, newest anchored seq"
        f" {anchors.latest_anchored_seq if anchors.latest_anchored_seq is not None else '-'}"
    ]
    for item in anchors.findings:
        where = f"seq {item.seq}" if item.seq is not None else "seq -"
        line = f" line {item.line}" if item.line is not None else ""
        lines.append(
            f"  {where}{line} {item.code} expected={item.expected or '-'}"
            f" found={printable(item.found or '-')}: {item.summary}"
        )
    return lines


def _verify(args: argparse.Namespace) -> int:
    if args.from_seq < 1:
        raise CliError("--from-seq must be >= 1")
    if args.db.startswith(("postgresql://", "postgres://")):
        return _verify_central(args)
    if args.journal is not None:
        raise CliError("--journal applies to a central store (postgresql://...) only")
    if is_palyra_journal(args.db):
        return _verify_palyra(args)
    if args.anchor is not None and (args.from_seq != 1 or args.incremental):
        raise CliError("--anchor checks the whole journal: drop --from-seq and --incremental")
    pubkey = load_public_key(args.pubkey) if args.pubkey is not None else None
    anchors: AnchorReport | None = None
    if args.anchor is not None:
        info, report, anchors = verify_with_anchors(args.db, args.anchor, pubkey=pubkey)
    else:
        info, report = verify_file(
            args.db, from_seq=args.from_seq, incremental=args.incremental, pubkey=pubkey
        )
    ok = report.ok and (anchors is None or anchors.ok)
    if args.json:
        document = {"journal_id": info.journal_id, "path": str(info.path), **report.to_dict()}
        if anchors is not None:
            document["anchors"] = anchors.to_dict()
            document["status"] = "ok" if ok else "broken"
        _write_json(sys.stdout, document)
    else:
        for line in _format_report(info, report):
            _write_line(sys.stdout, line)
        if anchors is not None:
            for line in _format_anchor_report(anchors):
                _write_line(sys.stdout, line)
    return EXIT_OK if ok else EXIT_REFUSED


def _verify_central(args: argparse.Namespace) -> int:
    """``verify`` of every journal the central store holds (same codes and exit statuses)."""
    if args.anchor is not None or args.incremental or args.from_seq != 1 or args.pubkey:
        raise CliError(
            "a central store is verified whole: drop --anchor, --pubkey, --from-seq and"
            " --incremental (its checkpoints are checked from each journal's first key)"
        )
    from journal_core.central import commands

    def write(line: str) -> None:
        if not args.json:
            _write_line(sys.stdout, line)

    status, documents = commands.verify(args.db, journal_id=args.journal, write=write)
    if args.json:
        _write_json(
            sys.stdout,
            {"status": "ok" if status == EXIT_OK else "broken", "journals": documents},
        )
    return status


def _ship(args: argparse.Namespace) -> int:
    if not 1 <= args.batch <= 1_000_000:
        raise CliError("--batch must be in 1..1000000")
    if args.interval <= 0:
        raise CliError("--interval must be > 0")
    from journal_core.central import commands

    return commands.ship(
        args.db,
        args.to,
        once=args.once,
        batch_size=args.batch,
        interval=args.interval,
        write=lambda line: _write_line(sys.stdout, line),
    )


def _verify_palyra(args: argparse.Namespace) -> int:
    """``verify`` of a Palyra journal: its own chain encoding, read-only, no anchors."""
    if args.anchor is not None or args.incremental or args.from_seq != 1:
        raise CliError("a Palyra journal has no checkpoints: only a full verify is possible")
    palyra_info, report = verify_palyra_file(args.db)
    if args.json:
        document = {"format": "palyra", "path": str(palyra_info.path), **report.to_dict()}
        _write_json(sys.stdout, document)
    else:
        status = "intact" if report.ok else "BROKEN"
        _write_line(
            sys.stdout,
            f"{palyra_info.path}: Palyra journal (its v1 chain): {status}:"
            f" {report.checked_events} events checked, {len(report.breaks)} broken links",
        )
        for item in report.breaks:
            _write_line(
                sys.stdout,
                f"  seq {item.seq} {item.code.value} event={item.event_id or '-'}"
                f" expected={item.expected or '-'} found={printable(item.found or '-')}"
                f": {item.summary}",
            )
    return EXIT_OK if report.ok else EXIT_REFUSED


# --- tail -------------------------------------------------------------------------------------


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def format_event_line(event: StoredEvent, width: int = 160) -> str:
    """One human-readable, terminal-safe line for an event."""
    head = (
        f"{event.seq:>8} {_time(event.timestamp_unix_ms)} {event.kind_name:<16}"
        f" {event.actor_name:<6} run={event.run_id[-8:]} "
    )
    flag = "[redacted] " if event.redacted else ""
    room = max(20, width - len(head) - len(flag))
    payload = printable(event.payload_json)
    if len(payload) > room:
        payload = payload[: room - 1] + "…"
    return head + flag + payload


async def _tail(args: argparse.Namespace) -> int:
    if args.lines < 0:
        raise CliError("--lines must be >= 0")
    if args.interval <= 0:
        raise CliError("--interval must be > 0")
    width = max(60, os.get_terminal_size().columns if sys.stdout.isatty() else 160)

    def show(event: StoredEvent) -> None:
        if args.json:
            _write_json(sys.stdout, event.to_dict())
        else:
            _write_line(sys.stdout, format_event_line(event, width))

    async with await JournalReader.open(args.db) as reader:
        # Taken before the backlog is read: a commit while the backlog prints still shows up.
        version = await reader.data_version()
        last = (await reader.head()).seq
        backlog = await reader.last_events(args.lines)
        if backlog:
            last = backlog[-1].seq
        for event in backlog:
            show(event)
        if not args.follow:
            return EXIT_OK
        while True:
            await asyncio.sleep(args.interval)
            current = await reader.data_version()
            if current == version:
                continue
            version = current
            while batch := await reader.events_after(last, 1_000):
                for event in batch:
                    show(event)
                last = batch[-1].seq


# --- export and info --------------------------------------------------------------------------


async def _export(args: argparse.Namespace) -> int:
    if args.from_seq < 1:
        raise CliError("--from-seq must be >= 1")
    async with await JournalReader.open(args.db) as reader:
        head = await reader.head()
        target = Path(args.output) if args.output else None
        stream = target.open("wb") if target else sys.stdout.buffer
        try:
            header = {
                "type": "journal",
                "format": "journal-export-v1",
                "journal_id": reader.info.journal_id,
                "chain_algorithm": reader.info.chain_algorithm,
                "schema_version": reader.info.schema_version,
                "from_seq": args.from_seq,
                "to_seq": head.seq,
            }
            stream.write(orjson.dumps(header) + b"\n")
            last = args.from_seq - 1
            while last < head.seq:
                batch = await reader.events_after(last, 5_000)
                batch = [event for event in batch if event.seq <= head.seq]
                if not batch:
                    break
                for event in batch:
                    stream.write(orjson.dumps({"type": "event", **event.to_dict()}) + b"\n")
                last = batch[-1].seq
            stream.flush()
        finally:
            if target:
                stream.close()
    return EXIT_OK


async def _info(args: argparse.Namespace) -> int:
    async with await JournalReader.open(args.db) as reader:
        head = await reader.head()
        events = await reader.count()
        info = reader.info
    sizes = {
        suffix or "db": (
            Path(f"{info.path}{suffix}").stat().st_size
            if Path(f"{info.path}{suffix}").exists()
            else 0
        )
        for suffix in ("", "-wal", "-shm")
    }
    document = {
        "path": str(info.path),
        "journal_id": info.journal_id,
        "chain_algorithm": info.chain_algorithm,
        "schema_version": info.schema_version,
        "created_at": _time(info.created_at_unix_ms),
        "events": events,
        "head_seq": head.seq,
        "head_hash": head.hash,
        "bytes": sizes,
        "public_keys": _public_keys(info.path),
    }
    if args.json:
        _write_json(sys.stdout, document)
    else:
        for key, value in document.items():
            _write_line(sys.stdout, f"{key + ':':<17}{value}")
    return EXIT_OK


async def _rotate_key(args: argparse.Namespace) -> int:
    async with await Journal.open(args.db, create=False) as journal:
        public = await rotate_key(journal, args.new_key)
    _write_line(sys.stdout, public.vkey)
    return EXIT_OK


def _public_keys(path: Path) -> list[str]:
    """The journal's recorded verifier keys, oldest first (the last one signs now)."""
    conn, _ = open_reader(path)
    try:
        if not has_checkpoint_tables(conn):
            return []
        return [key.vkey for key, _announced_by in journal_keys(conn)]
    finally:
        conn.close()


def default_demo_path() -> Path:
    """Where ``journal demo`` keeps its journal: the user's data directory."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "agent-journal" / "demo.db"


async def _demo(args: argparse.Namespace) -> int:
    if args.events is not None and args.events < 1:
        raise CliError("--events must be >= 1")
    rate = args.rate if args.rate is not None else (0.0 if args.no_ui and args.events else 40.0)
    if rate < 0:
        raise CliError("--rate must be >= 0")
    agents = args.agents if args.agents is not None else (16 if rate == 0 else 6)
    if not 1 <= agents <= 64:
        raise CliError("--agents must be between 1 and 64")
    path = Path(args.db) if args.db else default_demo_path()
    from journal_core.demo import DemoConfig, run_demo  # loaded only for this command

    config = DemoConfig(seed=args.seed, rate=rate, agents=agents)
    started = time.perf_counter()
    async with await Journal.open(
        path, config=JournalConfig(wal_checkpoints=not args.replicated)
    ) as journal:
        if args.no_ui:
            stats = await run_demo(journal, config, max_events=args.events)
        else:
            from journal_tui.launch import demo  # the UI loads only when it is asked for

            stats = await demo(journal, config, max_events=args.events, decider=args.decider)
    elapsed = time.perf_counter() - started
    _write_line(
        sys.stderr,
        f"journal: demo wrote to {path} in {elapsed:.1f} s: {stats.runs_started} runs"
        f" ({stats.runs_done} done, {stats.runs_failed} failed),"
        f" {stats.approvals_requested} approvals, {stats.secrets_planted} secrets caught",
    )
    for error in stats.errors[:5]:
        _write_line(sys.stderr, f"journal: demo agent error: {printable(error)}")
    return EXIT_OK


async def _tui(args: argparse.Namespace) -> int:
    from journal_tui.launch import inspect  # the UI loads only when it is asked for

    await inspect(args.db, read_only=args.read_only, decider=args.decider)
    return EXIT_OK


# --- health and backup ------------------------------------------------------------------------

EXIT_HEALTH_CANNOT = 4


async def _health(args: argparse.Namespace) -> int:
    from journal_core.health import format_health, health_report  # only for this command

    try:
        report = await health_report(args.db, write_probe=not args.no_write_probe)
    except JournalError as error:
        raise CliError(printable(str(error)), EXIT_HEALTH_CANNOT) from None
    except OSError as error:
        raise CliError(f"{error.strerror or error}: {args.db}", EXIT_HEALTH_CANNOT) from None
    if args.json:
        _write_json(sys.stdout, report.to_dict())
    else:
        for line in format_health(report):
            _write_line(sys.stdout, line)
    return int(report.severity)


def _backup(args: argparse.Namespace) -> int:
    from journal_core.maintenance import backup  # only for this command

    result = backup(args.db, args.out)
    _write_line(
        sys.stdout,
        f"backup of journal {result.journal_id} written to {printable(str(result.path))}:"
        f" {result.pages} pages, {result.bytes} bytes, events up to seq {result.head_seq}",
    )
    return EXIT_OK


def _replicate(args: argparse.Namespace) -> int:
    from journal_core.replica import replica_config, replica_url, replicate  # only for this command

    config = replica_config(
        args.db, args.to, sync_interval_s=args.sync_interval, socket_path=args.socket
    )
    if args.print_config:
        sys.stdout.write(config)
        return EXIT_OK
    _write_line(
        sys.stderr,
        f"journal: replicating {args.db} to {replica_url(args.to)} every"
        f" {args.sync_interval:g} s; Ctrl-C stops after a final sync",
    )
    return replicate(args.db, args.to, sync_interval_s=args.sync_interval, socket_path=args.socket)


def _restore(args: argparse.Namespace) -> int:
    from journal_core.replica import restore  # only for this command

    timestamp = None
    if args.timestamp is not None:
        try:
            timestamp = datetime.fromisoformat(args.timestamp)
        except ValueError:
            raise CliError(
                f"--timestamp: {args.timestamp!r} is not an ISO 8601 time"
                " (e.g. 2026-01-31T12:00:00Z)"
            ) from None
    result = restore(args.url, args.to, timestamp=timestamp, txid=args.txid)
    _write_line(
        sys.stdout,
        f"restored journal {result.journal_id} to {printable(str(result.path))}: events up to"
        f" seq {result.head_seq}; check it with `journal verify {printable(str(result.path))}"
        " --anchor ORIGINAL.anchors`",
    )
    return EXIT_OK


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv``; returns the exit status."""
    try:
        args = _build_parser().parse_args(argv)
        command = args.command
        if command == "append":
            return asyncio.run(_append(args))
        if command == "verify":
            return _verify(args)
        if command == "ship":
            return _ship(args)
        if command == "tail":
            return asyncio.run(_tail(args))
        if command == "export":
            return asyncio.run(_export(args))
        if command == "demo":
            return asyncio.run(_demo(args))
        if command == "tui":
            return asyncio.run(_tui(args))
        if command == "health":
            return asyncio.run(_health(args))
        if command == "backup":
            return _backup(args)
        if command == "replicate":
            return _replicate(args)
        if command == "restore":
            return _restore(args)
        if command == "rotate-key":
            return asyncio.run(_rotate_key(args))
        return asyncio.run(_info(args))
    except CliError as error:
        _write_line(sys.stderr, f"journal: {error}")
        return error.status
    except JournalError as error:
        _write_line(sys.stderr, f"journal: {printable(str(error))}")
        return EXIT_CANNOT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            sys.stdout.close()
        return EXIT_OK
    except OSError as error:
        _write_line(sys.stderr, f"journal: {error.strerror or error}: {error.filename or ''}")
        return EXIT_CANNOT


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
