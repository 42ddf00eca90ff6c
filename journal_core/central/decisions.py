"""Approval decisions taken centrally, carried to the daemon that asked.

The daemon's own journal stays the writer of record: a central decision is only a *request* to
decide, kept in ``central_decisions`` until the shipper beside that daemon applies it with
:func:`journal_core.approvals.decide` on the host's journal. That call's compare-and-set is the
one place where a decision wins, so first-decision-wins holds across the fleet:

- two central approvers for one request: the table's key (journal id, approval id) lets only
  the first be queued; the second is told who was first;
- a central and a local decision: whichever commits first in the host's journal wins; the other
  is refused there, and the central request is settled as ``lost`` with the standing decision.

The outcome (``applied``, ``lost``, ``failed``) is written back to the central row, and the
decision itself reaches the central copy with the next shipped batch, like any record.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import psycopg

from journal_core import validate
from journal_core.approvals import DECISIONS, MAX_REASON_BYTES, MAX_TTL_MS, SCOPES, decide
from journal_core.central.connection import (
    AsyncCentralConnection,
    CentralConnection,
)
from journal_core.errors import (
    ApprovalAlreadyDecidedError,
    ApprovalExpiredError,
    CentralStoreError,
    JournalBusyError,
    JournalError,
    JournalIOError,
    ValidationError,
)
from journal_core.store import Journal

DECISIONS_CHANNEL = "journal_decisions"
CENTRAL_CHANNEL = "central"


@dataclass(frozen=True, slots=True)
class CentralDecision:
    """A decision taken centrally for one approval request, and where it stands."""

    journal_id: str
    approval_id: str
    decision: str
    scope: str
    reason: str | None
    ttl_ms: int | None
    decided_by: str
    status: str
    outcome: str | None


class CentralDecisionTakenError(CentralStoreError):
    """Another central approver already sent a decision for this request."""

    def __init__(self, standing: CentralDecision) -> None:
        self.standing = standing
        super().__init__(
            f"approval {standing.approval_id} already has a central decision:"
            f" {standing.decision} ({standing.scope}) by {standing.decided_by},"
            f" {standing.status}; the first decision stands"
        )


_COLUMNS = (
    "journal_id, approval_ulid, decision, decision_scope, decision_reason,"
    " decision_scope_ttl_ms, decided_by, status, outcome"
)


def _decision(row: tuple[object, ...]) -> CentralDecision:
    return CentralDecision(
        journal_id=str(row[0]),
        approval_id=str(row[1]),
        decision=str(row[2]),
        scope=str(row[3]),
        reason=None if row[4] is None else str(row[4]),
        ttl_ms=None if row[5] is None else int(str(row[5])),
        decided_by=str(row[6]),
        status=str(row[7]),
        outcome=None if row[8] is None else str(row[8]),
    )


async def request_decision(
    conn: AsyncCentralConnection,
    journal_id: str,
    approval_id: str,
    *,
    decision: str,
    scope: str,
    decided_by: str,
    reason: str | None = None,
    ttl_ms: int | None = None,
) -> CentralDecision:
    """Queue a central decision for the host's shipper to apply; the first one queued wins.

    Checks what can be checked centrally (the request is known and still pending in the central
    copy, the values are valid); the host's journal has the last word. Raises
    :class:`CentralDecisionTakenError` when another central decision came first, and
    :class:`ValidationError` for bad input or a request already decided in the central copy.
    """
    validate.ulid("journal_id", journal_id)
    approval = validate.ulid("approval_id", approval_id)
    verdict = validate.choice("decision", decision, DECISIONS)
    chosen_scope = validate.choice("scope", scope, SCOPES)
    decider = validate.identity("decided_by", decided_by)
    if chosen_scope == "timeboxed":
        if ttl_ms is None:
            raise ValidationError("ttl_ms", "is required for scope timeboxed")
        validate.integer("ttl_ms", ttl_ms, minimum=1, maximum=MAX_TTL_MS)
    elif ttl_ms is not None:
        raise ValidationError("ttl_ms", f"only applies to scope timeboxed, not {chosen_scope}")
    if reason is not None:
        validate.text("reason", reason, max_bytes=MAX_REASON_BYTES)
    try:
        async with conn.transaction():
            known = await (
                await conn.execute(
                    "SELECT decision, decided_by, decision_channel FROM approvals"
                    " WHERE journal_id = %s AND approval_ulid = %s",
                    (journal_id, approval),
                )
            ).fetchone()
            if known is None:
                raise ValidationError(
                    "approval_id",
                    f"the central store holds no approval {approval} for journal {journal_id}",
                )
            if known[0] is not None:
                raise ValidationError(
                    "approval_id",
                    f"approval {approval} was already decided: {known[0]} by {known[1]}"
                    f" via {known[2]}; the first decision stands",
                )
            inserted = await (
                await conn.execute(
                    "INSERT INTO central_decisions (journal_id, approval_ulid, decision,"
                    " decision_scope, decision_reason, decision_scope_ttl_ms, decided_by)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    f" ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
                    (journal_id, approval, verdict, chosen_scope, reason, ttl_ms, decider),
                )
            ).fetchone()
            if inserted is None:
                standing = await (
                    await conn.execute(
                        f"SELECT {_COLUMNS} FROM central_decisions"
                        " WHERE journal_id = %s AND approval_ulid = %s",
                        (journal_id, approval),
                    )
                ).fetchone()
                assert standing is not None
                raise CentralDecisionTakenError(_decision(standing))
            await conn.execute("SELECT pg_notify(%s, %s)", (DECISIONS_CHANNEL, journal_id))
    except psycopg.Error as error:
        raise CentralStoreError(f"central store: {' '.join(str(error).split())}") from None
    return _decision(inserted)


async def central_decision(
    conn: AsyncCentralConnection, journal_id: str, approval_id: str
) -> CentralDecision | None:
    """The central decision queued for a request, with its status, or None."""
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM central_decisions"
            " WHERE journal_id = %s AND approval_ulid = %s",
            (journal_id, approval_id),
        )
    ).fetchone()
    return None if row is None else _decision(row)


def apply_pending(central: CentralConnection, db_path: Path, journal_id: str) -> int:
    """Apply every pending central decision for ``journal_id`` to the host's journal.

    Each is settled centrally as ``applied``, ``lost`` (another decision came first, or the
    request expired) or ``failed`` (the host's journal refused it, e.g. an unknown request).
    Returns how many were looked at. A decision the host's journal cannot take now (busy, or
    unreachable) stays pending for the next run. Rows are locked while applied, so two
    shippers cannot apply one decision twice (and the host's compare-and-set would refuse the
    second anyway).
    """
    with central.transaction():
        rows = central.execute(
            f"SELECT {_COLUMNS} FROM central_decisions WHERE journal_id = %s"
            " AND status = 'pending' ORDER BY requested_at FOR UPDATE SKIP LOCKED",
            (journal_id,),
        ).fetchall()
        if not rows:
            return 0
        outcomes = asyncio.run(_apply(db_path, [_decision(row) for row in rows]))
        for item, (status, outcome) in zip(rows, outcomes, strict=True):
            if status == "pending":
                continue
            central.execute(
                "UPDATE central_decisions SET status = %s, outcome = %s, settled_at = now()"
                " WHERE journal_id = %s AND approval_ulid = %s",
                (status, outcome, item[0], item[1]),
            )
        central.execute("SELECT pg_notify(%s, %s)", (DECISIONS_CHANNEL, journal_id))
    return len(rows)


#: The outcome of a decision the host's journal could not take now (busy, unreachable).
_RETRY = ("pending", "")


async def _apply(db_path: Path, pending: list[CentralDecision]) -> list[tuple[str, str]]:
    outcomes: list[tuple[str, str]] = []
    try:
        journal = await Journal.open(db_path, create=False)
    except (JournalBusyError, JournalIOError):
        return [_RETRY] * len(pending)  # the host's journal is busy or unreachable: next time
    async with journal:
        for item in pending:
            try:
                decided = await decide(
                    journal,
                    item.approval_id,
                    decision=item.decision,
                    scope=item.scope,
                    decided_by=item.decided_by,
                    channel=CENTRAL_CHANNEL,
                    reason=item.reason,
                    ttl_ms=item.ttl_ms,
                )
                outcomes.append(("applied", f"applied in the host's journal as {decided.decision}"))
            except ApprovalAlreadyDecidedError as error:
                if (error.channel, error.decided_by, error.decision) == (
                    CENTRAL_CHANNEL,
                    item.decided_by,
                    item.decision,
                ):
                    # Applied by an earlier run that stopped before settling it centrally.
                    outcomes.append(
                        ("applied", f"applied in the host's journal as {item.decision}")
                    )
                    continue
                outcomes.append(
                    (
                        "lost",
                        f"decided first: {error.decision} by {error.decided_by}"
                        f" via {error.channel}",
                    )
                )
            except ApprovalExpiredError:
                outcomes.append(("lost", "the request expired before the decision reached it"))
            except (JournalBusyError, JournalIOError):
                outcomes.append(_RETRY)
            except JournalError as error:
                outcomes.append(("failed", " ".join(str(error).split())))
    return outcomes
