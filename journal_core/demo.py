"""A simulated agent daemon that makes a journal come alive (``journal demo``).

Several agents work concurrently, each in its own session: a user asks for something, the model
streams its answer, proposes tools, asks for approval when a tool is risky (waiting for a decision
from the inspector, and timing out if none comes), runs tool jobs whose stdout and stderr stream
over seconds, stores and purges memories, and finishes or fails. Now and then a payload carries a
credential, which redaction catches before anything is stored. Everything goes through the public
API of :mod:`journal_core`, exactly as a real daemon would write.

``rate`` caps events per second (0 means as fast as possible, without pauses: for tests and
benchmarks, where approvals are decided by a simulated remote approver or time out at once).
``seed`` makes the choices (scenarios, texts, outcomes) reproducible; timestamps are real.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from journal_core import approvals, memory, sessions, tape, tool_jobs
from journal_core.errors import ApprovalWaitTimeout, JournalError
from journal_core.events import Actor, EventInput, Kind
from journal_core.reader import JournalReader
from journal_core.store import Journal

# Shapes of real credentials, made up: they exist so that redaction has something to catch.
_FAKE_SECRETS = (
    "ghp_" + "Zx81" * 9,
    "AKIA" + "QW3ERT7YUI2OPAS5",
    "sk-ant-api03-" + "q7Lm2Nx9" * 10 + "AA",
    "xoxb-" + "1234567890-1234567890123-" + "AbCdEfGhIjKlMnOpQrStUvWx",
    "glpat-" + "Hs72kPq9Lm3Nz8Vb1Xc4",
)


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool an agent can call, with its risk and what its output looks like."""

    name: str
    command: str
    risk: str
    output: tuple[str, ...]
    errors: tuple[str, ...] = ()
    exit_code: int = 0


@dataclass(frozen=True, slots=True)
class Scenario:
    """A task an agent is given: the user's words, the answer and the tools it will use."""

    key: str
    title: str
    prompt: str
    answer: str
    tools: tuple[Tool, ...]
    memory_fact: str


_SCENARIOS = (
    Scenario(
        "cli:alice/fix-auth-tests",
        "Fix the failing auth tests",
        "The auth tests fail since yesterday's merge. Can you find out why and fix them?",
        "I'll run the auth tests first to see the failure, then look at the token refresh code"
        " that changed in the merge. The refresh path now compares expiry in seconds against"
        " milliseconds, so every token looks expired.",
        (
            Tool(
                "shell",
                "pytest -x tests/test_auth.py",
                "low",
                (
                    "collected 42 items",
                    "tests/test_auth.py::test_login PASSED",
                    "tests/test_auth.py::test_refresh FAILED",
                    "E   AssertionError: token expired at 1700000000 (now 1700000000123)",
                    "1 failed, 12 passed in 3.21s",
                ),
                ("DeprecationWarning: datetime.utcnow() is deprecated",),
                1,
            ),
            Tool(
                "edit_file",
                "apply_patch src/auth/refresh.py",
                "medium",
                ("patched src/auth/refresh.py: 1 hunk, +2 -1",),
            ),
            Tool(
                "shell",
                "pytest tests/test_auth.py",
                "low",
                ("collected 42 items", "42 passed in 3.02s"),
            ),
        ),
        "The auth service stores token expiry in milliseconds since the March merge.",
    ),
    Scenario(
        "slack:ops/deploy-staging",
        "Deploy build 1842 to staging",
        "Please deploy build 1842 to staging and tell me when the health checks are green.",
        "Build 1842 passed CI. I'll apply the staging manifests and watch the rollout; the"
        " deployment changes the cluster, so I need an approval for kubectl apply.",
        (
            Tool(
                "shell",
                "kubectl apply -f deploy/staging/",
                "high",
                (
                    "deployment.apps/api configured",
                    "deployment.apps/worker configured",
                    "Waiting for rollout to finish: 1 of 3 updated replicas are available...",
                    "Waiting for rollout to finish: 2 of 3 updated replicas are available...",
                    'deployment "api" successfully rolled out',
                ),
                ("Warning: resource deployments/api is missing the last-applied annotation",),
            ),
            Tool(
                "http_get",
                "GET https://staging.internal/healthz",
                "low",
                ('{"status":"ok","checks":{"db":"ok","queue":"ok"}}',),
            ),
        ),
        "Staging deploys go through kubectl apply on deploy/staging and need approval.",
    ),
    Scenario(
        "web:bob/summarise-incident",
        "Summarise incident 231",
        "Summarise incident 231 for the weekly report. The pager token is {secret} if you need"
        " the timeline API.",
        "Incident 231: the queue workers stalled for 14 minutes after a config push raised the"
        " prefetch count; alerts fired after 6 minutes; rollback restored throughput. Action"
        " items: cap prefetch in config validation and alert on consumer lag.",
        (
            Tool(
                "http_get",
                "GET https://pager.internal/api/incidents/231/timeline",
                "medium",
                (
                    "02:14 alert: consumer lag > 10k",
                    "02:16 ack by carol",
                    "02:20 rollback started",
                    "02:28 lag back to 0",
                ),
            ),
        ),
        "Incident 231 was caused by a prefetch count raised in a config push.",
    ),
    Scenario(
        "cli:carol/rotate-db-credentials",
        "Rotate the reporting database password",
        "Rotate the password of the reporting database user and update the secret store.",
        "Rotating credentials needs access to the secret store, which is critical; I'll ask for"
        " approval before reading the current secret.",
        (
            Tool(
                "secret_store",
                "vault kv get secret/reporting-db",
                "critical",
                ("password={secret}", "rotated_at=2026-10-01"),
            ),
            Tool(
                "shell",
                "psql -c \"ALTER ROLE reporting PASSWORD '***'\"",
                "high",
                ("ALTER ROLE",),
            ),
        ),
        "The reporting database user's password lives in secret/reporting-db.",
    ),
    Scenario(
        "cli:dave/upgrade-deps",
        "Upgrade the HTTP client dependency",
        "Bump httpx to the latest version and make sure nothing breaks.",
        "I'll update the lock file and run the full test suite; there may be a change in how"
        " timeouts are configured.",
        (
            Tool(
                "shell",
                "uv lock --upgrade-package httpx",
                "medium",
                ("Resolved 87 packages in 1.2s", "Updated httpx v0.27.0 -> v0.28.1"),
            ),
            Tool(
                "shell",
                "pytest -q",
                "low",
                (
                    *(
                        f"tests/test_module_{n}.py ...................... [{n * 10}%]"
                        for n in range(1, 11)
                    ),
                    "612 passed, 3 skipped in 48.3s",
                ),
                ("PytestUnraisableExceptionWarning: unclosed transport",),
            ),
        ),
        "The project pins httpx through uv's lock file.",
    ),
)


@dataclass(slots=True)
class DemoConfig:
    """How the simulated daemon behaves."""

    seed: int = 1
    rate: float = 40.0
    agents: int = 4
    approval_timeout_s: int = 45
    principal_device: str = "demo-host"
    approver: str = "remote-approver"


@dataclass(slots=True)
class DemoStats:
    """What the simulation did so far."""

    runs_started: int = 0
    runs_done: int = 0
    runs_failed: int = 0
    approvals_requested: int = 0
    secrets_planted: int = 0
    errors: list[str] = field(default_factory=list)


class _Pacer:
    """Spaces writes to about ``rate`` events per second (no pauses at rate 0)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_at = time.monotonic()

    async def step(self, events: int = 1) -> None:
        if not self.interval:
            await asyncio.sleep(0)
            return
        self.next_at = max(self.next_at, time.monotonic()) + self.interval * events
        delay = self.next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class DemoDaemon:
    """Runs ``config.agents`` simulated agents against ``journal`` until stopped."""

    def __init__(self, journal: Journal, config: DemoConfig | None = None) -> None:
        self.journal = journal
        self.config = config or DemoConfig()
        self.stats = DemoStats()
        self._pacer = _Pacer(self.config.rate)
        self._stop = asyncio.Event()
        self._reader: JournalReader | None = None
        # Session keys are unique per journal; a demo may run many times on one file.
        self._started = time.time_ns() // 1_000_000

    @property
    def fast(self) -> bool:
        """True when running flat out (rate 0): no pauses, approvals never wait."""
        return self.config.rate <= 0

    def stop(self) -> None:
        """Ask every agent to stop after its current step."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """True once the daemon was asked to stop."""
        return self._stop.is_set()

    async def run(self, *, max_events: int | None = None) -> DemoStats:
        """Run until :meth:`stop` is called or the journal holds ``max_events`` events."""
        self._reader = await JournalReader.open(self.journal.info.path)
        try:
            agents = [
                asyncio.create_task(self._agent(index), name=f"demo-agent-{index}")
                for index in range(self.config.agents)
            ]
            if max_events is not None:
                agents.append(asyncio.create_task(self._stop_at(max_events)))
            await self._stop.wait()
            for task in agents:
                task.cancel()
            await asyncio.gather(*agents, return_exceptions=True)
        finally:
            await self._reader.close()
        return self.stats

    async def _stop_at(self, max_events: int) -> None:
        assert self._reader is not None
        while not self._stop.is_set():
            if (await self._reader.head()).seq >= max_events:
                self.stop()
                return
            await asyncio.sleep(0.05 if self.fast else 0.5)

    async def _agent(self, index: int) -> None:
        rng = random.Random(self.config.seed * 1_000 + index)
        round_number = 0
        while not self._stop.is_set():
            scenario = _SCENARIOS[(index + round_number) % len(_SCENARIOS)]
            round_number += 1
            try:
                await self._session(rng, scenario, index, round_number)
            except asyncio.CancelledError:
                raise
            except JournalError as error:
                self.stats.errors.append(f"agent {index}: {error}")
                await asyncio.sleep(0.5)

    async def _pause(self, seconds: float) -> None:
        if not self.fast:
            await asyncio.sleep(seconds)

    async def _session(
        self, rng: random.Random, scenario: Scenario, index: int, round_number: int
    ) -> None:
        journal = self.journal
        principal = f"user:{scenario.key.split(':')[1].split('/')[0]}"
        channel = scenario.key.split(":")[0]
        session = await sessions.create_session(
            journal,
            session_key=f"{scenario.key}#{self._started}.{index}.{round_number}",
            principal=principal,
            device_id=self.config.principal_device,
            channel=channel,
        )
        await sessions.update_session(journal, session.session_id, auto_title=scenario.title)
        run = await sessions.start_run(journal, session.session_id)
        self.stats.runs_started += 1
        context = _RunContext(
            self, rng, scenario, session.session_id, run.run_id, principal, channel
        )
        await context.event(Kind.MESSAGE_RECEIVED, Actor.USER, {"text": context.prompt()})
        await tape.append_entry(
            journal, run.run_id, "message.received", {"text": context.prompt(), "channel": channel}
        )
        await self._pacer.step(4)
        await sessions.transition_run(journal, run.run_id, "accepted")
        await sessions.transition_run(journal, run.run_id, "in_progress")
        outcome = await context.work()
        if outcome is None:
            await sessions.transition_run(journal, run.run_id, "done", reason="answered")
            await context.event(Kind.RUN_COMPLETED, Actor.SYSTEM, {"state": "done"})
            self.stats.runs_done += 1
        else:
            await sessions.transition_run(journal, run.run_id, "failed", error=outcome)
            await context.event(Kind.RUN_FAILED, Actor.SYSTEM, {"error": outcome})
            self.stats.runs_failed += 1
        await self._pause(rng.uniform(1.0, 3.0))


class _RunContext:
    """One run of one scenario."""

    def __init__(
        self,
        daemon: DemoDaemon,
        rng: random.Random,
        scenario: Scenario,
        session_id: str,
        run_id: str,
        principal: str,
        channel: str,
    ) -> None:
        self.daemon = daemon
        self.journal = daemon.journal
        self.rng = rng
        self.scenario = scenario
        self.session_id = session_id
        self.run_id = run_id
        self.principal = principal
        self.channel = channel
        self._secret = rng.choice(_FAKE_SECRETS)

    def prompt(self) -> str:
        text = self.scenario.prompt
        if "{secret}" in text:
            self.daemon.stats.secrets_planted += 1
        return text.replace("{secret}", self._secret)

    async def event(self, kind: Kind, actor: Actor, payload: dict[str, object]) -> None:
        await self.journal.append(
            EventInput(
                self.session_id,
                self.run_id,
                kind,
                actor,
                self.principal,
                self.daemon.config.principal_device,
                payload,
                channel=self.channel,
            )
        )

    async def stream(self, text: str) -> None:
        """Stream ``text`` as model tokens, a few words an entry, at a reading pace."""
        words = text.split(" ")
        chunk = 4
        for start in range(0, len(words), chunk):
            piece = " ".join(words[start : start + chunk]) + " "
            await tape.append_entry(self.journal, self.run_id, "model_token", {"text": piece})
            await self.daemon._pacer.step()
            await self.daemon._pause(self.rng.uniform(0.05, 0.2))
        await sessions.add_tokens(
            self.journal,
            self.run_id,
            prompt_tokens=self.rng.randint(300, 2_400),
            completion_tokens=len(words) * 2,
        )

    async def work(self) -> str | None:
        """Answer, use each tool; returns an error text when the run fails."""
        await self.stream(self.scenario.answer)
        for tool in self.scenario.tools:
            failure = await self.use(tool)
            if failure is not None:
                return failure
        await tape.append_entry(
            self.journal, self.run_id, "message.replied", {"text": self.scenario.answer[:200]}
        )
        if self.rng.random() < 0.7:
            await memory.ingest(
                self.journal,
                principal=self.principal,
                content=self.scenario.memory_fact,
                source="agent",
                channel=self.channel,
                session_id=self.session_id,
                tags=[self.scenario.key.split("/")[-1]],
                vector=memory.hash_embedding(self.scenario.memory_fact),
                model_id="hash-embedding-64",
            )
        if self.rng.random() < 0.1:
            await memory.purge(
                self.journal,
                memory.MemoryPurgeRequest(principal=self.principal, session_id=self.session_id),
            )
        return None

    async def use(self, tool: Tool) -> str | None:
        journal = self.journal
        arguments = {"command": tool.command}
        await tape.append_entry(
            journal,
            self.run_id,
            "tool_proposal",
            {"tool": tool.name, "arguments": arguments, "risk": tool.risk},
        )
        await self.event(Kind.TOOL_PROPOSED, Actor.AGENT, {"tool": tool.name, "risk": tool.risk})
        if tool.risk != "low":
            decision = await self.ask(tool, arguments)
            if decision != "allow":
                await tape.append_entry(
                    journal,
                    self.run_id,
                    "tool_result",
                    {"tool": tool.name, "status": "not_run", "reason": f"approval {decision}"},
                )
                return f"{tool.name} was not approved ({decision})"
        return await self.run_job(tool)

    async def ask(self, tool: Tool, arguments: Mapping[str, object]) -> str:
        journal = self.journal
        config = self.daemon.config
        subject = "secret_access" if tool.name == "secret_store" else "tool"
        # Flat out, a fifth of the requests get a one-second timeout and nobody answers them.
        unanswered = self.daemon.fast and self.rng.random() < 0.2
        timeout_s = 1 if unanswered else config.approval_timeout_s
        request = await approvals.request_approval(
            journal,
            principal=self.principal,
            device_id=config.principal_device,
            subject_type=subject,
            subject_id=f"{tool.name}:{hashlib.sha256(tool.command.encode()).hexdigest()[:12]}",
            summary=f"{tool.name}: {tool.command}",
            prompt={
                "title": f"Allow {tool.name}?",
                "risk_level": tool.risk,
                "summary": f"The agent wants to run {tool.command!r} for: {self.scenario.title}",
                "details": {"tool": tool.name, "arguments": arguments},
                "policy_explanation": f"{tool.risk} risk tools need a human decision",
            },
            policy_snapshot={"rule": f"require_approval_for_{tool.risk}"},
            session_id=self.session_id,
            run_id=self.run_id,
            channel=self.channel,
            timeout_seconds=timeout_s,
        )
        self.daemon.stats.approvals_requested += 1
        await tape.append_entry(
            journal,
            self.run_id,
            "tool_approval_request",
            {"approval_id": request.approval_id, "tool": tool.name, "risk": tool.risk},
        )
        reader = self.daemon._reader
        assert reader is not None
        if self.daemon.fast and not unanswered:
            decided = await approvals.decide(
                journal,
                request.approval_id,
                decision="allow" if self.rng.random() < 0.85 else "deny",
                scope="once",
                decided_by=config.approver,
                channel="slack",
                reason="simulated approver",
            )
        else:
            try:
                decided = await approvals.wait_for_decision(
                    reader, request.approval_id, timeout_s=timeout_s + 0.1
                )
            except ApprovalWaitTimeout:
                await approvals.expire_pending(journal)
                decided = await approvals.get_approval(reader, request.approval_id)
        outcome = decided.decision or "timeout"
        await tape.append_entry(
            journal,
            self.run_id,
            "tool_approval_response",
            {
                "approval_id": request.approval_id,
                "decision": outcome,
                "scope": decided.decision_scope,
                "decided_by": decided.decided_by,
            },
        )
        return outcome

    async def run_job(self, tool: Tool) -> str | None:
        journal = self.journal
        job = await tool_jobs.create_job(
            journal,
            owner_principal=self.principal,
            device_id=self.daemon.config.principal_device,
            tool_name=tool.name,
            backend="local-sandbox",
            channel=self.channel,
            session_id=self.session_id,
            run_id=self.run_id,
            command=tool.command,
            max_attempts=2,
            retry_allowed=True,
        )
        await tool_jobs.transition_job(journal, job.job_id, "starting")
        await tool_jobs.transition_job(journal, job.job_id, "running")
        lines = [("stdout", line.replace("{secret}", self._secret)) for line in tool.output]
        for line in tool.errors:
            lines.insert(self.rng.randint(0, len(lines)), ("stderr", line))
        if "{secret}" in "".join(tool.output):
            self.daemon.stats.secrets_planted += 1
        for stream, line in lines:
            await tool_jobs.append_output(journal, job.job_id, stream, line + "\n")
            await self.daemon._pacer.step()
            await self.daemon._pause(self.rng.uniform(0.2, 0.9))
        exit_code = tool.exit_code
        if exit_code == 0:
            await tool_jobs.transition_job(journal, job.job_id, "completed", exit_code=0)
        else:
            await tool_jobs.transition_job(
                journal,
                job.job_id,
                "failed",
                exit_code=exit_code,
                error=f"{tool.command} exited with {exit_code}",
            )
        await self.event(
            Kind.TOOL_EXECUTED,
            Actor.PLUGIN,
            {"tool": tool.name, "job_id": job.job_id, "exit_code": exit_code},
        )
        await tape.append_entry(
            journal,
            self.run_id,
            "tool_result",
            {
                "tool": tool.name,
                "job_id": job.job_id,
                "exit_code": exit_code,
                "output_tail": lines[-1][1][:200] if lines else "",
            },
        )
        return None


async def run_demo(
    journal: Journal,
    config: DemoConfig,
    *,
    max_events: int | None = None,
    on_start: Callable[[DemoDaemon], Awaitable[None]] | None = None,
) -> DemoStats:
    """Run the simulated daemon; ``on_start`` gets it once started (e.g. to show a UI)."""
    daemon = DemoDaemon(journal, config)
    task = asyncio.create_task(daemon.run(max_events=max_events))
    if on_start is not None:
        try:
            await on_start(daemon)
        finally:
            daemon.stop()
    return await task
