"""The central store on a real PostgreSQL server: shipping, the witness, verification, decisions.

Every test gets a fresh database on a server the tests start themselves (``conftest.postgres``).
Journals are real files written through the public API (the demo daemon, approvals); tampering
is done on the SQLite file or, for the central copy, in PostgreSQL itself.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from journal_helpers import pending_approval, read, rewrite_history_from
from tui_fixtures import HOSTILE, build, write_hostile

from journal_core import Journal, ShipRefusedError, verify_file
from journal_core.approvals import decide, get_approval
from journal_core.central.connection import connect_central, connect_central_async
from journal_core.central.decisions import (
    CentralDecisionTakenError,
    apply_pending,
    central_decision,
    request_decision,
)
from journal_core.central.reads import CentralReader
from journal_core.central.ship import Shipper, follow
from journal_core.central.verify import verify_central
from journal_core.cli import run as cli_run
from journal_core.demo import DemoConfig, run_demo
from journal_core.errors import CentralStoreError, ValidationError
from journal_core.reader import JournalReader
from journal_core.records import RECORD_SPECS
from journal_core.schema import EVENT_COLUMNS
from journal_core.sessions import session_summaries

ROOT = Path(__file__).resolve().parent.parent


def _demo(path: Path, events: int, seed: int = 3) -> None:
    async def main() -> None:
        async with await Journal.open(path) as journal:
            await run_demo(journal, DemoConfig(seed=seed, rate=0, agents=4), max_events=events)

    asyncio.run(main())


def _ship(path: Path, url: str, batch: int = 500) -> Any:
    central = connect_central(url)
    shipper = Shipper(path, central, url=url, batch_size=batch)
    try:
        return shipper.ship_once()
    finally:
        shipper.close()
        central.close()


def _central_rows(url: str, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def _host_rows(path: Path, sql: str) -> list[Any]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _verify(url: str) -> list[Any]:
    central = connect_central(url)
    try:
        return verify_central(central, url)
    finally:
        central.close()


# --- shipping ---------------------------------------------------------------------------------


def test_ship_copies_events_records_and_checkpoints_exactly(
    tmp_path: Path, central_url: str
) -> None:
    db = tmp_path / "host.db"
    _demo(db, 1_500)
    result = _ship(db, central_url)
    head = _host_rows(db, "SELECT MAX(seq) FROM journal_events")[0][0]
    assert result.events == head
    assert result.head_seq == head
    assert result.batches >= 3
    columns = "seq, event_ulid, payload_json, hash, prev_hash, redaction_rules, channel"
    host = _host_rows(db, f"SELECT {columns} FROM journal_events ORDER BY seq")
    central = _central_rows(central_url, f"SELECT {columns} FROM journal_events ORDER BY seq")
    assert [tuple(row) for row in central] == [tuple(row) for row in host]
    for table in ("orchestrator_sessions", "orchestrator_runs", "approvals", "tool_jobs"):
        host_count = _host_rows(db, f"SELECT count(*) FROM {table}")[0][0]
        assert _central_rows(central_url, f"SELECT count(*) FROM {table}")[0][0] == host_count
    host_checkpoints = _host_rows(db, "SELECT id, seq, head_hash, note FROM journal_checkpoints")
    assert host_checkpoints, "the demo signs checkpoints"
    assert [
        tuple(r)
        for r in _central_rows(
            central_url, "SELECT id, seq, head_hash, note FROM journal_checkpoints ORDER BY id"
        )
    ] == [tuple(r) for r in host_checkpoints]
    [report] = _verify(central_url)
    _, file_report = verify_file(db)
    assert report.ok, report.to_dict()
    assert report.chain.records_checked == file_report.records_checked
    assert report.chain.records_purged == file_report.records_purged
    assert report.checkpoints.verified_entries == len(host_checkpoints)


def test_shipping_again_is_idempotent_and_resumes_at_the_central_head(
    tmp_path: Path, central_url: str
) -> None:
    db = tmp_path / "host.db"
    _demo(db, 600)
    first = _ship(db, central_url)
    again = _ship(db, central_url)
    assert again.events == 0
    assert again.head_seq == first.head_seq
    _demo(db, 400, seed=4)  # the same journal goes on
    more = _ship(db, central_url)
    head = _host_rows(db, "SELECT MAX(seq) FROM journal_events")[0][0]
    assert more.events == head - first.head_seq
    count = _central_rows(central_url, "SELECT count(*), max(seq) FROM journal_events")[0]
    assert tuple(count) == (head, head)
    [report] = _verify(central_url)
    assert report.ok, report.to_dict()


def test_two_journals_shipped_concurrently_while_they_are_written(
    tmp_path: Path, central_url: str
) -> None:
    paths = [tmp_path / "a.db", tmp_path / "b.db"]
    for index, path in enumerate(paths):
        _demo(path, 200, seed=index + 1)
    stop = threading.Event()
    errors: list[BaseException] = []

    def ship_forever(path: Path) -> None:
        central = connect_central(central_url)
        shipper = Shipper(path, central, url=central_url, batch_size=97)
        try:
            follow(shipper, interval=0.02, should_stop=stop.is_set)
            shipper.ship_once()
        except BaseException as error:
            errors.append(error)
        finally:
            shipper.close()
            central.close()

    threads = [threading.Thread(target=ship_forever, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    for index, path in enumerate(paths):
        _demo(path, 1_200, seed=index + 10)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    reports = _verify(central_url)
    assert len(reports) == 2
    for report in reports:
        assert report.ok, report.to_dict()
    heads = {r.journal_id: r.head_seq for r in reports}
    for path in paths:
        host_head = _host_rows(path, "SELECT MAX(seq) FROM journal_events")[0][0]
        journal_id = _host_rows(path, "SELECT value FROM journal_meta WHERE key='journal_id'")[0][0]
        assert heads[journal_id] == host_head


def test_a_shipper_killed_mid_batch_resumes_with_nothing_duplicated_or_missing(
    tmp_path: Path, central_url: str
) -> None:
    db = tmp_path / "host.db"
    _demo(db, 6_000)
    head = _host_rows(db, "SELECT MAX(seq) FROM journal_events")[0][0]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "journal_core", "ship", str(db), "--to", central_url]
    connect_central(central_url).close()  # the schema, so progress can be read from the start

    def shipped() -> tuple[int, int]:
        count, top = _central_rows(central_url, "SELECT count(*), max(seq) FROM journal_events")[0]
        return int(count), int(top or 0)

    progress = [0]
    for _round in range(3):
        process = subprocess.Popen(
            [*command, "--batch", "150"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        # Killed as soon as it is seen shipping: in the middle of its stream of batches.
        deadline = time.monotonic() + 60
        while shipped()[0] == progress[-1] and process.poll() is None:
            assert time.monotonic() < deadline, "the shipper never made progress"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        count, top = shipped()
        assert count == top, "no gap and no duplicate after a kill"
        progress.append(count)
    assert progress[1] < progress[2] < progress[3] < head, progress
    done = subprocess.run(
        [*command, "--once"], check=False, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    count, top = _central_rows(central_url, "SELECT count(*), max(seq) FROM journal_events")[0]
    assert (count, top) == (head, head)
    [report] = _verify(central_url)
    assert report.ok, report.to_dict()


def test_a_shipper_started_before_its_journal_waits_for_it(
    tmp_path: Path, central_url: str
) -> None:
    db = tmp_path / "later.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "journal_core", "ship", str(db), "--to", central_url]
    once = subprocess.run(
        [*command, "--once"], check=False, env=env, capture_output=True, text=True
    )
    assert once.returncode == 2
    assert f"no journal at {db}" in once.stderr

    process = subprocess.Popen(
        [*command, "--interval", "0.05"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert "waiting for a journal at" in process.stdout.readline()
        assert process.poll() is None
        _demo(db, 300)
        head = _host_rows(db, "SELECT MAX(seq) FROM journal_events")[0][0]
        deadline = time.monotonic() + 30
        while (
            _central_rows(central_url, "SELECT coalesce(max(seq), 0) FROM journal_events")[0][0]
            < head
        ):
            assert time.monotonic() < deadline, "the waiting shipper never shipped"
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    [report] = _verify(central_url)
    assert report.ok, report.to_dict()


def test_a_waiting_shipper_stops_on_ctrl_c(tmp_path: Path, central_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    url = central_url
    process = subprocess.Popen(
        [sys.executable, "-m", "journal_core", "ship", str(tmp_path / "never.db"), "--to", url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert "waiting for a journal at" in process.stdout.readline()
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert not (tmp_path / "never.db").exists()


# --- the witness ------------------------------------------------------------------------------


def test_the_witness_refuses_a_rewritten_host_journal_by_journal_and_seq(
    tmp_path: Path, central_url: str
) -> None:
    db = tmp_path / "host.db"
    _demo(db, 800)
    shipped = _ship(db, central_url)
    before = _central_rows(central_url, "SELECT seq, hash FROM journal_events ORDER BY seq")
    rewrite_history_from(db, 300)
    _, file_report = verify_file(db, records=False)
    assert file_report.ok, "the rewrite is clean: the file's own chain verifies"
    with pytest.raises(ShipRefusedError) as refused:
        _ship(db, central_url)
    assert refused.value.code == "history_rewritten"
    assert refused.value.seq == 300
    assert _central_rows(central_url, "SELECT seq, hash FROM journal_events ORDER BY seq") == before
    row = _central_rows(central_url, "SELECT refused_code, refused_seq, head_seq FROM journals")[0]
    assert tuple(row) == ("history_rewritten", 300, shipped.head_seq)
    [report] = _verify(central_url)
    assert report.chain.ok
    assert not report.ok
    assert [(f.code, f.seq) for f in report.findings] == [("history_rewritten", 300)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = subprocess.run(
        [sys.executable, "-m", "journal_core", "ship", str(db), "--to", central_url, "--once"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 1
    assert "history_rewritten at seq 300" in cli.stdout
    assert "Traceback" not in cli.stderr


def _copy_journal(source: Path, target: Path) -> None:
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    src.backup(dst)
    src.close()
    dst.close()


def _put_back(copy: Path, db: Path) -> None:
    shutil.copy(copy, db)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def test_the_witness_refuses_a_rolled_back_host_journal_until_a_good_copy_returns(
    tmp_path: Path, central_url: str
) -> None:
    db = tmp_path / "host.db"
    _demo(db, 500)
    old, good = tmp_path / "old.db", tmp_path / "good.db"
    _copy_journal(db, old)
    _demo(db, 500, seed=9)
    _ship(db, central_url)
    _copy_journal(db, good)
    _put_back(old, db)
    with pytest.raises(ShipRefusedError) as refused:
        _ship(db, central_url)
    assert refused.value.code == "rolled_back"
    assert _central_rows(central_url, "SELECT refused_code FROM journals")[0][0] == "rolled_back"
    _put_back(good, db)  # e.g. restored from its replica: it extends the history held again
    assert _ship(db, central_url).events == 0
    assert _central_rows(central_url, "SELECT refused_code FROM journals")[0][0] is None


def test_postgresql_itself_refuses_events_that_do_not_extend_the_head(
    tmp_path: Path, central_url: str
) -> None:
    """A modified shipper cannot get past the witness: the trigger checks every insert."""
    db = tmp_path / "host.db"
    _demo(db, 300)
    _ship(db, central_url)
    journal_id, head_seq, head_hash = _central_rows(
        central_url, "SELECT journal_id, head_seq, head_hash FROM journals"
    )[0]
    values = (
        journal_id,
        "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "s",
        "r",
        1,
        1,
        1,
        "{}",
        0,
        "h",
        "p",
        "x",
        "y",
        1,
    )
    insert = (
        "INSERT INTO journal_events (journal_id, seq, event_ulid, session_ulid, run_ulid, kind,"
        " actor, timestamp_unix_ms, payload_json, redacted, hash, prev_hash, principal,"
        " device_id, created_at_unix_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " %s, %s, %s)"
    )
    with psycopg.connect(central_url, autocommit=True) as conn:
        for seq, prev in (
            (head_seq + 1, "0" * 64),
            (head_seq + 2, head_hash),
            (head_seq, head_hash),
        ):
            row = (values[0], seq, *values[1:9], "h", prev, "x", "y", 1)
            with pytest.raises(psycopg.Error):
                conn.execute(insert, row)
        with pytest.raises(psycopg.Error, match="append-only"):
            conn.execute("UPDATE journal_events SET payload_json = '{}' WHERE seq = 1")
        with pytest.raises(psycopg.Error, match="append-only"):
            conn.execute("DELETE FROM journal_events WHERE seq = %s", (head_seq,))
    assert _central_rows(central_url, "SELECT head_seq FROM journals")[0][0] == head_seq


# --- verifying the central copy ---------------------------------------------------------------


def _tamper_central(url: str, sql: str, params: tuple[object, ...] = ()) -> None:
    """Edit the central copy as a database superuser would, triggers out of the way."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(sql, params)


def test_central_verify_finds_edits_to_the_central_copy(tmp_path: Path, central_url: str) -> None:
    db = tmp_path / "host.db"
    _demo(db, 900)
    _ship(db, central_url)
    _tamper_central(
        central_url, "UPDATE journal_events SET payload_json = '{\"x\":1}' WHERE seq = 100"
    )
    _tamper_central(central_url, "DELETE FROM journal_events WHERE seq = 200")
    _tamper_central(
        central_url,
        "UPDATE orchestrator_runs SET state = 'done' WHERE run_ulid ="
        " (SELECT run_ulid FROM orchestrator_runs WHERE state <> 'done' LIMIT 1)",
    )
    [report] = _verify(central_url)
    assert not report.ok
    codes = {(b.code.value, b.seq) for b in report.chain.breaks}
    assert ("hash_mismatch", 100) in codes
    assert ("missing_event", 200) in codes
    assert "record_digest_mismatch" in {b.code for b in report.chain.record_breaks}
    status = cli_run(["verify", central_url])
    assert status == 1


def test_central_verify_cli_reports_every_journal(
    tmp_path: Path, central_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b"):
        _demo(tmp_path / f"{name}.db", 300, seed=ord(name))
        _ship(tmp_path / f"{name}.db", central_url)
    assert cli_run(["verify", central_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert all(": intact: " in line for line in lines)
    assert cli_run(["verify", central_url, "--json"]) == 0
    document = __import__("orjson").loads(capsys.readouterr().out)
    assert document["status"] == "ok"
    assert len(document["journals"]) == 2
    assert cli_run(["verify", central_url, "--anchor", "x.anchors"]) == 2
    assert "verified whole" in capsys.readouterr().err


def test_bad_urls_and_foreign_databases_are_refused_clearly(
    tmp_path: Path, central_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(CentralStoreError, match="not a PostgreSQL URL"):
        connect_central("mysql://x")
    with psycopg.connect(central_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int)")
    with pytest.raises(CentralStoreError, match="holds other tables"):
        connect_central(central_url)
    db = tmp_path / "host.db"
    _demo(db, 50)
    port_closed = "postgresql://postgres@127.0.0.1:1/none"
    assert cli_run(["ship", str(db), "--to", port_closed, "--once"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect to the central store" in err
    assert "Traceback" not in err
    assert cli_run(["ship", str(db), "--to", central_url, "--once", "--batch", "0"]) == 2


# --- central decisions ------------------------------------------------------------------------


def _request(url: str, journal_id: str, approval_id: str, **fields: Any) -> Any:
    async def main() -> Any:
        conn = await connect_central_async(url)
        try:
            return await request_decision(
                conn,
                journal_id,
                approval_id,
                decision=fields.get("decision", "allow"),
                scope="once",
                decided_by=fields.get("decided_by", "ops@central"),
            )
        finally:
            await conn.close()

    return asyncio.run(main())


def test_a_central_decision_reaches_the_daemon_that_asked(tmp_path: Path, central_url: str) -> None:
    db = tmp_path / "host.db"
    _demo(db, 100)
    approval_id = pending_approval(db)
    result = _ship(db, central_url)
    queued = _request(central_url, result.journal_id, approval_id)
    assert queued.status == "pending"
    with pytest.raises(CentralDecisionTakenError, match="first decision stands"):
        _request(central_url, result.journal_id, approval_id, decided_by="other@central")
    central = connect_central(central_url)
    try:
        assert apply_pending(central, db, result.journal_id) == 1
    finally:
        central.close()
    approval = read(db, lambda reader: get_approval(reader, approval_id))
    assert (approval.decision, approval.decided_by, approval.decision_channel) == (
        "allow",
        "ops@central",
        "central",
    )
    _ship(db, central_url)
    row = _central_rows(
        central_url,
        "SELECT a.decision, a.decision_channel, d.status FROM approvals a JOIN central_decisions d"
        " USING (journal_id, approval_ulid) WHERE approval_ulid = %s",
        (approval_id,),
    )[0]
    assert tuple(row) == ("allow", "central", "applied")
    with pytest.raises(ValidationError, match="already decided"):
        _request(central_url, result.journal_id, approval_id, decided_by="late@central")
    [report] = _verify(central_url)
    assert report.ok, report.to_dict()


def test_a_local_decision_first_makes_the_central_one_lose(
    tmp_path: Path, central_url: str
) -> None:
    db = tmp_path / "host.db"
    _demo(db, 100)
    approval_id = pending_approval(db)
    result = _ship(db, central_url)
    _request(central_url, result.journal_id, approval_id, decision="allow")

    async def local_deny() -> None:
        async with await Journal.open(db) as journal:
            await decide(
                journal, approval_id, decision="deny", scope="once", decided_by="me", channel="tui"
            )

    asyncio.run(local_deny())
    central = connect_central(central_url)
    try:
        apply_pending(central, db, result.journal_id)
    finally:
        central.close()
    approval = read(db, lambda reader: get_approval(reader, approval_id))
    assert (approval.decision, approval.decided_by) == ("deny", "me")

    async def status() -> Any:
        conn = await connect_central_async(central_url)
        try:
            return await central_decision(conn, result.journal_id, approval_id)
        finally:
            await conn.close()

    settled = asyncio.run(status())
    assert settled.status == "lost"
    assert "deny by me via tui" in (settled.outcome or "")


def test_central_tables_mirror_the_file_columns(central_url: str) -> None:
    """Every record table and the event table hold exactly the file's columns (plus the id)."""
    connect_central(central_url).close()

    def columns(table: str) -> list[str]:
        rows = _central_rows(
            central_url,
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
            " ORDER BY ordinal_position",
            (table,),
        )
        return [str(row[0]) for row in rows]

    assert columns("journal_events") == ["journal_id", *EVENT_COLUMNS, "shipped_at"]
    for spec in RECORD_SPECS:
        assert columns(spec.table) == ["journal_id", *spec.columns, "event_seq"], spec.table


def test_text_with_nul_is_shipped_exactly_and_shown_safely(
    tmp_path: Path, central_url: str
) -> None:
    """PostgreSQL text cannot hold NUL, a journal's free text can (a tool's output, a label):
    such rows keep an exact copy, the table shows NUL as U+2400, and both are verified."""
    db = tmp_path / "hostile.db"
    build(db, write_hostile)
    result = _ship(db, central_url)
    assert result.head_seq == _host_rows(db, "SELECT MAX(seq) FROM journal_events")[0][0]
    labels = _central_rows(central_url, "SELECT session_label FROM orchestrator_sessions")
    assert [row[0] for row in labels] == [HOSTILE.replace("\x00", "\u2400")]
    exact = _central_rows(central_url, "SELECT count(*) FROM record_raw")[0][0]
    host_rows_with_nul = sum(
        _host_rows(db, f"SELECT count(*) FROM {table} WHERE instr({column}, char(0)) > 0")[0][0]
        for table, column in (
            ("orchestrator_sessions", "session_label"),
            ("tool_job_tail_entries", "chunk_redacted"),
        )
    )
    assert exact >= host_rows_with_nul > 0
    [report] = _verify(central_url)
    assert report.ok, report.to_dict()
    _tamper_central(
        central_url, "UPDATE orchestrator_sessions SET session_label = 'nothing to see here'"
    )
    [report] = _verify(central_url)
    assert [b.code for b in report.chain.record_breaks] == ["record_digest_mismatch"]


def test_a_host_row_edited_behind_its_event_is_refused_at_its_seq(
    tmp_path: Path, central_url: str
) -> None:
    db = tmp_path / "host.db"
    _demo(db, 1_200)
    run_ulid, event_seq = _host_rows(
        db, "SELECT run_ulid, event_seq FROM orchestrator_runs ORDER BY event_seq DESC LIMIT 1"
    )[0]
    conn = sqlite3.connect(db)
    conn.execute(
        "UPDATE orchestrator_runs SET total_tokens = 999999 WHERE run_ulid = ?", (run_ulid,)
    )
    conn.commit()
    conn.close()
    with pytest.raises(ShipRefusedError) as refused:
        _ship(db, central_url, batch=100)
    assert (refused.value.code, refused.value.seq) == ("record_digest_mismatch", event_seq)
    head = _central_rows(central_url, "SELECT head_seq, refused_code FROM journals")[0]
    assert head[0] < event_seq <= head[0] + 100, "the batches before it stay shipped"
    assert head[1] == "record_digest_mismatch"
    assert _central_rows(central_url, "SELECT count(*) FROM journal_events")[0][0] == head[0]


def test_verify_of_a_database_without_a_central_store_changes_nothing(
    central_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_run(["verify", central_url]) == 2
    assert "holds no central journal store yet" in capsys.readouterr().err
    tables = _central_rows(
        central_url, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
    )
    assert tables[0][0] == 0


# --- found in review: the witness with nothing to ship, racing shippers, notifications ---------


def test_an_emptied_host_journal_is_refused_not_taken_for_idle(
    tmp_path: Path, central_url: str
) -> None:
    db = tmp_path / "host.db"
    empty = tmp_path / "empty.db"

    async def create() -> None:
        async with await Journal.open(db):
            pass

    asyncio.run(create())
    _copy_journal(db, empty)
    _demo(db, 300)
    _ship(db, central_url)
    _put_back(empty, db)
    with pytest.raises(ShipRefusedError) as refused:
        _ship(db, central_url)
    assert refused.value.code == "rolled_back"


def test_a_shipper_overtaken_by_another_of_the_same_file_is_not_refused(
    tmp_path: Path, central_url: str
) -> None:
    db = tmp_path / "host.db"
    _demo(db, 600)
    slow_conn, fast_conn = connect_central(central_url), connect_central(central_url)
    slow = Shipper(db, slow_conn, url=central_url, batch_size=100)
    fast = Shipper(db, fast_conn, url=central_url, batch_size=100)
    overtaken = []

    def overtake(_result: Any) -> None:
        if not overtaken:  # after the slow one's first batch: more events, shipped by the other
            _demo(db, 300, seed=5)
            overtaken.append(fast.ship_once().head_seq)

    try:
        slow.ship_once(on_batch=overtake)
        slow.ship_once()
    finally:
        for shipper, conn in ((slow, slow_conn), (fast, fast_conn)):
            shipper.close()
            conn.close()
    head = _host_rows(db, "SELECT MAX(seq) FROM journal_events")[0][0]
    assert overtaken == [head]
    assert tuple(_central_rows(central_url, "SELECT head_seq, refused_code FROM journals")[0]) == (
        head,
        None,
    )


def test_a_scoped_reader_wakes_for_every_journal_and_loses_no_notification(
    tmp_path: Path, central_url: str
) -> None:

    db = tmp_path / "host.db"
    _demo(db, 50)
    journal_id = _ship(db, central_url).journal_id

    async def main() -> tuple[bool, bool, bool]:
        reader = await CentralReader.open(central_url, scope=journal_id)
        try:
            await reader.listen()
            with psycopg.connect(central_url, autocommit=True) as conn, conn.transaction():
                conn.execute("SELECT pg_notify('journal_central', 'events 01OTHER 7')")
                conn.execute("SELECT pg_notify('journal_central', %s)", (f"events {journal_id} 9",))
            first = await reader.wait_for_change(timeout=5)
            second = await reader.wait_for_change(timeout=0.2)
            with psycopg.connect(central_url, autocommit=True) as conn:
                conn.execute("SELECT pg_notify('journal_central', 'events 01OTHER 8')")
            third = await reader.wait_for_change(timeout=5)
            return first, second, third
        finally:
            await reader.close()

    assert asyncio.run(main()) == (True, False, True)


def test_a_decision_applied_before_a_crash_is_settled_as_applied(
    tmp_path: Path, central_url: str
) -> None:
    db = tmp_path / "host.db"
    _demo(db, 100)
    approval_id = pending_approval(db)
    journal_id = _ship(db, central_url).journal_id
    _request(central_url, journal_id, approval_id, decided_by="ops@central")

    async def applied_then_crashed() -> None:  # the host took it; the central row was not settled
        async with await Journal.open(db) as journal:
            await decide(
                journal,
                approval_id,
                decision="allow",
                scope="once",
                decided_by="ops@central",
                channel="central",
            )

    asyncio.run(applied_then_crashed())
    central = connect_central(central_url)
    try:
        apply_pending(central, db, journal_id)
    finally:
        central.close()
    status = _central_rows(central_url, "SELECT status FROM central_decisions")[0][0]
    assert status == "applied"


def test_session_search_ignores_case_on_both_stores(tmp_path: Path, central_url: str) -> None:

    db = tmp_path / "host.db"
    _demo(db, 400)
    journal_id = _ship(db, central_url).journal_id

    async def counts() -> tuple[int, int, str]:
        async with await JournalReader.open(db) as local:
            sessions = await session_summaries(local, limit=5)
            key = sessions[0].session.session_key
            on_file = len(await session_summaries(local, text=key.upper()))
        central = await CentralReader.open(central_url, scope=journal_id)
        try:
            on_central = len(await session_summaries(central, text=key.upper()))
        finally:
            await central.close()
        return on_file, on_central, key

    on_file, on_central, key = asyncio.run(counts())
    assert on_file == on_central >= 1, key


def test_a_reader_reconnects_after_the_server_dropped_it(tmp_path: Path, central_url: str) -> None:
    db = tmp_path / "host.db"
    _demo(db, 50)
    journal_id = _ship(db, central_url).journal_id

    async def main() -> tuple[bool, int, bool]:
        reader = await CentralReader.open(central_url, scope=journal_id)
        try:
            await reader.listen()
            with psycopg.connect(central_url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            with pytest.raises(CentralStoreError):
                await reader.fetchall("SELECT count(*) FROM journal_events")
            await reader.reconnect()
            rows = await reader.fetchall("SELECT count(*) FROM journal_events")
            await reader.listen()
            with psycopg.connect(central_url, autocommit=True) as conn:
                conn.execute("SELECT pg_notify('journal_central', 'events x 1')")
            return reader.scope == journal_id, int(rows[0][0]), await reader.wait_for_change(5)
        finally:
            await reader.close()

    scoped, events, woke = asyncio.run(main())
    head = _host_rows(db, "SELECT MAX(seq) FROM journal_events")[0][0]
    assert (scoped, events, woke) == (True, head, True)


def test_a_shipper_role_without_rights_on_the_head_ships_but_cannot_move_it(
    tmp_path: Path, central_url: str, postgres: Any
) -> None:
    """The witness moves the head as the tables' owner; shippers get no UPDATE on it, and a
    temporary table of theirs named ``journals`` cannot stand in for the real one."""
    connect_central(central_url).close()  # the schema, made by its owner
    record_tables = ", ".join(spec.table for spec in RECORD_SPECS)
    with psycopg.connect(central_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS shipper_t")
        conn.execute("CREATE ROLE shipper_t LOGIN")
        for grant in (
            "GRANT SELECT, INSERT ON journal_events, journal_keys, journal_checkpoints"
            " TO shipper_t",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {record_tables}, record_raw TO shipper_t",
            "GRANT SELECT, INSERT ON journals TO shipper_t",
            "GRANT UPDATE (shipped_at, host_head_seq, host_seen_at, records_seq, refused_at,"
            " refused_seq, refused_code, refused_detail) ON journals TO shipper_t",
            "GRANT SELECT, UPDATE ON central_decisions TO shipper_t",
            "GRANT SELECT ON central_meta TO shipper_t",
        ):
            conn.execute(grant)
    shipper_url = central_url.replace(f"{postgres.user}@", "shipper_t@")
    db = tmp_path / "host.db"
    _demo(db, 400)
    result = _ship(db, shipper_url)
    assert result.head_seq == _host_rows(db, "SELECT MAX(seq) FROM journal_events")[0][0]
    with psycopg.connect(shipper_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE journals SET head_hash = 'forged'")
        conn.execute(
            "CREATE TEMP TABLE journals (journal_id text, head_seq bigint, head_hash text,"
            " head_created_at_unix_ms bigint)"
        )
        conn.execute(
            "INSERT INTO pg_temp.journals VALUES (%s, %s, 'forged', 0)",
            (result.journal_id, result.head_seq),
        )
        with pytest.raises(psycopg.Error, match="does not extend"):
            conn.execute(
                "INSERT INTO public.journal_events (journal_id, seq, event_ulid, session_ulid,"
                " run_ulid, kind, actor, timestamp_unix_ms, payload_json, redacted, hash,"
                " prev_hash, principal, device_id, created_at_unix_ms) VALUES (%s, %s, 'e', 's',"
                " 'r', 1, 1, 1, '{}', 0, 'h', 'forged', 'p', 'd', 1)",
                (result.journal_id, result.head_seq + 1),
            )
    [report] = _verify(central_url)
    assert report.ok, report.to_dict()
