"""The read interface the record modules query through, whichever store holds the journal.

The record modules' read functions (sessions, transcripts, tool jobs, approvals) take any
:class:`Reads`: a :class:`~journal_core.reader.JournalReader` on a journal file, or a
:class:`~journal_core.central.reads.CentralReader` on the central PostgreSQL store, scoped to one
journal or to all. Queries are written once, in the SQL both stores accept for the journal's
tables; the one place where the two differ, full-text search over transcripts, is a method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class Reads(Protocol):
    """A read-only view of one journal's tables (or of several journals' together)."""

    async def fetchall(self, query: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows for ``query`` (``?`` placeholders), read in one short read-only transaction."""
        ...

    def transcript_match(self, text: str) -> tuple[str, tuple[object, ...]] | None:
        """A condition on ``s.session_ulid`` keeping sessions whose transcript holds every word
        of ``text``, with its parameters; None when ``text`` has no word."""
        ...


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    """One journal the central store holds: where it comes from and how far it is shipped."""

    journal_id: str
    host: str
    source_path: str
    head_seq: int
    head_created_at_unix_ms: int | None
    host_head_seq: int | None
    host_seen_at_unix_ms: int | None
    shipped_at_unix_ms: int | None
    records_seq: int
    refused_code: str | None
    refused_seq: int | None
    refused_detail: str | None

    @property
    def events_behind(self) -> int:
        """How many events the host held, when last seen, that the central copy lacks."""
        return max(0, (self.host_head_seq or 0) - self.head_seq)
