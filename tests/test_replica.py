"""Off-host replicas: the real Litestream binary replicating a journal the demo writes to.

The replica is a directory. A restore taken while the demo writes must be an intact prefix of
the journal reaching at least the newest anchor written before a forced sync; a restore taken
after the writer closed and Litestream stopped must verify intact against every anchor.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from journal_core import verify_file
from journal_core.checkpoints import SignedCheckpoint, read_anchor_file
from journal_core.errors import ReplicaError, ValidationError
from journal_core.reader import verify_with_anchors
from journal_core.replica import (
    litestream_binary,
    replica_config,
    replica_url,
    restore,
    sync_replica,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
JOURNAL = [sys.executable, "-m", "journal_core"]
DEMO_EVENTS = 12_000
LIVE_RESTORE_AFTER_SEQ = 2_000
TIMEOUT_S = 60.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if part
    )
    return env


def _journal(*args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JOURNAL, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_env(),
        stdin=subprocess.DEVNULL,
    )


def _spawn(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as stream:
        return subprocess.Popen(
            [*JOURNAL, *args],
            stdout=stream,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_env(),
        )


def _newest_anchored_seq(anchors: Path) -> int:
    if not anchors.exists():
        return 0
    # The writer may be appending: a half-written last entry parses as malformed and is skipped.
    entries = [item for item in read_anchor_file(anchors) if isinstance(item, SignedCheckpoint)]
    return max((item.checkpoint.seq for item in entries), default=0)


def _links(path: Path, up_to: int) -> list[tuple[int, str]]:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT seq, hash FROM journal_events WHERE seq <= ? ORDER BY seq", (up_to,)
        ).fetchall()
    finally:
        conn.close()
    return [(int(seq), str(digest)) for seq, digest in rows]


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _assert_intact_prefix(restored: Path, original: Path, anchors: Path) -> int:
    """The restored chain verifies and is the original's up to its head; returns the head."""
    _, report = verify_file(restored)
    assert report.ok, report.breaks
    head = report.last_seq or 0
    original_links = _links(original, head)
    assert _links(restored, head) == original_links
    assert len(original_links) == head  # nothing missing: seq 1..head, each one equal
    _, _, anchor_report = verify_with_anchors(restored, anchors)
    # Only anchors beyond the restored head may be reported, as the journal being behind them.
    for finding in anchor_report.findings:
        assert finding.code in {"rolled_back", "tail_truncated"}, finding
        assert finding.seq is not None, finding
        assert finding.seq > head, finding
    return head


def test_replicate_while_the_demo_writes_then_restore_and_verify(tmp_path: Path) -> None:
    db = tmp_path / "host" / "journal.db"
    anchors = Path(f"{db}.anchors")
    # Litestream reads a file URL's path literally: a directory is handed over as a path.
    replica = tmp_path / "off host" / "replica ?#%20é"
    socket_path = tmp_path / "ls.sock"
    seeded = _journal("demo", "--no-ui", "--events", "50", "--db", str(db))
    assert seeded.returncode == 0, seeded.stderr

    replicating = _spawn(
        "replicate",
        str(db),
        "--to",
        str(replica),
        "--sync-interval",
        "0.2",
        "--socket",
        str(socket_path),
        log=tmp_path / "replicate.log",
    )
    demo = _spawn(
        "demo",
        "--no-ui",
        "--replicated",
        "--events",
        str(DEMO_EVENTS),
        "--db",
        str(db),
        log=tmp_path / "demo.log",
    )
    try:
        _wait_for(socket_path.exists, "the Litestream control socket")
        _wait_for(
            lambda: _newest_anchored_seq(anchors) >= LIVE_RESTORE_AFTER_SEQ,
            "an anchored checkpoint",
        )
        # Every checkpoint in the anchor file was committed before it was appended there, so a
        # sync forced now puts at least that far into the replica.
        anchored = _newest_anchored_seq(anchors)
        synced = sync_replica(db, socket_path)
        assert synced.replica_txid >= 1
        live = restore(str(replica), tmp_path / "restored" / "live.db")
        assert demo.poll() is None, "the demo finished before the live restore: raise DEMO_EVENTS"
        assert live.head_seq >= anchored
        assert stat.S_IMODE(live.path.stat().st_mode) == 0o600
        assert _assert_intact_prefix(live.path, db, anchors) == live.head_seq

        assert demo.wait(timeout=TIMEOUT_S) == 0, (tmp_path / "demo.log").read_text()
        replicating.send_signal(signal.SIGINT)
        assert replicating.wait(timeout=TIMEOUT_S) == 0
    finally:
        for process in (demo, replicating):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert (replica / "ltx").is_dir()  # the directory named, not a URL-mangled one
    log = (tmp_path / "replicate.log").read_text()
    assert "litestream shut down" in log
    assert "Traceback" not in log

    # The writer closed cleanly and Litestream made its final sync: nothing is missing.
    final = _journal("restore", str(replica), "--to", str(tmp_path / "restored" / "final.db"))
    assert final.returncode == 0, final.stderr
    assert "events up to seq" in final.stdout
    verified = _journal("verify", str(tmp_path / "restored" / "final.db"), "--anchor", str(anchors))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact" in verified.stdout
    assert "consistent" in verified.stdout
    _, original_report = verify_file(db)
    head = _assert_intact_prefix(tmp_path / "restored" / "final.db", db, anchors)
    assert head == original_report.last_seq
    assert head == _newest_anchored_seq(anchors)

    # An earlier transaction: a point-in-time restore is an intact prefix too.
    config = tmp_path / "litestream.yml"
    config.write_text(replica_config(db, str(replica)))
    listing = subprocess.run(
        [
            str(litestream_binary()),
            "ltx",
            "-no-expand-env",
            "-config",
            str(config),
            "-json",
            str(db),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT_S,
    )
    txids = sorted(int(item["max_txid"], 16) for item in orjson.loads(listing.stdout))
    middle = txids[len(txids) // 2]
    earlier = restore(str(replica), tmp_path / "restored" / "earlier.db", txid=f"{middle:x}")
    assert 0 < earlier.head_seq <= head
    _assert_intact_prefix(earlier.path, db, anchors)


def test_print_config_is_what_litestream_reads(tmp_path: Path) -> None:
    db = tmp_path / "j $HOME.db"
    assert _journal("demo", "--no-ui", "--events", "20", "--db", str(db)).returncode == 0
    result = _journal(
        "replicate", str(db), "--to", str(tmp_path / "rep"), "--print-config", "--socket", "x.s"
    )
    assert result.returncode == 0, result.stderr
    assert f'path: "{db}"' in result.stdout
    assert f'path: "{tmp_path / "rep"}"' in result.stdout
    config = tmp_path / "litestream.yml"
    config.write_text(result.stdout)
    listed = subprocess.run(
        [str(litestream_binary()), "databases", "-no-expand-env", "-config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT_S,
    )
    assert listed.returncode == 0, listed.stderr
    assert str(db) in listed.stdout
    assert not (tmp_path / "rep").exists()


def test_replica_urls_are_checked() -> None:
    assert replica_url("/backups/journal") == "file:///backups/journal"
    assert replica_url("file:///backups/j") == "file:///backups/j"
    assert replica_url("S3://bucket/journals/a?region=eu-west-1") == (
        "s3://bucket/journals/a?region=eu-west-1"
    )
    for bad, reason in (
        ("http://example.com/x", "not one Litestream supports"),
        ("ftp://host/x", "not one Litestream supports"),
        ("s3:///no-bucket", "bucket or host"),
        ("file://host/x", "absolute path"),
        ("", "directory path or a replica URL"),
        ("/tmp/a\nb", "control characters"),
    ):
        with pytest.raises(ValidationError, match=reason):
            replica_url(bad)


def test_replicate_refuses_what_it_cannot_replicate(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a journal\n")
    db = tmp_path / "j.db"
    assert _journal("demo", "--no-ui", "--events", "20", "--db", str(db)).returncode == 0
    cases = [
        ([str(notes), "--to", str(tmp_path / "rep")], "not a SQLite database"),
        ([str(tmp_path / "missing.db"), "--to", str(tmp_path / "rep")], "no journal at"),
        ([str(db), "--to", "http://example.com/rep"], "not one Litestream supports"),
        ([str(db), "--to", str(tmp_path)], "own directory"),
        ([str(db), "--to", str(notes)], "not a directory"),
        ([str(db), "--to", str(tmp_path / "rep"), "--sync-interval", "0"], "sync_interval_s"),
    ]
    for arguments, reason in cases:
        result = _journal("replicate", *arguments)
        assert result.returncode == 2, (arguments, result.stderr)
        assert result.stderr.startswith("journal: "), result.stderr
        assert reason in result.stderr, (arguments, result.stderr)
        assert "Traceback" not in result.stderr
        assert "replicating" not in result.stderr
    assert not (tmp_path / "rep").exists()
    assert not (tmp_path / "missing.db").exists()
    assert not list(tmp_path.glob(".*-litestream"))
    with pytest.raises(ValidationError):
        replica_config(db, str(tmp_path / "rep"), sync_interval_s=float("nan"))


def test_replicate_passes_litestream_failures_through(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    assert _journal("demo", "--no-ui", "--events", "20", "--db", str(db)).returncode == 0
    # Litestream refuses an SFTP replica without a user before connecting anywhere.
    result = _journal("replicate", str(db), "--to", "sftp://backup.invalid/journal")
    assert result.returncode == 1
    assert "user required" in result.stderr


def test_restore_refuses_and_leaves_nothing_behind(tmp_path: Path) -> None:
    db = tmp_path / "host" / "j.db"
    assert _journal("demo", "--no-ui", "--events", "30", "--db", str(db)).returncode == 0
    replica = tmp_path / "replica"
    once = subprocess.run(
        [str(litestream_binary()), "replicate", "-once", str(db), replica.as_uri()],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT_S,
    )
    assert once.returncode == 0, once.stdout + once.stderr
    out = tmp_path / "out"
    out.mkdir()
    existing = out / "taken.db"
    existing.write_bytes(b"keep me")
    Path(f"{out / 'wal-taken.db'}-wal").write_bytes(b"stale")
    empty = tmp_path / "empty-replica"
    empty.mkdir()
    cases = [
        ([str(replica), "--to", str(existing)], "already exists"),
        ([str(replica), "--to", str(out / "wal-taken.db")], "already exists"),
        ([str(tmp_path / "no-such-replica"), "--to", str(out / "a.db")], "no replica at"),
        ([str(empty), "--to", str(out / "b.db")], "nothing was replicated there"),
        ([str(replica), "--to", str(out / "c.db"), "--timestamp", "yesterday"], "ISO 8601"),
        ([str(replica), "--to", str(out / "c.db"), "--timestamp", "2026-01-01T00:00"], "zone"),
        ([str(replica), "--to", str(out / "c.db"), "--txid", "xyz"], "hexadecimal"),
        (["gopher://x/y", "--to", str(out / "d.db")], "not one Litestream supports"),
    ]
    for arguments, reason in cases:
        result = _journal("restore", *arguments)
        assert result.returncode == 2, (arguments, result.stderr)
        assert result.stderr.startswith("journal: "), result.stderr
        assert reason in result.stderr, (arguments, result.stderr)
        assert "Traceback" not in result.stderr
    assert existing.read_bytes() == b"keep me"
    assert sorted(item.name for item in out.iterdir()) == ["taken.db", "wal-taken.db-wal"]

    # A replica of something that is not a journal is refused too, and nothing is left.
    plain = tmp_path / "plain.db"
    conn = sqlite3.connect(plain)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    plain_replica = tmp_path / "plain-replica"
    subprocess.run(
        [str(litestream_binary()), "replicate", "-once", str(plain), plain_replica.as_uri()],
        capture_output=True,
        check=True,
        timeout=TIMEOUT_S,
    )
    with pytest.raises(ReplicaError, match="does not hold a journal"):
        restore(str(plain_replica), out / "plain.db")
    with pytest.raises(ValidationError, match="not both"):
        restore(str(replica), out / "e.db", timestamp=datetime.now(UTC), txid="1")
    assert sorted(item.name for item in out.iterdir()) == ["taken.db", "wal-taken.db-wal"]

    restored = restore(str(replica), out / "fine.db")
    assert restored.head_seq == verify_file(db)[1].last_seq
