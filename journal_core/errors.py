"""The typed errors raised by the journal store.

Every error a caller can act on has its own class and a message that says what was wrong and
what to do. All of them derive from :class:`JournalError`, so a command line can catch one type.
"""

from __future__ import annotations

from datetime import UTC, datetime


def _utc(unix_ms: int) -> str:
    """A unix-millisecond time as readable UTC, for messages."""
    return datetime.fromtimestamp(unix_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class JournalError(Exception):
    """Base class of every error raised on purpose by ``journal_core``."""


class ValidationError(JournalError, ValueError):
    """An input field is missing, of the wrong type, malformed or too large.

    ``field`` names the offending field (``"payload"``, ``"event_id"`` ...) so that a caller
    can point at it; nothing was written.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class PayloadTooLargeError(ValidationError):
    """The payload exceeds the journal's configured size limit."""

    def __init__(self, size: int, limit: int, *, field: str = "payload") -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            field,
            f"{size} bytes exceeds the limit of {limit} bytes "
            "(store large output as a tool result artifact, or raise max_payload_bytes)",
        )


class DuplicateEventError(JournalError):
    """An event with the same event id is already in the journal (or twice in one batch)."""

    def __init__(self, event_ids: list[str]) -> None:
        self.event_ids = event_ids
        shown = ", ".join(event_ids[:5]) + (" ..." if len(event_ids) > 5 else "")
        super().__init__(
            f"duplicate event id: {shown} (event ids must be unique; omit it to get one)"
        )


class NotAJournalError(JournalError):
    """The path exists but does not hold a journal (not SQLite, another schema, a directory)."""


class JournalNotFoundError(JournalError):
    """No journal exists at the path and the operation does not create one."""


class SchemaTooNewError(JournalError):
    """The journal was written by a newer version of this software."""


class JournalBusyError(JournalError):
    """The journal stayed locked by another process for longer than the configured timeout."""


class JournalClosedError(JournalError):
    """The journal was closed; open it again to write."""


class JournalIOError(JournalError):
    """SQLite or the file system failed (disk full, permission denied, corruption)."""


class RecordNotFoundError(JournalError, LookupError):
    """The session, run, job, approval or memory item named does not exist."""

    def __init__(self, record: str, key: str) -> None:
        self.record = record
        self.key = key
        super().__init__(f"no {record} {key} in this journal")


class InvalidTransitionError(JournalError):
    """A state change that the record's state machine does not allow; nothing was written."""

    def __init__(self, record: str, key: str, from_state: str, to_state: str, allowed: list[str]):
        self.record = record
        self.key = key
        self.from_state = from_state
        self.to_state = to_state
        self.allowed = allowed
        options = ", ".join(allowed) if allowed else "none (it is final)"
        super().__init__(
            f"{record} {key} cannot move from {from_state} to {to_state}"
            f" (allowed from {from_state}: {options})"
        )


class ApprovalAlreadyDecidedError(JournalError):
    """Someone decided this approval first; the first decision stands and nothing was written.

    Carries the standing decision so an inspector can show "another inspector decided first".
    """

    def __init__(
        self,
        approval_id: str,
        decision: str,
        scope: str | None,
        decided_by: str | None,
        decided_at_unix_ms: int | None,
        channel: str | None,
    ) -> None:
        self.approval_id = approval_id
        self.decision = decision
        self.scope = scope
        self.decided_by = decided_by
        self.decided_at_unix_ms = decided_at_unix_ms
        self.channel = channel
        super().__init__(
            f"approval {approval_id} was already decided: {decision}"
            f" ({scope or 'no scope'}) by {decided_by or 'unknown'}"
            f" at {'an unknown time' if decided_at_unix_ms is None else _utc(decided_at_unix_ms)}"
            f" via {channel or 'unknown channel'}; the first decision stands, reload the approval"
        )


class ApprovalExpiredError(JournalError):
    """The approval's time ran out before this decision; nothing was written.

    An undecided approval past its expiry is recorded as ``timeout`` by the expiry sweep.
    """

    def __init__(self, approval_id: str, expires_at_unix_ms: int, now_ms: int) -> None:
        self.approval_id = approval_id
        self.expires_at_unix_ms = expires_at_unix_ms
        self.now_ms = now_ms
        super().__init__(
            f"approval {approval_id} expired at {_utc(expires_at_unix_ms)} and can no longer be"
            " decided; the agent has to request approval again"
        )


class ApprovalWaitTimeout(JournalError, TimeoutError):
    """No decision on the approval arrived within the wait; the approval itself is unchanged."""

    def __init__(self, approval_id: str, timeout_s: float) -> None:
        self.approval_id = approval_id
        self.timeout_s = timeout_s
        super().__init__(
            f"no decision on approval {approval_id} within {timeout_s:g} s; wait again, or run"
            " the expiry sweep to record it as timeout once it has expired"
        )


class RetryNotAllowedError(InvalidTransitionError):
    """A finished tool job cannot go back to ``queued``: retries are off or all attempts are used.

    Nothing was written. A subclass of :class:`InvalidTransitionError`, so a caller that handles
    refused moves in general handles this one too; ``retry_allowed``, ``attempt_count`` and
    ``max_attempts`` say why.
    """

    def __init__(
        self,
        job_id: str,
        from_state: str,
        *,
        retry_allowed: bool,
        attempt_count: int,
        max_attempts: int,
        allowed: list[str],
    ) -> None:
        super().__init__("tool job", job_id, from_state, "queued", allowed)
        self.retry_allowed = retry_allowed
        self.attempt_count = attempt_count
        self.max_attempts = max_attempts
        why = (
            "the job was created with retry_allowed=False; create a new job instead"
            if not retry_allowed
            else f"it used {attempt_count} of its {max_attempts} attempts; create a new job"
            " (or one with a higher max_attempts)"
        )
        self.args = (f"tool job {job_id} ({from_state}) cannot be retried: {why}",)


class JobFinishedError(JournalError):
    """The tool job is in a final state, so it takes no more output, heartbeats or references.

    Nothing was written.
    """

    def __init__(self, job_id: str, state: str, action: str, hint: str) -> None:
        self.job_id = job_id
        self.state = state
        self.action = action
        super().__init__(f"tool job {job_id} is {state}, so it cannot {action}; {hint}")


class JobHeldError(JournalError):
    """The tool job cannot expire: it is under legal hold or still referenced.

    Nothing was written; release the hold (``set_legal_hold(..., False)``) or its references
    first.
    """

    def __init__(self, job_id: str, legal_hold: bool, active_ref_count: int) -> None:
        self.job_id = job_id
        self.legal_hold = legal_hold
        self.active_ref_count = active_ref_count
        reasons = (["it is under legal hold"] if legal_hold else []) + (
            [f"it has {active_ref_count} active reference(s)"] if active_ref_count else []
        )
        super().__init__(
            f"tool job {job_id} cannot expire: {' and '.join(reasons)}; release them first"
        )


class ArtifactUnavailableError(JournalError):
    """A tool result artifact cannot be read; ``reason`` says why.

    Reasons: ``not_found`` (no such artifact), ``purged`` (removed, or its removal was
    requested), ``expired`` (past its expiry time), ``digest_mismatch`` (its content no longer
    matches the digest recorded when it was stored: the file was altered). The refused attempt
    is still recorded in the artifact read audit.
    """

    _HINTS = (
        ("not_found", "check the id (list artifacts to find it)"),
        ("purged", "its content was removed on request or by retention and cannot be recovered"),
        ("expired", "it passed its expiry time; retention will remove it"),
        ("digest_mismatch", "its stored content was altered; run `journal verify` on the file"),
    )

    def __init__(self, reason: str, artifact_id: str) -> None:
        self.reason = reason
        self.artifact_id = artifact_id
        hint = dict(self._HINTS).get(reason, "")
        super().__init__(f"artifact {artifact_id} cannot be read ({reason}): {hint}")


class BackupTargetExistsError(JournalError, FileExistsError):
    """The backup's output path ``out`` already exists; a backup never overwrites a file."""

    def __init__(self, out: str) -> None:
        self.out = out
        super().__init__(
            f"out: {out} already exists (a backup never overwrites a file;"
            " choose a new path or move the old one away)"
        )


class MaintenanceUnavailableError(JournalError):
    """A maintenance step cannot run on this file as it is laid out; the message says why."""


class ReplicaError(JournalError):
    """Litestream is missing, refused the replica, or a restore could not complete."""


class CentralStoreError(JournalError):
    """The central PostgreSQL store cannot be reached, is not one, or failed a request."""


class ShipRefusedError(JournalError):
    """The central store (the witness) refused a journal's history.

    ``code`` is ``history_rewritten`` (the host's events differ from those already held, from
    ``seq`` on), ``rolled_back`` (the host's journal ends before the held head), a chain break
    code from the batch's own links, or a record or checkpoint mismatch.
    """

    def __init__(self, journal_id: str, code: str, seq: int | None, detail: str) -> None:
        self.journal_id = journal_id
        self.code = code
        self.seq = seq
        self.detail = detail
        where = f" at seq {seq}" if seq is not None else ""
        super().__init__(
            f"the central store refused journal {journal_id}: {code}{where}: {detail}."
            " Shipping for this journal has stopped; check the host's journal with"
            " `journal verify DB --anchor DB.anchors`"
        )
