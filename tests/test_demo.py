"""The simulated daemon writes a realistic, intact journal, and nothing secret reaches disk."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from journal_core import Journal, JournalReader, approvals, sessions, tool_jobs, verify_file
from journal_core.demo import _FAKE_SECRETS, DemoConfig, run_demo


def test_demo_writes_every_record_type_and_verifies(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            stats = await run_demo(journal, DemoConfig(seed=3, rate=0, agents=6), max_events=2_500)
            assert stats.runs_started > 10
            assert stats.secrets_planted > 0
            assert not [error for error in stats.errors if "Traceback" in error]
        async with await JournalReader.open(path) as reader:
            assert (await reader.head()).seq >= 2_500
            listed = await sessions.list_sessions(reader)
            assert {s.channel for s in listed} >= {"cli", "slack", "web"}
            states = {
                run.state for s in listed for run in await sessions.list_runs(reader, s.session_id)
            }
            assert {"done", "failed"} <= states
            assert await tool_jobs.list_jobs(reader)
            decided = await approvals.list_decided(reader)
            assert {a.decision for a in decided} >= {"allow", "timeout"}

    asyncio.run(scenario())
    _, report = verify_file(path)
    assert report.ok
    assert report.records_checked > 1_000
    for file in tmp_path.iterdir():
        data = file.read_bytes()
        for secret in _FAKE_SECRETS:
            assert secret.encode() not in data, (secret, file.name)


def test_demo_command_no_ui(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "demo.db"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "journal_core",
            "demo",
            "--db",
            str(path),
            "--no-ui",
            "--events",
            "500",
            "--seed",
            "7",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "demo wrote to" in result.stderr
    assert "Traceback" not in result.stderr
    assert verify_file(path)[1].ok


def test_demo_command_refuses_bad_arguments(tmp_path: Path) -> None:
    for arguments in (["--events", "0"], ["--rate", "-1"], ["--agents", "0"]):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "journal_core",
                "demo",
                "--db",
                str(tmp_path / "d.db"),
                "--no-ui",
                *arguments,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        assert result.stderr.startswith("journal: ")
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "d.db").exists()
