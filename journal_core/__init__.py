"""journal_core: the durable, tamper-evident journal of an AI-agent daemon.

The public API lives here; the modules behind it are private details.

    async with await Journal.open("journal.db") as journal:
        result = await journal.append(EventInput(...))
"""

from journal_core.chain import CHAIN_ALGORITHM, BreakCode, ChainBreak, VerifyReport
from journal_core.connection import JournalConfig, JournalInfo
from journal_core.errors import (
    DuplicateEventError,
    InvalidTransitionError,
    JournalBusyError,
    JournalClosedError,
    JournalError,
    JournalIOError,
    JournalNotFoundError,
    NotAJournalError,
    PayloadTooLargeError,
    RecordNotFoundError,
    SchemaTooNewError,
    ShipRefusedError,
    ValidationError,
)
from journal_core.events import Actor, EventInput, Kind
from journal_core.ids import new_ulid
from journal_core.reader import Head, JournalReader, StoredEvent, verify_file
from journal_core.redaction import RedactionPolicy
from journal_core.store import AppendResult, Journal, WriteContext

__all__ = [
    "CHAIN_ALGORITHM",
    "Actor",
    "AppendResult",
    "BreakCode",
    "ChainBreak",
    "DuplicateEventError",
    "EventInput",
    "Head",
    "InvalidTransitionError",
    "Journal",
    "JournalBusyError",
    "JournalClosedError",
    "JournalConfig",
    "JournalError",
    "JournalIOError",
    "JournalInfo",
    "JournalNotFoundError",
    "JournalReader",
    "Kind",
    "NotAJournalError",
    "PayloadTooLargeError",
    "RecordNotFoundError",
    "RedactionPolicy",
    "SchemaTooNewError",
    "ShipRefusedError",
    "StoredEvent",
    "ValidationError",
    "VerifyReport",
    "WriteContext",
    "new_ulid",
    "verify_file",
]
