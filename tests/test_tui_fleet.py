"""The inspector over the fleet's central store: the Daemons pane, scoping, live updates through
LISTEN/NOTIFY, and a decision taken centrally reaching the daemon that asked.

Journals are deterministic showcases (``tui_fixtures``) shipped into a fresh database of the
test PostgreSQL server; one is then rewritten on its "host" and refused by the witness, one is
shipped only in part, so the Daemons pane shows every state.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from journal_helpers import pending_approval, read, rewrite_history_from
from textual.pilot import Pilot
from textual.widgets import DataTable
from tui_fixtures import (
    DECIDER,
    FROZEN_NOW_MS,
    HOSTILE,
    RAW_FORBIDDEN,
    SIZE,
    build,
    frozen_inspector,
    screen_text,
    settle,
    static_text,
    table_rows,
    wait_until,
    write_showcase,
)

from journal_core import ShipRefusedError
from journal_core.approvals import get_approval
from journal_core.central.connection import connect_central
from journal_core.central.ship import Shipper, follow
from journal_core.sessions import session_summaries
from journal_tui.app import JournalApp
from journal_tui.central_source import CentralSource

SnapCompare = Callable[..., bool]


@dataclass(frozen=True, slots=True)
class Fleet:
    url: str
    journals: dict[str, str]  # name -> journal id
    paths: dict[str, Path]


def _ship(path: Path, url: str, host: str, max_events: int | None = None) -> str:
    central = connect_central(url)
    shipper = Shipper(path, central, url=url, host=host, batch_size=200)
    try:
        shipper.ship_once(max_events=max_events)
        return shipper.journal_id
    finally:
        shipper.close()
        central.close()


@pytest.fixture
def fleet(central_url: str, tmp_path: Path) -> Fleet:
    """Three daemons: one current, one behind its host, one refused by the witness."""
    paths = {name: tmp_path / f"{name}.db" for name in ("alpha", "beta", "gamma")}
    for seed, path in enumerate(paths.values()):
        build(path, write_showcase, seed=2026 + seed)
    journals = {
        "alpha": _ship(paths["alpha"], central_url, "agent-host-alpha"),
        "beta": _ship(paths["beta"], central_url, "agent-host-beta", max_events=120),
        "gamma": _ship(paths["gamma"], central_url, "agent-host-gamma"),
    }
    rewrite_history_from(paths["gamma"], 40)
    with pytest.raises(ShipRefusedError):
        _ship(paths["gamma"], central_url, "agent-host-gamma")
    # Where the files live and when they were shipped depend on the run: make them fixed.
    seen = FROZEN_NOW_MS / 1000 - 4
    with psycopg.connect(central_url, autocommit=True) as conn:
        for name, journal_id in journals.items():
            conn.execute(
                "UPDATE journals SET source_path = %s, shipped_at = to_timestamp(%s),"
                " host_seen_at = to_timestamp(%s) WHERE journal_id = %s",
                (f"/srv/agents/{name}/journal.db", seen, seen, journal_id),
            )
    return Fleet(central_url, journals, paths)


@pytest.fixture
def frozen() -> Iterator[None]:
    with frozen_inspector():
        yield


def fleet_inspector(fleet: Fleet, **options: Any) -> JournalApp:
    source = CentralSource(fleet.url, decider=DECIDER, label="central", **options)
    asyncio.run(source.open())
    return JournalApp(source)


def run(app: JournalApp, scenario: Callable[[Pilot[Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await scenario(pilot)

    asyncio.run(main())


@pytest.mark.usefixtures("frozen")
def test_daemons_screen(snap_compare: SnapCompare, fleet: Fleet) -> None:
    """Three daemons: current, 19 events behind its host, and refused at seq 40 in red."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)

    assert snap_compare(fleet_inspector(fleet), terminal_size=SIZE, run_before=run_before)


@pytest.mark.usefixtures("frozen")
def test_the_daemons_pane_lists_every_journal_with_its_state(fleet: Fleet) -> None:
    async def scenario(pilot: Pilot[Any]) -> None:
        rows = table_rows(pilot.app.query_one("#daemons-table", DataTable))
        by_id = {row[0].strip(): row for row in rows}
        assert set(by_id) == set(fleet.journals.values())
        alpha, beta, gamma = (by_id[fleet.journals[name]] for name in ("alpha", "beta", "gamma"))
        assert alpha[1] == "agent-host-alpha"
        assert alpha[2] == "ok to seq 139"
        assert alpha[4] == "0"
        assert beta[2] == "ok to seq 120"
        assert beta[4] == "19"
        assert gamma[2] == "REFUSED at seq 40"
        status = static_text(pilot.app, "#daemons-status")
        assert "1 refused by the witness" in status
        assert f"{fleet.journals['gamma']} history_rewritten: the host's event 40 differs" in status
        assert "all daemons" in static_text(pilot.app, "#status-line")

    run(fleet_inspector(fleet), scenario)


@pytest.mark.usefixtures("frozen")
def test_choosing_a_daemon_scopes_every_pane_and_a_shows_all_again(fleet: Fleet) -> None:
    alpha = fleet.journals["alpha"]
    per_journal = len(read(fleet.paths["alpha"], session_summaries))

    async def scenario(pilot: Pilot[Any]) -> None:
        app = pilot.app
        table = app.query_one("#daemons-table", DataTable)
        everyone = len(table_rows(app.query_one("#sessions-table", DataTable)))
        ids = [row[0].strip() for row in table_rows(table)]
        table.move_cursor(row=ids.index(alpha))
        await pilot.press("enter")
        await settle(pilot)
        assert alpha in static_text(app, "#status-line")
        assert app.tabs.active == "sessions"
        assert per_journal < everyone
        await wait_until(
            pilot,
            lambda: len(table_rows(app.query_one("#sessions-table", DataTable))) == per_journal,
            "the chosen daemon's sessions",
        )
        await pilot.press("4")
        await wait_until(
            pilot, lambda: "INTACT" in static_text(app, "#chain-summary"), "the chain check"
        )
        await pilot.press("0")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert "all daemons" in static_text(app, "#status-line")
        await pilot.press("1")
        await wait_until(
            pilot,
            lambda: len(table_rows(app.query_one("#sessions-table", DataTable))) == everyone,
            "every daemon's sessions",
        )
        await pilot.press("4")
        await settle(pilot)
        assert "choose one on the Daemons pane" in static_text(app, "#chain-summary")

    run(fleet_inspector(fleet), scenario)


def test_new_events_show_through_notifications(fleet: Fleet) -> None:
    """The inspector does not query the store on a timer: a shipper's NOTIFY brings the update."""
    beta = fleet.journals["beta"]

    async def scenario(pilot: Pilot[Any]) -> None:
        app = pilot.app
        before = app.head_seq
        await asyncio.to_thread(_ship, fleet.paths["beta"], fleet.url, "agent-host-beta")
        await wait_until(pilot, lambda: app.head_seq > before, "the shipped events")
        rows = table_rows(app.query_one("#daemons-table", DataTable))
        beta_row = next(row for row in rows if row[0].strip() == beta)
        assert beta_row[4] == "0"

    run(fleet_inspector(fleet), scenario)


def test_a_decision_taken_centrally_reaches_the_daemon(central_url: str, tmp_path: Path) -> None:
    host = tmp_path / "host.db"

    approval_id = pending_approval(host, risk="low", command="systemctl restart billing-worker")
    journal_id = _ship(host, central_url, "agent-host")
    stop = threading.Event()
    central = connect_central(central_url)
    shipper = Shipper(host, central, url=central_url, batch_size=200)
    daemon_side = threading.Thread(
        target=follow, args=(shipper,), kwargs={"interval": 0.02, "should_stop": stop.is_set}
    )
    daemon_side.start()
    try:
        source = CentralSource(central_url, decider="ops@central", scope=journal_id)
        asyncio.run(source.open())

        async def scenario(pilot: Pilot[Any]) -> None:
            app = pilot.app
            await pilot.press("3")
            await settle(pilot)
            pending = table_rows(app.query_one("#pending-table", DataTable))
            assert len(pending) == 1
            await pilot.press("a")
            await settle(pilot)
            await pilot.press("enter")  # confirm the dialog
            # The pane waits a few seconds for the daemon's answer: "recorded" when it came in
            # time, "sent" otherwise (a loaded machine); either way the daemon applies it.
            await wait_until(
                pilot,
                lambda: any(
                    word in static_text(app, "#approvals-result") for word in ("recorded", "sent:")
                ),
                "the outcome",
                timeout=30,
            )

        run(JournalApp(source), scenario)
        deadline = time.monotonic() + 30
        while read(host, lambda reader: get_approval(reader, approval_id)).decision is None:
            assert time.monotonic() < deadline, "the daemon never applied the central decision"
            time.sleep(0.05)
    finally:
        stop.set()
        daemon_side.join(timeout=30)
        shipper.close()
        central.close()
    approval = read(host, lambda reader: get_approval(reader, approval_id))
    assert (approval.decision, approval.decided_by, approval.decision_channel) == (
        "allow",
        "ops@central",
        "central",
    )


def test_hostile_daemon_fields_are_shown_literally(fleet: Fleet) -> None:
    """A host name, a path and a refusal detail come from the hosts: shown as literal text."""
    with psycopg.connect(fleet.url, autocommit=True) as conn:
        conn.execute(
            "UPDATE journals SET host = %s, source_path = %s, refused_detail = %s"
            " WHERE journal_id = %s",
            (
                HOSTILE.replace("\x00", ""),
                HOSTILE.replace("\x00", ""),
                HOSTILE.replace("\x00", ""),
                fleet.journals["gamma"],
            ),
        )

    async def scenario(pilot: Pilot[Any]) -> None:
        shown = screen_text(pilot.app)
        raw = sorted({repr(char) for char in RAW_FORBIDDEN if char in shown})
        assert not raw, f"raw {', '.join(raw)} on the Daemons pane"
        assert "[bold red]X[/]" in shown
        assert "\\x1b[31mred" in shown

    run(fleet_inspector(fleet), scenario)
