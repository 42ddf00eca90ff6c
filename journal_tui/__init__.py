"""journal_tui: a Textual inspector over a live journal (``journal tui DB``, ``journal demo``)."""

from journal_tui.app import JournalApp
from journal_tui.source import JournalSource

__all__ = ["JournalApp", "JournalSource"]
