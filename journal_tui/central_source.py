"""The fleet's central PostgreSQL store as an inspector source (see :mod:`journal_tui.source`).

Reads go through a :class:`~journal_core.central.reads.CentralReader`, scoped to one daemon's
journal or to all. Changes arrive by LISTEN/NOTIFY: a background task waits on the shippers'
and the decisions' notifications and marks the source changed, so :meth:`CentralSource.poll`
does no I/O at all. A decision is sent to the central store and applied by the daemon's own
shipper to the daemon's journal (the writer of record); the source waits a few seconds for that
outcome, through notifications too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

import psycopg

from journal_core import JournalError
from journal_core.approvals import Approval, get_approval, refusal
from journal_core.central.connection import connect_central, connect_central_async
from journal_core.central.decisions import (
    CENTRAL_CHANNEL,
    DECISIONS_CHANNEL,
    CentralDecision,
    central_decision,
    request_decision,
)
from journal_core.central.reads import CentralReader
from journal_core.central.ship import CHANNEL
from journal_core.central.verify import verify_central
from journal_core.chain import ProgressCallback, VerifyReport
from journal_core.errors import CentralStoreError
from journal_core.reads import DaemonStatus
from journal_tui.source import Change, default_decider

#: How long a decision waits for the daemon's shipper to apply it before reporting "sent".
DECISION_WAIT_SECONDS = 5.0


class CentralSource:
    """Every journal the central store holds, or one of them."""

    multi_journal = True
    decision_channel = CENTRAL_CHANNEL

    def __init__(
        self,
        url: str,
        *,
        decider: str | None = None,
        read_only: bool = False,
        scope: str | None = None,
        label: str | None = None,
    ) -> None:
        self.url = url
        self._label = label
        self.decider = decider or default_decider()
        self.read_only = read_only
        self._initial_scope = scope
        self._reader: CentralReader | None = None
        self._listening: asyncio.Task[None] | None = None
        self._changed = False
        self._problem: str | None = None

    @property
    def label(self) -> str:
        """The store (without password, or the name given) and the scope."""
        if self._reader is None:
            return self._label or self.url
        if self._label is None:
            return self._reader.label
        return f"{self._label} · {self._reader.scope or 'all daemons'}"

    @property
    def reader(self) -> CentralReader:
        """The open reader (raises if not open)."""
        if self._reader is None:
            raise JournalError("the central store is not open")
        return self._reader

    @property
    def is_open(self) -> bool:
        """True while connected."""
        return self._reader is not None

    @property
    def scope(self) -> str | None:
        """The journal every screen shows, or None for all."""
        return self._reader.scope if self._reader is not None else self._initial_scope

    async def open(self) -> None:
        """Connect; raises a CentralStoreError with a clear message if it cannot."""
        self._reader = await CentralReader.open(self.url, scope=self._initial_scope)

    async def _listen(self) -> None:
        reader = self.reader
        try:
            await reader.listen()
        except CentralStoreError as error:
            self._problem = f"cannot listen to the central store: {error}"
        # Whatever was shipped before the LISTEN took effect must show too.
        self._changed = True
        while True:
            try:
                if await reader.wait_for_change(timeout=30.0):
                    self._changed = True
                self._problem = None
            except CentralStoreError as error:
                self._problem = f"lost the central store's notifications: {error}; reconnecting"
                await asyncio.sleep(1.0)
                with contextlib.suppress(CentralStoreError):
                    await reader.reconnect()
                    await reader.listen()
                    self._problem = None
                    self._changed = True  # whatever was shipped meanwhile

    async def poll(self) -> Change:
        """Whether a notification came since the last poll (no I/O: the listener tells).

        The first poll starts the listener, in the event loop the inspector runs in.
        """
        if self._listening is None and self._reader is not None:
            self._listening = asyncio.create_task(self._listen())
        changed, self._changed = self._changed, False
        return Change(changed, self._problem)

    async def last_commit_ms(self) -> int | None:
        """When the newest shipped event in scope was committed on its host."""
        return await self.reader.last_commit_ms()

    async def daemons(self) -> list[DaemonStatus]:
        """Every journal held, most recently shipped first."""
        return await self.reader.daemons()

    async def set_scope(self, journal_id: str | None) -> None:
        """Scope every screen to one daemon's journal, or to all (None)."""
        await self.reader.set_scope(journal_id)
        self._changed = True

    def verify(
        self, *, from_seq: int, records: bool, incremental: bool, progress: ProgressCallback
    ) -> VerifyReport:
        """Verify the central copy of the journal in scope (blocking; run in a thread)."""
        del incremental  # the central copy is verified from its stored links either way
        journal_id = self.scope
        if journal_id is None:
            raise CentralStoreError(
                "the Chain pane verifies one daemon's journal: choose one on the Daemons pane (0)"
            )
        conn = connect_central(self.url, migrate_schema=False)
        try:
            [report] = verify_central(
                conn,
                self.url,
                journal_id,
                from_seq=from_seq,
                records=records,
                progress=progress,
            )
        finally:
            conn.close()
        return report.chain

    async def decide(
        self,
        approval_id: str,
        *,
        decision: str,
        scope: str,
        reason: str | None,
        ttl_ms: int | None,
    ) -> Approval:
        """Send a decision to the daemon that asked, and wait briefly for its outcome.

        Returns the approval as decided when the daemon applied it; unchanged (no decision)
        when it has not yet (its shipper applies it when it next runs). Raises
        :class:`ApprovalAlreadyDecidedError` when another decision won in the daemon's journal,
        :class:`ApprovalExpiredError` when the request timed out there first.
        """
        if self.read_only:
            raise JournalError("the inspector was started read-only; decisions are disabled")
        journal_id = await self.reader.journal_of_approval(approval_id)
        conn = await connect_central_async(self.url)
        try:
            await conn.execute(f"LISTEN {DECISIONS_CHANNEL}")
            await conn.execute(f"LISTEN {CHANNEL}")
            queued = await request_decision(
                conn,
                journal_id,
                approval_id,
                decision=decision,
                scope=scope,
                decided_by=self.decider,
                reason=reason or None,
                ttl_ms=ttl_ms,
            )
            settled, approval = await self._await_outcome(conn, queued)
        except psycopg.Error as error:
            raise CentralStoreError(f"central store: {' '.join(str(error).split())}") from None
        finally:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
        return self._outcome(settled, approval)

    async def _await_outcome(
        self,
        conn: psycopg.AsyncConnection[tuple[object, ...]],
        queued: CentralDecision,
    ) -> tuple[CentralDecision, Approval]:
        """Wait (on notifications) until the daemon settled the decision and its journal's
        answer reached the central copy, or the wait ran out."""
        deadline = time.monotonic() + DECISION_WAIT_SECONDS
        current = queued
        approval = await get_approval(self.reader, queued.approval_id)
        while current.status == "pending" or (
            current.status != "failed" and approval.decision is None
        ):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            async for _note in conn.notifies(timeout=remaining, stop_after=1):
                pass
            current = await central_decision(conn, queued.journal_id, queued.approval_id) or current
            approval = await get_approval(self.reader, queued.approval_id)
        return current, approval

    @staticmethod
    def _outcome(settled: CentralDecision, approval: Approval) -> Approval:
        if settled.status == "failed":
            raise CentralStoreError(f"the daemon refused the decision: {settled.outcome}")
        if settled.status == "lost":
            if approval.decision is None:
                raise CentralStoreError(f"the decision was not recorded: {settled.outcome}")
            raise refusal(approval, time.time_ns() // 1_000_000)
        if settled.status == "applied" and approval.decision is None:
            return dataclasses.replace(
                approval,
                decision=settled.decision,
                decision_scope=settled.scope,
                decided_by=settled.decided_by,
                decision_channel="central",
            )
        return approval

    async def close(self) -> None:
        """Stop listening and disconnect."""
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening
            self._listening = None
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await reader.close()
