"""Files that are not (usable) journals: every command refuses them with one clear line, exit 2,
no traceback, and leaves them exactly as they were; the API raises the matching typed error."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from journal_core import (
    Journal,
    JournalBusyError,
    JournalConfig,
    JournalError,
    JournalNotFoundError,
    JournalReader,
    NotAJournalError,
    SchemaTooNewError,
    cli,
    verify_file,
)

if TYPE_CHECKING:
    from conftest import EventFactory, JournalFactory

REPO_ROOT = Path(__file__).resolve().parent.parent
JOURNAL = (
    [sys.executable, "-m", "journal_core"]
    if (REPO_ROOT / "journal_core" / "__main__.py").exists()
    else [sys.executable, "-c", "from journal_core.cli import main; main()"]
)
COMMANDS = ("append", "verify", "tail", "export", "info")
VALID_LINE = (
    '{"session_id": "01JZ0000000000000000000002", "run_id": "01JZ0000000000000000000003",'
    ' "kind": "message_received", "actor": "user", "principal": "alice", "device_id": "pc",'
    ' "payload": {"text": "hello"}}\n'
)


# --- the hostile files ------------------------------------------------------------------------


def _real_journal(path: Path, make_journal: JournalFactory) -> Path:
    return make_journal(path, 60, 7)


def _empty(path: Path, _: JournalFactory) -> None:
    path.write_bytes(b"")


def _random_bytes(path: Path, _: JournalFactory) -> None:
    path.write_bytes(random.Random(0).randbytes(64 * 1024))


def _truncated(path: Path, make_journal: JournalFactory) -> None:
    real = _real_journal(path.with_name("real.db"), make_journal)
    data = real.read_bytes()
    assert len(data) > 4096
    path.write_bytes(data[:4096])
    real.unlink()


def _other_app(path: Path, _: JournalFactory) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('alice')")
    finally:
        conn.close()


def _newer_schema(path: Path, make_journal: JournalFactory) -> None:
    _real_journal(path, make_journal)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at_unix_ms)"
            " VALUES (999, 'from the future', 0)"
        )
    finally:
        conn.close()


def _directory(path: Path, _: JournalFactory) -> None:
    path.mkdir()
    (path / "inside.txt").write_text("not a journal")


def _locked_journal(path: Path, make_journal: JournalFactory) -> None:
    """A real journal in rollback-journal mode, so an EXCLUSIVE lock also stops readers."""
    _real_journal(path, make_journal)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    finally:
        conn.close()


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an EXCLUSIVE lock on ``path`` from another connection."""
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


@dataclass(frozen=True)
class Case:
    build: Callable[[Path, JournalFactory], None]
    says: tuple[str, ...]  # what the one-line message must mention
    error: type[JournalError]
    locked: bool = False


CASES: dict[str, Case] = {
    "empty file": Case(_empty, ("empty",), NotAJournalError),
    "random bytes": Case(_random_bytes, ("not a SQLite database",), NotAJournalError),
    "truncated journal": Case(_truncated, ("damaged",), NotAJournalError),
    "another app's database": Case(_other_app, ("not a journal", "users"), NotAJournalError),
    "newer schema": Case(_newer_schema, ("schema version 999",), SchemaTooNewError),
    "directory": Case(_directory, ("directory",), NotAJournalError),
    "exclusively locked": Case(_locked_journal, ("locked",), JournalBusyError, locked=True),
}


def snapshot(path: Path) -> tuple[object, ...]:
    """What must not change: a file's bytes and mtime, or a directory's listing and mtime."""
    status = path.stat()
    if path.is_dir():
        return ("dir", sorted(entry.name for entry in path.iterdir()), status.st_mtime_ns)
    return ("file", hashlib.sha256(path.read_bytes()).hexdigest(), status.st_mtime_ns)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if part
    )
    return env


def run_command(command: str, path: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one `journal` command on ``path`` (``append`` gets one valid line on stdin)."""
    return subprocess.run(
        [*JOURNAL, command, str(path)],
        input=VALID_LINE if command == "append" else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        check=False,
    )


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    before: tuple[object, ...]
    after: tuple[object, ...]


@pytest.fixture(scope="module")
def locked_outcomes(
    tmp_path_factory: pytest.TempPathFactory, make_journal: JournalFactory
) -> dict[str, Outcome]:
    """Every command run as a real process on an exclusively locked journal, all at once
    (each waits out the CLI's fixed 5 s busy timeout)."""
    path = tmp_path_factory.mktemp("locked") / "journal.db"
    _locked_journal(path, make_journal)
    before = snapshot(path)
    with exclusive_lock(path), ThreadPoolExecutor(max_workers=len(COMMANDS)) as pool:
        futures = {command: pool.submit(run_command, command, path) for command in COMMANDS}
        results = {command: future.result() for command, future in futures.items()}
    after = snapshot(path)
    return {
        command: Outcome(done.returncode, done.stdout, done.stderr, before, after)
        for command, done in results.items()
    }


def run_in_process(
    command: str, path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    """``journal COMMAND PATH`` through ``journal_core.cli.run`` in this process (no start-up
    cost); an uncaught exception fails the test as a traceback would."""
    data = VALID_LINE.encode() if command == "append" else b""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    capsys.readouterr()
    status = cli.run([command, str(path)])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", list(CASES))
def test_command_refuses_with_one_line_and_leaves_the_file_alone(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    *,
    make_journal: JournalFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    command: str,
) -> None:
    spec = CASES[case]
    if spec.locked:
        outcome = request.getfixturevalue("locked_outcomes")[command]
    else:
        path = tmp_path / "journal.db"
        spec.build(path, make_journal)
        before = snapshot(path)
        status, out, err = run_in_process(command, path, capsys, monkeypatch)
        outcome = Outcome(status, out, err, before, snapshot(path))
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert outcome.returncode == 2, (outcome.returncode, outcome.stdout, outcome.stderr)
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, outcome.stderr
    assert lines[0].startswith("journal: "), lines[0]
    for words in spec.says:
        assert words in lines[0], lines[0]
    assert outcome.stdout == ""
    assert outcome.after == outcome.before


@pytest.mark.parametrize("case", ["random bytes", "newer schema"])
def test_real_process_refuses_with_exit_2_and_no_traceback(
    tmp_path: Path, make_journal: JournalFactory, case: str
) -> None:
    path = tmp_path / "journal.db"
    CASES[case].build(path, make_journal)
    before = snapshot(path)
    with ThreadPoolExecutor(max_workers=len(COMMANDS)) as pool:
        results = list(pool.map(lambda command: run_command(command, path), COMMANDS))
    for command, done in zip(COMMANDS, results, strict=True):
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.startswith("journal: "), done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
    assert snapshot(path) == before


# --- the same through the API -----------------------------------------------------------------


async def _open_writer(path: Path) -> None:
    config = JournalConfig(busy_timeout_ms=100, lock_timeout_s=0.3)
    journal = await Journal.open(path, config)
    await journal.close()


async def _open_reader(path: Path) -> None:
    reader = await JournalReader.open(path, busy_timeout_ms=100)
    await reader.close()


@pytest.mark.parametrize("case", list(CASES))
def test_api_raises_the_typed_error(
    tmp_path: Path, make_journal: JournalFactory, case: str
) -> None:
    spec = CASES[case]
    path = tmp_path / "journal.db"
    spec.build(path, make_journal)
    before = snapshot(path)
    with contextlib.ExitStack() as stack:
        if spec.locked:
            stack.enter_context(exclusive_lock(path))
        with pytest.raises(spec.error):
            asyncio.run(_open_writer(path))
        with pytest.raises(spec.error):
            asyncio.run(_open_reader(path))
        with pytest.raises(spec.error):
            verify_file(path, busy_timeout_ms=100)
    assert snapshot(path) == before


def test_named_pipe_is_refused_without_hanging(tmp_path: Path) -> None:
    """A FIFO at the journal path: reading its "header" would block until a writer appears."""
    path = tmp_path / "journal.db"
    os.mkfifo(path)

    def attempt(command: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return run_command(command, path, timeout=5)
        except subprocess.TimeoutExpired:  # the child is killed by subprocess.run
            return None

    with ThreadPoolExecutor(max_workers=len(COMMANDS)) as pool:
        results = dict(zip(COMMANDS, pool.map(attempt, COMMANDS), strict=True))
    assert [command for command, done in results.items() if done is None] == []
    for command, done in results.items():
        assert done is not None
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.startswith("journal: "), done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
    assert stat.S_ISFIFO(path.stat().st_mode)
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["journal.db"]


def test_missing_journal_is_not_found(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(JournalNotFoundError):
        asyncio.run(Journal.open(path, create=False))
    with pytest.raises(JournalNotFoundError):
        asyncio.run(_open_reader(path))
    with pytest.raises(JournalNotFoundError):
        verify_file(path)
    for command in ("verify", "tail", "export", "info"):
        done = run_command(command, path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("journal: ")
        assert len(done.stderr.splitlines()) == 1
        assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_write_lock_held_on_a_wal_journal_makes_append_busy(
    tmp_path: Path, make_journal: JournalFactory, event_input: EventFactory
) -> None:
    path = make_journal(tmp_path / "journal.db", 10, 3)
    before = snapshot(path)

    async def append_one() -> None:
        config = JournalConfig(busy_timeout_ms=50, lock_timeout_s=0.3)
        async with await Journal.open(path, config) as journal:
            await journal.append(event_input())

    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(JournalBusyError):
            asyncio.run(append_one())
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert snapshot(path) == before
    _, report = verify_file(path)
    assert (report.ok, report.checked_events) == (True, 10)


@pytest.mark.skipif(
    os.geteuid() == 0, reason="running as root: chmod cannot deny root access to a directory"
)
def test_journal_inside_an_unreadable_directory(
    tmp_path: Path, make_journal: JournalFactory
) -> None:
    locked_dir = tmp_path / "private"
    path = make_journal(locked_dir / "journal.db", 5, 1)
    locked_dir.chmod(0o000)
    try:
        for command in COMMANDS:
            done = run_command(command, path)
            assert "Traceback" not in done.stderr, done.stderr
            assert done.returncode == 2, (command, done.stderr)
            lines = done.stderr.splitlines()
            assert len(lines) == 1, done.stderr
            assert lines[0].startswith("journal: ")
            assert "permission" in lines[0].lower()
        with pytest.raises(JournalError):
            asyncio.run(_open_writer(path))
        with pytest.raises(JournalError):
            asyncio.run(_open_reader(path))
    finally:
        locked_dir.chmod(0o700)
    shutil.rmtree(locked_dir)
