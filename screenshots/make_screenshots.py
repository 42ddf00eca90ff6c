"""Regenerate the SVG screenshots of every screen from a freshly made, seeded demo journal.

    python screenshots/make_screenshots.py

Writes sessions.svg, transcript.svg, jobs.svg, approvals.svg, decision.svg, chain.svg,
chain-broken.svg and daemons.svg next to this script. The chain-broken screen comes from a copy of
the journal with two events edited in the file, the way an attacker would. daemons.svg is the
fleet inspector over a PostgreSQL server the script starts (as the tests do), holding three demo
daemons' journals.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from journal_core import Journal, JournalReader, ShipRefusedError
from journal_core.approvals import request_approval
from journal_core.central.connection import connect_central
from journal_core.central.ship import Shipper
from journal_core.demo import DemoConfig, run_demo
from journal_core.sessions import session_summaries
from journal_tui.app import JournalApp
from journal_tui.central_source import CentralSource
from journal_tui.source import JournalSource, Source

HERE = Path(__file__).resolve().parent
SIZE = (150, 42)


async def make_journal(path: Path) -> None:
    """A demo journal, then three requests still waiting for a decision (nobody answered)."""
    async with await Journal.open(path) as journal:
        config = DemoConfig(seed=11, rate=0, agents=6)
        await run_demo(journal, config, max_events=2_500)
        async with await JournalReader.open(path) as reader:
            runs = [s.session.last_run_id for s in await session_summaries(reader, limit=3)]
        waiting = (
            ("secret_access", "vault kv get secret/payments-api", "critical", 45),
            ("tool", "kubectl delete pod api-7d9f -n production", "high", 300),
            ("tool", "npm publish --tag next", "medium", 900),
        )
        for run_id, (subject, command, risk, timeout) in zip(runs, waiting, strict=True):
            await request_approval(
                journal,
                principal="user:ops",
                device_id="demo-host",
                subject_type=subject,
                subject_id=command.split()[0],
                summary=f"shell: {command}",
                prompt={
                    "title": f"Allow {command.split()[0]}?",
                    "risk_level": risk,
                    "summary": f"The agent wants to run {command!r}",
                    "details": {"tool": "shell", "arguments": {"command": command}},
                    "policy_explanation": f"{risk} risk tools need a human decision",
                },
                run_id=run_id,
                channel="cli",
                timeout_seconds=timeout,
            )


async def shoot(path: Path | Source, name: str, keys: list[str], *, pause: float = 0.6) -> None:
    source = path if not isinstance(path, Path) else JournalSource(path, decider="operator@console")
    await source.open()
    app = JournalApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(1.0)
        for key in keys:
            await pilot.press(key)
            await pilot.pause(pause)
        await pilot.pause(1.0)
        app.save_screenshot(str(HERE / f"{name}.svg"))
    print(f"wrote screenshots/{name}.svg")


def tamper(path: Path) -> Path:
    """A copy of the journal with one payload edited and one event deleted behind its back."""
    broken = path.with_name("broken.db")
    shutil.copy(path, broken)
    conn = sqlite3.connect(broken)
    conn.execute("DROP TRIGGER journal_events_no_update")
    conn.execute("DROP TRIGGER journal_events_no_delete")
    conn.execute("UPDATE journal_events SET payload_json = '{\"forged\":true}' WHERE seq = 700")
    conn.execute("DELETE FROM journal_events WHERE seq = 1800")
    conn.commit()
    conn.close()
    return broken


async def shoot_fleet(folder: Path, first: Path) -> None:
    """The Daemons pane over a central store holding three demo daemons' journals: one shipped
    up to its head, one behind its host, one refused by the witness after a rewrite."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from journal_helpers import rewrite_history_from
    from postgres_server import running_server

    second, third = folder / "second.db", folder / "third.db"
    for seed, path in ((12, second), (13, third)):
        async with await Journal.open(path) as journal:
            await run_demo(journal, DemoConfig(seed=seed, rate=0, agents=4), max_events=1_500)
    with running_server() as server:
        url = server.create_database("fleet")
        central = connect_central(url)
        try:
            for path, host, limit in (
                (first, "agent-host-1", None),
                (second, "agent-host-2", 1_200),
                (third, "agent-host-3", None),
            ):
                shipper = Shipper(path, central, url=url, host=host)
                shipper.ship_once(max_events=limit)
                shipper.close()
            rewrite_history_from(third, 777)
            shipper = Shipper(third, central, url=url, host="agent-host-3")
            with contextlib.suppress(ShipRefusedError):
                shipper.ship_once()
            shipper.close()
        finally:
            central.close()
        source = CentralSource(url, decider="operator@console", label="postgresql://central/fleet")
        await shoot(source, "daemons", [])


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "demo.db"
        await make_journal(path)
        await shoot(path, "sessions", [])
        await shoot(path, "transcript", ["down", "down", "enter"])
        await shoot(path, "jobs", ["2", "down"])
        await shoot(path, "approvals", ["3"])
        await shoot(path, "decision", ["3", "a"])
        await shoot(path, "chain", ["4"], pause=2.0)
        await shoot(tamper(path), "chain-broken", ["4"], pause=2.0)
        await shoot_fleet(Path(folder), path)


if __name__ == "__main__":
    asyncio.run(main())
