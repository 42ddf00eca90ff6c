"""Tool jobs and their output: ``tool_jobs`` and ``tool_job_tail_entries``.

A tool job is one execution of a tool by a backend (a shell, a sandbox, a browser ...). It moves
through ten states::

    queued     → starting | running | cancelled | failed | expired
    starting   → running | cancelling | cancelled | failed | orphaned
    running    → draining | cancelling | completed | failed | orphaned
    draining   → completed | failed | cancelling | cancelled | orphaned
    cancelling → cancelled | failed | orphaned
    completed  → expired
    failed     → queued | expired        (a retry, when allowed)
    cancelled  → queued | expired        (a retry, when allowed)
    orphaned   → queued | cancelling | cancelled | failed | expired

An illegal move raises :class:`~journal_core.errors.InvalidTransitionError` and writes nothing.
Leaving ``queued`` for ``starting`` or ``running`` begins an attempt; going back to ``queued``
is a retry and needs ``retry_allowed`` and an unused attempt
(:class:`~journal_core.errors.RetryNotAllowedError` otherwise).

Output arrives in chunks (stdout, stderr or daemon events), each redacted and stored in full as
one append-only, chained tail entry; the job keeps the last 16 KiB of its combined output as
``tail_preview``. Expiry turns a finished job into ``expired`` and purges its output (the tail
entries and the preview) through chained tombstones; a legal hold or an active reference keeps
it. Every write goes through :func:`journal_core.records.write_record`, so verification checks
every job and chunk against the chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from journal_core import validate
from journal_core.errors import (
    InvalidTransitionError,
    JobFinishedError,
    JobHeldError,
    RecordNotFoundError,
    RetryNotAllowedError,
    ValidationError,
)
from journal_core.events import MAX_TIMESTAMP_MS, Actor
from journal_core.ids import new_ulid
from journal_core.reads import Reads
from journal_core.records import (
    TOOL_JOB_TAIL,
    TOOL_JOBS,
    RecordContext,
    purge_records,
    read_row,
    write_record,
)
from journal_core.store import Journal, WriteContext

JOB_STATES = (
    "queued",
    "starting",
    "running",
    "draining",
    "cancelling",
    "completed",
    "failed",
    "cancelled",
    "expired",
    "orphaned",
)
#: States in which no process works for the job: it takes no output, heartbeats or references.
FINAL_STATES = frozenset({"completed", "failed", "cancelled", "expired", "orphaned"})
#: States in which a worker is expected to send heartbeats (the stale sweep watches them).
LIVE_STATES = frozenset({"starting", "running", "draining", "cancelling"})
ALLOWED_MOVES: dict[str, frozenset[str]] = {
    "queued": frozenset({"starting", "running", "cancelled", "failed", "expired"}),
    "starting": frozenset({"running", "cancelling", "cancelled", "failed", "orphaned"}),
    "running": frozenset({"draining", "cancelling", "completed", "failed", "orphaned"}),
    "draining": frozenset({"completed", "failed", "cancelling", "cancelled", "orphaned"}),
    "cancelling": frozenset({"cancelled", "failed", "orphaned"}),
    "completed": frozenset({"expired"}),
    "failed": frozenset({"queued", "expired"}),
    "cancelled": frozenset({"queued", "expired"}),
    "expired": frozenset(),
    "orphaned": frozenset({"queued", "cancelling", "cancelled", "failed", "expired"}),
}
STREAMS = ("stdout", "stderr", "event")

MAX_CHUNK_BYTES = 64 * 1024
TAIL_PREVIEW_BYTES = 16 * 1024
MAX_READ_ENTRIES = 1_000
MAX_READ_BYTES = 2 * 1024 * 1024
DEFAULT_STALE_AFTER_MS = 300_000
MAX_ATTEMPTS_LIMIT = 100
MAX_COMMAND_BYTES = 256 * 1024
MAX_REASON_BYTES = 4_096
MAX_ERROR_BYTES = 16_384
EXPIRY_PURGE_REASON = "tool_job_expired"
_EXIT_CODE_MIN = -(2**31)
_EXIT_CODE_MAX = 2**32 - 1
_FIRST_METADATA_PAGE = 16


@dataclass(frozen=True, slots=True)
class ToolJob:
    """One tool job as stored (free text already redacted)."""

    job_id: str
    owner_principal: str
    device_id: str
    channel: str | None
    session_id: str | None
    run_id: str | None
    tool_call_id: str | None
    tool_name: str
    backend: str
    command_sha256: str | None
    state: str
    attempt_count: int
    max_attempts: int
    retry_allowed: bool
    idempotency_key: str | None
    tail_preview: str
    last_error: str | None
    state_reason: str | None
    exit_code: int | None
    created_at_unix_ms: int
    updated_at_unix_ms: int
    started_at_unix_ms: int | None
    heartbeat_at_unix_ms: int | None
    completed_at_unix_ms: int | None
    expires_at_unix_ms: int | None
    legal_hold: bool
    active_ref_count: int
    lease_expires_at_unix_ms: int | None

    @property
    def is_final(self) -> bool:
        """True when no process works for the job any more."""
        return self.state in FINAL_STATES


@dataclass(frozen=True, slots=True)
class TailEntry:
    """One chunk of a job's output as stored: redacted, with the hash and size of that text."""

    seq: int
    job_id: str
    stream: str
    chunk: str
    chunk_sha256: str
    byte_len: int
    created_at_unix_ms: int


@dataclass(frozen=True, slots=True)
class OutputPage:
    """A page of a job's output.

    ``next_offset`` is the ``after_seq`` for the next call (the last entry's seq, or the given
    ``after_seq`` when the page is empty); ``eof`` says there were no further entries when it was
    read; ``truncated`` says the page stopped at ``max_entries`` or ``max_bytes`` with more to come.
    """

    entries: tuple[TailEntry, ...]
    next_offset: int
    eof: bool
    truncated: bool


_JOB_COLUMNS = ", ".join(TOOL_JOBS.columns)
_TAIL_COLUMNS = ", ".join(TOOL_JOB_TAIL.columns)


def _job(row: Sequence[object]) -> ToolJob:
    values = list(row)
    values[13] = bool(values[13])  # retry_allowed
    values[25] = bool(values[25])  # legal_hold
    return ToolJob(*values)  # type: ignore[arg-type]


def _tail_entry(row: Sequence[object]) -> TailEntry:
    return TailEntry(*row)  # type: ignore[arg-type]


def _who(job: ToolJob) -> RecordContext:
    """The chain identity of a job's record events: its owner, device, session and run."""
    return RecordContext(
        job.owner_principal, job.device_id, job.session_id, job.run_id, job.channel, Actor.SYSTEM
    )


def _read_job(ctx: WriteContext, job_ulid: str) -> ToolJob:
    row = read_row(ctx, TOOL_JOBS, (job_ulid,))
    if row is None:
        raise RecordNotFoundError("tool job", job_ulid)
    return _job(row)


def _redacted(journal: Journal, field: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    clean: str = journal.redactor.redact_text(validate.text(field, value, max_bytes=limit))[0]
    return clean


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _optional_now(now_ms: int | None) -> int | None:
    return validate.optional_integer("now_ms", now_ms, maximum=MAX_TIMESTAMP_MS)


def _flag(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(field, f"must be True or False, got {type(value).__name__}")
    return value


def utf8_tail(text: str, limit: int) -> str:
    """The longest suffix of ``text`` whose UTF-8 form fits in ``limit`` bytes.

    The cut falls on a character boundary: continuation bytes left at the start of the byte
    window belong to a character that does not fit whole, so they are dropped.
    """
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    window = data[len(data) - limit :]
    start = 0
    while start < len(window) and window[start] & 0xC0 == 0x80:
        start += 1
    return window[start:].decode("utf-8")


def _update_job(
    ctx: WriteContext, job: ToolJob, op: str, values: dict[str, object], now: int
) -> ToolJob:
    """Write ``values`` (column → value) to the job row, chained, and return the new job."""
    assignments = ", ".join(f"{column} = :{column}" for column in values)
    write_record(
        ctx,
        TOOL_JOBS,
        (job.job_id,),
        op,
        f"UPDATE tool_jobs SET {assignments}, updated_at_unix_ms = :now,"
        " event_seq = :event_seq WHERE job_ulid = :job",
        {**values, "now": now, "job": job.job_id},
        _who(job),
    )
    return _read_job(ctx, job.job_id)


def _expire(ctx: WriteContext, job: ToolJob, reason: str | None, now: int) -> ToolJob:
    """Move ``job`` to ``expired`` and purge its output (tail entries and preview), chained.

    The schema lets tail entries be deleted only once their job is expired, so the state is
    written first.
    """
    if job.legal_hold or job.active_ref_count:
        raise JobHeldError(job.job_id, job.legal_hold, job.active_ref_count)
    expired = _update_job(
        ctx,
        job,
        "state:expired",
        {
            "state": "expired",
            "state_reason": reason,
            "tail_preview": "",
            "completed_at_unix_ms": (
                now if job.completed_at_unix_ms is None else job.completed_at_unix_ms
            ),
        },
        now,
    )
    keys = [
        (seq,)
        for (seq,) in ctx.execute(
            "SELECT seq FROM tool_job_tail_entries WHERE job_ulid = ? ORDER BY seq",
            (job.job_id,),
        )
    ]
    if keys:
        purge_records(ctx, TOOL_JOB_TAIL, keys, EXPIRY_PURGE_REASON, _who(job))
    return expired


# --- writes -----------------------------------------------------------------------------------


async def create_job(
    journal: Journal,
    *,
    owner_principal: str,
    device_id: str,
    tool_name: str,
    backend: str,
    channel: str | None = None,
    session_id: str | None = None,
    run_id: str | None = None,
    tool_call_id: str | None = None,
    command: str | None = None,
    max_attempts: int = 1,
    retry_allowed: bool = False,
    idempotency_key: str | None = None,
    expires_at_unix_ms: int | None = None,
    job_id: str | None = None,
) -> ToolJob:
    """Create a job in state ``queued``.

    ``command`` is never stored: only ``command_sha256``, the SHA-256 of its *redacted* text, so
    a guessed secret cannot be confirmed against the hash.

    ``idempotency_key`` is unique across the journal. Creating a job again with a key already
    used returns the existing job unchanged (whatever state it is in) and writes nothing, so a
    caller may safely repeat a request whose answer it lost. The repeat must come from the same
    owner, for the same tool and command; otherwise it is a ValidationError naming
    ``idempotency_key``.
    """
    who = RecordContext(
        validate.identity("owner_principal", owner_principal),
        validate.identity("device_id", device_id),
        validate.optional_ulid("session_id", session_id),
        validate.optional_ulid("run_id", run_id),
        validate.optional_identity("channel", channel),
        Actor.SYSTEM,
    )
    job_ulid = validate.optional_ulid("job_id", job_id) or new_ulid()
    values: dict[str, object] = {
        "job": job_ulid,
        "owner": who.principal,
        "device": who.device_id,
        "channel": who.channel,
        "session": who.session_ulid,
        "run": who.run_ulid,
        "tool_call": validate.optional_identity("tool_call_id", tool_call_id),
        "tool": validate.identity("tool_name", tool_name),
        "backend": validate.identity("backend", backend),
        "command": None
        if command is None
        else _sha256(_redacted(journal, "command", command, MAX_COMMAND_BYTES) or ""),
        "max_attempts": validate.integer(
            "max_attempts", max_attempts, minimum=1, maximum=MAX_ATTEMPTS_LIMIT
        ),
        "retry": int(_flag("retry_allowed", retry_allowed)),
        "key": validate.optional_identity("idempotency_key", idempotency_key),
        "expires": validate.optional_integer(
            "expires_at_unix_ms", expires_at_unix_ms, maximum=MAX_TIMESTAMP_MS
        ),
    }

    def work(ctx: WriteContext) -> ToolJob:
        if values["key"] is not None:
            row = ctx.execute(
                f"SELECT {_JOB_COLUMNS} FROM tool_jobs WHERE idempotency_key = ?",
                (values["key"],),
            ).fetchone()
            if row is not None:
                existing = _job(row)
                if (existing.owner_principal, existing.tool_name, existing.command_sha256) != (
                    values["owner"],
                    values["tool"],
                    values["command"],
                ):
                    raise ValidationError(
                        "idempotency_key",
                        "is already used by a job of another owner, tool or command;"
                        " use a fresh key for a different request",
                    )
                return existing
        if ctx.execute("SELECT 1 FROM tool_jobs WHERE job_ulid = ?", (job_ulid,)).fetchone():
            raise ValidationError("job_id", f"tool job {job_ulid} exists")
        write_record(
            ctx,
            TOOL_JOBS,
            (job_ulid,),
            "insert",
            "INSERT INTO tool_jobs (job_ulid, owner_principal, device_id, channel, session_ulid,"
            " run_ulid, tool_call_id, tool_name, backend, command_sha256, state, attempt_count,"
            " max_attempts, retry_allowed, idempotency_key, tail_preview, created_at_unix_ms,"
            " updated_at_unix_ms, expires_at_unix_ms, legal_hold, active_ref_count, event_seq)"
            " VALUES (:job, :owner, :device, :channel, :session, :run, :tool_call, :tool,"
            " :backend, :command, 'queued', 0, :max_attempts, :retry, :key, '', :now, :now,"
            " :expires, 0, 0, :event_seq)",
            {**values, "now": ctx.now_ms},
            who,
        )
        return _read_job(ctx, job_ulid)

    return await journal.transact(work)


async def transition_job(
    journal: Journal,
    job_id: str,
    to_state: str,
    *,
    reason: str | None = None,
    error: str | None = None,
    exit_code: int | None = None,
    now_ms: int | None = None,
) -> ToolJob:
    """Move a job to ``to_state`` if the state machine allows it; nothing is written otherwise.

    - ``queued`` → ``starting``/``running`` begins an attempt: ``attempt_count`` grows by one
      and ``started_at`` is set; ``starting`` → ``running`` continues the same attempt.
    - Entering ``starting``, ``running``, ``draining`` or ``cancelling`` counts as a sign of life
      (``heartbeat_at``); entering a final state sets ``completed_at``.
    - Back to ``queued`` (a retry, from failed, cancelled or orphaned) needs ``retry_allowed`` and
      ``attempt_count < max_attempts``, else :class:`RetryNotAllowedError`; it clears the
      previous attempt's times and exit code but keeps ``last_error``.
    - ``expired`` purges the job's output, as :func:`sweep_expired` does, and is refused with
      :class:`JobHeldError` while the job is on legal hold or referenced.

    ``reason`` (redacted) replaces ``state_reason``; ``error`` (redacted) becomes
    ``last_error``; ``now_ms`` stands for the clock (default: the commit time).
    """
    job_ulid = validate.ulid("job_id", job_id)
    target = validate.choice("to_state", to_state, JOB_STATES)
    clean_reason = _redacted(journal, "reason", reason, MAX_REASON_BYTES)
    clean_error = _redacted(journal, "error", error, MAX_ERROR_BYTES)
    code = validate.optional_integer(
        "exit_code", exit_code, minimum=_EXIT_CODE_MIN, maximum=_EXIT_CODE_MAX
    )
    clock = _optional_now(now_ms)

    def work(ctx: WriteContext) -> ToolJob:
        now = ctx.now_ms if clock is None else clock
        job = _read_job(ctx, job_ulid)
        allowed = ALLOWED_MOVES[job.state]
        if target not in allowed:
            raise InvalidTransitionError("tool job", job_ulid, job.state, target, sorted(allowed))
        if target == "queued" and not (job.retry_allowed and job.attempt_count < job.max_attempts):
            raise RetryNotAllowedError(
                job_ulid,
                job.state,
                retry_allowed=job.retry_allowed,
                attempt_count=job.attempt_count,
                max_attempts=job.max_attempts,
                allowed=sorted(allowed - {"queued"}),
            )
        if target == "expired":
            if clean_error is not None or code is not None:
                raise ValidationError("to_state", "expired takes no error or exit_code")
            return _expire(ctx, job, clean_reason, now)
        values: dict[str, object] = {"state": target, "state_reason": clean_reason}
        if target == "queued":
            values.update(
                started_at_unix_ms=None,
                heartbeat_at_unix_ms=None,
                completed_at_unix_ms=None,
                exit_code=None,
            )
        if job.state == "queued" and target in ("starting", "running"):
            values["attempt_count"] = job.attempt_count + 1
            values["started_at_unix_ms"] = now
        if target in LIVE_STATES:
            values["heartbeat_at_unix_ms"] = now
            values["completed_at_unix_ms"] = None
        if target in FINAL_STATES:
            values["completed_at_unix_ms"] = now
        if clean_error is not None:
            values["last_error"] = clean_error
        if code is not None:
            values["exit_code"] = code
        return _update_job(ctx, job, f"state:{target}", values, now)

    return await journal.transact(work)


def _live_job(ctx: WriteContext, job_ulid: str, action: str) -> ToolJob:
    job = _read_job(ctx, job_ulid)
    if job.is_final:
        raise JobFinishedError(
            job_ulid, job.state, action, "retry the job to start a new attempt, if allowed"
        )
    return job


async def heartbeat(journal: Journal, job_id: str, *, now_ms: int | None = None) -> ToolJob:
    """Record that the job's worker is alive (``heartbeat_at``); refused for a final job."""
    job_ulid = validate.ulid("job_id", job_id)
    clock = _optional_now(now_ms)

    def work(ctx: WriteContext) -> ToolJob:
        now = ctx.now_ms if clock is None else clock
        job = _live_job(ctx, job_ulid, "take a heartbeat")
        return _update_job(ctx, job, "heartbeat", {"heartbeat_at_unix_ms": now}, now)

    return await journal.transact(work)


async def append_output(
    journal: Journal,
    job_id: str,
    stream: str,
    chunk: str | bytes,
    *,
    now_ms: int | None = None,
) -> TailEntry:
    """Append one chunk of output to a job that is not final; return the stored entry.

    ``stream`` is ``stdout``, ``stderr`` or ``event``. ``chunk`` is at most 64 KiB as given (the
    UTF-8 length of a ``str``, the length of ``bytes``); ``bytes`` are decoded as UTF-8 with
    invalid sequences replaced, so pass ``str`` from an incremental decoder to keep characters
    that straddle two reads. The chunk is redacted: only secret spans are replaced, the rest is
    kept whole (no truncation). ``chunk_sha256`` and ``byte_len`` describe the redacted text as
    stored, so neither lets anyone derive or confirm the raw secret.

    In the same transaction the job's ``tail_preview`` becomes the last 16 KiB of its combined
    output (cut on a character boundary) and ``heartbeat_at`` is refreshed: output is a sign of
    life. A secret split across two chunks is seen by the redactor only in halves; callers
    should send whole lines where they can.
    """
    job_ulid = validate.ulid("job_id", job_id)
    stream_name = validate.choice("stream", stream, STREAMS)
    if isinstance(chunk, bytes):
        if len(chunk) > MAX_CHUNK_BYTES:
            raise ValidationError("chunk", f"is {len(chunk)} bytes; the limit is {MAX_CHUNK_BYTES}")
        text = chunk.decode("utf-8", errors="replace")
    else:
        text = chunk
    text = validate.text("chunk", text, max_bytes=MAX_CHUNK_BYTES)
    clean: str = journal.redactor.redact_text(text)[0]
    stored = clean.encode("utf-8")
    digest = hashlib.sha256(stored).hexdigest()
    clock = _optional_now(now_ms)

    def work(ctx: WriteContext) -> TailEntry:
        now = ctx.now_ms if clock is None else clock
        job = _live_job(ctx, job_ulid, "take output")
        write_record(
            ctx,
            TOOL_JOB_TAIL,
            None,
            "insert",
            "INSERT INTO tool_job_tail_entries (job_ulid, stream, chunk_redacted, chunk_sha256,"
            " byte_len, created_at_unix_ms, event_seq) VALUES (:job, :stream, :chunk, :sha,"
            " :len, :now, :event_seq)",
            {
                "job": job_ulid,
                "stream": stream_name,
                "chunk": clean,
                "sha": digest,
                "len": len(stored),
                "now": now,
            },
            _who(job),
        )
        _update_job(
            ctx,
            job,
            "output",
            {
                "tail_preview": utf8_tail(job.tail_preview + clean, TAIL_PREVIEW_BYTES),
                "heartbeat_at_unix_ms": now,
            },
            now,
        )
        # The newest entry of the job is the one just written: seqs only grow.
        row = ctx.execute(
            f"SELECT {_TAIL_COLUMNS} FROM tool_job_tail_entries WHERE job_ulid = ?"
            " ORDER BY seq DESC LIMIT 1",
            (job_ulid,),
        ).fetchone()
        return _tail_entry(row)

    return await journal.transact(work)


async def set_legal_hold(journal: Journal, job_id: str, hold: bool) -> ToolJob:
    """Put a job under legal hold (it never expires) or release it; refused once expired."""
    job_ulid = validate.ulid("job_id", job_id)
    flag = _flag("hold", hold)

    def work(ctx: WriteContext) -> ToolJob:
        job = _read_job(ctx, job_ulid)
        if job.state == "expired":
            raise JobFinishedError(
                job_ulid, job.state, "change its legal hold", "its output is already purged"
            )
        return _update_job(ctx, job, "legal_hold", {"legal_hold": int(flag)}, ctx.now_ms)

    return await journal.transact(work)


async def acquire_ref(journal: Journal, job_id: str) -> ToolJob:
    """Count one more user of the job's output (a tailing view, an export).

    A referenced job does not expire until every reference is dropped with :func:`release_ref`.
    Refused once the job expired.
    """
    job_ulid = validate.ulid("job_id", job_id)

    def work(ctx: WriteContext) -> ToolJob:
        job = _read_job(ctx, job_ulid)
        if job.state == "expired":
            raise JobFinishedError(
                job_ulid, job.state, "take a reference", "its output is already purged"
            )
        return _update_job(
            ctx, job, "ref:acquire", {"active_ref_count": job.active_ref_count + 1}, ctx.now_ms
        )

    return await journal.transact(work)


async def release_ref(journal: Journal, job_id: str) -> ToolJob:
    """Drop one reference taken with :func:`acquire_ref`."""
    job_ulid = validate.ulid("job_id", job_id)

    def work(ctx: WriteContext) -> ToolJob:
        job = _read_job(ctx, job_ulid)
        if job.active_ref_count < 1:
            raise ValidationError("job_id", f"tool job {job_ulid} has no reference to release")
        return _update_job(
            ctx, job, "ref:release", {"active_ref_count": job.active_ref_count - 1}, ctx.now_ms
        )

    return await journal.transact(work)


async def sweep_expired(
    journal: Journal, *, now_ms: int | None = None, limit: int = 1_000
) -> list[str]:
    """Expire jobs whose ``expires_at`` has passed and purge their output; return their ids.

    A job qualifies when it is queued or final (not already expired), has no legal hold and no
    active reference. Its state becomes ``expired``, its ``tail_preview`` is emptied and its tail
    entries are deleted after a chained ``record_purged`` tombstone. At most ``limit`` jobs per
    call (oldest expiry first), all in one transaction.
    """
    clock = _optional_now(now_ms)
    count = validate.integer("limit", limit, minimum=1, maximum=100_000)
    candidates = sorted((FINAL_STATES - {"expired"}) | {"queued"})

    def work(ctx: WriteContext) -> list[str]:
        now = ctx.now_ms if clock is None else clock
        rows = ctx.execute(
            # ``+state``: driven by the expiry index, not by every finished job's state entry.
            f"SELECT {_JOB_COLUMNS} FROM tool_jobs WHERE expires_at_unix_ms <= ?"
            " AND legal_hold = 0 AND active_ref_count = 0"
            f" AND +state IN ({', '.join('?' for _ in candidates)})"
            " ORDER BY expires_at_unix_ms, job_ulid LIMIT ?",
            (now, *candidates, count),
        ).fetchall()
        expired = []
        for row in rows:
            job = _job(row)
            _expire(ctx, job, f"expires_at {job.expires_at_unix_ms} passed", now)
            expired.append(job.job_id)
        return expired

    return await journal.transact(work)


async def sweep_stale(
    journal: Journal,
    *,
    stale_after_ms: int = DEFAULT_STALE_AFTER_MS,
    now_ms: int | None = None,
    limit: int = 1_000,
) -> list[str]:
    """Mark live jobs whose worker went silent as ``orphaned``; return their ids.

    A job in ``starting``, ``running``, ``draining`` or ``cancelling`` whose last sign of life
    (heartbeat, state change or output) is ``stale_after_ms`` (default 5 min) old or older
    becomes ``orphaned``, with a reason saying so. ``cancelling`` is watched too: a worker that
    died while cancelling would otherwise leave the job there for ever.
    """
    clock = _optional_now(now_ms)
    window = validate.integer("stale_after_ms", stale_after_ms, minimum=1)
    count = validate.integer("limit", limit, minimum=1, maximum=100_000)
    states = sorted(LIVE_STATES)

    def work(ctx: WriteContext) -> list[str]:
        now = ctx.now_ms if clock is None else clock
        rows = ctx.execute(
            f"SELECT {_JOB_COLUMNS} FROM tool_jobs"
            f" WHERE state IN ({', '.join('?' for _ in states)})"
            " AND COALESCE(heartbeat_at_unix_ms, updated_at_unix_ms) <= ?"
            " ORDER BY job_ulid LIMIT ?",
            (*states, now - window, count),
        ).fetchall()
        orphaned = []
        for row in rows:
            job = _job(row)
            last = (
                job.updated_at_unix_ms
                if job.heartbeat_at_unix_ms is None
                else job.heartbeat_at_unix_ms
            )
            _update_job(
                ctx,
                job,
                "state:orphaned",
                {
                    "state": "orphaned",
                    "state_reason": f"no heartbeat for {now - last} ms (stale after {window} ms)",
                    "completed_at_unix_ms": now,
                },
                now,
            )
            orphaned.append(job.job_id)
        return orphaned

    return await journal.transact(work)


# --- reads ------------------------------------------------------------------------------------


async def get_job(reader: Reads, job_id: str) -> ToolJob:
    """The job with ``job_id``."""
    job_ulid = validate.ulid("job_id", job_id)
    rows = await reader.fetchall(
        f"SELECT {_JOB_COLUMNS} FROM tool_jobs WHERE job_ulid = ?", (job_ulid,)
    )
    if not rows:
        raise RecordNotFoundError("tool job", job_ulid)
    return _job(rows[0])


async def list_jobs(
    reader: Reads,
    *,
    run_id: str | None = None,
    session_id: str | None = None,
    states: Collection[str] | None = None,
    limit: int = 500,
) -> list[ToolJob]:
    """Jobs, newest first, optionally only those of a run, a session, or in some states."""
    where: list[str] = []
    params: list[object] = []
    if run_id is not None:
        where.append("run_ulid = ?")
        params.append(validate.ulid("run_id", run_id))
    if session_id is not None:
        where.append("session_ulid = ?")
        params.append(validate.ulid("session_id", session_id))
    if states is not None:
        if isinstance(states, str) or not states:
            raise ValidationError("states", "must be a non-empty collection of states, or None")
        chosen = sorted({validate.choice("states", state, JOB_STATES) for state in states})
        where.append(f"state IN ({', '.join('?' for _ in chosen)})")
        params.extend(chosen)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    params.append(validate.integer("limit", limit, minimum=1, maximum=100_000))
    rows = await reader.fetchall(
        f"SELECT {_JOB_COLUMNS} FROM tool_jobs {clause}"
        " ORDER BY created_at_unix_ms DESC, job_ulid DESC LIMIT ?",
        tuple(params),
    )
    return [_job(row) for row in rows]


async def read_output(
    reader: Reads,
    job_id: str,
    *,
    after_seq: int = 0,
    max_entries: int = MAX_READ_ENTRIES,
    max_bytes: int = 16 * 1024,
) -> OutputPage:
    """The job's output entries with seq greater than ``after_seq``, oldest first.

    A page holds at most ``max_entries`` entries (≤ 1000) and, past its first entry, at most
    ``max_bytes`` bytes of stored text: an entry is never split, and the first one is always
    returned whatever its size, so paging always advances. Pass ``next_offset`` back as
    ``after_seq`` to tail the output: each call costs two indexed queries, whatever the length
    of the output before ``after_seq``.
    """
    job_ulid = validate.ulid("job_id", job_id)
    offset = validate.integer("after_seq", after_seq)
    entry_limit = validate.integer("max_entries", max_entries, minimum=1, maximum=MAX_READ_ENTRIES)
    byte_limit = validate.integer("max_bytes", max_bytes, minimum=1, maximum=MAX_READ_BYTES)
    last, more = await _plan_page(reader, job_ulid, offset, entry_limit, byte_limit)
    if last is None:
        await get_job(reader, job_ulid)
        return OutputPage((), offset, eof=True, truncated=False)
    rows = await reader.fetchall(
        f"SELECT {_TAIL_COLUMNS} FROM tool_job_tail_entries"
        " WHERE job_ulid = ? AND seq > ? AND seq <= ? ORDER BY seq",
        (job_ulid, offset, last),
    )
    entries = tuple(_tail_entry(row) for row in rows)
    if not entries:  # purged by expiry between the two queries
        return OutputPage((), offset, eof=True, truncated=False)
    return OutputPage(entries, entries[-1].seq, eof=not more, truncated=more)


async def _plan_page(
    reader: Reads, job_ulid: str, offset: int, entry_limit: int, byte_limit: int
) -> tuple[int | None, bool]:
    """The last seq a page should hold, and whether entries remain after it.

    Only seqs and sizes are read, in growing batches, so a page of a few large chunks does not
    fetch a thousand rows of text to find where it ends.
    """
    last: int | None = None
    taken = 0
    total = 0
    cursor = offset
    batch = _FIRST_METADATA_PAGE
    while True:
        # One row past the entry limit tells whether more remain.
        wanted = min(batch, entry_limit - taken + 1)
        rows = await reader.fetchall(
            "SELECT seq, byte_len FROM tool_job_tail_entries WHERE job_ulid = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (job_ulid, cursor, wanted),
        )
        for row in rows:
            seq, size = row
            assert isinstance(seq, int)
            assert isinstance(size, int)
            if taken == entry_limit or (taken and total + size > byte_limit):
                return last, True
            last, taken, total = seq, taken + 1, total + size
            cursor = seq
        if len(rows) < wanted:
            return last, False
        batch = min(batch * 2, MAX_READ_ENTRIES + 1)


@dataclass(frozen=True, slots=True)
class EarlierOutput:
    """A page of output read backwards: ``entries`` oldest first, ending before ``before_seq``.

    ``first_seq`` is the ``before_seq`` for the page before this one; ``at_start`` says nothing
    earlier remains. A viewer shows the end of a long output first and pages back on demand.
    """

    entries: tuple[TailEntry, ...]
    first_seq: int
    at_start: bool


async def read_output_before(
    reader: Reads,
    job_id: str,
    *,
    before_seq: int | None = None,
    max_entries: int = MAX_READ_ENTRIES,
    max_bytes: int = 64 * 1024,
) -> EarlierOutput:
    """The newest output entries with seq below ``before_seq`` (all, when None), oldest first.

    The byte limit counts back from the newest entry; an entry is never split and at least one
    is returned when any exists, so paging back always advances.
    """
    job_ulid = validate.ulid("job_id", job_id)
    bound = 2**63 - 1 if before_seq is None else validate.integer("before_seq", before_seq)
    entry_limit = validate.integer("max_entries", max_entries, minimum=1, maximum=MAX_READ_ENTRIES)
    byte_limit = validate.integer("max_bytes", max_bytes, minimum=1, maximum=MAX_READ_BYTES)
    rows = await reader.fetchall(
        f"SELECT {_TAIL_COLUMNS} FROM tool_job_tail_entries"
        " WHERE job_ulid = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
        (job_ulid, bound, entry_limit + 1),
    )
    if not rows:
        await get_job(reader, job_ulid)
        return EarlierOutput((), bound, at_start=True)
    taken: list[TailEntry] = []
    used = 0
    for row in rows[:entry_limit]:
        entry = _tail_entry(row)
        if taken and used + entry.byte_len > byte_limit:
            break
        used += entry.byte_len
        taken.append(entry)
    taken.reverse()
    at_start = len(taken) == len(rows)
    return EarlierOutput(tuple(taken), taken[0].seq, at_start)
