"""Approvals: requests, first-wins decisions (also between real processes), expiry, waiting."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from journal_core import Actor, Journal, JournalReader, ValidationError, verify_file
from journal_core.approvals import (
    TIMEOUT_REASON,
    Approval,
    ApprovalPrompt,
    decide,
    expire_pending,
    get_approval,
    list_decided,
    list_for_run,
    list_pending,
    request_approval,
    wait_for_decision,
)
from journal_core.errors import (
    ApprovalAlreadyDecidedError,
    ApprovalExpiredError,
    ApprovalWaitTimeout,
    RecordNotFoundError,
)
from journal_core.ids import new_ulid

FAKE_TOKEN = "ghp_" + "A1b2C3d4" * 4 + "E5F6"
REPO_ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000_000
ALL_OPTIONS = ["allow_once", "allow_session", "allow_timeboxed", "deny_once"]


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _prompt(**overrides: Any) -> dict[str, Any]:
    prompt: dict[str, Any] = {
        "title": "Run shell command",
        "risk_level": "high",
        "summary": "The agent wants to run `ls -la /srv`",
        "options": ALL_OPTIONS,
        "details": {"tool": "shell", "args": ["ls", "-la", "/srv"]},
        "policy_explanation": "shell commands need approval",
    }
    prompt.update(overrides)
    return prompt


async def _request(journal: Journal, **overrides: Any) -> Approval:
    fields: dict[str, Any] = {
        "principal": "agent:helper",
        "device_id": "laptop-1",
        "subject_type": "tool",
        "subject_id": "shell",
        "summary": "run ls in /srv",
        "prompt": _prompt(),
        "policy_snapshot": {"rule": "tools.shell", "mode": "ask"},
        "channel": "cli",
        "now_ms": T0,
    }
    fields.update(overrides)
    return await request_approval(journal, **fields)


def _raw(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _assert_verified(path: Path) -> None:
    _, report = verify_file(path)
    assert report.ok, (report.breaks, report.record_breaks)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if part
    )
    return env


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _await_ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "ready", line + (process.stderr.read() if process.stderr else "")


def _go(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()


def _finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out.strip().splitlines()[-1]


# --- requests and decisions -------------------------------------------------------------------


@pytest.mark.parametrize("decision", ["allow", "deny"])
@pytest.mark.parametrize("scope", ["once", "session", "timeboxed"])
def test_request_then_decide_each_decision_and_scope(
    tmp_path: Path, decision: str, scope: str
) -> None:
    path = tmp_path / "j.db"
    session_id, run_id = new_ulid(), new_ulid()
    ttl = 90_000 if scope == "timeboxed" else None

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            requested = await _request(journal, session_id=session_id, run_id=run_id)
            assert requested.is_pending
            assert requested.expires_at_unix_ms == T0 + 60_000
            assert requested.prompt.timeout_seconds == 60
            assert requested.prompt.options == tuple(ALL_OPTIONS)
            assert requested.prompt.details == {"tool": "shell", "args": ["ls", "-la", "/srv"]}
            assert requested.policy_snapshot == {"rule": "tools.shell", "mode": "ask"}
            decided = await decide(
                journal,
                requested.approval_id,
                decision=decision,
                scope=scope,
                decided_by="user:bob",
                channel="tui",
                reason="looked fine",
                ttl_ms=ttl,
                now_ms=T0 + 5_000,
            )
        assert not decided.is_pending
        assert (decided.decision, decided.decision_scope) == (decision, scope)
        assert decided.decision_scope_ttl_ms == ttl
        assert (decided.decided_by, decided.decision_channel) == ("user:bob", "tui")
        assert decided.resolved_at_unix_ms == T0 + 5_000
        assert decided.decision_reason == "looked fine"
        expected_grant = (
            T0 + 5_000 + 90_000 if (decision, scope) == ("allow", "timeboxed") else None
        )
        assert decided.grant_expires_at_unix_ms == expected_grant
        async with await JournalReader.open(path) as reader:
            assert await get_approval(reader, requested.approval_id) == decided
            request_event, decision_event = await reader.last_events(2)
        # The request is chained under the requester, the decision under the decider.
        assert (request_event.principal, request_event.device_id) == ("agent:helper", "laptop-1")
        assert (request_event.session_id, request_event.run_id) == (session_id, run_id)
        assert request_event.channel == "cli"
        assert request_event.payload()["op"] == "approval.requested"  # type: ignore[index]
        assert (decision_event.principal, decision_event.device_id) == ("user:bob", "laptop-1")
        assert (decision_event.session_id, decision_event.run_id) == (session_id, run_id)
        assert decision_event.channel == "tui"
        assert decision_event.actor == Actor.USER
        assert decision_event.payload()["op"] == "approval.resolved"  # type: ignore[index]

    _run(scenario())
    _assert_verified(path)


def test_ttl_is_required_exactly_for_timeboxed(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            approval = await _request(journal)
            bad: list[dict[str, Any]] = [
                {"scope": "timeboxed"},
                {"scope": "timeboxed", "ttl_ms": 0},
                {"scope": "timeboxed", "ttl_ms": -5},
                {"scope": "timeboxed", "ttl_ms": True},
                {"scope": "once", "ttl_ms": 1_000},
                {"scope": "session", "ttl_ms": 1_000},
            ]
            for arguments in bad:
                with pytest.raises(ValidationError) as caught:
                    await decide(
                        journal,
                        approval.approval_id,
                        decision="allow",
                        decided_by="user:bob",
                        channel="tui",
                        now_ms=T0 + 1,
                        **arguments,
                    )
                assert caught.value.field == "ttl_ms", arguments
        async with await JournalReader.open(path) as reader:
            assert (await get_approval(reader, approval.approval_id)).is_pending

    _run(scenario())
    _assert_verified(path)


def test_an_allow_must_be_offered_but_a_deny_is_always_accepted(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            narrow = _prompt(options=["allow_once"])
            first = await _request(journal, prompt=narrow)
            for scope, ttl in (("session", None), ("timeboxed", 1_000)):
                with pytest.raises(ValidationError) as caught:
                    await decide(
                        journal,
                        first.approval_id,
                        decision="allow",
                        scope=scope,
                        ttl_ms=ttl,
                        decided_by="user:bob",
                        channel="tui",
                        now_ms=T0 + 1,
                    )
                assert caught.value.field == "scope"
            denied = await decide(
                journal,
                first.approval_id,
                decision="deny",
                scope="session",
                decided_by="user:bob",
                channel="tui",
                now_ms=T0 + 1,
            )
            assert denied.decision == "deny"
            second = await _request(journal, prompt=narrow)
            allowed = await decide(
                journal,
                second.approval_id,
                decision="allow",
                scope="once",
                decided_by="user:bob",
                channel="tui",
                now_ms=T0 + 1,
            )
            assert allowed.decision == "allow"

    _run(scenario())
    _assert_verified(path)


def test_summary_limit_is_1024_bytes(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            exact = await _request(journal, summary="s" * 1024)
            assert exact.request_summary == "s" * 1024
            multibyte = await _request(journal, summary="é" * 512)
            assert len(multibyte.request_summary.encode("utf-8")) == 1024
            for summary in ("s" * 1025, "é" * 512 + "x", ""):
                with pytest.raises(ValidationError) as caught:
                    await _request(journal, summary=summary)
                assert caught.value.field == "summary"
        assert _raw(path, "SELECT COUNT(*) FROM approvals") == [(2,)]

    _run(scenario())
    _assert_verified(path)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"prompt": _prompt(risk_level="extreme")}, "prompt.risk_level"),
        ({"prompt": _prompt(risk_level="HIGH")}, "prompt.risk_level"),
        ({"subject_type": "shell"}, "subject_type"),
        ({"subject_id": ""}, "subject_id"),
        ({"principal": "bad\nname"}, "principal"),
        ({"device_id": 7}, "device_id"),
        ({"session_id": "not-a-ulid"}, "session_id"),
        ({"run_id": "x" * 26}, "run_id"),
        ({"channel": ""}, "channel"),
        ({"approval_id": "nope"}, "approval_id"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": 30.5}, "timeout_seconds"),
        ({"now_ms": -1}, "now_ms"),
        ({"prompt": "allow?"}, "prompt"),
        ({"prompt": {**_prompt(), "colour": "red"}}, "prompt"),
        ({"prompt": {"risk_level": "low", "summary": "x"}}, "prompt.title"),
        ({"prompt": _prompt(title="")}, "prompt.title"),
        ({"prompt": _prompt(title="t" * 257)}, "prompt.title"),
        ({"prompt": _prompt(summary="s" * 1025)}, "prompt.summary"),
        ({"prompt": _prompt(options=[])}, "prompt.options"),
        ({"prompt": _prompt(options=["allow_forever"])}, "prompt.options"),
        ({"prompt": _prompt(options=["allow_once", "allow_once"])}, "prompt.options"),
        ({"prompt": _prompt(options="allow_once")}, "prompt.options"),
        ({"prompt": _prompt(timeout_seconds=30)}, "prompt.timeout_seconds"),
        ({"prompt": _prompt(details=["not", "an", "object"])}, "prompt.details"),
        ({"prompt": _prompt(details={"when": object()})}, "prompt.details"),
        ({"prompt": _prompt(details={"blob": "x" * 70_000})}, "prompt.details"),
        ({"prompt": _prompt(policy_explanation=3)}, "prompt.policy_explanation"),
        ({"policy_snapshot": "rule"}, "policy_snapshot"),
    ],
)
def test_request_fields_are_validated_and_nothing_is_written(
    tmp_path: Path, overrides: dict[str, Any], field: str
) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            with pytest.raises(ValidationError) as caught:
                await _request(journal, **overrides)
            assert caught.value.field == field

    _run(scenario())
    assert _raw(path, "SELECT COUNT(*) FROM approvals") == [(0,)]
    assert _raw(path, "SELECT COUNT(*) FROM journal_events") == [(0,)]


def test_prompt_dataclass_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            prompt = ApprovalPrompt(title="Pair phone", risk_level="critical", summary="pair")
            approval = await _request(
                journal,
                subject_type="device_pairing",
                subject_id="phone-7",
                prompt=prompt,
                policy_snapshot=None,
                timeout_seconds=120,
            )
            assert approval.prompt == ApprovalPrompt(
                title="Pair phone",
                risk_level="critical",
                summary="pair",
                options=("allow_once", "allow_session", "deny_once"),
                timeout_seconds=120,
                details={},
                policy_explanation=None,
            )
            assert approval.policy_snapshot == {}
            assert approval.expires_at_unix_ms == T0 + 120_000
            assert approval.session_id is None
            assert approval.run_id is None
            with pytest.raises(ValidationError) as caught:
                await _request(journal, approval_id=approval.approval_id)
            assert caught.value.field == "approval_id"

    _run(scenario())
    _assert_verified(path)


def test_free_text_and_details_are_redacted(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            approval = await _request(
                journal,
                summary=f"push with token {FAKE_TOKEN} " + "x" * (1023 - 17 - len(FAKE_TOKEN)),
                prompt=_prompt(
                    title=f"use {FAKE_TOKEN}",
                    summary=f"token {FAKE_TOKEN}",
                    details={"env": {"GITHUB_TOKEN": FAKE_TOKEN}, "argv": ["git", FAKE_TOKEN]},
                    policy_explanation=f"because {FAKE_TOKEN}",
                ),
                policy_snapshot={"seen": FAKE_TOKEN},
            )
            assert len(approval.request_summary.encode("utf-8")) <= 1024
            decided = await decide(
                journal,
                approval.approval_id,
                decision="deny",
                scope="once",
                decided_by="user:bob",
                channel="tui",
                reason=f"leaked {FAKE_TOKEN}",
                now_ms=T0 + 1,
            )
            for stored in (decided.request_summary, decided.decision_reason):
                assert stored is not None
                assert FAKE_TOKEN not in stored
            assert FAKE_TOKEN not in json.dumps(decided.prompt.details)
            assert FAKE_TOKEN not in json.dumps(decided.policy_snapshot)
            assert decided.request_summary.startswith("push with token ")
            assert decided.decision_reason is not None
            assert decided.decision_reason.startswith("leaked ")
            for suffix in ("", "-wal"):
                raw = Path(str(path) + suffix).read_bytes()
                assert FAKE_TOKEN.encode() not in raw, suffix

    _run(scenario())
    _assert_verified(path)


# --- first decision wins ----------------------------------------------------------------------


def test_second_decision_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            approval = await _request(journal)
            first = await decide(
                journal,
                approval.approval_id,
                decision="allow",
                scope="session",
                decided_by="user:alice",
                channel="tui-1",
                now_ms=T0 + 1_000,
            )
            events_before = _raw(path, "SELECT COUNT(*) FROM journal_events")
            with pytest.raises(ApprovalAlreadyDecidedError) as caught:
                await decide(
                    journal,
                    approval.approval_id,
                    decision="deny",
                    scope="once",
                    decided_by="user:bob",
                    channel="tui-2",
                    reason="no",
                    now_ms=T0 + 2_000,
                )
            error = caught.value
            assert (error.approval_id, error.decision, error.scope) == (
                approval.approval_id,
                "allow",
                "session",
            )
            assert (error.decided_by, error.decided_at_unix_ms, error.channel) == (
                "user:alice",
                T0 + 1_000,
                "tui-1",
            )
            assert "user:alice" in str(error)
            # An allow not offered is still reported as "decided first", not as a bad scope.
            with pytest.raises(ApprovalAlreadyDecidedError):
                await decide(
                    journal,
                    approval.approval_id,
                    decision="allow",
                    scope="timeboxed",
                    ttl_ms=5,
                    decided_by="user:bob",
                    channel="tui-2",
                    now_ms=T0 + 2_000,
                )
            assert _raw(path, "SELECT COUNT(*) FROM journal_events") == events_before
        async with await JournalReader.open(path) as reader:
            assert await get_approval(reader, approval.approval_id) == first

    _run(scenario())
    _assert_verified(path)


def test_concurrent_decisions_in_one_process_have_one_winner(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            approval = await _request(journal)
            outcomes = await asyncio.gather(
                *(
                    decide(
                        journal,
                        approval.approval_id,
                        decision=("allow", "deny")[i % 2],
                        scope="once",
                        decided_by=f"user:{i}",
                        channel="tui",
                        now_ms=T0 + 1,
                    )
                    for i in range(8)
                ),
                return_exceptions=True,
            )
        winners = [o for o in outcomes if isinstance(o, Approval)]
        losers = [o for o in outcomes if isinstance(o, ApprovalAlreadyDecidedError)]
        assert len(winners) == 1
        assert len(losers) == 7
        assert {loser.decided_by for loser in losers} == {winners[0].decided_by}

    _run(scenario())
    _assert_verified(path)


def test_unknown_approval(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            with pytest.raises(RecordNotFoundError):
                await decide(
                    journal,
                    new_ulid(),
                    decision="allow",
                    scope="once",
                    decided_by="user:bob",
                    channel="tui",
                )
            with pytest.raises(ValidationError) as caught:
                await decide(
                    journal,
                    new_ulid(),
                    decision="maybe",
                    scope="once",
                    decided_by="user:bob",
                    channel="tui",
                )
            assert caught.value.field == "decision"
        async with await JournalReader.open(path) as reader:
            with pytest.raises(RecordNotFoundError):
                await get_approval(reader, new_ulid())
            with pytest.raises(RecordNotFoundError):
                await wait_for_decision(reader, new_ulid(), timeout_s=0.1)

    _run(scenario())


# Each decider opens its own Journal, says "ready", waits for "go" on stdin, then tries to decide
# every approval id given; prints {approval_id: "won" | "lost"}.
DECIDER = """
import asyncio, json, sys
from journal_core import Journal
from journal_core.approvals import decide
from journal_core.errors import ApprovalAlreadyDecidedError

CHOICES = [("allow", "once"), ("allow", "session"), ("deny", "once")]

async def main(path: str, tag: int, ids: list[str]) -> None:
    decision, scope = CHOICES[tag % 3]
    results = {}
    async with await Journal.open(path) as journal:
        print("ready", flush=True)
        sys.stdin.readline()
        for approval_id in ids:
            try:
                await decide(journal, approval_id, decision=decision, scope=scope,
                             decided_by=f"inspector-{tag}", channel=f"tui-{tag}")
                results[approval_id] = "won"
            except ApprovalAlreadyDecidedError as error:
                assert error.decided_by != f"inspector-{tag}"
                results[approval_id] = "lost"
    print(json.dumps(results), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")))
"""
CHOICES = [("allow", "once"), ("allow", "session"), ("deny", "once")]


def _race(path: Path, approvals: int, processes: int) -> None:
    async def create() -> list[str]:
        async with await Journal.open(path) as journal:
            return [
                (await _request(journal, timeout_seconds=3_600, now_ms=None)).approval_id
                for _ in range(approvals)
            ]

    ids = _run(create())
    deciders = [_spawn(DECIDER, str(path), str(tag), ",".join(ids)) for tag in range(processes)]
    try:
        for process in deciders:
            _await_ready(process)
        for process in deciders:
            _go(process)
        results = [json.loads(_finish(process)) for process in deciders]
    finally:
        for process in deciders:
            if process.poll() is None:
                process.kill()
                process.wait()

    async def check() -> None:
        async with await JournalReader.open(path) as reader:
            for approval_id in ids:
                winners = [tag for tag in range(processes) if results[tag][approval_id] == "won"]
                assert len(winners) == 1, (approval_id, winners)
                assert all(
                    results[tag][approval_id] == "lost"
                    for tag in range(processes)
                    if tag != winners[0]
                )
                stored = await get_approval(reader, approval_id)
                assert stored.decided_by == f"inspector-{winners[0]}"
                assert stored.decision_channel == f"tui-{winners[0]}"
                assert (stored.decision, stored.decision_scope) == CHOICES[winners[0] % 3]

    _run(check())
    # One request and exactly one decision event per approval: losers wrote nothing.
    assert _raw(path, "SELECT COUNT(*) FROM journal_events") == [(2 * approvals,)]
    _assert_verified(path)


def test_race_between_six_processes_has_one_winner(tmp_path: Path) -> None:
    _race(tmp_path / "j.db", approvals=1, processes=6)


def test_race_over_twenty_approvals_between_four_processes(tmp_path: Path) -> None:
    _race(tmp_path / "j.db", approvals=20, processes=4)


# --- expiry -----------------------------------------------------------------------------------


def test_expiry_refuses_decisions_and_the_sweep_records_timeout(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            late = await _request(journal)
            answered = await _request(journal)
            later = await _request(journal, timeout_seconds=600)
            await decide(
                journal,
                answered.approval_id,
                decision="allow",
                scope="once",
                decided_by="user:bob",
                channel="tui",
                now_ms=T0 + 59_999,
            )
            events_before = _raw(path, "SELECT COUNT(*) FROM journal_events")
            with pytest.raises(ApprovalExpiredError) as caught:
                await decide(
                    journal,
                    late.approval_id,
                    decision="allow",
                    scope="once",
                    decided_by="user:bob",
                    channel="tui",
                    now_ms=T0 + 60_000,
                )
            assert caught.value.expires_at_unix_ms == T0 + 60_000
            assert _raw(path, "SELECT COUNT(*) FROM journal_events") == events_before
            async with await JournalReader.open(path) as reader:
                # Expired but not yet swept: still undecided, but no longer offered.
                assert (await get_approval(reader, late.approval_id)).is_pending
                pending = await list_pending(reader, now_ms=T0 + 60_000)
                assert [a.approval_id for a in pending] == [later.approval_id]
            assert await expire_pending(journal, now_ms=T0 + 59_999) == []
            assert await expire_pending(journal, now_ms=T0 + 60_000) == [late.approval_id]
            assert await expire_pending(journal, now_ms=T0 + 60_000) == []
            with pytest.raises(ApprovalExpiredError):
                await decide(
                    journal,
                    late.approval_id,
                    decision="deny",
                    scope="once",
                    decided_by="user:bob",
                    channel="tui",
                    now_ms=T0 + 1,
                )
        async with await JournalReader.open(path) as reader:
            timed_out = await get_approval(reader, late.approval_id)
            assert (timed_out.decision, timed_out.decision_reason, timed_out.decided_by) == (
                "timeout",
                TIMEOUT_REASON,
                "system",
            )
            assert timed_out.resolved_at_unix_ms == T0 + 60_000
            assert timed_out.is_expired(T0)
            pending = await list_pending(reader, now_ms=T0)
            assert [a.approval_id for a in pending] == [later.approval_id]
            decided = await list_decided(reader)
            assert [a.approval_id for a in decided] == [late.approval_id, answered.approval_id]
            sweep_event = (await reader.last_events(1))[0]
            assert (sweep_event.principal, sweep_event.actor) == ("system", Actor.SYSTEM)

    _run(scenario())
    _assert_verified(path)


def test_lists_order_by_urgency_history_and_run(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    run_id = new_ulid()

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            low_soon = await _request(journal, prompt=_prompt(risk_level="low"), run_id=run_id)
            critical_soon = await _request(journal, prompt=_prompt(risk_level="critical"))
            high_soon = await _request(journal)
            high_later = await _request(journal, timeout_seconds=300, run_id=run_id)
            medium_soon = await _request(journal, prompt=_prompt(risk_level="medium"))
            other = await _request(journal, prompt=_prompt(risk_level="low"))
            for offset, approval in ((3, other), (1, medium_soon)):
                await decide(
                    journal,
                    approval.approval_id,
                    decision="deny",
                    scope="once",
                    decided_by="user:bob",
                    channel="tui",
                    now_ms=T0 + offset,
                )
            newest = await _request(journal, timeout_seconds=30, run_id=run_id)
        async with await JournalReader.open(path) as reader:
            pending = await list_pending(reader, now_ms=T0)
            # Earliest expiry first; at the same expiry, the highest risk first.
            assert [a.approval_id for a in pending] == [
                newest.approval_id,
                critical_soon.approval_id,
                high_soon.approval_id,
                low_soon.approval_id,
                high_later.approval_id,
            ]
            assert [a.approval_id for a in await list_pending(reader, now_ms=T0, limit=1)] == [
                newest.approval_id
            ]
            history = await list_decided(reader)
            assert [a.approval_id for a in history] == [other.approval_id, medium_soon.approval_id]
            for_run = await list_for_run(reader, run_id)
            assert {a.approval_id for a in for_run} == {
                low_soon.approval_id,
                high_later.approval_id,
                newest.approval_id,
            }
            # All were requested at T0: the id breaks the tie, so the order is stable.
            assert [a.approval_id for a in for_run] == sorted(a.approval_id for a in for_run)
            assert await list_for_run(reader, new_ulid()) == []

    _run(scenario())
    _assert_verified(path)


# --- waiting for a decision from another process ------------------------------------------------


class CountingReader(JournalReader):
    """A reader that counts row reads and version polls."""

    row_reads = 0
    polls = 0
    polling: asyncio.Event | None = None

    async def fetchall(
        self, query: str, params: tuple[object, ...] = ()
    ) -> list[tuple[object, ...]]:
        if "FROM approvals" in query:
            self.row_reads += 1
        return await super().fetchall(query, params)

    async def data_version(self) -> int:
        self.polls += 1
        if self.polls >= 2 and self.polling is not None:
            self.polling.set()
        return await super().data_version()


ONE_DECISION = """
import asyncio, sys
from journal_core import Journal
from journal_core.approvals import decide

async def main(path: str, approval_id: str) -> None:
    async with await Journal.open(path) as journal:
        print("ready", flush=True)
        sys.stdin.readline()
        await decide(journal, approval_id, decision="deny", scope="once",
                     decided_by="user:remote", channel="inspector", reason="not now")
    print("done", flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_wait_returns_the_decision_another_process_wrote(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            approval = await _request(journal, timeout_seconds=3_600, now_ms=None)
        decider = _spawn(ONE_DECISION, str(path), approval.approval_id)
        try:
            await asyncio.to_thread(_await_ready, decider)
            reader = await CountingReader.open(path)
            try:
                reader.polling = asyncio.Event()
                waiter = asyncio.create_task(
                    wait_for_decision(reader, approval.approval_id, timeout_s=30)
                )
                # Let the decider go only once the waiter is in its polling loop.
                await reader.polling.wait()
                assert not waiter.done()
                _go(decider)
                decided = await waiter
                assert await asyncio.to_thread(_finish, decider) == "done"
            finally:
                await reader.close()
        finally:
            if decider.poll() is None:
                decider.kill()
                decider.wait()
        assert (decided.decision, decided.decided_by) == ("deny", "user:remote")
        assert decided.decision_reason == "not now"
        # The row was read once at the start and once after the version changed.
        assert reader.row_reads == 2
        again = await wait_for_decision(path, approval.approval_id, timeout_s=0)
        assert again == decided

    _run(scenario())
    _assert_verified(path)


def test_waiting_without_a_decision_costs_no_cpu_and_times_out(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> None:
        async with await Journal.open(path) as journal:
            approval = await _request(journal, timeout_seconds=3_600, now_ms=None)
        async with await CountingReader.open(path) as reader:
            cpu_before = time.process_time()
            with pytest.raises(ApprovalWaitTimeout) as caught:
                await wait_for_decision(reader, approval.approval_id, timeout_s=1.0)
            cpu_used = time.process_time() - cpu_before
            assert isinstance(caught.value, TimeoutError)
            assert caught.value.approval_id == approval.approval_id
            assert cpu_used < 0.3, cpu_used
            # Nothing committed meanwhile, so the row was never re-read: only the version was.
            assert reader.row_reads == 1
            assert reader.polls >= 2
            for bad in ({"timeout_s": -1.0}, {"timeout_s": 1.0, "poll_interval_s": 0.0}):
                with pytest.raises(ValidationError):
                    await wait_for_decision(reader, approval.approval_id, **bad)

    _run(scenario())


# --- tampering --------------------------------------------------------------------------------


def test_changing_a_decision_in_the_file_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "j.db"

    async def scenario() -> str:
        async with await Journal.open(path) as journal:
            approval = await _request(journal)
            await decide(
                journal,
                approval.approval_id,
                decision="deny",
                scope="once",
                decided_by="user:bob",
                channel="tui",
                now_ms=T0 + 1,
            )
            return approval.approval_id

    approval_id = _run(scenario())
    _assert_verified(path)
    _raw(path, "UPDATE approvals SET decision = 'allow' WHERE approval_ulid = ?", (approval_id,))
    _, report = verify_file(path)
    assert [(b.code, b.table, b.key) for b in report.record_breaks] == [
        ("record_digest_mismatch", "approvals", approval_id)
    ]
