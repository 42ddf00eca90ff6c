"""The fleet's command-line verbs: ``journal ship`` and ``journal verify postgresql://...``.

Kept apart from :mod:`journal_core.cli` so the PostgreSQL driver loads only for them. Both
return the command's exit status and print what they did; errors are raised as journal errors,
which the command line turns into one-line messages.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import psycopg

from journal_core.central.connection import connect_central, connection_error, describe_url
from journal_core.central.schema import installed_version
from journal_core.central.ship import Shipper, ShipResult, follow
from journal_core.central.verify import CentralJournalReport, verify_central
from journal_core.errors import CentralStoreError, ShipRefusedError

EXIT_OK = 0
EXIT_REFUSED = 1

Write = Callable[[str], None]


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[Callable[[], bool]]:
    """SIGINT and SIGTERM ask the loop to stop after the batch in flight (never mid-batch)."""
    stopping = False

    def handler(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: stopping
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _summary(result: ShipResult) -> str:
    return (
        f"journal {result.journal_id}: shipped {result.events} events, {result.records} record"
        f" rows ({result.purged} purged), {result.checkpoints} checkpoints in"
        f" {result.seconds:.2f} s; central head seq {result.head_seq} of host head"
        f" {result.host_head_seq}"
    )


def ship(
    db: str,
    url: str,
    *,
    once: bool,
    batch_size: int,
    interval: float,
    write: Write,
) -> int:
    """``journal ship DB --to URL``: once, or continuously until interrupted.

    Continuously, a journal that does not exist yet is waited for (a shipper started before
    its daemon); ``--once`` reports it missing.
    """
    if interval <= 0:
        raise ValueError("--interval must be > 0")
    central = connect_central(url)
    try:
        if not once and not _appeared(Path(db).expanduser(), interval, write):
            return EXIT_OK
        shipper = Shipper(db, central, url=url, batch_size=batch_size)
        try:
            if once:
                write(_summary(shipper.ship_once()))
                return EXIT_OK
            write(
                f"shipping journal {shipper.journal_id} from {shipper.db_path} to"
                f" {describe_url(url)}; Ctrl-C stops after the batch in flight"
            )
            shown = time.monotonic()
            totals = ShipResult(shipper.journal_id)

            def report(result: ShipResult) -> None:
                nonlocal shown
                totals.events += result.events
                totals.records += result.records
                totals.purged += result.purged
                totals.checkpoints += result.checkpoints
                totals.seconds += result.seconds
                totals.head_seq = result.head_seq
                totals.host_head_seq = result.host_head_seq
                if time.monotonic() - shown >= 1.0:
                    shown = time.monotonic()
                    write(_summary(totals))

            with _stop_on_signals() as should_stop:
                follow(shipper, interval=interval, should_stop=should_stop, on_result=report)
            write(_summary(totals))
            return EXIT_OK
        except ShipRefusedError as refusal:
            write(f"REFUSED: {refusal}")
            return EXIT_REFUSED
        finally:
            shipper.close()
    finally:
        central.close()


def _appeared(path: Path, interval: float, write: Write) -> bool:
    """Wait until ``path`` exists; False when interrupted first."""
    if path.exists():
        return True
    with _stop_on_signals() as should_stop:
        write(f"waiting for a journal at {path.absolute()}; Ctrl-C stops")
        while not path.exists():
            if should_stop():
                return False
            time.sleep(min(interval, 0.5))
    return True


def verify(
    url: str, *, journal_id: str | None, write: Write
) -> tuple[int, list[dict[str, object]]]:
    """``journal verify postgresql://...``: every journal held, or one; (status, documents).

    Read-only: a database without a central store is reported, never given one.
    """
    central = connect_central(url, migrate_schema=False)
    try:
        try:
            empty = installed_version(central) == 0
        except psycopg.Error as error:
            raise connection_error(url, error) from None
        if empty:
            raise CentralStoreError(
                f"{describe_url(url)} holds no central journal store yet; ship a journal to it"
                " first (journal ship DB --to URL)"
            )
        reports = verify_central(central, url, journal_id)
    finally:
        central.close()
    for report in reports:
        for line in format_central_report(report):
            write(line)
    if not reports:
        write(f"{describe_url(url)}: the central store holds no journal yet")
    ok = all(report.ok for report in reports)
    return (EXIT_OK if ok else EXIT_REFUSED), [report.to_dict() for report in reports]


def format_central_report(report: CentralJournalReport) -> list[str]:
    """Human-readable lines for one journal's central verification."""
    chain = report.chain
    status = "intact" if report.ok else "BROKEN"
    lines = [
        f"journal {report.journal_id} (host {report.host}): {status}:"
        f" {chain.checked_events} events checked up to head seq {report.head_seq},"
        f" {len(chain.breaks) + chain.breaks_truncated} broken links;"
        f" {chain.records_checked} record rows checked (complete to seq {report.records_seq}),"
        f" {chain.records_purged} purged on purpose, {len(chain.record_breaks)} not matching;"
        f" {report.checkpoints.verified_entries} of {report.checkpoints.entries} checkpoints"
        " verified"
    ]
    for item in chain.breaks:
        lines.append(
            f"  seq {item.seq} {item.code.value} event={item.event_id or '-'}"
            f" expected={item.expected or '-'} found={item.found or '-'}: {item.summary}"
        )
    for record in chain.record_breaks:
        lines.append(
            f"  {record.table} key={record.key} {record.code}"
            f" event_seq={record.event_seq}: {record.summary}"
        )
    for finding in (*report.checkpoints.findings, *report.findings):
        where = f"seq {finding.seq}" if finding.seq is not None else "seq -"
        lines.append(f"  {where} {finding.code}: {finding.summary}")
    return lines
