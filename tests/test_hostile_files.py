"""Files that are not (usable) journals: every command refuses them with one clear line, exit 2,
no traceback, and leaves them exactly as they were; the API raises the matching typed error."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import shutil
import sqlite3
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


def run_command(command: str, path: Path) -> subprocess.CompletedProcess[str]:
    """Run one `journal` command on ``path`` (``append`` gets one valid line on stdin)."""
    return subprocess.run(
        [*JOURNAL, command, str(path)],
        input=VALID_LINE if command == "append" else "",
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        check=False,
    )


@dataclass(frozen=True)
class Outcome:
    done: subprocess.CompletedProcess[str]
    before: tuple[object, ...]
    after: tuple[object, ...]


@pytest.fixture(scope="module")
def outcomes(
    tmp_path_factory: pytest.TempPathFactory, make_journal: JournalFactory
) -> dict[tuple[str, str], Outcome]:
    """Every command run on every hostile file (concurrently, to keep the module fast)."""
    paths: dict[str, Path] = {}
    for number, (name, case) in enumerate(CASES.items()):
        path = tmp_path_factory.mktemp(f"hostile{number}") / "journal.db"
        case.build(path, make_journal)
        paths[name] = path
    before = {name: snapshot(path) for name, path in paths.items()}
    locked = [name for name, case in CASES.items() if case.locked]
    jobs = [
        (name, command)
        for name in locked + sorted(set(CASES) - set(locked))
        for command in COMMANDS
    ]
    with contextlib.ExitStack() as stack:
        for name in locked:
            stack.enter_context(exclusive_lock(paths[name]))
        with ThreadPoolExecutor(max_workers=len(COMMANDS) * len(locked) + 3) as pool:
            futures = {job: pool.submit(run_command, job[1], paths[job[0]]) for job in jobs}
            results = {job: future.result() for job, future in futures.items()}
    return {
        job: Outcome(done, before[job[0]], snapshot(paths[job[0]])) for job, done in results.items()
    }


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", list(CASES))
def test_command_refuses_with_one_line_and_leaves_the_file_alone(
    outcomes: dict[tuple[str, str], Outcome], case: str, command: str
) -> None:
    outcome = outcomes[(case, command)]
    done = outcome.done
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("journal: "), lines[0]
    for words in CASES[case].says:
        assert words in lines[0], lines[0]
    assert done.stdout == ""
    assert outcome.after == outcome.before


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
