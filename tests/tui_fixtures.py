"""Journals for the inspector's screen tests, made through the core API, and helpers to drive it.

``write_showcase`` fills a journal with every kind of content the inspector shows (sessions
with runs in every state, transcripts with every entry type, tool jobs with stdout and stderr,
pending and decided approvals); ``write_hostile`` fills one with terminal-hostile text (Rich
markup, ANSI and OSC escapes, bidi overrides, CR, NUL, DEL) in every field that reaches the
screen.

``deterministic_core`` makes what the core writes reproducible (ULID randomness, ULID, event,
commit and checkpoint times, the checkpoint signing key), so a snapshot of the inspector is
identical on every run and machine;
``frozen_inspector`` freezes the clocks the inspector reads while it draws.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import DataTable, Static
from textual.worker import WorkerCancelled, WorkerState

import journal_core.approvals
import journal_core.schema
import journal_core.store
import journal_tui.chain_pane
import journal_tui.clock
from journal_core import Journal, checkpoints
from journal_core import approvals as approvals_api
from journal_core import sessions as sessions_api
from journal_core import tape as tape_api
from journal_core import tool_jobs as jobs_api

#: 2026-01-01T00:00:00Z: the deterministic journals start here.
BASE_MS = 1_767_225_600_000
#: Every commit moves the fake clock on by this much.
STEP_MS = 7
#: What the inspector's clock says in the snapshots: after the last commit of the showcase.
FROZEN_NOW_MS = BASE_MS + 30_000
SIZE = (150, 42)
DECIDER = "tester@host"

ALL_OPTIONS = ["allow_once", "allow_session", "allow_timeboxed", "deny_once"]

#: Text an agent, a tool or a user could send to make a terminal misbehave.
HOSTILE = (
    "[bold red]X[/] [link=https://evil]click[/link] \x1b[31mred\x1b[0m \x1b[2J"
    " \x1b]0;pwned\x07 \x1b]52;c;Y29weQ==\x07 \u202eevil\u202c cr\rlf nul\x00 del\x7f end"
)
#: What must appear literally on screen for it.
HOSTILE_VISIBLE = (
    "[bold red]X[/]",
    "[link=https://evil]click[/link]",
    "\\x1b[31mred",
    "\\x1b[2J",
    "\\x1b]0;pwned\\x07",
    "\\x1b]52;c;Y29weQ==\\x07",
    "\\u202eevil",
    "cr\\x0dlf",
    "nul\\x00",
    "del\\x7f",
)
#: Characters that must never reach the terminal raw.
RAW_FORBIDDEN = ("\x1b", "\x07", "\r", "\x00", "\x7f", "\u202e", "\u202c")


# --- a reproducible core ----------------------------------------------------------------------


class FakeClock:
    """A clock for the core that moves only when the writer commits, and the randomness of ids.

    ``commit_ms`` (the writer's commit time) moves it on by ``STEP_MS``; every other read
    (``now_ms``, ``time_ns``: ULID times, default event times, key and checkpoint times) gets
    the current value without moving it. ``urandom`` derives its bytes from the seed, the
    current time and how many were asked for at that time. So the rows written depend on the
    commits made, not on how often the core reads the clock or draws random bytes inside one
    write: a change in the core's internals does not shift every later id and time (and every
    snapshot with them). Thread-safe.
    """

    def __init__(self, seed: int, start_ms: int = BASE_MS, step_ms: int = STEP_MS) -> None:
        self._seed = seed
        self._now = start_ms
        self._step = step_ms
        self._draws = 0
        self._lock = threading.Lock()

    def commit_ms(self) -> int:
        with self._lock:
            self._now += self._step
            self._draws = 0
            return self._now

    def now_ms(self) -> int:
        with self._lock:
            return self._now

    def time_ns(self) -> int:
        return self.now_ms() * 1_000_000

    def urandom(self, size: int) -> bytes:
        with self._lock:
            self._draws += 1
            material = f"{self._seed}:{self._now}:{self._draws}".encode()
        out = b""
        block = 0
        while len(out) < size:
            out += hashlib.sha256(material + block.to_bytes(4, "big")).digest()
            block += 1
        return out[:size]


class _ModuleProxy:
    """Stands for a module inside one other module, with some attributes replaced.

    Replacing ``journal_core.ids.os`` (rather than ``os.urandom`` itself) keeps the fake
    randomness out of everything else in the process (tempfile, asyncio, SQLite's callers).
    """

    def __init__(self, module: ModuleType, **overrides: Any) -> None:
        self._module = module
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def _core_modules() -> list[ModuleType]:
    return [
        module
        for name, module in sorted(sys.modules.items())
        if (name == "journal_core" or name.startswith("journal_core.")) and module is not None
    ]


@contextlib.contextmanager
def deterministic_core(seed: int = 2026) -> Iterator[FakeClock]:
    """While active, the core writes the same rows on every run (see ``FakeClock``).

    In every loaded ``journal_core`` module: ``now_ms``, under any name it was imported as,
    reads the fake clock (the store's, the commit time, moves it); ``time.time_ns`` reads it;
    ``os.urandom`` (ULID randomness, hence the journal id and every id) draws from it; and the
    checkpoints' signing key is made from it. Module references are replaced (not
    ``os.urandom`` or ``time.time_ns`` themselves), so nothing else in the process is affected.

    Writes must be awaited one after another (no concurrent appends).
    """
    clock = FakeClock(seed)
    wall_clock = journal_core.schema.now_ms

    def seeded_key(name: str) -> checkpoints.SigningKey:
        return checkpoints.SigningKey(name, Ed25519PrivateKey.from_private_bytes(clock.urandom(32)))

    with pytest.MonkeyPatch.context() as patch:
        for module in _core_modules():
            for attribute, value in list(vars(module).items()):
                if value is wall_clock:
                    patch.setattr(module, attribute, clock.now_ms)
                elif value is time:
                    patch.setattr(module, attribute, _ModuleProxy(time, time_ns=clock.time_ns))
                elif value is os:
                    patch.setattr(module, attribute, _ModuleProxy(os, urandom=clock.urandom))
        # The writer reads the time once per commit (store imports now_ms by name).
        patch.setattr(journal_core.store, "now_ms", clock.commit_ms)
        patch.setattr(checkpoints, "generate_key", seeded_key)
        yield clock


class _SteppedPerfCounter:
    """``time.perf_counter`` for the chain pane: 0.5 ms more at every read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reads = 0

    def __call__(self) -> float:
        with self._lock:
            self._reads += 1
            return self._reads * 0.0005


@contextlib.contextmanager
def frozen_inspector(now_ms: int = FROZEN_NOW_MS) -> Iterator[None]:
    """Freeze what the inspector reads from clocks while it draws.

    - ``journal_tui.clock.now_ms``: countdowns, "3s ago", durations of live runs.
    - ``journal_core.approvals.wall_clock_ms``: the Approvals pane lists pending requests with
      ``list_pending(reader)``, which filters expired requests by the *real* wall clock rather
      than the inspector's clock; without this, the showcase's requests (made at 2026-01-01)
      would not be pending any more. (Asked the lead to pass ``now_ms=clock.now_ms()``.)
    - ``journal_tui.chain_pane.time.perf_counter``: the Chain pane shows the events/s of its
      last full verification, a timing figure. The pane reads ``perf_counter`` at the start, at
      each progress callback (every 50,000 events and once at the end) and at the finish; a
      counter that moves 0.5 ms per read makes the shown rate a function of the event count
      alone (events / 1 ms here), the same on every run.
    """

    def frozen() -> int:
        return now_ms

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(journal_tui.clock, "now_ms", frozen)
        patch.setattr(journal_core.approvals, "wall_clock_ms", frozen)
        patch.setattr(
            journal_tui.chain_pane,
            "time",
            _ModuleProxy(journal_tui.chain_pane.time, perf_counter=_SteppedPerfCounter()),
        )
        yield


def dump_rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of the journal at ``path`` (to compare two journals)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                " ORDER BY name"
            )
        ]
        return {
            table: sorted(conn.execute(f'SELECT * FROM "{table}"').fetchall(), key=repr)
            for table in tables
        }
    finally:
        conn.close()


# --- the showcase journal ---------------------------------------------------------------------


@dataclass
class Showcase:
    """The ids of what ``write_showcase`` made, by role."""

    sessions: dict[str, str] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=dict)
    approvals: dict[str, str] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)


LONG_ARGUMENTS = {
    "command": "helm upgrade payments-api ./charts/payments-api",
    "namespace": "production",
    "values": ["values.yaml", "values-production.yaml"],
    "set": {"image.tag": "2.4.1", "replicaCount": 6, "resources.limits.cpu": "2"},
    "atomic": True,
    "wait": True,
    "timeout": "10m",
    "history_max": 20,
    "dry_run": False,
}


async def _session(
    journal: Journal,
    show: Showcase,
    name: str,
    title: str,
    *,
    principal: str = "user:maria",
    channel: str | None = "slack",
) -> str:
    session = await sessions_api.create_session(
        journal,
        session_key=f"{channel or 'local'}:{name}",
        principal=principal,
        device_id="mbp-maria",
        channel=channel,
        label=title,
    )
    show.sessions[name] = session.session_id
    show.titles[name] = title
    return session.session_id


async def _run(
    journal: Journal, show: Showcase, name: str, session_id: str, *, to: tuple[str, ...] = ()
) -> str:
    run = await sessions_api.start_run(journal, session_id)
    show.runs[name] = run.run_id
    for state in to:
        await sessions_api.transition_run(journal, run.run_id, state)
    return run.run_id


async def _job(
    journal: Journal,
    show: Showcase,
    name: str,
    run_id: str,
    session_id: str,
    tool: str,
    output: list[tuple[str, str]],
    *,
    end: str | None,
    exit_code: int | None = None,
    error: str | None = None,
) -> str:
    job = await jobs_api.create_job(
        journal,
        owner_principal="user:maria",
        device_id="mbp-maria",
        tool_name=tool,
        backend="local-sandbox",
        session_id=session_id,
        run_id=run_id,
        command=tool,
        max_attempts=2,
        retry_allowed=True,
    )
    show.jobs[name] = job.job_id
    await jobs_api.transition_job(journal, job.job_id, "starting")
    await jobs_api.transition_job(journal, job.job_id, "running")
    for stream, line in output:
        await jobs_api.append_output(journal, job.job_id, stream, line + "\n")
    if end is not None:
        await jobs_api.transition_job(journal, job.job_id, end, exit_code=exit_code, error=error)
    return job.job_id


async def _ask(
    journal: Journal,
    show: Showcase,
    name: str,
    run_id: str,
    session_id: str,
    command: str,
    risk: str,
    timeout_seconds: int,
    *,
    subject: str = "tool",
) -> approvals_api.Approval:
    tool = command.split(maxsplit=1)[0]
    request = await approvals_api.request_approval(
        journal,
        principal="user:maria",
        device_id="mbp-maria",
        subject_type=subject,
        subject_id=tool,
        summary=f"shell: {command}",
        prompt={
            "title": f"Allow {tool}?",
            "risk_level": risk,
            "summary": f"The agent wants to run {command!r}",
            "options": ALL_OPTIONS,
            "details": {"tool": "shell", "arguments": {"command": command}},
            "policy_explanation": f"{risk} risk tools need a human decision",
        },
        session_id=session_id,
        run_id=run_id,
        channel="slack",
        timeout_seconds=timeout_seconds,
    )
    show.approvals[name] = request.approval_id
    await tape_api.append_entry(
        journal,
        run_id,
        "tool_approval_request",
        {"approval_id": request.approval_id, "tool": tool, "risk": risk},
    )
    return request


async def write_showcase(journal: Journal) -> Showcase:
    """Sessions, runs, transcripts, jobs and approvals: a bit of everything the inspector shows.

    Every write is awaited before the next, so with ``deterministic_core`` the rows are the
    same on every run. Pending requests expire 2, 10 and 30 minutes after they were made.
    """
    show = Showcase()
    entry = tape_api.append_entry

    # A nightly check, scheduled: done, with a completed job and decided approvals.
    nightly = await _session(
        journal, show, "nightly", "Nightly backup check", principal="svc:cron", channel=None
    )
    run = await _run(journal, show, "nightly", nightly, to=("accepted", "in_progress"))
    await entry(journal, run, "status", {"text": "scheduled run", "schedule": "0 3 * * *"})
    await _job(
        journal,
        show,
        "backup",
        run,
        nightly,
        "restic",
        [
            ("stdout", "using parent snapshot 4f2a91c0"),
            ("stdout", "Files:         212 new,    38 changed, 90211 unmodified"),
            ("stdout", "snapshot 7d03be11 saved"),
        ],
        end="completed",
        exit_code=0,
    )
    for name, command, decision in (
        ("allowed", "restic forget --keep-daily 7", "allow"),
        ("denied", "restic prune --max-unused 0", "deny"),
    ):
        approval = (
            await _ask(journal, show, name, run, nightly, command, "medium", 300)
        ).approval_id
        decided = await approvals_api.decide(
            journal,
            approval,
            decision=decision,
            scope="once",
            decided_by="alice@laptop" if decision == "allow" else "bob@desk",
            channel="slack" if decision == "allow" else "cli",
            reason=None if decision == "allow" else "not during business hours",
        )
        await entry(
            journal,
            run,
            "tool_approval_response",
            {
                "approval_id": approval,
                "decision": decided.decision,
                "scope": decided.decision_scope,
                "decided_by": decided.decided_by,
            },
        )
    unanswered = await _ask(
        journal, show, "timed_out", run, nightly, "restic check --read-data", "high", 1
    )
    # Nobody answered within its second: the daemon's sweep records the timeout.
    await approvals_api.expire_pending(journal, now_ms=unanswered.expires_at_unix_ms)
    await entry(
        journal,
        run,
        "tool_approval_response",
        {"approval_id": unanswered.approval_id, "decision": "timeout", "scope": None},
    )
    await sessions_api.add_tokens(journal, run, prompt_tokens=410, completion_tokens=96)
    await sessions_api.transition_run(journal, run, "done", reason="answered")

    # A cancelled clean-up.
    cleanup = await _session(journal, show, "cleanup", "Clean up old docker images")
    run = await _run(journal, show, "cleanup", cleanup, to=("accepted", "in_progress"))
    await entry(journal, run, "message.received", {"text": "Remove images older than 30 days"})
    await sessions_api.request_cancel(journal, run, "the registry is being migrated")
    await sessions_api.transition_run(journal, run, "cancelled", reason="cancel requested")

    # A failed credential rotation: last error, a failed job with stderr.
    rotate = await _session(journal, show, "rotate", "Rotate the read replica credentials")
    run = await _run(journal, show, "rotate", rotate, to=("accepted", "in_progress"))
    await entry(journal, run, "message.received", {"text": "Rotate the replica password"})
    await entry(journal, run, "tool_proposal", {"tool": "psql", "arguments": {"db": "replica"}})
    await _job(
        journal,
        show,
        "psql",
        run,
        rotate,
        "psql",
        [
            ("stdout", "connecting to replica-1.internal:5432"),
            ("stderr", 'psql: FATAL: password authentication failed for user "replica"'),
        ],
        end="failed",
        exit_code=2,
        error="psql exited with 2",
    )
    await entry(journal, run, "tool_result", {"tool": "psql", "exit_code": 2, "status": "failed"})
    await sessions_api.add_tokens(journal, run, prompt_tokens=880, completion_tokens=120)
    await sessions_api.transition_run(
        journal,
        run,
        "failed",
        error='psql: FATAL: password authentication failed for user "replica"',
    )

    # A release in progress: a running job with interleaved stdout and stderr, a pending
    # medium-risk request.
    release = await _session(journal, show, "release", "Publish release notes for v2.4")
    run = await _run(journal, show, "release", release, to=("accepted", "in_progress"))
    await entry(journal, run, "message.received", {"text": "Publish the v2.4 notes"})
    await _job(
        journal,
        show,
        "build",
        run,
        release,
        "npm",
        [
            ("stdout", "> docs@2.4.0 build"),
            ("stdout", "> vite build --mode production"),
            ("stderr", "warning: 3 pages have no description"),
            ("stdout", "✓ 184 modules transformed."),
            ("stdout", "dist/index.html                  0.46 kB"),
            ("stderr", "warning: chunk vendor is larger than 500 kB"),
            ("stdout", "dist/assets/index-4b1c.js      612.20 kB"),
        ],
        end=None,
    )
    await _ask(journal, show, "medium", run, release, "npm publish --tag next", "medium", 1_800)
    await entry(journal, run, "status", {"text": "waiting for approval"})

    # The deploy: two runs, every entry type, a long folded argument list, pending requests.
    deploy = await _session(journal, show, "deploy", "Deploy payments-api to staging")
    run = await _run(journal, show, "deploy_1", deploy, to=("accepted", "in_progress"))
    await entry(journal, run, "message.received", {"text": "Deploy payments-api 2.4.1 to staging"})
    for piece in ("Checking the cluster ", "state first, then I will ", "roll out 2.4.1. "):
        await entry(journal, run, "model_token", {"text": piece})
    await entry(
        journal,
        run,
        "tool_proposal",
        {"tool": "kubectl", "arguments": {"command": "kubectl get pods -n staging"}, "risk": "low"},
    )
    await entry(
        journal,
        run,
        "tool_result",
        {"tool": "kubectl", "exit_code": 0, "output_tail": "api-7d9f   1/1   Running"},
    )
    await entry(journal, run, "message.replied", {"text": "Staging runs payments-api 2.4.1."})
    await sessions_api.add_tokens(journal, run, prompt_tokens=1_200, completion_tokens=340)
    await sessions_api.transition_run(journal, run, "done", reason="answered")

    run = await _run(journal, show, "deploy_2", deploy, to=("accepted", "in_progress"))
    await entry(journal, run, "message.received", {"text": "Now roll it out to production"})
    await entry(journal, run, "status", {"text": "planning the rollout"})
    for piece in ("Production needs ", "the database secret and a helm upgrade."):
        await entry(journal, run, "model_token", {"text": piece})
    await entry(
        journal, run, "tool_proposal", {"tool": "helm", "arguments": LONG_ARGUMENTS, "risk": "high"}
    )
    await _ask(
        journal,
        show,
        "critical",
        run,
        deploy,
        "vault kv get secret/payments-api",
        "critical",
        120,
        subject="secret_access",
    )
    await _ask(journal, show, "high", run, deploy, "helm upgrade payments-api", "high", 600)
    await sessions_api.add_tokens(journal, run, prompt_tokens=2_048, completion_tokens=512)

    # A run that was only just accepted.
    await _session(journal, show, "vendor", "Draft a reply to the vendor", channel="email")
    await _run(journal, show, "vendor", show.sessions["vendor"], to=("accepted",))

    # The deploy is the most recently active session: first in the list.
    await sessions_api.update_session(journal, deploy, auto_title="payments-api rollout")
    return show


# --- the hostile journal ----------------------------------------------------------------------


@dataclass
class Hostile:
    """The ids of what ``write_hostile`` made."""

    session_id: str
    run_id: str
    job_id: str
    approval_id: str


async def write_hostile(journal: Journal) -> Hostile:
    """One session whose every shown field carries ``HOSTILE`` (or, where the core refuses
    control and bidirectional characters in identifiers, its markup part)."""
    markup_only = "[bold red]X[/] [link=https://evil]click[/link]"
    session = await sessions_api.create_session(
        journal,
        session_key=f"irc:{markup_only}",
        principal="user:[bold red]mallory[/]",
        device_id="dev[link=https://evil]1[/link]",
        channel="irc",
        label=HOSTILE,
    )
    sid = session.session_id
    run = (await sessions_api.start_run(journal, sid)).run_id
    await sessions_api.transition_run(journal, run, "accepted", reason=HOSTILE)
    await sessions_api.transition_run(journal, run, "in_progress")
    entry = tape_api.append_entry
    await entry(journal, run, "message.received", {"text": HOSTILE})
    await entry(journal, run, "status", {"text": HOSTILE})
    await entry(journal, run, "model_token", {"text": HOSTILE})
    await entry(
        journal,
        run,
        "tool_proposal",
        {"tool": HOSTILE, "arguments": {"command": HOSTILE}, "risk": HOSTILE},
    )
    job = await jobs_api.create_job(
        journal,
        owner_principal="user:mallory",
        device_id="dev-1",
        tool_name="sh[bold red]X[/]",
        backend="local-sandbox",
        session_id=sid,
        run_id=run,
        command=HOSTILE,
    )
    await jobs_api.transition_job(journal, job.job_id, "running")
    await jobs_api.append_output(journal, job.job_id, "stdout", HOSTILE + "\n")
    await jobs_api.append_output(journal, job.job_id, "stderr", HOSTILE + "\n")
    await jobs_api.transition_job(journal, job.job_id, "failed", exit_code=1, error=HOSTILE)
    await entry(journal, run, "tool_result", {"tool": HOSTILE, "output_tail": HOSTILE})
    request = await approvals_api.request_approval(
        journal,
        principal="user:mallory",
        device_id="dev-1",
        subject_type="tool",
        subject_id=markup_only,
        summary=HOSTILE,
        prompt={
            "title": HOSTILE,
            "risk_level": "medium",
            "summary": HOSTILE,
            "details": {"command": HOSTILE},
            "policy_explanation": HOSTILE,
        },
        session_id=sid,
        run_id=run,
        channel="irc",
        timeout_seconds=600,
    )
    await entry(
        journal,
        run,
        "tool_approval_request",
        {"approval_id": request.approval_id, "tool": HOSTILE, "risk": HOSTILE},
    )
    await entry(
        journal,
        run,
        "tool_approval_response",
        {"decision": HOSTILE, "scope": HOSTILE, "decided_by": HOSTILE},
    )
    await entry(journal, run, "message.replied", {"text": HOSTILE})
    await sessions_api.transition_run(journal, run, "failed", error=HOSTILE)
    return Hostile(sid, run, job.job_id, request.approval_id)


# --- building journals ------------------------------------------------------------------------

Writer = Callable[[Journal], Any]


async def _write(path: Path, writer: Writer) -> Any:
    async with await Journal.open(path) as journal:
        return await writer(journal)


def build(path: Path, writer: Writer, *, deterministic: bool = True, seed: int = 2026) -> Any:
    """Create the journal at ``path`` with ``writer`` (outside any event loop); returns what the
    writer returned. ``deterministic``: the same rows on every run, dated from 2026-01-01, so
    the inspector must be frozen with ``frozen_inspector``; otherwise real time (requests
    pending now, decisions possible). Another ``seed`` makes another journal (other ids)."""
    if not deterministic:
        return asyncio.run(_write(path, writer))
    with deterministic_core(seed) as clock:
        made = asyncio.run(_write(path, writer))
        assert clock.now_ms() < FROZEN_NOW_MS - 1_000, "the fake clock ran past FROZEN_NOW_MS"
    return made


# --- driving and reading the inspector --------------------------------------------------------

_BUSY = (WorkerState.PENDING, WorkerState.RUNNING)


async def settle(pilot: Pilot[Any], rounds: int = 6) -> None:
    """Let the workers started by the last action (and those their messages start) finish."""
    app = pilot.app
    for _ in range(rounds):
        # An exclusive worker replaced by a newer one is cancelled: that is done, not a failure.
        with contextlib.suppress(WorkerCancelled):
            await app.workers.wait_for_complete()
        await pilot.pause()
        if not any(worker.state in _BUSY for worker in app.workers):
            return


async def wait_until(
    pilot: Pilot[Any], condition: Callable[[], bool], what: str, timeout: float = 10.0
) -> None:
    """Poll ``condition`` (the app keeps running) until it holds; fail after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.05)
    await settle(pilot)


def plain(value: object) -> str:
    """The plain text of a Rich ``Text``, a Textual ``Content`` or a string."""
    text = getattr(value, "plain", None)
    return text if isinstance(text, str) else str(value)


def static_text(app: App[Any], selector: str) -> str:
    """The text shown by the Static ``selector`` on the current screen."""
    return plain(app.screen.query_one(selector, Static).content)


def table_rows(table: DataTable[Any]) -> list[list[str]]:
    """Every row of ``table`` as plain strings, top to bottom."""
    return [[plain(cell) for cell in table.get_row(row_key)] for row_key in table.rows]


def screen_text(app: App[Any]) -> str:
    """What the terminal shows now, as plain text (one line per row)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text for strip in strips)
