"""Where the inspector reads from: one interface, a journal file or the fleet's central store.

Every screen reads through a :class:`Source`: its ``reader`` (a :class:`SourceReader`, which the
record modules' read functions accept), its change notices, its verification and its decisions.
:class:`JournalSource` is a journal file; :class:`journal_tui.central_source.CentralSource` is
the central PostgreSQL store, scoped to one daemon or to all. No screen knows which it has.

A file is read through a :class:`~journal_core.JournalReader` (``mode=ro``, no idle
transaction). A writer is opened only when the operator decides an approval, or the demo
daemon's writer is shared when it runs in the same process. New commits are noticed cheaply
(``PRAGMA data_version``), and so is a journal file that was replaced or removed, in which case
it is reopened when it can be.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from journal_core import Journal, JournalError, JournalReader, verify_file
from journal_core.approvals import Approval, decide
from journal_core.chain import ProgressCallback, VerifyReport
from journal_core.reader import Head, StoredEvent
from journal_core.reads import DaemonStatus, Reads


def default_decider() -> str:
    """Who decides, when no name is configured: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class Change:
    """What a poll found: new commits, or the journal gone or replaced."""

    committed: bool
    problem: str | None = None
    reopened: bool = False


class SourceReader(Reads, Protocol):
    """What screens read besides records: the head and events by seq."""

    async def head(self) -> Head:
        """The newest event's seq and hash."""
        ...

    async def event(self, seq: int) -> StoredEvent | None:
        """The event at ``seq``, or None."""
        ...

    async def events_after(self, seq: int, limit: int = 1_000) -> list[StoredEvent]:
        """Events with seq > ``seq``, oldest first."""
        ...


class Source(Protocol):
    """One place the inspector reads from (and sends decisions to)."""

    decider: str
    read_only: bool
    #: The channel decisions are recorded on (``tui`` for a file, ``central`` for the fleet).
    decision_channel: str

    @property
    def label(self) -> str:
        """What the status line names: the file, or the store and its scope."""
        ...

    @property
    def reader(self) -> SourceReader:
        """The open reader (raises if not open)."""
        ...

    @property
    def is_open(self) -> bool:
        """True while a reader is open."""
        ...

    @property
    def multi_journal(self) -> bool:
        """True when the source holds many journals (the inspector then lists daemons)."""
        ...

    @property
    def scope(self) -> str | None:
        """The journal id every screen is scoped to; None for all journals."""
        ...

    async def open(self) -> None:
        """Open; raises a typed JournalError with a clear message if it cannot."""
        ...

    async def poll(self) -> Change:
        """Whether anything changed since the last poll (without blocking)."""
        ...

    async def last_commit_ms(self) -> int | None:
        """When the newest event in scope was committed."""
        ...

    async def daemons(self) -> list[DaemonStatus]:
        """The journals this source holds, with how far each is known."""
        ...

    async def set_scope(self, journal_id: str | None) -> None:
        """Scope every screen to one journal, or to all (None)."""
        ...

    def verify(
        self, *, from_seq: int, records: bool, incremental: bool, progress: ProgressCallback
    ) -> VerifyReport:
        """Verify the journal in scope (blocking: screens run it in a thread)."""
        ...

    async def decide(
        self,
        approval_id: str,
        *,
        decision: str,
        scope: str,
        reason: str | None,
        ttl_ms: int | None,
    ) -> Approval:
        """Decide an approval; an Approval with no decision yet means "sent, not applied"."""
        ...

    async def close(self) -> None:
        """Close whatever this source opened."""
        ...


class JournalSource:
    """One journal file, as the inspector sees it."""

    multi_journal = False
    decision_channel = "tui"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        writer: Journal | None = None,
        decider: str | None = None,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path).expanduser().absolute()
        self.decider = decider or default_decider()
        self.read_only = read_only
        self._shared_writer = writer
        self._own_writer: Journal | None = None
        self._reader: JournalReader | None = None
        self._version: int | None = None
        self._inode: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        """The file's name."""
        return self.path.name

    @property
    def reader(self) -> JournalReader:
        """The open read-only connection (raises if the journal is not open)."""
        if self._reader is None:
            raise JournalError(f"{self.path} is not open")
        return self._reader

    @property
    def is_open(self) -> bool:
        """True while a reader is open."""
        return self._reader is not None

    @property
    def scope(self) -> str | None:
        """The file's journal id (one journal, always)."""
        return self._reader.info.journal_id if self._reader is not None else None

    async def open(self) -> None:
        """Open the reader; raises a typed JournalError with a clear message if it cannot."""
        self._reader = await JournalReader.open(self.path)
        self._inode = self._identity()
        self._version = await self._reader.data_version()

    def _identity(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_dev, stat.st_ino)

    async def poll(self) -> Change:
        """Whether anything was committed since the last poll; reopens a replaced file."""
        identity = self._identity()
        if identity is None:
            await self._drop_reader()
            return Change(False, f"the journal file {self.path} is gone; waiting for it")
        if self._reader is None or identity != self._inode:
            await self._drop_reader()
            try:
                await self.open()
            except JournalError as error:
                return Change(False, f"cannot reopen the journal: {error}")
            return Change(True, reopened=True)
        try:
            version = await self._reader.data_version()
        except JournalError as error:
            return Change(False, f"cannot read the journal: {error}")
        committed = version != self._version
        self._version = version
        return Change(committed)

    async def last_commit_ms(self) -> int | None:
        """When the newest event was committed."""
        head = await self.reader.head()
        event = await self.reader.event(head.seq) if head.seq else None
        return event.created_at_unix_ms if event else None

    async def daemons(self) -> list[DaemonStatus]:
        """The one journal of the file, as a daemon seen from here."""
        reader = self.reader
        head = await reader.head()
        committed = await self.last_commit_ms()
        return [
            DaemonStatus(
                journal_id=reader.info.journal_id,
                host=socket.gethostname(),
                source_path=str(self.path),
                head_seq=head.seq,
                head_created_at_unix_ms=committed,
                host_head_seq=head.seq,
                host_seen_at_unix_ms=None,
                shipped_at_unix_ms=None,
                records_seq=head.seq,
                refused_code=None,
                refused_seq=None,
                refused_detail=None,
            )
        ]

    async def set_scope(self, journal_id: str | None) -> None:
        """A file holds one journal: any other id is refused."""
        if journal_id not in (None, self.scope):
            raise JournalError(f"{self.path} holds journal {self.scope}, not {journal_id}")

    def verify(
        self, *, from_seq: int, records: bool, incremental: bool, progress: ProgressCallback
    ) -> VerifyReport:
        """Verify the file (blocking; the chain pane runs it in a thread)."""
        _, report = verify_file(
            self.path,
            from_seq=from_seq,
            progress=progress,
            records=records,
            incremental=incremental,
        )
        return report

    async def _drop_reader(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            with contextlib.suppress(JournalError):
                await reader.close()

    async def decide(
        self,
        approval_id: str,
        *,
        decision: str,
        scope: str,
        reason: str | None,
        ttl_ms: int | None,
    ) -> Approval:
        """Record a decision through the core API, as ``decider`` on the channel ``tui``."""
        if self.read_only:
            raise JournalError("the inspector was started read-only; decisions are disabled")
        writer = self._shared_writer or self._own_writer
        if writer is None:
            writer = self._own_writer = await Journal.open(self.path, create=False)
        return await decide(
            writer,
            approval_id,
            decision=decision,
            scope=scope,
            decided_by=self.decider,
            channel=self.decision_channel,
            reason=reason or None,
            ttl_ms=ttl_ms,
        )

    async def close(self) -> None:
        """Close the reader and the writer this source opened (never a shared one)."""
        await self._drop_reader()
        if self._own_writer is not None:
            writer, self._own_writer = self._own_writer, None
            await writer.close()
