"""The typed errors raised by the journal store.

Every error a caller can act on has its own class and a message that says what was wrong and
what to do. All of them derive from :class:`JournalError`, so a command line can catch one type.
"""

from __future__ import annotations


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

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            "payload",
            f"{size} bytes exceeds the limit of {limit} bytes "
            "(store large output as a tool result artifact, or raise max_payload_bytes)",
        )


class DuplicateEventError(JournalError):
    """An event with the same event id is already in the journal (or twice in one batch)."""

    def __init__(self, event_ids: list[str]) -> None:
        self.event_ids = event_ids
        shown = ", ".join(event_ids[:5]) + (" ..." if len(event_ids) > 5 else "")
        super().__init__(f"duplicate event id: {shown} (event ids must be unique; omit it to get one)")


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
