"""The inspector's access to one journal: read-only, with a writer only for decisions.

The app reads through a :class:`~journal_core.JournalReader` (``mode=ro``, no idle transaction).
It opens a writer only when the operator decides an approval, or shares the demo daemon's writer
when it runs in the same process. It notices new commits cheaply (``PRAGMA data_version``), and a
journal file that was replaced or removed, in which case it reopens the file when it can.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from journal_core import Journal, JournalError, JournalReader
from journal_core.approvals import Approval, decide


def default_decider() -> str:
    """Who decides, when no name is configured: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class Change:
    """What a poll found: new commits, or the file gone or replaced."""

    committed: bool
    problem: str | None = None
    reopened: bool = False


class JournalSource:
    """One journal, as the inspector sees it."""

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
    def reader(self) -> JournalReader:
        """The open read-only connection (raises if the journal is not open)."""
        if self._reader is None:
            raise JournalError(f"{self.path} is not open")
        return self._reader

    @property
    def is_open(self) -> bool:
        """True while a reader is open."""
        return self._reader is not None

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
            channel="tui",
            reason=reason or None,
            ttl_ms=ttl_ms,
        )

    async def close(self) -> None:
        """Close the reader and the writer this source opened (never a shared one)."""
        await self._drop_reader()
        if self._own_writer is not None:
            writer, self._own_writer = self._own_writer, None
            await writer.close()
