"""SVG snapshots of every screen of the inspector, over deterministic journals.

The journals are written through the core API with ``deterministic_core`` (ids drawn from a
seeded source, a fake clock from 2026-01-01T00:00:00Z that moves 7 ms per commit, a seeded
checkpoint signing key), and the inspector runs under
``frozen_inspector`` (its clock frozen 30 s after the start of the journal, the shown
verification rate made a function of the event count): see ``tui_fixtures``. Keys are pressed
in ``run_before``, waiting for the workers each key starts, so the picture is taken only once
the screen is complete.

Regenerate after an intended change of the screens with
``.venv/bin/python -m pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the
SVG files in ``tests/__snapshots__/`` before committing them.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input
from tui_fixtures import (
    DECIDER,
    RAW_FORBIDDEN,
    SIZE,
    build,
    dump_rows,
    frozen_inspector,
    settle,
    write_hostile,
    write_showcase,
)

from journal_tui.app import JournalApp
from journal_tui.source import JournalSource

SnapCompare = Callable[..., bool]
#: The tampered links of the broken-chain snapshot.
EDITED_SEQ = 40
DELETED_SEQ = 90


@pytest.fixture(scope="module")
def showcase(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("showcase") / "showcase.db"
    build(path, write_showcase)
    return path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "hostile.db"
    build(path, write_hostile)
    return path


@pytest.fixture(scope="module")
def broken(showcase: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The showcase with one payload edited and one event deleted behind the journal's back."""
    path = tmp_path_factory.mktemp("broken") / "showcase.db"
    shutil.copy(showcase, path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER journal_events_no_update")
        conn.execute("DROP TRIGGER journal_events_no_delete")
        conn.execute(
            "UPDATE journal_events SET payload_json = '{\"forged\":true}' WHERE seq = ?",
            (EDITED_SEQ,),
        )
        conn.execute("DELETE FROM journal_events WHERE seq = ?", (DELETED_SEQ,))
    finally:
        conn.close()
    return path


@pytest.fixture
def frozen() -> Iterator[None]:
    with frozen_inspector():
        yield


def inspector(path: Path) -> JournalApp:
    """The inspector over ``path``, its source opened (as ``journal tui`` does) before it runs."""
    source = JournalSource(path, decider=DECIDER)
    asyncio.run(source.open())
    return JournalApp(source)


def keys(*presses: str, shots: list[str] | None = None) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """A ``run_before`` that presses ``presses`` one by one, letting each key's work finish;
    ``shots`` receives the SVG of the finished screen (the one the snapshot is taken of)."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        for key in presses:
            await pilot.press(key)
            await settle(pilot)
        # The Input cursor blinks every 0.5 s: stop it so the picture does not depend on when
        # it is taken (with the blink off, the cursor stays shown).
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False
        await pilot.pause()
        if shots is not None:
            shots.append(pilot.app.export_screenshot())

    return run_before


def test_showcase_journal_is_deterministic(tmp_path: Path) -> None:
    """The snapshots rest on this: the same rows, ids and times on every build."""
    first = build(tmp_path / "one.db", write_showcase)
    second = build(tmp_path / "two.db", write_showcase)
    assert first == second
    assert dump_rows(tmp_path / "one.db") == dump_rows(tmp_path / "two.db")
    assert build(tmp_path / "h1.db", write_hostile) == build(tmp_path / "h2.db", write_hostile)
    assert dump_rows(tmp_path / "h1.db") == dump_rows(tmp_path / "h2.db")


@pytest.mark.usefixtures("frozen")
def test_sessions_screen(snap_compare: SnapCompare, showcase: Path) -> None:
    assert snap_compare(inspector(showcase), terminal_size=SIZE, run_before=keys())


@pytest.mark.usefixtures("frozen")
def test_transcript_screen(snap_compare: SnapCompare, showcase: Path) -> None:
    """The deploy session: two runs, run 1's lifecycle, the end of the transcript (followed)
    with the folded helm arguments."""
    assert snap_compare(inspector(showcase), terminal_size=SIZE, run_before=keys("enter"))


@pytest.mark.usefixtures("frozen")
def test_jobs_screen(snap_compare: SnapCompare, showcase: Path) -> None:
    """The running npm job selected: its stdout and stderr interleaved."""
    assert snap_compare(inspector(showcase), terminal_size=SIZE, run_before=keys("2"))


@pytest.mark.usefixtures("frozen")
def test_approvals_screen(snap_compare: SnapCompare, showcase: Path) -> None:
    """Three pending requests (critical, high, medium) with countdowns; three decided."""
    assert snap_compare(inspector(showcase), terminal_size=SIZE, run_before=keys("3"))


@pytest.mark.usefixtures("frozen")
def test_decision_dialog(snap_compare: SnapCompare, showcase: Path) -> None:
    """Allow once on the critical request: the red confirmation."""
    assert snap_compare(inspector(showcase), terminal_size=SIZE, run_before=keys("3", "a"))


@pytest.mark.usefixtures("frozen")
def test_chain_intact(snap_compare: SnapCompare, showcase: Path) -> None:
    assert snap_compare(inspector(showcase), terminal_size=SIZE, run_before=keys("4"))


@pytest.mark.usefixtures("frozen")
def test_chain_broken(snap_compare: SnapCompare, broken: Path) -> None:
    """An edited payload and a deleted event: three broken links, in red."""
    assert snap_compare(inspector(broken), terminal_size=SIZE, run_before=keys("4"))


@pytest.mark.usefixtures("frozen")
def test_help(snap_compare: SnapCompare, showcase: Path) -> None:
    assert snap_compare(inspector(showcase), terminal_size=SIZE, run_before=keys("question_mark"))


@pytest.mark.usefixtures("frozen")
def test_hostile_transcript(snap_compare: SnapCompare, hostile: Path) -> None:
    """Markup, ANSI, OSC, bidi, CR, NUL and DEL from the journal, all shown as literal text.

    A picture with a raw control character in it is never accepted as the reference (it is
    not even valid XML): that is checked before the comparison.
    """
    shots: list[str] = []
    matches = snap_compare(
        inspector(hostile), terminal_size=SIZE, run_before=keys("enter", shots=shots)
    )
    raw = sorted({repr(char) for char in RAW_FORBIDDEN if char in shots[-1]})
    assert not raw, f"raw {', '.join(raw)} in the transcript screen"
    assert matches
