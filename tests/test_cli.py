"""The `journal` command line, run as a real process: append, verify, tail, export, info."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import select
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson
import pytest

from journal_core import EventInput, Journal, new_ulid, verify_file
from journal_core.chain import verify_rows
from journal_core.ids import is_ulid

if TYPE_CHECKING:
    from conftest import EventFactory, JournalFactory, RawConnect

REPO_ROOT = Path(__file__).resolve().parent.parent
JOURNAL = (
    [sys.executable, "-m", "journal_core"]
    if (REPO_ROOT / "journal_core" / "__main__.py").exists()
    else [sys.executable, "-c", "from journal_core.cli import main; main()"]
)
LINK_LINE = re.compile(r"(\d+) ([0-9A-HJKMNP-TV-Z]{26}) ([0-9a-f]{64})")
TIMEOUT_S = 30.0
SESSION = new_ulid()
RUN = new_ulid()


def cli_env() -> dict[str, str]:
    """The environment for a `journal` subprocess: this checkout importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if part
    )
    return env


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run `journal ARGS` to completion; no traceback may ever reach stderr."""
    done = subprocess.run(
        [*JOURNAL, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=cli_env(),
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def start_cli(*args: str) -> subprocess.Popen[str]:
    """Start `journal ARGS` with pipes on stdin, stdout and stderr."""
    return subprocess.Popen(
        [*JOURNAL, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        env=cli_env(),
    )


class LineReader:
    """Reads a pipe on a thread so a test can wait for one line with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def get(self, timeout: float = 10.0) -> str:
        """The next line; fails the test if none comes before ``timeout``."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no output line within {timeout} s")
        assert line is not None, "the stream ended"
        return line

    def wait_for(self, pattern: str, timeout: float = 10.0) -> str:
        """Skip lines until one matches ``pattern`` (regex, from its start)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.get(max(0.01, deadline - time.monotonic()))
            if re.match(pattern, line):
                return line


def finish(proc: subprocess.Popen[str]) -> str:
    """Terminate ``proc`` if it still runs and return its stderr (which has no traceback)."""
    if proc.poll() is None:
        proc.terminate()
    proc.wait(timeout=TIMEOUT_S)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    assert "Traceback" not in stderr, stderr
    return stderr


def event_line(**overrides: Any) -> str:
    """One valid JSON Lines event; ``None`` overrides remove the field."""
    fields: dict[str, Any] = {
        "session_id": SESSION,
        "run_id": RUN,
        "kind": "tool_proposed",
        "actor": "agent",
        "principal": "agent:cli",
        "device_id": "host-1",
        "payload": {"text": "hello"},
    }
    fields.update(overrides)
    return json.dumps({key: value for key, value in fields.items() if value is not None})


def rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Query the journal read-only."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def append_api(path: Path, *events: EventInput) -> list[int]:
    """Append through the public API; returns the seqs."""

    async def run() -> list[int]:
        async with await Journal.open(path) as journal:
            return [result.seq for result in await journal.append_batch(events)]

    return asyncio.run(run())


# --- append -----------------------------------------------------------------------------------


def test_append_creates_a_private_journal_and_prints_each_link(tmp_path: Path) -> None:
    path = tmp_path / "new-dir" / "journal.db"
    given_id = new_ulid()
    lines = [
        event_line(kind="tool_proposed", actor="agent", event_id=given_id, timestamp_unix_ms=17),
        event_line(kind=4, actor=3, payload='{"json": "as text",  "n": 1}'),
        event_line(kind="RUN_COMPLETED", actor="user", channel="slack:#ops"),
        event_line(kind=1000, actor=200, payload=None),
    ]
    before = time.time_ns() // 1_000_000
    done = run_cli("append", str(path), stdin="\n".join(lines) + "\n")
    after = time.time_ns() // 1_000_000
    assert (done.returncode, done.stderr) == (0, "")
    printed = [LINK_LINE.fullmatch(line) for line in done.stdout.splitlines()]
    assert all(printed), done.stdout
    assert [int(match[1]) for match in printed if match] == [1, 2, 3, 4]

    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = rows(
        path,
        "SELECT seq, event_ulid, hash, kind, actor, timestamp_unix_ms, payload_json, channel"
        " FROM journal_events ORDER BY seq",
    )
    assert [(r[0], r[1], r[2]) for r in stored] == [(int(m[1]), m[2], m[3]) for m in printed if m]
    assert [(r[3], r[4]) for r in stored] == [(3, 2), (4, 3), (6, 1), (1000, 200)]
    assert (stored[0][1], stored[0][5]) == (given_id, 17)
    for generated in stored[1:]:
        assert is_ulid(generated[1])
        assert before <= generated[5] <= after
    assert orjson.loads(stored[0][6]) == {"text": "hello"}
    assert orjson.loads(stored[1][6]) == {"json": "as text", "n": 1}
    assert orjson.loads(stored[3][6]) == {}
    assert [r[7] for r in stored] == [None, None, "slack:#ops", None]
    _, report = verify_file(path)
    assert report.ok


BAD_LINES: dict[str, tuple[str, str]] = {
    "not json": ('{"payload": "BAD-LINE", oops', "line"),
    "not an object": ('["BAD-LINE"]', "line"),
    "unknown kind name": (event_line(kind="launch_missiles", payload="BAD-LINE"), "kind"),
    "bad ulid": (event_line(session_id="not-a-ulid", payload="BAD-LINE"), "session_id"),
    "bad event id": (event_line(event_id="01JZ-BAD-LINE", payload="BAD-LINE"), "event_id"),
    "missing field": (event_line(principal=None, payload="BAD-LINE"), "principal"),
    "unknown field": (
        json.dumps({**json.loads(event_line(payload="BAD-LINE")), "colour": "red"}),
        "colour",
    ),
    "payload too large": (event_line(payload={"BAD-LINE": "x" * 500}), "payload"),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_bad_line_is_refused_by_number_and_field(tmp_path: Path, case: str) -> None:
    path = tmp_path / "journal.db"
    bad, field = BAD_LINES[case]
    stdin = "\n".join([event_line(), bad, event_line()]) + "\n"
    done = run_cli("append", str(path), "--max-payload-bytes", "300", stdin=stdin)
    assert done.returncode == 1
    errors = done.stderr.splitlines()
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("journal: line 2: "), errors[0]
    assert field in errors[0].removeprefix("journal: line 2: ")
    assert [int(line.split()[0]) for line in done.stdout.splitlines()] == [1, 2]
    payloads = [r[0] for r in rows(path, "SELECT payload_json FROM journal_events")]
    assert len(payloads) == 2
    assert not any("BAD-LINE" in payload for payload in payloads)


def test_every_bad_line_in_a_stream_is_reported_and_the_good_ones_stored(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    lines = []
    for bad, _ in BAD_LINES.values():
        lines += [event_line(payload={"good": len(lines)}), bad]
    lines += ["", event_line(payload={"good": "last"})]
    done = run_cli("append", str(path), "--max-payload-bytes", "300", stdin="\n".join(lines))
    assert done.returncode == 1
    numbers = [int(n) for n in re.findall(r"^journal: line (\d+): ", done.stderr, re.MULTILINE)]
    assert len(numbers) == len(done.stderr.splitlines()), done.stderr
    assert numbers == list(range(2, 2 * len(BAD_LINES) + 1, 2))
    assert len(done.stdout.splitlines()) == len(BAD_LINES) + 1
    assert rows(path, "SELECT COUNT(*) FROM journal_events") == [(len(BAD_LINES) + 1,)]


def test_duplicate_event_id_is_refused_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    twice = new_ulid()
    lines = [event_line(event_id=twice), event_line(), event_line(event_id=twice.lower())]
    done = run_cli("append", str(path), stdin="\n".join(lines) + "\n")
    assert done.returncode == 1
    assert done.stderr.startswith("journal: line 3: ")
    assert "duplicate" in done.stderr
    assert twice in done.stderr
    assert len(done.stdout.splitlines()) == 2
    # Also against an event committed by an earlier run.
    again = run_cli("append", str(path), stdin=event_line(event_id=twice) + "\n")
    assert again.returncode == 1
    assert again.stderr.startswith("journal: line 1: ")
    assert rows(path, "SELECT COUNT(*) FROM journal_events WHERE event_ulid = ?", (twice,)) == [
        (1,)
    ]


def test_append_commits_each_line_while_stdin_is_still_open(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    proc = start_cli("append", str(path))
    assert proc.stdin is not None
    assert proc.stdout is not None
    output = LineReader(proc.stdout)
    try:
        proc.stdin.write(event_line(payload={"n": 1}) + "\n")
        proc.stdin.flush()
        first = LINK_LINE.fullmatch(output.get().strip())
        assert first is not None
        assert first[1] == "1"
        # Committed, not merely printed: another connection sees it before stdin closes.
        assert rows(path, "SELECT seq, event_ulid FROM journal_events") == [(1, first[2])]
        # The WAL and shared-memory files hold event data too: as private as the journal.
        for sidecar in (Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600, sidecar
        proc.stdin.write(event_line(payload={"n": 2}) + "\n")
        proc.stdin.flush()
        second = LINK_LINE.fullmatch(output.get().strip())
        assert second is not None
        assert second[1] == "2"
        proc.stdin.close()
        assert proc.wait(timeout=TIMEOUT_S) == 0
    finally:
        stderr = finish(proc)
    assert stderr == ""


# --- verify -----------------------------------------------------------------------------------


def test_verify_an_intact_journal(tmp_path: Path, make_journal: JournalFactory) -> None:
    path = make_journal(tmp_path / "journal.db", 30, 5)
    text = run_cli("verify", str(path))
    assert (text.returncode, text.stderr) == (0, "")
    assert "intact" in text.stdout
    assert "30 events checked" in text.stdout
    as_json = run_cli("verify", str(path), "--json")
    assert as_json.returncode == 0
    report = json.loads(as_json.stdout)
    assert report["status"] == "ok"
    assert (report["checked_events"], report["broken_links"], report["breaks"]) == (30, 0, [])


def test_verify_lists_every_broken_link_without_payload_text(
    tmp_path: Path, raw_db: RawConnect, event_input: EventFactory
) -> None:
    path = tmp_path / "journal.db"
    secrets = [f"original-secret-{n}" for n in range(12)]
    append_api(path, *(event_input(payload={"note": secret}) for secret in secrets))
    with raw_db(path) as conn:
        conn.execute("DROP TRIGGER journal_events_no_update")
        conn.execute("DROP TRIGGER journal_events_no_delete")
        for seq in (3, 7):
            conn.execute(
                "UPDATE journal_events SET payload_json = ? WHERE seq = ?",
                (json.dumps({"note": f"forged-text-{seq}"}), seq),
            )
        conn.execute("DELETE FROM journal_events WHERE seq = 10")
    text = run_cli("verify", str(path))
    assert text.returncode == 1
    listed = re.findall(r"seq (\d+) (\w+)", text.stdout)
    assert listed == [
        ("3", "hash_mismatch"),
        ("7", "hash_mismatch"),
        ("10", "missing_event"),
        ("11", "prev_hash_mismatch"),
    ]
    as_json = run_cli("verify", str(path), "--json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["status"] == "broken"
    assert report["broken_links"] == 4
    assert [(b["code"], b["seq"]) for b in report["breaks"]] == [
        ("hash_mismatch", 3),
        ("hash_mismatch", 7),
        ("missing_event", 10),
        ("prev_hash_mismatch", 11),
    ]
    for output in (text.stdout + text.stderr, as_json.stdout + as_json.stderr):
        assert "forged-text" not in output
        assert "original-secret" not in output


def test_verify_from_seq(tmp_path: Path, raw_db: RawConnect, event_input: EventFactory) -> None:
    path = tmp_path / "journal.db"
    append_api(path, *(event_input(payload={"n": n}) for n in range(20)))
    with raw_db(path) as conn:
        conn.execute("DROP TRIGGER journal_events_no_update")
        conn.execute("UPDATE journal_events SET principal = 'mallory' WHERE seq = 5")
    after = run_cli("verify", str(path), "--from-seq", "10", "--json")
    assert after.returncode == 0
    report = json.loads(after.stdout)
    assert (report["status"], report["scope"], report["from_seq"]) == ("ok", "from_seq", 10)
    assert report["checked_events"] == 11
    before = run_cli("verify", str(path), "--from-seq", "4")
    assert before.returncode == 1
    assert re.findall(r"seq (\d+) (\w+)", before.stdout) == [("5", "hash_mismatch")]
    bad = run_cli("verify", str(path), "--from-seq", "0")
    assert bad.returncode == 2
    assert bad.stderr.startswith("journal: ")
    assert len(bad.stderr.splitlines()) == 1


def test_verify_tail_and_info_never_print_raw_control_characters(
    tmp_path: Path, raw_db: RawConnect, event_input: EventFactory
) -> None:
    path = tmp_path / "journal.db"
    append_api(path, *(event_input(payload={"n": n}) for n in range(5)))
    hostile = "\x1b]0;pwned\x07\x1b[2J\u202e"  # retitle, clear screen, bidi override
    with raw_db(path) as conn:  # what a tampered (or hand-made) file can hold
        conn.execute("DROP TRIGGER journal_events_no_update")
        conn.execute("DROP TRIGGER journal_meta_no_update")
        conn.execute(
            "UPDATE journal_events SET event_ulid = ?, run_ulid = ?, hash = ?,"
            " payload_json = ? WHERE seq = 3",
            (f"01JZ{hostile}", f"01JZ{hostile}", f"ff{hostile}", json.dumps(hostile)),
        )
        conn.execute(
            "UPDATE journal_meta SET value = ? WHERE key IN ('journal_id', 'chain_algorithm')",
            (f"01JZ{hostile}",),
        )
    unsafe = {}
    for command in ("verify", "tail", "info"):
        done = run_cli(command, str(path))
        lines = (done.stdout + done.stderr).splitlines()
        found = [line for line in lines if any(char in line for char in "\x1b\x07\u202e")]
        if found:
            unsafe[command] = found
    assert unsafe == {}


# --- tail -------------------------------------------------------------------------------------


def test_tail_prints_the_newest_events(tmp_path: Path, make_journal: JournalFactory) -> None:
    path = make_journal(tmp_path / "journal.db", 12, 8)
    text = run_cli("tail", str(path), "-n", "3")
    assert (text.returncode, text.stderr) == (0, "")
    assert [int(line.split()[0]) for line in text.stdout.splitlines()] == [10, 11, 12]
    as_json = run_cli("tail", str(path), "-n", "4", "--json")
    assert as_json.returncode == 0
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [event["seq"] for event in events] == [9, 10, 11, 12]
    stored = dict(rows(path, "SELECT seq, payload_json FROM journal_events WHERE seq >= 9"))
    assert {event["seq"]: event["payload_json"] for event in events} == stored


def test_tail_follow_prints_an_event_appended_after_it_started(
    tmp_path: Path, event_input: EventFactory
) -> None:
    path = tmp_path / "journal.db"
    append_api(path, event_input(payload={"n": "first"}))
    proc = start_cli("tail", str(path), "-n", "1", "--follow", "--json", "--interval", "0.02")
    assert proc.stdout is not None
    output = LineReader(proc.stdout)
    try:
        assert json.loads(output.get())["seq"] == 1
        assert append_api(path, event_input(payload={"n": "later"})) == [2]
        later = json.loads(output.get())
        assert (later["seq"], later["payload_json"]) == (2, '{"n":"later"}')
    finally:
        finish(proc)


def test_tail_follow_misses_nothing_committed_while_it_prints_the_backlog(
    tmp_path: Path, event_input: EventFactory
) -> None:
    path = tmp_path / "journal.db"
    backlog = 1_500
    append_api(path, *(event_input(payload={"filler": "x" * 150, "n": n}) for n in range(backlog)))
    proc = start_cli("tail", str(path), "-n", str(backlog), "--follow", "--interval", "0.02")
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "tail printed nothing"
        assert proc.stdout.readline().split()[0] == "1"
        # The backlog (~240 KB) cannot fit in the pipe, so tail is still printing it now.
        assert append_api(path, event_input(payload={"n": "during backlog"})) == [backlog + 1]
        output = LineReader(proc.stdout)
        output.wait_for(rf"\s*{backlog}\s", timeout=10)
        line = output.get(timeout=5)
        assert line.split()[0] == str(backlog + 1), line
    finally:
        finish(proc)


# --- export and info --------------------------------------------------------------------------


def _link_values(event: dict[str, Any]) -> list[Any]:
    """The verify_rows row (LINK_COLUMNS, then hash) rebuilt from one exported object."""
    rules = event["redaction_rules"]
    return [
        event["prev_hash"],
        event["seq"],
        event["event_id"],
        event["session_id"],
        event["run_id"],
        event["kind"],
        event["actor"],
        event["timestamp_unix_ms"],
        event["created_at_unix_ms"],
        event["principal"],
        event["device_id"],
        event["channel"],
        int(event["redacted"]),
        # stored as a compact JSON array of rule names, or NULL when none fired
        orjson.dumps(rules).decode() if rules else None,
        event["payload_json"],  # the exact stored text
        event["hash"],
    ]


def test_export_jsonl_can_be_verified_from_the_export_alone(
    tmp_path: Path, make_journal: JournalFactory
) -> None:
    path = make_journal(tmp_path / "journal.db", 40, 11)
    done = run_cli("export", str(path), "--format", "jsonl")
    assert (done.returncode, done.stderr) == (0, "")
    header, *events = [json.loads(line) for line in done.stdout.splitlines()]
    info, _ = verify_file(path)
    assert header["type"] == "journal"
    assert header["journal_id"] == info.journal_id
    assert (header["from_seq"], header["to_seq"]) == (1, 40)
    assert [event["type"] for event in events] == ["event"] * 40
    assert [event["seq"] for event in events] == list(range(1, 41))
    stored = dict(rows(path, "SELECT seq, payload_json FROM journal_events"))
    assert {event["seq"]: event["payload_json"] for event in events} == stored
    assert any(event["redaction_rules"] for event in events)  # the rules column is exercised
    report = verify_rows((_link_values(event) for event in events), journal_id=header["journal_id"])
    assert report.breaks == []
    assert report.ok
    assert report.checked_events == 40

    to_file = tmp_path / "export.jsonl"
    written = run_cli("export", str(path), "-o", str(to_file))
    assert (written.returncode, written.stdout) == (0, "")
    assert to_file.read_text() == done.stdout


def test_info_shows_identity_schema_and_head(tmp_path: Path, make_journal: JournalFactory) -> None:
    path = make_journal(tmp_path / "journal.db", 7, 3)
    info, report = verify_file(path)
    text = run_cli("info", str(path))
    assert (text.returncode, text.stderr) == (0, "")
    fields = dict(re.split(r":\s+", line, maxsplit=1) for line in text.stdout.splitlines())
    assert fields["journal_id"] == info.journal_id
    assert fields["schema_version"] == str(info.schema_version)
    assert fields["head_seq"] == "7"
    assert fields["head_hash"] == report.head_hash
    as_json = run_cli("info", str(path), "--json")
    document = json.loads(as_json.stdout)
    assert (document["journal_id"], document["schema_version"]) == (
        info.journal_id,
        info.schema_version,
    )
    assert (document["head_seq"], document["events"]) == (7, 7)
