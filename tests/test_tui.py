"""The inspector driven through Textual's Pilot, against real journals made through the core API.

Each test builds its journal (``tui_fixtures``), runs the app headless at 150x42 inside
``asyncio.run`` and reads what the widgets show; decisions are read back from the file through
a fresh ``JournalReader``. Waits are on workers (``settle``) or, for the live poll, on a
condition with a deadline (``wait_until``); nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Input, Static
from tui_fixtures import (
    DECIDER,
    HOSTILE_VISIBLE,
    RAW_FORBIDDEN,
    SIZE,
    Hostile,
    Showcase,
    build,
    plain,
    screen_text,
    settle,
    static_text,
    table_rows,
    wait_until,
    write_hostile,
    write_showcase,
)

import journal_tui.chain_pane
import journal_tui.clock
import journal_tui.launch
from journal_core import Journal, JournalError, JournalReader
from journal_core import approvals as approvals_api
from journal_core import sessions as sessions_api
from journal_core import tape as tape_api
from journal_core import tool_jobs as jobs_api
from journal_core.errors import JournalNotFoundError, NotAJournalError
from journal_tui.app import JournalApp
from journal_tui.chain_pane import ChainPane
from journal_tui.dialogs import DecisionDialog, EventDialog, HelpDialog
from journal_tui.line_log import LineLog
from journal_tui.source import JournalSource
from journal_tui.transcript_screen import TranscriptScreen

ROOT = Path(__file__).resolve().parent.parent


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def showcase(tmp_path: Path) -> tuple[Path, Showcase]:
    """The showcase journal written in real time (its requests are pending now)."""
    path = tmp_path / "showcase.db"
    return path, build(path, write_showcase, deterministic=False)


@contextlib.asynccontextmanager
async def inspector(
    path: Path, **source_options: Any
) -> AsyncIterator[tuple[JournalApp, Pilot[None]]]:
    """The inspector running headless over ``path``, its first reads done."""
    source_options.setdefault("decider", DECIDER)
    source = JournalSource(path, **source_options)
    await source.open()
    app = JournalApp(source)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        yield app, pilot


async def press(pilot: Pilot[Any], *keys: str) -> None:
    """Press ``keys`` one by one, letting the work each starts finish."""
    for key in keys:
        await pilot.press(key)
        await settle(pilot)


async def type_text(pilot: Pilot[Any], text: str) -> None:
    await pilot.press(*text)
    await settle(pilot)


def table(app: JournalApp, selector: str) -> DataTable[Any]:
    return app.screen.query_one(selector, DataTable)


async def select_row(pilot: Pilot[Any], grid: DataTable[Any], key: str) -> None:
    """Move the cursor of the focused table ``grid`` to the row ``key`` with the arrow keys."""
    grid.focus()
    await settle(pilot)
    steps = grid.get_row_index(key) - grid.cursor_row
    for _ in range(abs(steps)):
        await pilot.press("down" if steps > 0 else "up")
    await settle(pilot)
    assert grid.coordinate_to_cell_key(grid.cursor_coordinate).row_key.value == key


def log_lines(log: LineLog) -> list[str]:
    return [log.line(index).plain for index in range(log.line_count)]


def at_end(log: LineLog) -> bool:
    return log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y


async def stored(path: Path, approval_id: str) -> approvals_api.Approval:
    """The approval as the file holds it, read through a fresh reader."""
    async with await JournalReader.open(path) as reader:
        return await approvals_api.get_approval(reader, approval_id)


async def head(path: Path) -> tuple[int, str | None]:
    async with await JournalReader.open(path) as reader:
        found = await reader.head()
        return found.seq, found.hash


def notifications(app: JournalApp) -> list[str]:
    return [notice.message for notice in app._notifications]


def run(scenario: Callable[[], Any]) -> None:
    asyncio.run(scenario())


# --- every pane renders its data --------------------------------------------------------------


def test_sessions_pane_lists_titles_states_and_pending(showcase: tuple[Path, Showcase]) -> None:
    path, show = showcase

    async def scenario() -> None:
        async with inspector(path) as (app, _pilot):
            rows = {row[0]: row for row in table_rows(table(app, "#sessions-table"))}
            expected = {
                "deploy": ("in_progress", "2", "2"),
                "vendor": ("accepted", "1", "0"),
                "release": ("in_progress", "1", "1"),
                "rotate": ("failed", "1", "0"),
                "cleanup": ("cancelled", "1", "0"),
                "nightly": ("done", "1", "0"),
            }
            assert set(rows) == {show.titles[name] for name in expected}
            for name, (state, runs, pending) in expected.items():
                row = rows[show.titles[name]]
                assert (row[1], row[2], row[6]) == (state, runs, pending), name
            assert "6 sessions" in static_text(app, "#sessions-status")
            status = static_text(app, "#status-line")
            assert "LIVE" in status
            assert f"decides as {DECIDER}" in status

    run(scenario)


def test_transcript_shows_run_header_and_entries(showcase: tuple[Path, Showcase]) -> None:
    path, show = showcase

    async def scenario() -> None:
        async with inspector(path) as (app, pilot):
            await select_row(pilot, table(app, "#sessions-table"), show.sessions["rotate"])
            await press(pilot, "enter")
            assert isinstance(app.screen, TranscriptScreen)
            assert show.titles["rotate"] in static_text(app, "#transcript-title")
            runs = table_rows(table(app, "#runs-table"))
            assert [row[2] for row in runs] == ["failed"]
            details = static_text(app, "#run-details")
            for state in ("pending", "accepted", "in_progress", "failed"):
                assert state in details
            assert "tokens 880 in + 120 out = 1,000" in details
            assert 'last error: psql: FATAL: password authentication failed for user "replica"' in (
                details
            )
            assert "tool jobs (1, j): psql failed" in details
            lines = log_lines(app.screen.query_one("#transcript-log", LineLog))
            text = "\n".join(lines)
            assert "USER" in text
            assert "Rotate the replica password" in text
            assert "TOOL CALL" in text
            assert "TOOL RESULT" in text
            assert '"exit_code": 2' in text

            # Back, and the deploy session: two runs, every kind of entry.
            await press(pilot, "escape")
            await select_row(pilot, table(app, "#sessions-table"), show.sessions["deploy"])
            await press(pilot, "enter")
            assert [row[2] for row in table_rows(table(app, "#runs-table"))] == [
                "done",
                "in_progress",
            ]
            assert "tokens 1,200 in + 340 out = 1,540" in static_text(app, "#run-details")
            log = app.screen.query_one("#transcript-log", LineLog)
            text = "\n".join(log_lines(log))
            for label in (
                "USER",
                "MODEL",
                "TOOL CALL",
                "TOOL RESULT",
                "REPLY",
                "STATUS",
                "APPROVAL ASKED",
            ):
                assert f" {label} " in text, label
            assert "── run 1 · " in text
            assert "── run 2 · " in text
            # Streamed tokens are merged into one block.
            assert "Checking the cluster state first, then I will roll out 2.4.1." in text
            # The long helm arguments are folded, and z unfolds them.
            assert "more lines (z unfolds)" in text
            assert '"history_max"' not in text
            await press(pilot, "z")
            text = "\n".join(log_lines(log))
            assert "more lines (z unfolds)" not in text
            assert '"history_max": 20' in text
            # The second run's details.
            await select_row(pilot, table(app, "#runs-table"), show.runs["deploy_2"])
            details = static_text(app, "#run-details")
            assert "tokens 2,048 in + 512 out = 2,560" in details
            assert "approvals (2, a)" in details

    run(scenario)


def test_transcript_opens_following_at_the_end(showcase: tuple[Path, Showcase]) -> None:
    """A transcript longer than the view opens on its newest lines, as "FOLLOWING" says."""
    path, show = showcase

    async def scenario() -> None:
        async with inspector(path) as (app, pilot):
            await select_row(pilot, table(app, "#sessions-table"), show.sessions["deploy"])
            await press(pilot, "enter")
            log = app.screen.query_one("#transcript-log", LineLog)
            assert log.follow
            assert "FOLLOWING" in static_text(app, "#transcript-status")
            assert log.max_scroll_y > 0, "the transcript should be longer than the view"
            assert log.scroll_y == log.max_scroll_y, (
                f"following, but the view is at line {log.scroll_y} of {log.max_scroll_y}"
            )

    run(scenario)


def test_jobs_pane_shows_jobs_and_the_selected_output(showcase: tuple[Path, Showcase]) -> None:
    path, show = showcase

    async def scenario() -> None:
        async with inspector(path) as (app, pilot):
            await press(pilot, "2")
            jobs = table(app, "#jobs-table")
            rows = table_rows(jobs)
            assert [(row[1], row[2], row[3], row[6]) for row in rows] == [
                ("npm", "running", "1/2", "-"),
                ("psql", "failed", "1/2", "2"),
                ("restic", "completed", "1/2", "0"),
            ]
            log = app.screen.query_one("#job-output", LineLog)
            assert log_lines(log) == [
                "│ > docs@2.4.0 build",
                "│ > vite build --mode production",
                "┃ warning: 3 pages have no description",
                "│ ✓ 184 modules transformed.",
                "│ dist/index.html                  0.46 kB",
                "┃ warning: chunk vendor is larger than 500 kB",
                "│ dist/assets/index-4b1c.js      612.20 kB",
            ]
            assert f"job {show.jobs['build']}" in static_text(app, "#output-title")
            assert "FOLLOWING output" in static_text(app, "#output-status")
            await select_row(pilot, jobs, show.jobs["psql"])
            assert log_lines(log) == [
                "│ connecting to replica-1.internal:5432",
                '┃ psql: FATAL: password authentication failed for user "replica"',
            ]
            title = static_text(app, "#output-title")
            assert "psql exited with 2" in title
            assert "failed" in title

    run(scenario)


def test_approvals_pane_lists_pending_with_countdowns_and_history(
    showcase: tuple[Path, Showcase], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, show = showcase

    async def scenario() -> None:
        critical = await stored(path, show.approvals["critical"])
        # The inspector's clock 45 s after the critical request was made: exact countdowns.
        now = critical.requested_at_unix_ms + 45_000
        monkeypatch.setattr(journal_tui.clock, "now_ms", lambda: now)
        expected_left = {}
        for name in ("critical", "high", "medium"):
            approval = await stored(path, show.approvals[name])
            seconds = (approval.expires_at_unix_ms - now) // 1000
            expected_left[name] = f"{seconds // 60}:{seconds % 60:02d}"
        assert expected_left["critical"] == "1:15"
        async with inspector(path) as (app, pilot):
            await press(pilot, "3")
            pending = table(app, "#pending-table")
            assert [row.value for row in pending.rows] == [
                show.approvals["critical"],
                show.approvals["high"],
                show.approvals["medium"],
            ]
            rows = table_rows(pending)
            assert [(row[0], row[1], row[2], row[3]) for row in rows] == [
                (
                    expected_left["critical"],
                    "CRITICAL",
                    "secret_access",
                    "shell: vault kv get secret/payments-api",
                ),
                (expected_left["high"], "HIGH", "tool", "shell: helm upgrade payments-api"),
                (expected_left["medium"], "MEDIUM", "tool", "shell: npm publish --tag next"),
            ]
            details = static_text(app, "#approval-details")
            assert "Allow vault?" in details
            assert "risk CRITICAL" in details
            assert "critical risk tools need a human decision" in details
            assert "allow_timeboxed" in details
            history = table_rows(table(app, "#history-table"))
            assert [(row[1], row[2], row[3], row[4], row[7]) for row in history] == [
                ("timeout", "-", "system", "-", "approval_response_timeout"),
                ("deny", "once", "bob@desk", "cli", "not during business hours"),
                ("allow", "once", "alice@laptop", "slack", ""),
            ]
            assert f"deciding as {DECIDER} via tui" in static_text(app, "#approvals-banner")

    run(scenario)


def test_chain_pane_reports_intact_with_the_head(showcase: tuple[Path, Showcase]) -> None:
    path, _show = showcase

    async def scenario() -> None:
        seq, digest = await head(path)
        async with inspector(path) as (app, pilot):
            await press(pilot, "4")
            await wait_until(
                pilot, lambda: app.chain.state.full_at_unix_ms is not None, "the verification"
            )
            summary = static_text(app, "#chain-summary")
            assert "INTACT" in summary
            assert "BROKEN" not in summary
            assert f"verified up to seq {seq:,}" in summary
            assert f"head hash {digest}" in summary
            assert table(app, "#breaks-table").row_count == 0
            assert "record rows not matching the chain: 0" in static_text(app, "#record-breaks")

    run(scenario)


def test_chain_checks_start_once_the_sessions_are_on_screen(
    showcase: tuple[Path, Showcase], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Begun during start-up, the checks' thread competed with the first screen for the GIL
    # (0.99 s against 0.73 s on 10M events): they wait for the sessions list.
    path, _show = showcase
    monkeypatch.setattr(journal_tui.chain_pane, "START_FALLBACK_S", 3_600.0)
    started_with_rows: list[int] = []
    original = ChainPane.start

    def start(self: ChainPane) -> None:
        started_with_rows.append(table(self.app, "#sessions-table").row_count)
        original(self)

    monkeypatch.setattr(ChainPane, "start", start)

    async def scenario() -> None:
        async with inspector(path) as (app, pilot):
            await wait_until(
                pilot, lambda: app.chain.state.full_at_unix_ms is not None, "the verification"
            )
        [rows_when_started, *_] = started_with_rows
        assert rows_when_started > 0

    run(scenario)


def test_help_lists_the_keys(showcase: tuple[Path, Showcase]) -> None:
    path, _show = showcase

    async def scenario() -> None:
        async with inspector(path) as (app, pilot):
            await press(pilot, "question_mark")
            assert isinstance(app.screen, HelpDialog)
            assert "allow for a time box" in screen_text(app)
            await press(pilot, "escape")
            assert not isinstance(app.screen, HelpDialog)

    run(scenario)


# --- following live updates, and pausing ------------------------------------------------------


def test_transcript_follows_new_entries_pauses_on_scroll_and_resumes(
    showcase: tuple[Path, Showcase],
) -> None:
    path, show = showcase
    run_id = show.runs["deploy_2"]

    async def scenario() -> None:
        async with (
            await Journal.open(path, create=False) as writer,
            inspector(path) as (app, pilot),
        ):
            await select_row(pilot, table(app, "#sessions-table"), show.sessions["deploy"])
            await press(pilot, "enter")
            log = app.screen.query_one("#transcript-log", LineLog)
            status = "#transcript-status"

            await tape_api.append_entry(writer, run_id, "message.replied", {"text": "live one"})
            await wait_until(pilot, lambda: "  live one" in log_lines(log), "the live entry")
            assert log.follow
            assert at_end(log)
            assert "FOLLOWING" in static_text(app, status)

            # Scrolling up pauses following; new entries are counted, the view stays put.
            await press(pilot, "up")
            assert not log.follow
            assert "PAUSED" in static_text(app, status)
            where = log.scroll_y
            await tape_api.append_entries(
                writer,
                run_id,
                [("message.replied", {"text": "live two"}), ("status", {"text": "live three"})],
            )
            await wait_until(pilot, lambda: "  live two" in log_lines(log), "the paused entries")
            # A reply takes 3 lines (header, text, blank), a status 5 (header, JSON, blank).
            assert "8 new lines below" in static_text(app, status)
            assert log.scroll_y == where
            assert not log.follow

            # End resumes following, at the end.
            await press(pilot, "end")
            assert log.follow
            assert at_end(log)
            assert "FOLLOWING" in static_text(app, status)

            # Page up pauses as well.
            await press(pilot, "pageup")
            assert not log.follow
            assert "PAUSED" in static_text(app, status)
            await press(pilot, "end")
            assert log.follow

    run(scenario)


async def _long_job(journal: Journal) -> tuple[Showcase, str]:
    """The showcase, then a running job with 60 lines of output (the newest job)."""
    show = await write_showcase(journal)
    job = await jobs_api.create_job(
        journal,
        owner_principal="user:maria",
        device_id="mbp-maria",
        tool_name="pytest",
        backend="local-sandbox",
        run_id=show.runs["release"],
        session_id=show.sessions["release"],
    )
    await jobs_api.transition_job(journal, job.job_id, "running")
    for index in range(60):
        stream = "stderr" if index % 10 == 9 else "stdout"
        await jobs_api.append_output(journal, job.job_id, stream, f"line {index}\n")
    return show, job.job_id


def test_job_output_opens_following_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    _show, job_id = build(path, _long_job, deterministic=False)

    async def scenario() -> None:
        async with inspector(path) as (app, pilot):
            await press(pilot, "2")
            log = app.screen.query_one("#job-output", LineLog)
            assert app.jobs.shown_job == job_id
            assert log.line_count == 60
            assert log.follow
            assert log.max_scroll_y > 0
            assert log.scroll_y == log.max_scroll_y, (
                f"following, but the view is at line {log.scroll_y} of {log.max_scroll_y}"
            )

    run(scenario)


def test_job_output_follows_new_chunks_pauses_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    _show, job_id = build(path, _long_job, deterministic=False)

    async def scenario() -> None:
        async with (
            await Journal.open(path, create=False) as writer,
            inspector(path) as (app, pilot),
        ):
            await press(pilot, "2")
            log = app.screen.query_one("#job-output", LineLog)
            assert app.jobs.shown_job == job_id
            assert log_lines(log)[9] == "┃ line 9"
            assert log_lines(log)[10] == "│ line 10"
            log.focus()
            await settle(pilot)

            await jobs_api.append_output(writer, job_id, "stdout", "fresh 1\nfresh 2\n")
            await wait_until(pilot, lambda: log.line_count == 62, "the new chunk")
            assert log_lines(log)[-2:] == ["│ fresh 1", "│ fresh 2"]
            assert log.follow
            assert at_end(log)

            await press(pilot, "pageup")
            assert not log.follow
            assert "PAUSED" in static_text(app, "#output-status")
            where = log.scroll_y
            await jobs_api.append_output(writer, job_id, "stderr", "oops\n")
            await jobs_api.append_output(writer, job_id, "stdout", "more\n")
            await wait_until(pilot, lambda: log.line_count == 64, "the paused chunks")
            assert log_lines(log)[-2:] == ["┃ oops", "│ more"]
            assert "2 new lines below" in static_text(app, "#output-status")
            assert log.scroll_y == where

            await press(pilot, "end")
            assert log.follow
            assert at_end(log)
            assert "FOLLOWING output" in static_text(app, "#output-status")

    run(scenario)


def test_pause_key_stops_and_resumes_live_updates(showcase: tuple[Path, Showcase]) -> None:
    path, _show = showcase

    async def scenario() -> None:
        async with (
            await Journal.open(path, create=False) as writer,
            inspector(path) as (app, pilot),
        ):
            await press(pilot, "p")
            assert "PAUSED" in static_text(app, "#status-line")
            await sessions_api.create_session(
                writer,
                session_key="cli:late",
                principal="user:maria",
                device_id="mbp-maria",
                label="Arrived while paused",
            )
            titles = lambda: [row[0] for row in table_rows(table(app, "#sessions-table"))]  # noqa: E731
            # Several polls go by; the paused view does not change.
            for _ in range(5):
                await pilot.pause(app.poll_seconds)
            await settle(pilot)
            assert "Arrived while paused" not in titles()
            await press(pilot, "p")
            await wait_until(pilot, lambda: "Arrived while paused" in titles(), "the resumed view")
            assert "LIVE" in static_text(app, "#status-line")

    run(scenario)


# --- decisions land in the file ---------------------------------------------------------------


async def _open_decision(
    app: JournalApp, pilot: Pilot[Any], approval_id: str, key: str
) -> DecisionDialog:
    await press(pilot, "3")
    await select_row(pilot, table(app, "#pending-table"), approval_id)
    await press(pilot, key)
    dialog = app.screen
    assert isinstance(dialog, DecisionDialog)
    assert dialog.approval.approval_id == approval_id
    return dialog


def test_allow_once_is_recorded_as_the_decider_via_tui(showcase: tuple[Path, Showcase]) -> None:
    path, show = showcase
    approval_id = show.approvals["medium"]

    async def scenario() -> None:
        before = await head(path)
        async with inspector(path) as (app, pilot):
            # Escape closes the dialog without deciding anything.
            await _open_decision(app, pilot, approval_id, "a")
            await press(pilot, "escape")
            assert not isinstance(app.screen, DecisionDialog)
            assert static_text(app, "#approvals-result") == ""
            assert await head(path) == before

            await press(pilot, "a")
            assert isinstance(app.screen, DecisionDialog)
            await press(pilot, "enter")
            assert not isinstance(app.screen, DecisionDialog)
            result = static_text(app, "#approvals-result")
            assert "recorded: allow once for shell: npm publish --tag next" in result
            assert approval_id not in [row.value for row in table(app, "#pending-table").rows]
        decided = await stored(path, approval_id)
        assert decided.decision == "allow"
        assert decided.decision_scope == "once"
        assert decided.decided_by == DECIDER
        assert decided.decision_channel == "tui"
        assert decided.decision_reason is None
        assert decided.decision_scope_ttl_ms is None

    run(scenario)


def test_deny_with_a_reason(showcase: tuple[Path, Showcase]) -> None:
    path, show = showcase
    approval_id = show.approvals["high"]

    async def scenario() -> None:
        async with inspector(path) as (app, pilot):
            dialog = await _open_decision(app, pilot, approval_id, "d")
            assert dialog.query_one("#reason", Input).has_focus
            await type_text(pilot, "freeze")
            await press(pilot, "enter")
            assert "recorded: deny once" in static_text(app, "#approvals-result")
            history = table(app, "#history-table")
            assert history.get_row(approval_id)[7].plain == "freeze"
        decided = await stored(path, approval_id)
        assert (decided.decision, decided.decision_scope) == ("deny", "once")
        assert decided.decision_reason == "freeze"
        assert decided.decided_by == DECIDER
        assert decided.decision_channel == "tui"

    run(scenario)


def test_time_box_records_the_minutes_as_ttl(showcase: tuple[Path, Showcase]) -> None:
    path, show = showcase
    approval_id = show.approvals["medium"]

    async def scenario() -> None:
        async with inspector(path) as (app, pilot):
            dialog = await _open_decision(app, pilot, approval_id, "t")
            minutes = dialog.query_one("#ttl", Input)
            assert minutes.has_focus
            # The default (15) is selected on focus: typing replaces it.
            assert minutes.value == "15"
            await type_text(pilot, "45")
            assert minutes.value == "45"
            await press(pilot, "enter")
            assert dialog.query_one("#reason", Input).has_focus
            assert isinstance(app.screen, DecisionDialog), "Enter in the minutes must not decide"
            await type_text(pilot, "window")
            await press(pilot, "enter")
            assert "recorded: allow timeboxed" in static_text(app, "#approvals-result")
        decided = await stored(path, approval_id)
        assert (decided.decision, decided.decision_scope) == ("allow", "timeboxed")
        assert decided.decision_scope_ttl_ms == 45 * 60_000
        assert decided.decision_reason == "window"
        assert decided.decided_by == DECIDER
        assert decided.decision_channel == "tui"

    run(scenario)


def test_critical_allow_needs_the_confirm_button(showcase: tuple[Path, Showcase]) -> None:
    """(A high-risk allow is confirmed the same way: see the race test below.)"""
    path, show = showcase
    risk = "critical"
    approval_id = show.approvals[risk]

    async def scenario() -> None:
        async with inspector(path) as (app, pilot):
            dialog = await _open_decision(app, pilot, approval_id, "a")
            assert f"This allows a {risk.upper()} risk action" in screen_text(app)
            await type_text(pilot, "oncall")
            await press(pilot, "enter")
            # Enter in the reason box only moves to the red button.
            assert app.screen is dialog
            assert dialog.query_one("#confirm", Button).has_focus
            assert (await stored(path, approval_id)).decision is None
            await press(pilot, "enter")
            assert app.screen is not dialog
            assert "recorded: allow once" in static_text(app, "#approvals-result")
        decided = await stored(path, approval_id)
        assert (decided.decision, decided.decision_scope) == ("allow", "once")
        assert decided.decision_reason == "oncall"
        assert decided.decided_by == DECIDER
        assert decided.decision_channel == "tui"

    run(scenario)


# --- two inspectors racing on one approval ----------------------------------------------------


def test_second_inspector_loses_the_race_and_says_so(showcase: tuple[Path, Showcase]) -> None:
    """Two JournalSources on one file: the other one decides while this dialog is open."""
    path, show = showcase
    approval_id = show.approvals["medium"]

    async def scenario() -> None:
        other = JournalSource(path, decider="other@console")
        await other.open()
        try:
            async with inspector(path) as (app, pilot):
                await _open_decision(app, pilot, approval_id, "a")
                await other.decide(
                    approval_id, decision="deny", scope="once", reason="mine", ttl_ms=None
                )
                await press(pilot, "enter")
                result = static_text(app, "#approvals-result")
                assert "NOT RECORDED" in result
                assert "decided first" in result
                assert "deny (once) by other@console via tui" in result
                assert "recorded:" not in result.replace("NOT RECORDED", "")
                assert any("decided first" in message for message in notifications(app))
        finally:
            await other.close()
        decided = await stored(path, approval_id)
        assert (decided.decision, decided.decided_by, decided.decision_reason) == (
            "deny",
            "other@console",
            "mine",
        )

    run(scenario)


def test_direct_decision_between_enter_and_confirm_wins(showcase: tuple[Path, Showcase]) -> None:
    """The daemon's own approver decides a HIGH risk request right before the operator presses
    the red button (Enter in the reason box only moved the focus to it)."""
    path, show = showcase
    approval_id = show.approvals["high"]

    async def scenario() -> None:
        async with (
            await Journal.open(path, create=False) as writer,
            inspector(path) as (app, pilot),
        ):
            dialog = await _open_decision(app, pilot, approval_id, "a")
            assert "This allows a HIGH risk action" in screen_text(app)
            await press(pilot, "enter")
            assert app.screen is dialog
            assert dialog.query_one("#confirm", Button).has_focus
            assert (await stored(path, approval_id)).decision is None
            await approvals_api.decide(
                writer,
                approval_id,
                decision="allow",
                scope="session",
                decided_by="alice@laptop",
                channel="slack",
            )
            await press(pilot, "enter")
            result = static_text(app, "#approvals-result")
            assert "NOT RECORDED" in result
            assert "decided first" in result
            assert "allow (session) by alice@laptop via slack" in result
            assert "recorded:" not in result.replace("NOT RECORDED", "")
        decided = await stored(path, approval_id)
        assert (decided.decision, decided.decision_scope, decided.decided_by) == (
            "allow",
            "session",
            "alice@laptop",
        )

    run(scenario)


# --- read-only --------------------------------------------------------------------------------


def test_read_only_refuses_decisions_and_writes_nothing(showcase: tuple[Path, Showcase]) -> None:
    path, show = showcase
    approval_id = show.approvals["medium"]

    async def scenario() -> None:
        before = await head(path)
        async with inspector(path, read_only=True) as (app, pilot):
            assert "read-only" in static_text(app, "#status-line")
            await press(pilot, "3")
            assert "read-only" in static_text(app, "#approvals-banner")
            await select_row(pilot, table(app, "#pending-table"), approval_id)
            for key in ("a", "s", "t", "d"):
                await press(pilot, key)
                assert not isinstance(app.screen, DecisionDialog), key
                assert "read-only" in static_text(app, "#approvals-result")
            with pytest.raises(JournalError, match="read-only"):
                await app.source.decide(
                    approval_id, decision="deny", scope="once", reason=None, ttl_ms=None
                )
        assert await head(path) == before
        assert (await stored(path, approval_id)).decision is None

    run(scenario)


# --- the chain: exactly the tampered links ----------------------------------------------------


def test_broken_chain_lists_exactly_the_tampered_links(showcase: tuple[Path, Showcase]) -> None:
    path, _show = showcase
    edited, deleted = 40, 90
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER journal_events_no_update")
        conn.execute("DROP TRIGGER journal_events_no_delete")
        conn.execute(
            "UPDATE journal_events SET payload_json = '{\"forged\":true}' WHERE seq = ?", (edited,)
        )
        conn.execute("DELETE FROM journal_events WHERE seq = ?", (deleted,))
    finally:
        conn.close()

    async def scenario() -> None:
        async with inspector(path) as (app, pilot):
            await press(pilot, "4")
            await wait_until(
                pilot, lambda: app.chain.state.full_at_unix_ms is not None, "the verification"
            )
            breaks = table(app, "#breaks-table")
            assert [(row[1], row[0]) for row in table_rows(breaks)] == [
                ("hash_mismatch", str(edited)),
                ("missing_event", str(deleted)),
                ("prev_hash_mismatch", str(deleted + 1)),
            ]
            assert "BROKEN: 3 broken links" in static_text(app, "#chain-summary")
            assert isinstance(app.screen.focused, DataTable)
            assert app.screen.focused.id == "breaks-table"

            await press(pilot, "enter")
            dialog = app.screen
            assert isinstance(dialog, EventDialog)
            assert dialog.focus_seq == edited
            cards = [plain(card.content) for card in dialog.query(".event-card").results(Static)]
            assert [card.split("\n")[0] for card in cards] == [
                f"seq {seq}{'  ◀ the broken link' if seq == edited else ''}"
                for seq in range(edited - 2, edited + 3)
            ]
            assert '"forged": true' in cards[2]
            await press(pilot, "escape")
            assert isinstance(app.screen.query_one(ChainPane), ChainPane)

            await press(pilot, "down", "enter")
            dialog = app.screen
            assert isinstance(dialog, EventDialog)
            assert dialog.focus_seq == deleted
            texts = [plain(widget.content) for widget in dialog.query(Static)]
            assert f"seq {deleted} is not in the journal (a gap)" in texts
            cards = [plain(card.content) for card in dialog.query(".event-card").results(Static)]
            # The five events from seq - 2 on: the gap is skipped.
            assert [card.split("\n")[0] for card in cards] == [
                f"seq {seq}"
                for seq in (deleted - 2, deleted - 1, deleted + 1, deleted + 2, deleted + 3)
            ]

    run(scenario)


# --- hostile content is shown literally -------------------------------------------------------


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Hostile]:
    path = tmp_path / "hostile.db"
    return path, build(path, write_hostile, deterministic=False)


def assert_literal(text: str, where: str, expected: tuple[str, ...] = HOSTILE_VISIBLE) -> None:
    """Every hostile sequence is shown as visible text, none of them raw."""
    for piece in expected:
        assert piece in text, f"{where}: {piece!r} is not shown literally"
    assert_no_raw(text, where)


def assert_no_raw(text: str, where: str) -> None:
    raw = sorted({repr(char) for char in RAW_FORBIDDEN if char in text})
    assert not raw, f"{where}: raw {', '.join(raw)} would reach the terminal"


def test_hostile_sessions_list(hostile: tuple[Path, Hostile]) -> None:
    path, _ids = hostile

    async def scenario() -> None:
        async with inspector(path) as (app, _pilot):
            title = table_rows(table(app, "#sessions-table"))[0][0]
            # The title is cut at 72 characters: check what fits.
            assert_literal(title, "sessions list title", HOSTILE_VISIBLE[:3])
            assert_no_raw(app.export_screenshot(), "sessions screen SVG")

    run(scenario)


def test_hostile_transcript(hostile: tuple[Path, Hostile]) -> None:
    path, _ids = hostile

    async def scenario() -> None:
        async with inspector(path) as (app, pilot):
            await press(pilot, "enter")
            assert isinstance(app.screen, TranscriptScreen)
            details = static_text(app, "#run-details")
            lines = log_lines(app.screen.query_one("#transcript-log", LineLog))
            # Wrapped text (messages, tokens) joined again; JSON shows escapes of its own.
            body = "\n".join(lines).replace("\n  ", " ")
            title = static_text(app, "#transcript-title")
            problems: list[str] = []
            checks: list[tuple[Callable[[], None], str]] = [
                (lambda: assert_literal(details, "run details"), "lifecycle reason, last error"),
                (lambda: assert_literal(body, "transcript"), "entries"),
                (lambda: assert_no_raw(title, "transcript title"), "session key, principal"),
                (lambda: assert_no_raw(screen_text(app), "transcript screen"), "as drawn"),
                (lambda: assert_no_raw(app.export_screenshot(), "transcript SVG"), "as exported"),
            ]
            block = "?"
            for line in lines:
                if line[:2].isdigit() and line[2:3] == ":":  # a block header: time and label
                    block = line.split(maxsplit=1)[1].strip()
                checks.append(
                    (lambda line=line: assert_no_raw(line, repr(line[:30])), f"{block} block")
                )
            for check, what in checks:
                try:
                    check()
                except AssertionError as error:
                    problems.append(f"{what}: {str(error).splitlines()[0]}")
            assert "[bold red]X[/]" in title
            assert "user:[bold red]mallory[/]" in title
            assert not problems, "\n".join(problems)

    run(scenario)


def test_hostile_job_output(hostile: tuple[Path, Hostile]) -> None:
    path, ids = hostile

    async def scenario() -> None:
        async with inspector(path) as (app, pilot):
            await press(pilot, "2")
            assert app.jobs.shown_job == ids.job_id
            lines = log_lines(app.screen.query_one("#job-output", LineLog))
            assert len(lines) == 2
            assert lines[0].startswith("│ ")
            assert lines[1].startswith("┃ ")
            for line in lines:
                assert_literal(line, "job output")
            assert_literal(static_text(app, "#output-title"), "job title (last error)")
            assert "sh[bold red]X[/]" in table_rows(table(app, "#jobs-table"))[0][1]
            assert_no_raw(app.export_screenshot(), "jobs screen SVG")

    run(scenario)


def test_hostile_approval(hostile: tuple[Path, Hostile]) -> None:
    path, ids = hostile

    async def scenario() -> None:
        async with inspector(path) as (app, pilot):
            await press(pilot, "3")
            row = table(app, "#pending-table").get_row(ids.approval_id)
            assert_literal(plain(row[3]), "pending summary")
            details = static_text(app, "#approval-details")
            assert_literal(details, "approval details")
            assert_no_raw(app.export_screenshot(), "approvals screen SVG")
            await press(pilot, "d")
            assert isinstance(app.screen, DecisionDialog)
            assert_no_raw(screen_text(app), "decision dialog")
            assert_no_raw(app.export_screenshot(), "decision dialog SVG")

    run(scenario)


# --- opening errors ---------------------------------------------------------------------------


def _bad_paths(tmp_path: Path) -> dict[str, tuple[Path, type[JournalError]]]:
    text = tmp_path / "notes.txt"
    text.write_text("not a journal\n")
    plain_db = tmp_path / "plain.db"
    conn = sqlite3.connect(plain_db)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    return {
        "missing": (tmp_path / "missing.db", JournalNotFoundError),
        "text file": (text, NotAJournalError),
        "other database": (plain_db, NotAJournalError),
    }


def test_inspect_refuses_a_bad_file_before_drawing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_app(*args: object, **kwargs: object) -> None:
        raise AssertionError("the app was constructed for a file that is not a journal")

    monkeypatch.setattr(journal_tui.launch, "JournalApp", no_app)
    for name, (path, error) in _bad_paths(tmp_path).items():
        with pytest.raises(error) as caught:
            asyncio.run(journal_tui.launch.inspect(path))
        message = str(caught.value)
        assert message, name
        assert "\n" not in message, name
        assert str(path) in message, name


def test_cli_tui_on_a_bad_file_exits_2_with_one_line(tmp_path: Path) -> None:
    for name, (path, _error) in _bad_paths(tmp_path).items():
        done = subprocess.run(
            [sys.executable, "-m", "journal_core", "tui", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "TERM": "dumb"},
            check=False,
        )
        assert done.returncode == 2, (name, done.stderr)
        lines = done.stderr.splitlines()
        assert len(lines) == 1, (name, done.stderr)
        assert lines[0].startswith("journal: "), name
        assert "Traceback" not in done.stderr
        assert done.stdout == "", name


# --- the file replaced under the inspector ----------------------------------------------------


async def _replacement(journal: Journal) -> str:
    session = await sessions_api.create_session(
        journal,
        session_key="cli:replacement",
        principal="user:ops",
        device_id="restore-host",
        label="Restored from the backup",
    )
    await sessions_api.start_run(journal, session.session_id)
    return session.session_id


def test_replaced_journal_file_is_reopened(showcase: tuple[Path, Showcase], tmp_path: Path) -> None:
    path, show = showcase
    other = tmp_path / "other" / "restored.db"
    build(other, _replacement, deterministic=False)

    async def scenario() -> None:
        async with inspector(path) as (app, pilot):
            titles = lambda: [row[0] for row in table_rows(table(app, "#sessions-table"))]  # noqa: E731
            assert show.titles["deploy"] in titles()
            os.replace(other, path)
            await wait_until(
                pilot,
                lambda: titles() == ["Restored from the backup"],
                "the new journal's sessions",
            )
            assert any("replaced" in message for message in notifications(app))
            assert app.problem is None
            status = static_text(app, "#status-line")
            assert "LIVE" in status
            assert "✖" not in status
            seq, _digest = await head(path)
            assert f"head seq {seq}" in status

    run(scenario)


# --- the import boundary ----------------------------------------------------------------------


def test_journal_core_never_imports_the_ui() -> None:
    code = (
        "import journal_core, journal_core.cli, journal_core.demo, journal_core.health; import sys;"
        " assert not any(m.split('.')[0] in ('textual','rich') for m in sys.modules),"
        " sorted(m for m in sys.modules if m.split('.')[0] in ('textual','rich'))[:5]"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
