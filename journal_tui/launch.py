"""Starting the inspector from the command line: on a journal file, or over the demo daemon."""

from __future__ import annotations

import os

from journal_core import Journal
from journal_core.demo import DemoConfig, DemoDaemon, DemoStats, run_demo
from journal_tui.app import JournalApp
from journal_tui.source import JournalSource, Source


async def inspect(
    path: str | os.PathLike[str], *, read_only: bool = False, decider: str | None = None
) -> None:
    """Open ``path`` read-only and run the inspector until the user quits.

    ``path`` is a journal file, or a ``postgresql://`` URL of the fleet's central store. Raises a
    typed :class:`~journal_core.JournalError` (with a one-line message) when it cannot be opened,
    before anything is drawn.
    """
    source: Source
    if str(path).startswith(("postgresql://", "postgres://")):
        from journal_tui.central_source import CentralSource  # the driver loads only for this

        source = CentralSource(str(path), read_only=read_only, decider=decider)
    else:
        source = JournalSource(path, read_only=read_only, decider=decider)
    await source.open()
    try:
        await JournalApp(source).run_async()
    finally:
        await source.close()


async def demo(
    journal: Journal,
    config: DemoConfig,
    *,
    max_events: int | None = None,
    decider: str | None = None,
) -> DemoStats:
    """Run the simulated daemon and the inspector over it in one process, until the user quits.

    The inspector shares the daemon's writer for its decisions, as an operator's console next to
    the daemon would.
    """

    async def show(daemon: DemoDaemon) -> None:
        del daemon
        source = JournalSource(journal.info.path, writer=journal, decider=decider)
        await source.open()
        await JournalApp(source).run_async()

    return await run_demo(journal, config, max_events=max_events, on_start=show)
