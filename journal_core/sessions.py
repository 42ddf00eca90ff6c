"""Agent sessions and runs.

Tables ``orchestrator_sessions``, ``orchestrator_runs`` and ``run_lifecycle_events``.

A run moves pending → accepted → in_progress → done | failed | cancelled; an accepted run may
also be cancelled or fail. Every state change appends a lifecycle entry; every write is chained
(:mod:`journal_core.records`). An illegal move raises :class:`InvalidTransitionError` and
writes nothing. Free text (labels, reasons, errors) is redacted before it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from journal_core import validate
from journal_core.errors import InvalidTransitionError, RecordNotFoundError, ValidationError
from journal_core.events import Actor
from journal_core.ids import new_ulid
from journal_core.reads import Reads
from journal_core.records import (
    RUN_LIFECYCLE,
    RUNS,
    SESSIONS,
    RecordContext,
    read_row,
    write_record,
)
from journal_core.store import Journal, WriteContext

RUN_STATES = ("pending", "accepted", "in_progress", "done", "failed", "cancelled")
FINAL_STATES = frozenset({"done", "failed", "cancelled"})
ALLOWED_MOVES: dict[str, frozenset[str]] = {
    "pending": frozenset({"accepted"}),
    "accepted": frozenset({"in_progress", "cancelled", "failed"}),
    "in_progress": frozenset({"done", "failed", "cancelled"}),
    "done": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}
ORIGIN_KINDS = ("user", "schedule", "subagent", "retry", "system")
TITLE_LIMIT = 72
MAX_LABEL_BYTES = 512
MAX_REASON_BYTES = 4_096
MAX_ERROR_BYTES = 16_384


@dataclass(frozen=True, slots=True)
class Session:
    """One agent session."""

    session_id: str
    session_key: str
    label: str | None
    auto_title: str | None
    principal: str
    device_id: str
    channel: str | None
    created_at_unix_ms: int
    updated_at_unix_ms: int
    last_run_id: str | None
    archived_at_unix_ms: int | None

    @property
    def title(self) -> str:
        """The label, else the auto title, else the session key; at most 72 characters."""
        title = self.label or self.auto_title or self.session_key
        return title if len(title) <= TITLE_LIMIT else title[: TITLE_LIMIT - 1] + "…"


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a session."""

    run_id: str
    session_id: str
    state: str
    cancel_requested: bool
    cancel_reason: str | None
    created_at_unix_ms: int
    started_at_unix_ms: int | None
    completed_at_unix_ms: int | None
    updated_at_unix_ms: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    last_error: str | None
    origin_kind: str
    parent_run_id: str | None


@dataclass(frozen=True, slots=True)
class LifecycleEntry:
    """One state change of a run."""

    id: int
    run_id: str
    from_state: str | None
    to_state: str
    actor: str
    reason: str | None
    created_at_unix_ms: int


_SESSION_COLUMNS = ", ".join(SESSIONS.columns)
_RUN_COLUMNS = ", ".join(RUNS.columns)


def _session(row: tuple[object, ...]) -> Session:
    return Session(*row)  # type: ignore[arg-type]


def _run(row: tuple[object, ...]) -> Run:
    values = list(row)
    values[3] = bool(values[3])
    return Run(*values)  # type: ignore[arg-type]


def _session_who(
    ctx: WriteContext, session_ulid: str, run_ulid: str | None = None
) -> RecordContext:
    row = ctx.execute(
        "SELECT principal, device_id, channel FROM orchestrator_sessions WHERE session_ulid = ?",
        (session_ulid,),
    ).fetchone()
    if row is None:
        raise RecordNotFoundError("session", session_ulid)
    return RecordContext(row[0], row[1], session_ulid, run_ulid, row[2])


# --- writes -----------------------------------------------------------------------------------


async def create_session(
    journal: Journal,
    *,
    session_key: str,
    principal: str,
    device_id: str,
    channel: str | None = None,
    label: str | None = None,
    session_id: str | None = None,
) -> Session:
    """Create a session. ``session_key`` is unique (a duplicate is a ValidationError)."""
    key = validate.identity("session_key", session_key)
    who = RecordContext(
        validate.identity("principal", principal),
        validate.identity("device_id", device_id),
        validate.optional_ulid("session_id", session_id) or new_ulid(),
        None,
        validate.optional_identity("channel", channel),
        Actor.SYSTEM,
    )
    clean_label = (
        journal.redactor.redact_text(validate.text("label", label, max_bytes=MAX_LABEL_BYTES))[0]
        if label is not None
        else None
    )

    def work(ctx: WriteContext) -> Session:
        taken = ctx.execute(
            "SELECT 1 FROM orchestrator_sessions WHERE session_key = ? OR session_ulid = ?",
            (key, who.session_ulid),
        ).fetchone()
        if taken:
            raise ValidationError(
                "session_key", f"a session with key {key!r} or id {who.session_ulid} exists"
            )
        write_record(
            ctx,
            SESSIONS,
            (who.session_ulid,),
            "insert",
            "INSERT INTO orchestrator_sessions (session_ulid, session_key, session_label,"
            " auto_title, principal, device_id, channel, created_at_unix_ms,"
            " updated_at_unix_ms, last_run_ulid, archived_at_unix_ms, event_seq) VALUES"
            " (:id, :key, :label, NULL, :principal, :device, :channel, :now, :now, NULL, NULL,"
            " :event_seq)",
            {
                "id": who.session_ulid,
                "key": key,
                "label": clean_label,
                "principal": who.principal,
                "device": who.device_id,
                "channel": who.channel,
                "now": ctx.now_ms,
            },
            who,
        )
        row = read_row(ctx, SESSIONS, (who.session_ulid,))
        assert row is not None
        return _session(row)

    return await journal.transact(work)


async def update_session(
    journal: Journal,
    session_id: str,
    *,
    label: str | None = None,
    auto_title: str | None = None,
    archived: bool | None = None,
) -> Session:
    """Set the label or auto title (redacted), or archive / unarchive the session."""
    session_ulid = validate.ulid("session_id", session_id)
    changes: dict[str, object] = {}
    if label is not None:
        changes["session_label"] = journal.redactor.redact_text(
            validate.text("label", label, max_bytes=MAX_LABEL_BYTES)
        )[0]
    if auto_title is not None:
        changes["auto_title"] = journal.redactor.redact_text(
            validate.text("auto_title", auto_title, max_bytes=MAX_LABEL_BYTES)
        )[0]
    if not changes and archived is None:
        raise ValidationError("update", "nothing to change")

    def work(ctx: WriteContext) -> Session:
        who = _session_who(ctx, session_ulid)
        values = dict(changes)
        if archived is not None:
            values["archived_at_unix_ms"] = ctx.now_ms if archived else None
        assignments = ", ".join(f"{column} = :{column}" for column in values)
        write_record(
            ctx,
            SESSIONS,
            (session_ulid,),
            "update",
            f"UPDATE orchestrator_sessions SET {assignments}, updated_at_unix_ms = :now,"
            " event_seq = :event_seq WHERE session_ulid = :id",
            {**values, "now": ctx.now_ms, "id": session_ulid},
            who,
        )
        row = read_row(ctx, SESSIONS, (session_ulid,))
        assert row is not None
        return _session(row)

    return await journal.transact(work)


def _lifecycle(
    ctx: WriteContext,
    who: RecordContext,
    run_ulid: str,
    from_state: str | None,
    to_state: str,
    actor: str,
    reason: str | None,
) -> None:
    write_record(
        ctx,
        RUN_LIFECYCLE,
        None,
        "insert",
        "INSERT INTO run_lifecycle_events (run_ulid, from_state, to_state, actor, reason,"
        " created_at_unix_ms, event_seq) VALUES (:run, :from_state, :to_state, :actor, :reason,"
        " :now, :event_seq)",
        {
            "run": run_ulid,
            "from_state": from_state,
            "to_state": to_state,
            "actor": actor,
            "reason": reason,
            "now": ctx.now_ms,
        },
        who,
    )


def _touch_session(ctx: WriteContext, who: RecordContext, session_ulid: str, run_ulid: str) -> None:
    write_record(
        ctx,
        SESSIONS,
        (session_ulid,),
        "update",
        "UPDATE orchestrator_sessions SET last_run_ulid = :run, updated_at_unix_ms = :now,"
        " event_seq = :event_seq WHERE session_ulid = :id",
        {"run": run_ulid, "now": ctx.now_ms, "id": session_ulid},
        who,
    )


async def start_run(
    journal: Journal,
    session_id: str,
    *,
    origin_kind: str = "user",
    parent_run_id: str | None = None,
    run_id: str | None = None,
) -> Run:
    """Create a run in state ``pending`` and make it the session's last run."""
    session_ulid = validate.ulid("session_id", session_id)
    origin = validate.choice("origin_kind", origin_kind, ORIGIN_KINDS)
    parent = validate.optional_ulid("parent_run_id", parent_run_id)
    run_ulid = validate.optional_ulid("run_id", run_id) or new_ulid()

    def work(ctx: WriteContext) -> Run:
        who = _session_who(ctx, session_ulid, run_ulid)
        if ctx.execute(
            "SELECT 1 FROM orchestrator_runs WHERE run_ulid = ?", (run_ulid,)
        ).fetchone():
            raise ValidationError("run_id", f"run {run_ulid} exists")
        write_record(
            ctx,
            RUNS,
            (run_ulid,),
            "insert",
            "INSERT INTO orchestrator_runs (run_ulid, session_ulid, state, cancel_requested,"
            " created_at_unix_ms, updated_at_unix_ms, origin_kind, parent_run_ulid, event_seq)"
            " VALUES (:run, :session, 'pending', 0, :now, :now, :origin, :parent, :event_seq)",
            {
                "run": run_ulid,
                "session": session_ulid,
                "now": ctx.now_ms,
                "origin": origin,
                "parent": parent,
            },
            who,
        )
        _lifecycle(ctx, who, run_ulid, None, "pending", "system", None)
        _touch_session(ctx, who, session_ulid, run_ulid)
        return _read_run(ctx, run_ulid)

    return await journal.transact(work)


def _read_run(ctx: WriteContext, run_ulid: str) -> Run:
    row = read_row(ctx, RUNS, (run_ulid,))
    if row is None:
        raise RecordNotFoundError("run", run_ulid)
    return _run(row)


async def transition_run(
    journal: Journal,
    run_id: str,
    to_state: str,
    *,
    actor: str = "system",
    reason: str | None = None,
    error: str | None = None,
) -> Run:
    """Move a run to ``to_state`` if the state machine allows it; nothing is written otherwise.

    ``error`` (free text, redacted) becomes the run's ``last_error``; it is meant for ``failed``.
    """
    run_ulid = validate.ulid("run_id", run_id)
    target = validate.choice("to_state", to_state, RUN_STATES)
    who_name = validate.identity("actor", actor)
    clean_reason = _redacted(journal, "reason", reason, MAX_REASON_BYTES)
    clean_error = _redacted(journal, "error", error, MAX_ERROR_BYTES)

    def work(ctx: WriteContext) -> Run:
        run = _read_run(ctx, run_ulid)
        allowed = ALLOWED_MOVES[run.state]
        if target not in allowed:
            raise InvalidTransitionError("run", run_ulid, run.state, target, sorted(allowed))
        who = _session_who(ctx, run.session_id, run_ulid)
        values: dict[str, object] = {"state": target}
        if target == "in_progress":
            values["started_at_unix_ms"] = ctx.now_ms
        if target in FINAL_STATES:
            values["completed_at_unix_ms"] = ctx.now_ms
        if clean_error is not None:
            values["last_error"] = clean_error
        if target == "cancelled" and clean_reason is not None and not run.cancel_requested:
            values["cancel_reason"] = clean_reason
        assignments = ", ".join(f"{column} = :{column}" for column in values)
        write_record(
            ctx,
            RUNS,
            (run_ulid,),
            f"state:{target}",
            f"UPDATE orchestrator_runs SET {assignments}, updated_at_unix_ms = :now,"
            " event_seq = :event_seq WHERE run_ulid = :run",
            {**values, "now": ctx.now_ms, "run": run_ulid},
            who,
        )
        _lifecycle(ctx, who, run_ulid, run.state, target, who_name, clean_reason)
        return _read_run(ctx, run_ulid)

    return await journal.transact(work)


def _redacted(journal: Journal, field: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    return journal.redactor.redact_text(validate.text(field, value, max_bytes=limit))[0]


async def request_cancel(journal: Journal, run_id: str, reason: str) -> Run:
    """Ask a run to stop: records the request and its (redacted) reason; the daemon acts on it."""
    run_ulid = validate.ulid("run_id", run_id)
    clean_reason = _redacted(journal, "reason", reason, MAX_REASON_BYTES)

    def work(ctx: WriteContext) -> Run:
        run = _read_run(ctx, run_ulid)
        if run.state in FINAL_STATES:
            raise InvalidTransitionError("run", run_ulid, run.state, "cancel_requested", [])
        who = _session_who(ctx, run.session_id, run_ulid)
        write_record(
            ctx,
            RUNS,
            (run_ulid,),
            "cancel_requested",
            "UPDATE orchestrator_runs SET cancel_requested = 1, cancel_reason = :reason,"
            " updated_at_unix_ms = :now, event_seq = :event_seq WHERE run_ulid = :run",
            {"reason": clean_reason, "now": ctx.now_ms, "run": run_ulid},
            who,
        )
        return _read_run(ctx, run_ulid)

    return await journal.transact(work)


async def add_tokens(
    journal: Journal, run_id: str, *, prompt_tokens: int = 0, completion_tokens: int = 0
) -> Run:
    """Add token usage to a run's totals."""
    run_ulid = validate.ulid("run_id", run_id)
    prompt = validate.integer("prompt_tokens", prompt_tokens, maximum=10**9)
    completion = validate.integer("completion_tokens", completion_tokens, maximum=10**9)

    def work(ctx: WriteContext) -> Run:
        run = _read_run(ctx, run_ulid)
        who = _session_who(ctx, run.session_id, run_ulid)
        write_record(
            ctx,
            RUNS,
            (run_ulid,),
            "tokens",
            "UPDATE orchestrator_runs SET prompt_tokens = prompt_tokens + :p,"
            " completion_tokens = completion_tokens + :c, total_tokens = total_tokens + :p + :c,"
            " updated_at_unix_ms = :now, event_seq = :event_seq WHERE run_ulid = :run",
            {"p": prompt, "c": completion, "now": ctx.now_ms, "run": run_ulid},
            who,
        )
        return _read_run(ctx, run_ulid)

    return await journal.transact(work)


# --- reads ------------------------------------------------------------------------------------


async def get_session(reader: Reads, session_id: str) -> Session:
    """The session with ``session_id``."""
    session_ulid = validate.ulid("session_id", session_id)
    rows = await reader.fetchall(
        f"SELECT {_SESSION_COLUMNS} FROM orchestrator_sessions WHERE session_ulid = ?",
        (session_ulid,),
    )
    if not rows:
        raise RecordNotFoundError("session", session_ulid)
    return _session(rows[0])


async def list_sessions(
    reader: Reads, *, include_archived: bool = False, limit: int = 1_000
) -> list[Session]:
    """Sessions, most recently active first."""
    where = "" if include_archived else "WHERE archived_at_unix_ms IS NULL"
    rows = await reader.fetchall(
        f"SELECT {_SESSION_COLUMNS} FROM orchestrator_sessions {where}"
        " ORDER BY updated_at_unix_ms DESC LIMIT ?",
        (validate.integer("limit", limit, minimum=1, maximum=100_000),),
    )
    return [_session(row) for row in rows]


async def get_run(reader: Reads, run_id: str) -> Run:
    """The run with ``run_id``."""
    run_ulid = validate.ulid("run_id", run_id)
    rows = await reader.fetchall(
        f"SELECT {_RUN_COLUMNS} FROM orchestrator_runs WHERE run_ulid = ?", (run_ulid,)
    )
    if not rows:
        raise RecordNotFoundError("run", run_ulid)
    return _run(rows[0])


async def list_runs(reader: Reads, session_id: str) -> list[Run]:
    """A session's runs in the order they were created."""
    session_ulid = validate.ulid("session_id", session_id)
    rows = await reader.fetchall(
        f"SELECT {_RUN_COLUMNS} FROM orchestrator_runs WHERE session_ulid = ?"
        " ORDER BY created_at_unix_ms, run_ulid",
        (session_ulid,),
    )
    return [_run(row) for row in rows]


async def run_lifecycle(reader: Reads, run_id: str) -> list[LifecycleEntry]:
    """A run's state changes, oldest first."""
    run_ulid = validate.ulid("run_id", run_id)
    rows = await reader.fetchall(
        "SELECT id, run_ulid, from_state, to_state, actor, reason, created_at_unix_ms"
        " FROM run_lifecycle_events WHERE run_ulid = ? ORDER BY id",
        (run_ulid,),
    )
    return [LifecycleEntry(*row) for row in rows]


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """What a list of sessions shows: the session, its last run's state and its totals."""

    session: Session
    last_run_state: str | None
    runs: int
    total_tokens: int
    pending_approvals: int
    last_error: str | None

    @property
    def title(self) -> str:
        """The session's title (label, else auto title, else key)."""
        return self.session.title


async def session_summaries(
    reader: Reads,
    *,
    state: str | None = None,
    text: str | None = None,
    include_archived: bool = False,
    limit: int = 500,
) -> list[SessionSummary]:
    """Sessions with their last run's state, run count, token total and pending approvals.

    Most recently active first. ``state`` keeps sessions whose last run is in that state;
    ``text`` keeps sessions whose title, key or label contains it, or whose transcript matches
    every word of it (full-text search over the tape).
    """
    clauses: list[str] = []
    params: list[object] = []
    if not include_archived:
        clauses.append("s.archived_at_unix_ms IS NULL")
    if state is not None:
        clauses.append("lr.state = ?")
        params.append(validate.choice("state", state, RUN_STATES))
    if text is not None and text.strip():
        needle = validate.text("text", text.strip(), max_bytes=1_024)
        like = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        searched = [
            # lower() on both sides: SQLite's LIKE ignores ASCII case, PostgreSQL's does not.
            "lower(s.session_key) LIKE lower(?) ESCAPE '\\'",
            "lower(COALESCE(s.session_label, '')) LIKE lower(?) ESCAPE '\\'",
            "lower(COALESCE(s.auto_title, '')) LIKE lower(?) ESCAPE '\\'",
        ]
        params.extend([like, like, like])
        match = reader.transcript_match(needle)
        if match is not None:
            searched.append(match[0])
            params.extend(match[1])
        clauses.append("(" + " OR ".join(searched) + ")")
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    params.append(validate.integer("limit", limit, minimum=1, maximum=100_000))
    columns = ", ".join(f"s.{column}" for column in SESSIONS.columns)
    rows = await reader.fetchall(
        f"SELECT {columns}, lr.state, lr.last_error,"
        " (SELECT COUNT(*) FROM orchestrator_runs AS r WHERE r.session_ulid = s.session_ulid),"
        " (SELECT COALESCE(SUM(total_tokens), 0) FROM orchestrator_runs AS r"
        "  WHERE r.session_ulid = s.session_ulid),"
        " (SELECT COUNT(*) FROM approvals AS a"
        "  WHERE a.session_ulid = s.session_ulid AND a.decision IS NULL)"
        " FROM orchestrator_sessions AS s"
        " LEFT JOIN orchestrator_runs AS lr ON lr.run_ulid = s.last_run_ulid"
        f" {where} ORDER BY s.updated_at_unix_ms DESC LIMIT ?",
        tuple(params),
    )
    width = len(SESSIONS.columns)
    return [
        SessionSummary(
            session=_session(row[:width]),
            last_run_state=row[width],
            last_error=row[width + 1],
            runs=int(row[width + 2]),
            total_tokens=int(row[width + 3]),
            pending_approvals=int(row[width + 4]),
        )
        for row in rows
    ]
